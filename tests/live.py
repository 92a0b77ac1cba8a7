"""Live servers for end-to-end tests: the simulator and the gateway run as real processes over HTTP.
A plugin of the root conftest, so that every app's tests share one of each."""

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
TEST_MAX_BODY_BYTES = 256 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)  # polling a readiness condition, bounded by the deadline
    raise RuntimeError(f"{url} not healthy after {timeout} s")


def wait_for(condition, *, seconds: float, what: str):
    """Poll ``condition`` until it holds (returning its value) or the deadline passes."""
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.05)  # polling a condition, bounded by the deadline
    return value


def start_process(args: list[str], health_url: str, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **(env or {})})
    try:
        wait_until_healthy(health_url, proc)
    except Exception:
        proc.kill()
        raise
    return proc


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def sim_url():
    port = free_port()
    proc = start_process([sys.executable, "-m", "sim", "--host", "127.0.0.1", "--port", str(port)],
                         f"http://127.0.0.1:{port}/health")
    yield f"http://127.0.0.1:{port}"
    stop_process(proc)


def flushed_redis(url: str) -> Iterator[redis.Redis]:
    """A client of the Redis database at ``url``, emptied first; for fixtures."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def redis_client():
    yield from flushed_redis(os.environ["REDIS_URL"])


@pytest.fixture(scope="session")
def committed_db(django_db_setup, django_db_blocker):
    """Committed data the gateway process can see (tests isolate themselves by creating their own orgs)."""
    with django_db_blocker.unblock():
        yield


TEST_COOLDOWN_SECONDS = 2
TEST_READ_TIMEOUT = 0.5


def traffic_catalog_install(sim_url: str) -> None:
    """Models whose chains fail in known ways; every scenario has its own targets so health never leaks."""
    from gateway.models import Provider
    from gateway.services import model_upsert, provider_upsert

    def provider(name: str, path: str = "", **fields) -> Provider:
        p = provider_upsert(name=name, kind=Provider.Kind.OPENAI, base_url=f"{sim_url}{path}/v1", api_key="k")
        Provider.objects.filter(pk=p.pk).update(**fields)
        return p

    good = provider("tc-good")
    failing = {status: provider(f"tc-fail-{status}", f"/x/fail={status}") for status in (400, 429, 500, 503)}
    hanging = provider("tc-hang", "/x/hang=1", read_timeout=TEST_READ_TIMEOUT)
    refused = provider_upsert(name="tc-refused", kind=Provider.Kind.OPENAI,
                              base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="k")
    prices = {"input": "10", "output": "40"}
    chains = {
        "tc-500": [(failing[500], "tc-500-a"), (good, "tc-500-b")],
        "tc-429": [(failing[429], "tc-429-a"), (good, "tc-429-b")],
        "tc-timeout": [(hanging, "tc-timeout-a"), (good, "tc-timeout-b")],
        "tc-refused": [(refused, "tc-refused-a"), (good, "tc-refused-b")],
        "tc-400": [(failing[400], "tc-400-a"), (good, "tc-400-b")],
        "tc-all-fail": [(failing[500], "tc-all-fail-a"), (failing[503], "tc-all-fail-b")],
        "tc-cooldown": [(failing[500], "tc-cooldown-a"), (good, "tc-cooldown-b")],
        "tc-stream-500": [(failing[500], "tc-stream-500-a"), (good, "tc-stream-500-b")],
    }
    for public_id, targets in chains.items():
        model_upsert(public_id=public_id, capability="chat", prices_per_mtok=prices, targets=targets)
    # About 13.5 credits a call: a few calls drain a small wallet.
    model_upsert(public_id="tc-expensive", capability="chat", targets=[(good, "tc-expensive")],
                 prices_per_mtok={"input": "100000", "output": "1000000"})
    for bucket in ("tc-intent-a", "tc-intent-b"):
        for name, price in (("cheap", "1"), ("mid", "5"), ("dear", "50")):
            model_upsert(public_id=f"{bucket}-{name}", capability="chat", intents=(bucket,),
                         prices_per_mtok={"input": price, "output": price},
                         targets=[(good, f"{bucket}-{name}")])


@pytest.fixture(scope="session")
def demo_catalog(committed_db, sim_url):
    from gateway.demo import demo_catalog_install

    models = demo_catalog_install(simulator_url=sim_url)
    traffic_catalog_install(sim_url)
    return models


def gateway_env() -> dict[str, str]:
    from django.db import connection

    db = connection.settings_dict
    return {
        "DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": os.environ["REDIS_URL"],
        "HYPEREAL_MAX_BODY_BYTES": str(TEST_MAX_BODY_BYTES),
        "HYPEREAL_COOLDOWN_SECONDS": str(TEST_COOLDOWN_SECONDS),
    }


def start_gateway(**settings: str) -> tuple[str, subprocess.Popen]:
    """A gateway process, whose public URL is its own; ``settings`` override its environment (HYPEREAL_…)."""
    port = free_port()
    env = {**gateway_env(), "HYPEREAL_PUBLIC_URL": f"http://127.0.0.1:{port}", **settings}
    proc = start_process([sys.executable, "-m", "uvicorn", "hypereal.asgi:application", "--http",
                          "gateway.server:GatewayHttp", "--host", "127.0.0.1", "--port", str(port), "--lifespan",
                          "on", "--no-access-log", "--log-level", "warning"],
                         f"http://127.0.0.1:{port}/health", env=env)
    return f"http://127.0.0.1:{port}", proc


@pytest.fixture(scope="session")
def gateway_url(demo_catalog, redis_client):
    url, proc = start_gateway()
    yield url
    stop_process(proc)


@pytest.fixture(scope="session")
def second_gateway_url(demo_catalog, redis_client):
    """Another gateway process: state shared through Redis must hold across both."""
    url, proc = start_gateway()
    yield url
    stop_process(proc)


@dataclass
class SmtpInbox:
    host: str
    port: int
    messages: list


@pytest.fixture(scope="session")
def smtp_inbox():
    """A real SMTP server on loopback that keeps every message it receives."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    inbox = SmtpInbox("127.0.0.1", free_port(), [])

    class Keep(Message):
        def handle_message(self, message):
            inbox.messages.append(message)

    controller = Controller(Keep(), hostname=inbox.host, port=inbox.port)
    controller.start()
    yield inbox
    controller.stop()


