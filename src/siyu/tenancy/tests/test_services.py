"""Tenancy services: validation, cross-tenant guards, events and audit entries."""

from datetime import timedelta

import pytest
from django.contrib.auth import authenticate
from django.utils import timezone

from siyu.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from siyu.core.models import AuditEntry, Event
from siyu.tenancy import services
from siyu.tenancy.models import ApiKey, Staff
from siyu.testing.factories import TEST_PASSWORD, DepartmentFactory, StaffFactory


def test_staff_cannot_be_put_in_another_tenants_department(tenant, other_tenant):
    foreign = DepartmentFactory(tenant=other_tenant)
    actor = services.system_actor(tenant)
    with pytest.raises(NotFound):
        services.add_staff(tenant, wecom_userid="x1", name="X", department=foreign, by=actor)
    staff = StaffFactory(tenant=tenant)
    with pytest.raises(NotFound):
        services.update_staff(staff, department=foreign, by=actor)


def test_api_keys_cannot_act_as_another_tenants_staff(tenant, other_tenant):
    foreign = StaffFactory(tenant=other_tenant)
    with pytest.raises(NotFound):
        services.create_api_key(
            tenant, name="k", scopes=["staff:read"], staff=foreign, by=services.system_actor(tenant)
        )


def test_the_same_userid_may_exist_once_per_tenant(tenant, other_tenant):
    StaffFactory(tenant=tenant, wecom_userid="lili")
    StaffFactory(tenant=other_tenant, wecom_userid="lili")  # another brand: fine
    with pytest.raises(Conflict):
        StaffFactory(tenant=tenant, wecom_userid="lili")


def test_changing_roles_records_an_event_and_an_audit_entry(tenant, admin_staff, actor_of):
    staff = StaffFactory(tenant=tenant, roles=["sales"])
    services.update_staff(staff, role_codes=["sales", "service"], by=actor_of(admin_staff))
    event = Event.objects.for_tenant(tenant).get(type="staff.updated", staff=staff)
    assert event.payload == {"fields": ["roles"]}
    entry = AuditEntry.objects.for_tenant(tenant).get(action="staff.updated")
    assert entry.changes == {"roles": [["sales"], ["sales", "service"]]}
    assert entry.staff == admin_staff and entry.user == admin_staff.user


def test_an_admin_cannot_remove_their_own_admin_role(admin_staff, actor_of):
    with pytest.raises(InvalidInput):
        services.update_staff(admin_staff, role_codes=["sales"], by=actor_of(admin_staff))


def test_departed_staff_lose_their_login_and_their_actor(
    tenant, sales_staff, admin_staff, actor_of
):
    services.mark_staff_departed(sales_staff, by=actor_of(admin_staff))
    services.mark_staff_departed(sales_staff, by=actor_of(admin_staff))  # idempotent
    sales_staff.refresh_from_db()
    assert sales_staff.status == Staff.Status.DEPARTED
    assert authenticate(username=sales_staff.user.username, password=TEST_PASSWORD) is None
    assert services.actor_for_user(sales_staff.user) is None
    assert Event.objects.for_tenant(tenant).filter(type="staff.departed").count() == 1


def test_a_weak_console_password_is_refused(tenant):
    staff = StaffFactory(tenant=tenant)
    with pytest.raises(InvalidInput):
        services.create_console_user(
            staff, username="weak", password="123", by=services.system_actor(tenant)
        )


def test_api_key_lifecycle(tenant, sales_staff):
    actor = services.system_actor(tenant)
    key, raw = services.create_api_key(
        tenant, name="bi", scopes=["events:read"], expires_in_days=30, by=actor
    )
    assert raw.startswith(f"siyu_{key.prefix}_")
    assert key.key_hash == services.hash_api_key(raw) and raw not in key.key_hash
    assert services.authenticate_api_key(raw) == key
    assert services.authenticate_api_key(raw + "x") is None
    assert services.authenticate_api_key("not-a-key") is None
    ApiKey.objects.for_tenant(tenant).filter(pk=key.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.authenticate_api_key(raw) is None
    # a key acting as a staff stops when the staff departs
    staff_key, staff_raw = services.create_api_key(
        tenant, name="mine", scopes=["staff:read"], staff=sales_staff, by=actor
    )
    assert services.actor_for_api_key(staff_key).data_scope == "own"
    services.mark_staff_departed(sales_staff, by=actor)
    assert services.authenticate_api_key(staff_raw) is None


def test_an_inactive_tenant_cannot_use_its_keys_or_console(tenant, admin_staff):
    actor = services.system_actor(tenant)
    _, raw = services.create_api_key(tenant, name="k", scopes=["staff:read"], by=actor)
    services.update_tenant(tenant, is_active=False, by=actor)
    assert services.authenticate_api_key(raw) is None
    assert services.actor_for_user(admin_staff.user) is None


def test_tenant_update_keeps_blank_secrets_and_audits_them_masked(tenant, admin_staff, actor_of):
    actor = actor_of(admin_staff)
    services.update_tenant(tenant, wecom_contact_secret="first-secret-value", by=actor)
    services.update_tenant(tenant, wecom_contact_secret="", name="Brand A2", by=actor)
    tenant.refresh_from_db()
    assert tenant.wecom_contact_secret == "first-secret-value"
    assert tenant.name == "Brand A2"
    entries = AuditEntry.objects.for_tenant(tenant).filter(action="tenant.updated")
    assert "first-secret-value" not in str(list(entries.values_list("changes", flat=True)))
    assert entries.filter(changes__wecom_contact_secret=["", "fir******lue"]).exists()


@pytest.fixture
def staff_manager(tenant):
    """A custom role that may manage staff and roles but holds nothing else."""
    services.create_role(
        tenant,
        code="hr",
        name="HR",
        permissions=["tenancy.*_staff", "tenancy.*_role"],
        data_scope="department",
        by=services.system_actor(tenant),
    )
    return StaffFactory(tenant=tenant, roles=["hr"])


def test_a_staff_manager_cannot_grant_roles_beyond_their_own_rights(
    tenant, staff_manager, actor_of
):
    actor = actor_of(staff_manager)
    colleague = StaffFactory(tenant=tenant, roles=["hr"])
    with pytest.raises(Forbidden):
        services.update_staff(colleague, role_codes=["hr", "admin"], by=actor)
    with pytest.raises(Forbidden):
        services.update_staff(staff_manager, role_codes=["hr", "admin"], by=actor)
    with pytest.raises(Forbidden):
        services.add_staff(tenant, wecom_userid="new1", name="N", role_codes=["analyst"], by=actor)
    assert list(colleague.roles.values_list("code", flat=True)) == ["hr"]


def test_a_role_cannot_be_widened_beyond_the_editors_rights(tenant, staff_manager, actor_of):
    from siyu.tenancy.models import Role

    actor = actor_of(staff_manager)
    hr = Role.objects.for_tenant(tenant).get(code="hr")
    with pytest.raises(Forbidden):
        services.update_role(hr, permissions=[*hr.permissions, "*"], by=actor)
    with pytest.raises(Forbidden):
        services.update_role(hr, data_scope="tenant", by=actor)
    with pytest.raises(Forbidden):
        services.create_role(
            tenant, code="x", name="X", permissions=["core.*"], data_scope="own", by=actor
        )
    # within their rights is fine
    services.create_role(
        tenant,
        code="viewer",
        name="Viewer",
        permissions=["tenancy.view_staff"],
        data_scope="own",
        by=actor,
    )
