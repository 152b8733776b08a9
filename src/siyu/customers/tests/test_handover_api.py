"""Hand-overs through the REST API and the console: start, follow, data scope, tenants.

WeCom is not called here (the submission task runs after commit, which these tests do not
reach); ``test_handover.py`` drives WeCom's answers through the emulator.
"""

from __future__ import annotations

import pytest

from siyu.customers.models import Handover, HandoverItem
from siyu.testing.console import change_url, changelist_url
from siyu.testing.factories import CustomerFactory, StaffFactory


@pytest.fixture
def team(tenant, sales_staff, other_sales):
    """Sales1 has two customers, sales2 one."""
    return {
        "anna": CustomerFactory(tenant=tenant, staff=sales_staff, name="Anna-Customer"),
        "bert": CustomerFactory(tenant=tenant, staff=sales_staff, name="Bert-Customer"),
        "carl": CustomerFactory(tenant=tenant, staff=other_sales, name="Carl-Customer"),
    }


@pytest.fixture
def foreign(other_tenant):
    giver = StaffFactory(tenant=other_tenant, wecom_userid="zeta", name="Zeta-Staff")
    taker = StaffFactory(tenant=other_tenant, wecom_userid="zeta2", name="Zeta-Taker")
    customer = CustomerFactory(tenant=other_tenant, staff=giver, name="Zeta-Customer")
    admin = StaffFactory(tenant=other_tenant, roles=["admin"], wecom_userid="zadmin")
    from siyu.customers import handover
    from siyu.tenancy.services import actor_for_staff

    row = handover.start_handover(
        actor_for_staff(admin), from_staff=giver, to_staff=taker, customers=[customer]
    )
    return {"handover": row, "giver": giver, "taker": taker, "customer": customer}


# --- API ----------------------------------------------------------------------------------
def test_a_hand_over_is_started_and_followed_through_the_api(api, sales_staff, other_sales, team):
    body = {
        "from_staff_id": sales_staff.pk,
        "to_staff_id": other_sales.pk,
        "customer_ids": [team["anna"].pk, team["bert"].pk],
        "message": "您好，我是新的顾问",
        "reason": "调岗",
    }
    response = api.post("/handovers", body)
    assert response.status_code == 201, response.content
    created = response.json()
    assert (created["kind"], created["status"], created["reason"]) == (
        "in_service",
        "pending",
        "调岗",
    )
    assert created["counts"]["total"] == 2 and created["counts"]["queued"] == 2
    assert [item["customer"]["name"] for item in created["items"]] == [
        "Anna-Customer",
        "Bert-Customer",
    ]
    assert [h["id"] for h in api.walk("/handovers")] == [created["id"]]
    detail = api.get(f"/handovers/{created['id']}").json()
    assert [item["status"] for item in detail["items"]] == ["queued", "queued"]
    # nothing is waiting for WeCom yet, so checking the results asks WeCom nothing
    refreshed = api.post(f"/handovers/{created['id']}/refresh")
    assert refreshed.status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"to_staff_id": "self"}, 400, "invalid"),
        ({"customer_ids": []}, 400, "invalid"),
        ({"customer_ids": ["carl"]}, 400, "invalid"),
        ({"message": "长" * 201}, 422, "validation_error"),
        ({"to_staff_id": 999_999}, 404, "not_found"),
    ],
)
def test_bad_hand_overs_are_4xx(api, tenant, sales_staff, other_sales, team, body, status, code):
    values = {
        "from_staff_id": sales_staff.pk,
        "to_staff_id": other_sales.pk,
        "customer_ids": [team["anna"].pk],
        **body,
    }
    if values["to_staff_id"] == "self":
        values["to_staff_id"] = sales_staff.pk
    values["customer_ids"] = [team["carl"].pk if c == "carl" else c for c in values["customer_ids"]]
    response = api.post("/handovers", values)
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert Handover.objects.for_tenant(tenant).count() == 0


def test_a_sales_key_sees_its_hand_overs_but_may_not_start_one(
    api, api_as, tenant, sales_staff, other_sales, team
):
    api.post(
        "/handovers",
        {"from_staff_id": other_sales.pk, "to_staff_id": sales_staff.pk, "all_customers": True},
    )
    mine = api.post(
        "/handovers",
        {"from_staff_id": sales_staff.pk, "to_staff_id": other_sales.pk, "all_customers": True},
    ).json()
    sales = api_as(tenant, staff=sales_staff)
    assert [h["id"] for h in sales.walk("/handovers")] == [mine["id"]]
    response = sales.post(
        "/handovers",
        {"from_staff_id": sales_staff.pk, "to_staff_id": other_sales.pk, "all_customers": True},
    )
    assert response.status_code == 403


