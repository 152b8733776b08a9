"""The customer 360 API: 360, profile, custom fields, notes, timeline, lifecycle rules."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from siyu.customers import profiles
from siyu.customers.models import Customer, CustomerNote
from siyu.engagement.models import StaffTask
from siyu.tenancy.services import system_actor
from siyu.testing.api import ApiClient
from siyu.testing.factories import CustomerFactory, StaffFactory


@pytest.fixture
def system(tenant):
    return system_actor(tenant)


@pytest.fixture
def customer(tenant, sales_staff, system):
    customer = CustomerFactory(tenant=tenant, staff=sales_staff, name="韩梅梅", state="cc_x")
    profiles.update_profile(system, customer, phone="13812345678", city="上海")
    return Customer.objects.for_tenant(tenant).get(pk=customer.pk)


@pytest.fixture(params=["api_key", "session"])
def as_sales(request, tenant, sales_staff, api_as, session_api) -> ApiClient:
    if request.param == "api_key":
        return api_as(tenant, staff=sales_staff)
    return session_api(sales_staff)


@pytest.fixture
def as_admin(tenant, admin_staff, api_as) -> ApiClient:
    return api_as(tenant, staff=admin_staff)


@pytest.fixture
def b_customer(other_tenant):
    b_staff = StaffFactory(tenant=other_tenant, wecom_userid="b-sales")
    return CustomerFactory(tenant=other_tenant, staff=b_staff, name="Zeta")


# --- the 360 -------------------------------------------------------------------------------------
def test_the_360_has_profile_follows_tags_groups_stage_and_timeline(as_admin, customer):
    response = as_admin.get(f"/customers/{customer.pk}/360")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["name"], body["display_name"], body["source_state"]) == (
        "韩梅梅",
        "韩梅梅",
        "cc_x",
    )
    assert body["profile"]["phone"] == "13812345678" and body["profile"]["city"] == "上海"
    assert body["lifecycle"]["stage"] == "new"
    assert [follow["staff_userid"] for follow in body["follows"]] == ["sales1"]
    assert body["timeline"]["items"][0]["type"] == "customer.profile_updated"
    assert (body["tags"], body["groups"], body["notes"], body["open_tasks"]) == ([], [], [], [])


def test_a_sales_staff_gets_the_phone_masked(as_sales, customer):
    body = as_sales.get(f"/customers/{customer.pk}/360").json()
    assert body["profile"]["phone"] == "138****5678"


def test_a_sales_staff_cannot_read_another_staffs_customer(
    tenant, as_sales, other_sales, api_as, sales_staff
):
    theirs = CustomerFactory(tenant=tenant, staff=other_sales)
    for path in ("360", "timeline", "notes"):
        response = as_sales.get(f"/customers/{theirs.pk}/{path}")
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    assert as_sales.patch(f"/customers/{theirs.pk}/profile", {"city": "x"}).status_code == 404
    created = as_sales.post(f"/customers/{theirs.pk}/notes", {"content": "x"})
    assert created.status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/customers/{id}/360", None),
        ("GET", "/customers/{id}/timeline", None),
        ("GET", "/customers/{id}/notes", None),
        ("PATCH", "/customers/{id}/profile", {"city": "x"}),
        ("PATCH", "/customers/{id}/custom-fields", {"values": {}}),
        ("POST", "/customers/{id}/notes", {"content": "x"}),
    ],
)
def test_another_tenants_customer_is_404(method, path, body, api, b_customer, other_tenant):
    response = api.request(method, path.format(id=b_customer.pk), body)
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Customer not found"
    assert Customer.objects.for_tenant(other_tenant).get(pk=b_customer.pk).city == ""


# --- the profile --------------------------------------------------------------------------------
def test_the_profile_is_patched(as_sales, customer, tenant):
    response = as_sales.patch(
        f"/customers/{customer.pk}/profile",
        {"birthday": "1992-03-04", "interests": ["跑步"], "age_band": "25-34", "city": None},
    )
    assert response.status_code == 200, response.content
    assert response.json() == {
        "display_name": "",
        "birthday": "1992-03-04",
        "age_band": "25-34",
        "province": "",
        "city": "",
        "interests": ["跑步"],
        "phone": "138****5678",
        "phone_verified": False,
    }


def test_only_the_phone_permission_may_change_phones(as_sales, as_admin, customer, tenant):
    refused = as_sales.patch(f"/customers/{customer.pk}/profile", {"phone": "13900000000"})
    assert refused.status_code == 403
    assert Customer.objects.for_tenant(tenant).get(pk=customer.pk).phone == "13812345678"
    done = as_admin.patch(
        f"/customers/{customer.pk}/profile", {"phone": "+86 139 0000 0000", "phone_verified": True}
    )
    assert done.status_code == 200
    assert (done.json()["phone"], done.json()["phone_verified"]) == ("13900000000", True)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"phone": "123"}, 400),
        ({"birthday": "2999-01-01"}, 400),
        ({"age_band": "20-30"}, 422),
        ({"city": "x" * 40}, 422),
    ],
)
def test_bad_profiles_are_4xx_with_a_message(as_admin, customer, body, status):
    response = as_admin.patch(f"/customers/{customer.pk}/profile", body)
    assert response.status_code == status
    assert response.json()["error"]["message"]


def test_a_read_only_key_cannot_write(tenant, customer, api_as):
    reader = api_as(tenant, ["customers:read"])
    response = reader.patch(f"/customers/{customer.pk}/profile", {"city": "x"})
    assert response.status_code == 403
    assert response.json()["error"]["details"] == {"required_scope": "customers:write"}


# --- custom fields
def test_custom_fields_are_defined_changed_and_deactivated(as_admin, customer):
    created = as_admin.post(
        "/custom-fields",
        {"key": "skin", "label": "肤质", "type": "choice", "choices": ["干性", "油性"]},
    )
    assert created.status_code == 201, created.content
    field_id = created.json()["id"]
    assert as_admin.post("/custom-fields", {"key": "skin", "label": "x"}).status_code == 409
    patched = as_admin.patch(f"/custom-fields/{field_id}", {"label": "皮肤", "order": 2})
    assert (patched.json()["label"], patched.json()["order"]) == ("皮肤", 2)
    set_value = as_admin.patch(
        f"/customers/{customer.pk}/custom-fields", {"values": {"skin": "油性"}}
    )
    assert set_value.json() == {"skin": "油性"}
    bad = as_admin.patch(f"/customers/{customer.pk}/custom-fields", {"values": {"skin": "中性"}})
    assert bad.status_code == 400
    assert bad.json()["error"]["details"] == {"custom.skin": "中性"}
    deleted = as_admin.request("DELETE", f"/custom-fields/{field_id}")
    assert deleted.json()["is_active"] is False
    assert as_admin.get("/custom-fields").json() == []
    assert len(as_admin.get("/custom-fields", include_inactive=True).json()) == 1


def test_sales_may_set_values_but_not_define_fields(as_sales, customer, system):
    profiles.create_custom_field(system, key="card_no", label="卡号", type="number")
    assert as_sales.post("/custom-fields", {"key": "x", "label": "x"}).status_code == 403
    response = as_sales.patch(
        f"/customers/{customer.pk}/custom-fields", {"values": {"card_no": "12"}}
    )
    assert response.json() == {"card_no": 12}


def test_another_tenants_custom_field_is_404(api, other_tenant):
    field = profiles.create_custom_field(system_actor(other_tenant), key="zeta", label="Zeta")
    assert api.get(f"/custom-fields/{field.pk}").status_code == 404
    assert api.patch(f"/custom-fields/{field.pk}", {"label": "x"}).status_code == 404


# --- notes
def test_notes_are_created_listed_edited_and_deleted(as_sales, customer, tenant, sales_staff):
    due = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    created = as_sales.post(
        f"/customers/{customer.pk}/notes",
        {"kind": "call", "content": "约到店", "next_contact_at": due.isoformat()},
    )
    assert created.status_code == 201, created.content
    note = created.json()
    assert (note["author_id"], note["kind"]) == (sales_staff.pk, "call")
    task = StaffTask.objects.for_tenant(tenant).get()
    assert (task.source_key, task.due_at, task.staff) == (f"note:{note['id']}", due, sales_staff)
    listed = as_sales.walk(f"/customers/{customer.pk}/notes")
    assert [item["id"] for item in listed] == [note["id"]]
    patched = as_sales.patch(
        f"/customers/{customer.pk}/notes/{note['id']}", {"content": "改期", "next_contact_at": None}
    )
    assert patched.json()["content"] == "改期" and patched.json()["next_contact_at"] is None
    task.refresh_from_db()
    assert task.status == "dismissed"
    deleted = as_sales.request("DELETE", f"/customers/{customer.pk}/notes/{note['id']}")
    assert deleted.status_code == 204
    assert not CustomerNote.objects.for_tenant(tenant).exists()


def test_a_note_of_another_customer_is_404(as_admin, customer, tenant, sales_staff, system):
    other = CustomerFactory(tenant=tenant, staff=sales_staff)
    note = profiles.add_note(system, other, content="x")
    response = as_admin.patch(f"/customers/{customer.pk}/notes/{note.pk}", {"content": "y"})
    assert response.status_code == 404


def test_a_bad_note_is_a_400(as_admin, customer):
    past = (timezone.now() - timedelta(days=1)).isoformat()
    response = as_admin.post(
        f"/customers/{customer.pk}/notes", {"content": "x", "next_contact_at": past}
    )
    assert response.status_code == 400
    assert "next_contact_at" in response.json()["error"]["details"]


# --- timeline
def test_the_timeline_is_cursor_paged(as_admin, customer, tenant):
    from siyu.core.events import record_event

    for number in range(5):
        record_event(tenant, "order.paid", customer_id=customer.pk, payload={"amount_fen": number})
    first = as_admin.get(f"/customers/{customer.pk}/timeline", limit=3, type="order.paid").json()
    assert len(first["items"]) == 3 and first["next_cursor"]
    rest = as_admin.get(
        f"/customers/{customer.pk}/timeline",
        limit=3,
        type="order.paid",
        cursor=first["next_cursor"],
    ).json()
    assert len(rest["items"]) == 2 and rest["next_cursor"] is None
    assert rest["items"][-1]["text"] == "Paid an order of ¥0.00"
    bad = as_admin.get(f"/customers/{customer.pk}/timeline", cursor="garbage")
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_cursor")


# --- lifecycle rules
def test_the_lifecycle_rules_are_read_and_changed(as_admin, as_sales):
    body = as_admin.get("/lifecycle-policy").json()
    assert (body["new_days"], body["interaction_types"]) == (7, [])
    assert "order.paid" in body["default_interaction_types"]
    changed = as_admin.patch("/lifecycle-policy", {"new_days": 3})
    assert changed.json()["new_days"] == 3
    assert as_admin.patch("/lifecycle-policy", {"silent_after_days": 60}).status_code == 400
    assert as_sales.patch("/lifecycle-policy", {"new_days": 1}).status_code == 403
