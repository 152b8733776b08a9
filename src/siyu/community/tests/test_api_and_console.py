"""The groups API and console pages: tenant isolation (404), data scope, members."""

from __future__ import annotations

import pytest

from siyu.community import services
from siyu.community.models import Group
from siyu.testing.console import change_url, changelist_url
from siyu.testing.factories import CustomerFactory, GroupFactory, StaffFactory


def ids(items):
    return [item["id"] for item in items]


@pytest.fixture
def other_sales(tenant):
    return StaffFactory(tenant=tenant, roles=["sales"], login=True, wecom_userid="sales2")


@pytest.fixture
def b_group(other_tenant):
    b_staff = StaffFactory(tenant=other_tenant, wecom_userid="b-sales", name="Zeta-Staff")
    return GroupFactory(tenant=other_tenant, name="Zeta-Group", owner=b_staff)


# --- API ---------------------------------------------------------------------------------------
def test_other_tenants_groups_are_404_and_never_listed(tenant, sales_staff, b_group, api):
    mine = GroupFactory(tenant=tenant, owner=sales_staff)
    assert ids(api.walk("/groups")) == [mine.pk]
    assert api.walk("/groups", q="Zeta") == []
    response = api.get(f"/groups/{b_group.pk}")
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "not_found",
        "message": "Group not found",
        "details": {"id": b_group.pk},
    }


def test_sales_see_only_the_groups_they_own(tenant, sales_staff, other_sales, api_as):
    own = GroupFactory(tenant=tenant, owner=sales_staff)
    other = GroupFactory(tenant=tenant, owner=other_sales)
    client = api_as(tenant, staff=sales_staff)
    assert ids(client.walk("/groups")) == [own.pk]
    assert client.get(f"/groups/{other.pk}").status_code == 404


def test_a_group_comes_with_its_members(tenant, sales_staff, api):
    # given
    customer = CustomerFactory(tenant=tenant, external_userid="wmIN", staff=sales_staff)
    group = GroupFactory(
        tenant=tenant, owner=sales_staff, members=[customer, {"userid": "wmGONE", "type": 2}]
    )
    services.remove_group_members(tenant, group.chat_id, ["wmGONE"])
    # when
    body = api.get(f"/groups/{group.pk}").json()
    with_left = api.get(f"/groups/{group.pk}", include_left="true").json()
    # then
    assert (body["owner_id"], body["member_count"], body["customer_member_count"]) == (
        sales_staff.pk,
        2,
        1,
    )
    assert [(m["userid"], m["member_type"]) for m in body["members"]] == [
        ("sales1", 1),
        ("wmIN", 2),
    ]
    assert body["members"][1]["customer_id"] == customer.pk
    assert body["members"][0]["staff_id"] == sales_staff.pk
    assert [m["status"] for m in with_left["members"]] == ["active", "active", "left"]


def test_groups_filter_by_status(tenant, sales_staff, api):
    live = GroupFactory(tenant=tenant, owner=sales_staff)
    gone = GroupFactory(tenant=tenant, owner=sales_staff)
    services.dismiss_group(tenant, gone.chat_id)
    assert ids(api.walk("/groups", status="active")) == [live.pk]
    assert ids(api.walk("/groups", status="dismissed")) == [gone.pk]


def test_a_key_without_the_groups_scope_is_refused(tenant, api_as):
    response = api_as(tenant, ["customers:read"]).get("/groups")
    assert response.status_code == 403


# --- console -------------------------------------------------------------------------------------
def test_another_tenants_group_is_404_in_the_console(admin_staff, b_group, login):
    client = login(admin_staff)
    assert client.get(change_url(b_group)).status_code == 404
    listing = client.get(changelist_url(Group)).content.decode()
    assert "Zeta" not in listing


def test_the_group_page_lists_members_read_only(tenant, admin_staff, sales_staff, login):
    customer = CustomerFactory(tenant=tenant, name="群成员甲", staff=sales_staff)
    group = GroupFactory(tenant=tenant, name="福利群", owner=sales_staff, members=[customer])
    client = login(admin_staff)
    listing = client.get(changelist_url(Group))
    assert list(listing.context["cl"].result_list) == [group]
    page = client.get(change_url(group)).content.decode()
    assert "福利群" in page and "群成员甲" in page
    assert 'name="_save"' not in page


def test_sales_see_only_their_own_groups_in_the_console(tenant, sales_staff, other_sales, login):
    own = GroupFactory(tenant=tenant, owner=sales_staff)
    other = GroupFactory(tenant=tenant, owner=other_sales)
    client = login(sales_staff)
    assert list(client.get(changelist_url(Group)).context["cl"].result_list) == [own]
    assert client.get(change_url(other)).status_code == 404