def test_another_tenant_cannot_read_or_use_hand_overs_through_the_api(
    api, tenant, sales_staff, foreign
):
    assert api.walk("/handovers") == []
    assert api.get(f"/handovers/{foreign['handover'].pk}").status_code == 404
    assert api.post(f"/handovers/{foreign['handover'].pk}/refresh").status_code == 404
    response = api.post(
        "/handovers",
        {
            "from_staff_id": foreign["giver"].pk,
            "to_staff_id": sales_staff.pk,
            "customer_ids": [foreign["customer"].pk],
        },
    )
    assert response.status_code == 404
    assert Handover.objects.for_tenant(tenant).count() == 0


# --- console ------------------------------------------------------------------------------
def test_a_hand_over_is_started_in_the_console(login, admin_staff, sales_staff, other_sales, team):
    client = login(admin_staff)
    add = f"{changelist_url(Handover)}add/"
    assert client.get(add).status_code == 200
    response = client.post(
        add,
        {
            "from_staff": sales_staff.pk,
            "to_staff": other_sales.pk,
            "customers": [team["anna"].pk],
            "message": "",
            "reason": "调岗",
        },
        follow=True,
    )
    assert response.status_code == 200
    handover = Handover.objects.for_tenant(admin_staff.tenant).get()
    assert (handover.from_staff, handover.to_staff, handover.created_by) == (
        sales_staff,
        other_sales,
        admin_staff,
    )
    items = HandoverItem.objects.for_tenant(admin_staff.tenant).filter(handover=handover)
    assert [item.customer for item in items] == [team["anna"]]
    page = client.get(change_url(handover)).content.decode()
    assert "Anna-Customer" in page
    listing = client.get(changelist_url(Handover)).content.decode()
    assert "调岗" in listing


def test_a_refused_hand_over_is_a_form_error(login, admin_staff, sales_staff, team):
    client = login(admin_staff)
    response = client.post(
        f"{changelist_url(Handover)}add/",
        {"from_staff": sales_staff.pk, "to_staff": sales_staff.pk, "customers": [team["anna"].pk]},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert "Anna-Customer" in response.content.decode()  # the choice is kept on the form
    assert Handover.objects.for_tenant(admin_staff.tenant).count() == 0


def test_the_customer_picker_offers_only_visible_customers(login, sales_staff, admin_staff, team):
    params = {
        "app_label": "customers",
        "model_name": "handoveritem",
        "field_name": "customer",
        "term": "Customer",
    }

    def names(staff):
        answer = login(staff).get("/console/autocomplete/", params).json()
        return sorted(row["text"] for row in answer["results"])

    assert names(admin_staff) == ["Anna-Customer", "Bert-Customer", "Carl-Customer"]
    assert names(sales_staff) == ["Anna-Customer", "Bert-Customer"]


def test_a_sales_staff_may_look_but_not_start_in_the_console(
    login, api, sales_staff, other_sales, team
):
    theirs = api.post(
        "/handovers",
        {"from_staff_id": other_sales.pk, "to_staff_id": sales_staff.pk, "all_customers": True},
    ).json()
    client = login(sales_staff)
    assert client.get(changelist_url(Handover)).status_code == 200
    assert client.get(f"{changelist_url(Handover)}add/").status_code == 403
    assert client.get(f"{changelist_url(Handover)}{theirs['id']}/change/").status_code == 404


def test_another_tenant_cannot_see_hand_overs_in_the_console(login, admin_staff, foreign):
    client = login(admin_staff)
    assert "Zeta-Staff" not in client.get(changelist_url(Handover)).content.decode()
    assert client.get(change_url(foreign["handover"])).status_code == 404
    response = client.post(
        f"{changelist_url(Handover)}add/",
        {
            "from_staff": foreign["giver"].pk,
            "to_staff": foreign["taker"].pk,
            "customers": [foreign["customer"].pk],
        },
    )
    assert response.status_code == 200  # the form, with errors: those rows are not choices
    assert Handover.objects.for_tenant(admin_staff.tenant).count() == 0
