"""The customers API: tenant isolation (404, never 403), data scope, friendships and tags."""

from __future__ import annotations

import pytest

from siyu.customers import services
from siyu.customers.models import Follow
from siyu.testing.api import ApiClient
from siyu.testing.factories import CustomerFactory, StaffFactory

TAGS = [
    {
        "group_id": "etGROUP1",
        "group_name": "客户等级",
        "tag": [{"id": "etTAG_A", "name": "高意向"}, {"id": "etTAG_B", "name": "老客户"}],
    }
]


def ids(items):
    return [item["id"] for item in items]


@pytest.fixture
def b_customer(other_tenant):
    """A customer of tenant B, whom nobody in tenant A may see."""
    b_staff = StaffFactory(tenant=other_tenant, wecom_userid="b-sales")
    return CustomerFactory(tenant=other_tenant, name="Zeta Customer", staff=b_staff)


@pytest.fixture(params=["api_key", "session"])
def a_admin(request, tenant, admin_staff, api_as, session_api) -> ApiClient:
    if request.param == "api_key":
        return api_as(tenant, staff=admin_staff)
    return session_api(admin_staff)


# --- tenant isolation --------------------------------------------------------------------
def test_other_tenants_customers_never_appear_in_the_list(tenant, sales_staff, b_customer, a_admin):
    mine = CustomerFactory(tenant=tenant, staff=sales_staff, name="Mine")
    assert ids(a_admin.walk("/customers")) == [mine.pk]
    assert a_admin.walk("/customers", q="Zeta") == []
    assert a_admin.walk("/customers", q=b_customer.external_userid) == []


def test_another_tenants_customer_is_404_like_a_missing_one(a_admin, b_customer):
    foreign = a_admin.get(f"/customers/{b_customer.pk}")
    missing = a_admin.get("/customers/999999")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == {
        "error": {
            "code": "not_found",
            "message": "Customer not found",
            "details": {"id": b_customer.pk},
        }
    }
    assert missing.json()["error"]["message"] == "Customer not found"


# --- data scope ----------------------------------------------------------------------------
def test_sales_staff_see_only_the_customers_they_own(
    tenant, sales_staff, other_sales, admin_staff, api_as, session_api
):
    # given
    own = CustomerFactory(tenant=tenant, staff=sales_staff)
    shared_but_owned_by_other = CustomerFactory(
        tenant=tenant, followed_by=[other_sales, sales_staff]
    )
    other = CustomerFactory(tenant=tenant, staff=other_sales)
    # when / then
    for client in (api_as(tenant, staff=sales_staff), session_api(sales_staff)):
        assert ids(client.walk("/customers")) == [own.pk]
        assert client.get(f"/customers/{own.pk}").status_code == 200
        assert client.get(f"/customers/{other.pk}").status_code == 404
        assert client.get(f"/customers/{shared_but_owned_by_other.pk}").status_code == 404
    everyone = ids(api_as(tenant, staff=admin_staff).walk("/customers"))
    assert everyone == [other.pk, shared_but_owned_by_other.pk, own.pk]


def test_a_key_without_the_customers_scope_is_refused(tenant, api_as):
    response = api_as(tenant, ["staff:read"]).get("/customers")
    assert response.status_code == 403
    assert response.json()["error"]["details"] == {"required_scope": "customers:read"}


# --- content ---------------------------------------------------------------------------------
def test_a_customer_comes_with_friendships_and_tags(tenant, sales_staff, other_sales, api):
    # given
    services.sync_corp_tags(tenant, TAGS)
    customer = CustomerFactory(
        tenant=tenant,
        external_userid="wmDETAIL",
        name="李四",
        followed_by=[sales_staff, other_sales],
        state="cc_spring",
    )
    first, second = Follow.objects.for_tenant(tenant).filter(customer=customer).order_by("id")
    services.set_follow_tags(tenant, first, ["etTAG_A"])
    services.set_follow_tags(tenant, second, ["etTAG_A", "etTAG_B"])
    services.remove_follow(
        tenant, customer=customer, staff=other_sales, by="customer", at=second.added_at
    )
    # when
    body = api.get(f"/customers/{customer.pk}").json()
    # then
    assert body["external_userid"] == "wmDETAIL"
    assert (body["owner_id"], body["status"], body["source_state"]) == (
        sales_staff.pk,
        "active",
        "cc_spring",
    )
    assert [(f["staff_userid"], f["status"]) for f in body["follows"]] == [
        ("sales1", "active"),
        ("sales2", "deleted_by_customer"),
    ]
    assert body["follows"][0]["tags"] == [
        {
            "id": body["follows"][0]["tags"][0]["id"],
            "wecom_tag_id": "etTAG_A",
            "name": "高意向",
            "group_id": body["follows"][0]["tags"][0]["group_id"],
            "group_name": "客户等级",
        }
    ]
    assert [tag["name"] for tag in body["tags"]] == ["高意向"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [({"status": "lost"}, ["lost"]), ({"status": "active"}, ["kept"]), ({"q": "kep"}, ["kept"])],
)
def test_customers_filter_by_status_and_name(tenant, sales_staff, api, query, expected):
    CustomerFactory(tenant=tenant, name="kept", staff=sales_staff)
    lost = CustomerFactory(tenant=tenant, name="lost", staff=sales_staff)
    services.remove_follow(
        tenant, customer=lost, staff=sales_staff, by="customer", at=lost.first_added_at
    )
    assert [item["name"] for item in api.walk("/customers", **query)] == expected


def test_customers_filter_by_owner(tenant, sales_staff, other_sales, api):
    mine = CustomerFactory(tenant=tenant, staff=sales_staff)
    CustomerFactory(tenant=tenant, staff=other_sales)
    assert ids(api.walk("/customers", owner_id=sales_staff.pk)) == [mine.pk]


def test_customers_are_paginated_newest_first(tenant, sales_staff, api):
    created = [CustomerFactory(tenant=tenant, staff=sales_staff).pk for _ in range(3)]
    page = api.get("/customers", limit=2).json()
    assert ids(page["items"]) == created[::-1][:2]
    assert ids(api.walk("/customers", limit=2)) == created[::-1]