@pytest.fixture(scope="session")
def celery_worker(committed_db, redis_client, smtp_inbox):
    """A real Celery worker on the Redis broker, mailing through the loopback SMTP server."""
    env = {**os.environ, **gateway_env(), "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
           "EMAIL_HOST": smtp_inbox.host, "EMAIL_PORT": str(smtp_inbox.port)}
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "hypereal", "worker", "--pool", "solo",
                             "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel",
                             "warning"], cwd=ROOT, env=env)
    yield proc
    stop_process(proc)


@dataclass
class Account:
    org: object
    key: str
    key_id: int


@pytest.fixture
def make_account(committed_db) -> Callable[..., Account]:
    """An organization with its own wallet and key, so tests never share money."""
    from apikeys.services import api_key_create
    from billing.money import credits_to_micro
    from billing.services import wallet_credit
    from orgs.services import organization_create, user_create

    def make(*, credits: str = "1000", spending_limit: int | None = None, rpm: int | None = None,
             tpm: int | None = None, auto_disable: bool = False) -> Account:
        tag = uuid.uuid4().hex[:10]
        owner = user_create(email=f"owner-{tag}@example.test", password="pw-unused-123")
        org = organization_create(name=f"Test {tag}", owner=owner)
        if rpm is not None or tpm is not None:
            org.rate_limit_rpm, org.rate_limit_tpm = rpm, tpm
            org.save(update_fields=["rate_limit_rpm", "rate_limit_tpm"])
        if credits_to_micro(credits):
            wallet_credit(organization_id=org.pk, amount=credits_to_micro(credits),
                          idempotency_key=f"test-grant:{tag}")
        key, plaintext = api_key_create(organization=org, name=f"key {tag}", created_by=owner,
                                        monthly_spend_limit=spending_limit)
        if auto_disable:
            key.auto_disable = True
            key.save(update_fields=["auto_disable"])
        return Account(org=org, key=plaintext, key_id=key.pk)

    return make


@pytest.fixture
def account(make_account) -> Account:
    return make_account()
