"""Fixtures shared by every domain's tests."""

from __future__ import annotations

import pytest
from huey.contrib.djhuey import HUEY

from siyu.tenancy import services
from siyu.testing.factories import TEST_PASSWORD, StaffFactory, TenantFactory


@pytest.fixture(autouse=True)
def _tasks_run_inline():
    """Tasks run in-process in tests (the Redis test starts a real worker instead)."""
    HUEY.immediate = True
    yield


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
