"""Duplicates and merges through the REST API and the console: candidates, merging, who may,
and tenant isolation."""

from __future__ import annotations

import pytest

from siyu.customers.models import Customer, CustomerMerge
from siyu.testing.console import changelist_url
from siyu.testing.factories import CustomerFactory, StaffFactory

DUPLICATES = "/console/customers/customermerge/duplicates/"


@pytest.fixture
def twins(tenant, sales_staff, other_sales):
    """Two records of one person (same unionid), and an unrelated customer."""
    first = CustomerFactory(tenant=tenant, staff=sales_staff, name="Twin-One", unionid="u-twin")
    second = CustomerFactory(tenant=tenant, staff=sales_staff, name="Twin-Two", unionid="u-twin")
    CustomerFactory(tenant=tenant, staff=other_sales, name="Loner", unionid="u-alone")
    return first, second


@pytest.fixture
def foreign_twins(other_tenant):
    staff = StaffFactory(tenant=other_tenant, wecom_userid="zeta")
    return [
        CustomerFactory(tenant=other_tenant, staff=staff, name=f"Zeta-{n}", unionid="u-zeta")
        for n in (1, 2)
    ]


def merged_into(customer):
    return Customer.objects.for_tenant(customer.tenant_id).get(pk=customer.pk).merged_into


# --- API ----------------------------------------------------------------------------------
def test_duplicates_are_listed_and_merged_through_the_api(api, twins):
    first, second = twins
    groups = api.get("/customer-duplicates").json()
    assert [(g["reason"], g["suggested_survivor_id"]) for g in groups] == [("unionid", first.pk)]
    assert [(c["id"], c["name"], c["unionid"]) for c in groups[0]["customers"]] == [
        (first.pk, "Twin-One", "u-twin"),
        (second.pk, "Twin-Two", "u-twin"),
    ]
    response = api.post("/customer-merges", {"survivor_id": first.pk, "duplicate_id": second.pk})
    assert response.status_code == 201, response.content
    record = response.json()
    assert (record["survivor_id"], record["merged_customer_id"], record["reason"]) == (
        first.pk,
        second.pk,
        "manual",
    )
    assert merged_into(second) == first
    assert api.get("/customer-duplicates").json() == []
    assert [m["id"] for m in api.walk("/customer-merges")] == [record["id"]]
    again = api.post("/customer-merges", {"survivor_id": first.pk, "duplicate_id": second.pk})
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"survivor_id": "first", "duplicate_id": "first"}, 400),
        ({"survivor_id": "first", "duplicate_id": 999_999}, 404),
        ({"survivor_id": "first"}, 422),
        ({"survivor_id": "first", "duplicate_id": 0}, 422),
    ],
)
def test_bad_merges_are_4xx(api, twins, body, status):
    first, _second = twins
    values = {k: first.pk if v == "first" else v for k, v in body.items()}
    assert api.post("/customer-merges", values).status_code == status
    assert CustomerMerge.objects.for_tenant(first.tenant_id).count() == 0


def test_a_sales_key_sees_its_duplicates_but_may_not_merge(api_as, tenant, sales_staff, twins):
    first, second = twins
    sales = api_as(tenant, staff=sales_staff)
    assert len(sales.get("/customer-duplicates").json()) == 1
    response = sales.post("/customer-merges", {"survivor_id": first.pk, "duplicate_id": second.pk})
    assert response.status_code == 403
    assert merged_into(second) is None


def test_another_tenant_cannot_see_or_merge_customers_through_the_api(api, twins, foreign_twins):
    assert "Zeta" not in str(api.get("/customer-duplicates").json())
    first, _second = twins
    response = api.post(
        "/customer-merges", {"survivor_id": first.pk, "duplicate_id": foreign_twins[0].pk}
    )
    assert response.status_code == 404
    response = api.post(
        "/customer-merges",
        {"survivor_id": foreign_twins[0].pk, "duplicate_id": foreign_twins[1].pk},
    )
    assert response.status_code == 404
    assert merged_into(foreign_twins[1]) is None


# --- console ------------------------------------------------------------------------------
def test_the_duplicates_page_merges_a_group(login, admin_staff, twins):
    first, second = twins
    client = login(admin_staff)
    page = client.get(DUPLICATES).content.decode()
    assert "Twin-One" in page and "Twin-Two" in page and "Loner" not in page
    # when the admin keeps the second record instead of the suggested first
    response = client.post(
        DUPLICATES,
        {"group": "1", "survivor": second.pk, "member": [first.pk, second.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert [m.level_tag for m in response.context["messages"]] == ["success"]
    assert merged_into(first) == second
    assert "Twin-One" not in client.get(DUPLICATES).content.decode()
    history = client.get(changelist_url(CustomerMerge)).content.decode()
    assert first.external_userid in history


def test_the_manual_merge_form(login, admin_staff, twins, tenant):
    first, _second = twins
    loner = Customer.objects.for_tenant(tenant).get(name="Loner")
    client = login(admin_staff)
    refused = client.post(DUPLICATES, {"survivor": first.pk, "duplicate": first.pk})
    assert refused.status_code == 200
    assert refused.context["form"].non_field_errors()
    response = client.post(DUPLICATES, {"survivor": first.pk, "duplicate": loner.pk})
    assert response.status_code == 302
    assert merged_into(loner) == first


def test_a_sales_staff_sees_the_page_without_merging(login, sales_staff, twins):
    first, second = twins
    client = login(sales_staff)
    page = client.get(DUPLICATES).content.decode()
    assert "Twin-One" in page and 'id="manual-merge"' not in page
    response = client.post(DUPLICATES, {"group": "1", "survivor": first.pk, "member": [second.pk]})
    assert response.status_code == 403
    assert merged_into(second) is None


def test_another_tenant_cannot_see_or_merge_in_the_console(
    login, admin_staff, twins, foreign_twins
):
    client = login(admin_staff)
    assert "Zeta" not in client.get(DUPLICATES).content.decode()
    a, b = foreign_twins
    response = client.post(DUPLICATES, {"group": "1", "survivor": a.pk, "member": [a.pk, b.pk]})
    assert response.status_code == 302
    assert merged_into(b) is None
    form = client.post(DUPLICATES, {"survivor": a.pk, "duplicate": b.pk})
    assert form.status_code == 200 and form.context["form"].errors
    assert merged_into(b) is None
