"""Live servers for the storage tests: gateway processes on the local filesystem and on S3, where S3 is
moto's server on loopback (real HTTP, no mocked calls)."""

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from tests.live import ROOT, free_port, start_gateway, stop_process, wait_until_healthy

INPUT_MAX_BYTES = 64 * 1024  # small, so that over-limit bodies stay small too
S3_BUCKET, S3_PREFIX, S3_REGION = "hypereal-test", "tenant-a", "us-east-1"
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def storage_gateway_start(**settings: str) -> tuple[str, subprocess.Popen]:
    """A gateway with a small input limit, so that over-limit bodies stay small too."""
    return start_gateway(HYPEREAL_STORAGE_INPUT_MAX_BYTES=str(INPUT_MAX_BYTES), **settings)


@dataclass
class Store:
    """A gateway and the storage behind it, which tests also read directly (not through Hypereal)."""

    backend: str
    url: str
    storage: dict  # its STORAGES["hypereal"] entry, for services run in the test process
    root: Path | None = None  # filesystem
    s3: object = None  # a boto3 client of the S3 server

    def object_bytes(self, name: str) -> bytes | None:
        if self.s3 is None:
            path = self.root / name
            return path.read_bytes() if path.exists() else None
        try:
            return self.s3.get_object(Bucket=S3_BUCKET, Key=f"{S3_PREFIX}/{name}")["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None


@pytest.fixture(scope="session")
def fs_store(committed_db, tmp_path_factory):
    root = tmp_path_factory.mktemp("storage")
    url, proc = storage_gateway_start(HYPEREAL_STORAGE_DIR=str(root))
    yield Store(backend="filesystem", url=url, root=root, storage={
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}})
    stop_process(proc)


@pytest.fixture(scope="session")
def s3_url():
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # it logs every request
    try:
        wait_until_healthy(f"{url}/moto-api/", proc)
    except Exception:
        proc.kill()
        raise
    yield url
    stop_process(proc)


@pytest.fixture(scope="session")
def s3_store(committed_db, s3_url):
    client = boto3.client("s3", endpoint_url=s3_url, region_name=S3_REGION,
                          aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    client.create_bucket(Bucket=S3_BUCKET)
    url, proc = storage_gateway_start(HYPEREAL_STORAGE_BACKEND="s3", HYPEREAL_S3_BUCKET=S3_BUCKET,
                                      HYPEREAL_S3_ENDPOINT_URL=s3_url, HYPEREAL_S3_REGION=S3_REGION,
                                      HYPEREAL_S3_PREFIX=S3_PREFIX, **S3_CREDENTIALS)
    yield Store(backend="s3", url=url, s3=client, storage={"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": S3_BUCKET, "endpoint_url": s3_url, "region_name": S3_REGION, "location": S3_PREFIX,
        "access_key": S3_CREDENTIALS["AWS_ACCESS_KEY_ID"], "secret_key": S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "file_overwrite": True, "signature_version": "s3v4"}})
    stop_process(proc)


@pytest.fixture(params=["filesystem", "s3"])
def store(request) -> Store:
    return request.getfixturevalue("fs_store" if request.param == "filesystem" else "s3_store")


@pytest.fixture
def in_process(settings):
    """Point this process's "hypereal" storage (and public URL) at a store's, to call services directly."""
    def use(store: Store) -> Store:
        settings.STORAGES = {**settings.STORAGES, "hypereal": store.storage}
        settings.PUBLIC_URL = store.url
        return store
    return use


@pytest.fixture(scope="session")
def runpod(committed_db, sim_url):
    """The simulator as a compute provider, with the demo's two hosted models on it."""
    from gpu.demo import gpu_models_demo_install

    return gpu_models_demo_install(simulator_url=sim_url)


@pytest.fixture
def live_member(gateway_url, make_account, monkeypatch):
    """A browser page signed in (by its session cookie) as a member of a fresh organization, in a role."""
    # Playwright's sync API runs an event loop in this thread; the test's own ORM reads are still sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from django.conf import settings
    from django.db import connections
    from django.test import Client
    from playwright.sync_api import sync_playwright

    from orgs.models import Membership
    from orgs.services import user_create

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])

        def make(role: str = "owner"):
            acct = make_account(credits="100")
            user = acct.org.memberships.get().user
            if role != "owner":
                user = user_create(email=f"{role}-{acct.org.slug}@example.test")
                Membership.objects.create(organization=acct.org, user=user, role=role)
            client = Client()
            client.force_login(user)
            context = browser.new_context(viewport={"width": 1366, "height": 900}, base_url=gateway_url)
            context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "url": gateway_url,
                                  "value": client.cookies[settings.SESSION_COOKIE_NAME].value}])
            page = context.new_page()
            page.base_url = gateway_url
            page.goto(f"{gateway_url}/gpu?org={acct.org.slug}")  # this organization, remembered from here on
            return page, acct.org

        yield make
        connections.close_all()  # those this thread opened while Playwright's loop ran: a context of their own
        browser.close()
