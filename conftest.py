"""Suite-wide: tests run on the real PostgreSQL and Redis; without them, skip locally and fail in CI."""

import os
import socket
from urllib.parse import urlparse

import pytest

# The live servers (simulator, gateways, worker, Redis flushed once) as one plugin for every app's tests: a
# conftest that imported those fixtures would start a second set of them, flushing Redis under the first.
pytest_plugins = ["tests.live"]


def service_reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def missing_services() -> list[str]:
    missing = []
    db_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not db_url.startswith("postgres") or not service_reachable(db_url, 5432):
        missing.append(f"PostgreSQL (DATABASE_URL={db_url or 'unset'})")
    if not redis_url or not service_reachable(redis_url, 6379):
        missing.append(f"Redis (REDIS_URL={redis_url or 'unset'})")
    return missing


def pytest_collection_modifyitems(config, items):
    missing = missing_services()
    if not missing:
        return
    needs_services = [item for item in items if "no_services" not in item.keywords]
    if os.environ.get("CI"):
        pytest.exit(f"CI requires {', '.join(missing)}; run the suite with `make test`.", returncode=1)
    skip = pytest.mark.skip(reason=f"needs {', '.join(missing)} (use `make test`)")
    for item in needs_services:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def django_db_setup(request, django_test_environment, django_db_blocker, django_db_keepdb):
    """Always create the test database: live-server tests use committed data, without a django_db mark."""
    from django.test.utils import setup_databases, teardown_databases

    verbosity = request.config.option.verbose
    with django_db_blocker.unblock():
        config = setup_databases(verbosity=verbosity, interactive=False, keepdb=django_db_keepdb,
                                 aliases={"default"})
    yield
    if not django_db_keepdb:
        with django_db_blocker.unblock():
            teardown_databases(config, verbosity=verbosity)
