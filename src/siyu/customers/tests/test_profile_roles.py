"""The built-in roles' CRM rights: what sales, service, operators and analysts may do."""

from __future__ import annotations

import pytest

from siyu.tenancy.services import PERMISSION_PATTERN
from siyu.testing.factories import StaffFactory

SENSITIVE = (
    "customers.view_customer_phone",
    "customers.merge_customer",
    "customers.import_customer",
    "customers.handover_customer",
)
FRONT_LINE = (
    "customers.view_customer",
    "customers.change_customer",
    "customers.add_customernote",
    "customers.change_customernote",
    "customers.view_customfield",
    "customers.add_customertag",
    "customers.delete_customertag",
    "customers.view_churnalert",
    "customers.change_churnalert",
    "segments.view_segment",
    "engagement.view_stafftask",
    "engagement.change_stafftask",
)
SETTINGS = (
    "customers.add_customfield",
    "customers.change_lifecyclepolicy",
    "customers.add_autotagrule",
    "customers.delete_customer",
    "segments.add_segment",
)


@pytest.mark.parametrize("role", ["sales", "service"])
def test_front_line_roles_work_customers_without_sensitive_rights(role, tenant, actor_of):
    actor = actor_of(StaffFactory(tenant=tenant, roles=[role]))
    assert [p for p in FRONT_LINE if not actor.has_perm(p)] == []
    assert [p for p in SENSITIVE + SETTINGS if actor.has_perm(p)] == []


def test_operators_run_the_crm_and_segments(tenant, actor_of):
    actor = actor_of(StaffFactory(tenant=tenant, roles=["operator"]))
    assert all(actor.has_perm(p) for p in FRONT_LINE + SENSITIVE + SETTINGS)
    assert actor.has_perm("segments.change_segment")


def test_analysts_read_but_do_not_write(tenant, actor_of):
    actor = actor_of(StaffFactory(tenant=tenant, roles=["analyst"]))
    assert actor.has_perm("customers.view_customer") and actor.has_perm("segments.view_segment")
    assert not actor.has_perm("customers.change_customer")
    assert not actor.has_perm("customers.add_customernote")


def test_every_builtin_pattern_is_editable_in_the_role_form():
    from siyu.tenancy.roles import BUILTIN_ROLES

    bad = [p for role in BUILTIN_ROLES for p in role.permissions if not PERMISSION_PATTERN.match(p)]
    assert bad == []


@pytest.mark.parametrize("page", ["customer", "customfield", "lifecyclepolicy"])
def test_a_sales_staff_opens_the_customer_pages_they_need(page, sales_staff, login):
    response = login(sales_staff).get(f"/console/customers/{page}/")
    assert response.status_code in (200, 302)
    assert login(sales_staff).get("/console/engagement/stafftask/").status_code == 200
