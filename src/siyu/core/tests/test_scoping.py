"""Tenant data cannot be queried without naming the tenant; data scopes narrow rows."""

import pytest

from siyu.core.scoping import DataScope, UnscopedQueryError
from siyu.tenancy.models import Role, Staff
from siyu.tenancy.services import actor_for_staff
from siyu.testing.factories import DepartmentFactory, StaffFactory


@pytest.mark.parametrize(
    "query",
    [
        lambda: list(Staff.objects.all()),
        lambda: Staff.objects.count(),
        lambda: Staff.objects.exists(),
        lambda: Staff.objects.filter(name="x").first(),
        lambda: Staff.objects.get(pk=1),
        lambda: Staff.objects.update(name="x"),
        lambda: Staff.objects.all().delete(),
        lambda: list(Staff.objects.values_list("id", flat=True)),
        lambda: list(Staff.objects.iterator()),
        lambda: Staff.objects.in_bulk([1]),
    ],
    ids=[
        "list",
        "count",
        "exists",
        "first",
        "get",
        "update",
        "delete",
        "values",
        "iterator",
        "in_bulk",
    ],
)
def test_an_unscoped_query_of_tenant_data_refuses_to_run(db, query):
    with pytest.raises(UnscopedQueryError):
        query()


def test_for_tenant_returns_only_that_tenants_rows(tenant, other_tenant):
    mine = StaffFactory(tenant=tenant)
    StaffFactory(tenant=other_tenant)
    assert list(Staff.objects.for_tenant(tenant)) == [mine]


def test_related_managers_are_scoped_to_the_instances_tenant(tenant):
    staff = StaffFactory(tenant=tenant, roles=["sales", "content"])
    assert sorted(staff.roles.values_list("code", flat=True)) == ["content", "sales"]


def test_unscoped_needs_a_reason(db):
    with pytest.raises(ValueError):
        Staff.objects.unscoped(" ")
    assert Staff.objects.unscoped("test: count all tenants").count() == 0


def test_own_scope_sees_only_the_staff_itself(tenant):
    sales = StaffFactory(tenant=tenant, roles=["sales"])
    StaffFactory(tenant=tenant, roles=["sales"])
    actor = actor_for_staff(sales)
    assert actor.data_scope == DataScope.OWN
    assert list(Staff.objects.for_actor(actor)) == [sales]


def test_department_scope_sees_the_department_subtree(tenant):
    north = DepartmentFactory(tenant=tenant, name="North")
    north_shop = DepartmentFactory(tenant=tenant, name="North shop", parent=north)
    south = DepartmentFactory(tenant=tenant, name="South")
    lead = StaffFactory(tenant=tenant, roles=["service"], department=north)
    below = StaffFactory(tenant=tenant, department=north_shop)
    StaffFactory(tenant=tenant, department=south)
    actor = actor_for_staff(lead)
    assert actor.data_scope == DataScope.DEPARTMENT
    assert set(Staff.objects.for_actor(actor)) == {lead, below}


def test_widest_role_scope_wins(tenant):
    staff = StaffFactory(tenant=tenant, roles=["sales", "analyst"])
    StaffFactory(tenant=tenant)
    assert actor_for_staff(staff).data_scope == DataScope.TENANT
    assert Staff.objects.for_actor(actor_for_staff(staff)).count() == 2


def test_every_tenant_starts_with_the_six_builtin_roles(tenant):
    codes = list(Role.objects.for_tenant(tenant).values_list("code", flat=True))
    assert codes == ["admin", "operator", "sales", "content", "service", "analyst"]
