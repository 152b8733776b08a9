"""Fixtures shared by every domain's tests."""

from __future__ import annotations

import pytest
from django.conf import settings
from huey.contrib.djhuey import HUEY

from siyu.tenancy import services
from siyu.testing.factories import TEST_PASSWORD, StaffFactory, TenantFactory

# Shared fixtures for every domain's tests: API clients and keys (api, api_as, api_key_for,
# session_api, anonymous) and console actors (operator_staff, other_admin, other_rows, ...).
pytest_plugins = ["siyu.testing.api", "siyu.testing.console"]


def pytest_configure(config):
    """Translations are compiled at set-up; a bare `pytest` after editing a .po sees them too."""
    from siyu.testing.console import ensure_messages_compiled

    ensure_messages_compiled()


@pytest.fixture(autouse=True)
def _tasks_run_inline():
    """Tasks run in-process in tests (the Redis test starts a real worker instead)."""
    HUEY.immediate = True
    yield


@pytest.fixture(autouse=True)
def _default_language():
    """Each test starts in the configured language (Chinese), as a fresh process would: a
    request earlier in the same thread may have switched to English."""
    from django.utils import translation

    translation.activate(settings.LANGUAGE_CODE)
    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Production hashes passwords slowly on purpose; tests log in hundreds of times."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def tenant(db):
    return TenantFactory(slug="brand-a", name="Brand A")


@pytest.fixture
def other_tenant(db):
    return TenantFactory(slug="brand-b", name="Brand B")


@pytest.fixture
def admin_staff(tenant):
    return StaffFactory(tenant=tenant, roles=["admin"], login=True, wecom_userid="boss")


@pytest.fixture
def sales_staff(tenant):
    return StaffFactory(tenant=tenant, roles=["sales"], login=True, wecom_userid="sales1")


@pytest.fixture
def actor_of():
    """The actor a staff member acts as in the console."""

    def build(staff):
        return services.actor_for_staff(staff, user=staff.user)

    return build


@pytest.fixture
def login(client):
    """Log a staff member with a console login into the Django test client."""

    def log_in(staff):
        assert client.login(username=staff.user.username, password=TEST_PASSWORD)
        return client

    return log_in


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server (Debian package) on a free loopback port, for this test session.

    `make test` sets SIYU_REQUIRE_REDIS=1 so that a missing binary fails the run instead
    of skipping the distributed-mode tests silently.
    """
    import os
    import shutil
    import socket
    import subprocess
    import time

    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (Debian package redis-server)"
        if os.environ.get("SIYU_REQUIRE_REDIS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    yield url
    process.terminate()
    process.wait(timeout=10)
