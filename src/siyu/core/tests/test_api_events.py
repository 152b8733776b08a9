"""The events API: scoped reads, cursor pagination, idempotent recording of external facts."""

from datetime import UTC, datetime, timedelta

import pytest

from siyu.core.events import record_event
from siyu.core.models import Event
from siyu.testing.factories import StaffFactory

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    return body["error"]


def ids(items):
    return [item["id"] for item in items]


def fact(tenant, event_type="order.paid", **kwargs):
    event, _created = record_event(tenant, event_type, **kwargs)
    return event


# --- tenant isolation and data scopes ---------------------------------------------------
def test_other_tenants_events_never_appear_and_are_404(tenant, other_tenant, api):
    # given (creating tenants records tenant.created events too)
    mine = fact(tenant, key="a1")
    theirs = fact(other_tenant, key="b1")
    # then
    listed = ids(api.walk("/events"))
    assert mine.pk in listed
    assert theirs.pk not in listed
    assert set(listed) == set(Event.objects.for_tenant(tenant).values_list("id", flat=True))
    error = assert_error(api.get(f"/events/{theirs.pk}"), 404, "not_found")
    assert error["message"] == "Event not found"
    assert api.get(f"/events/{mine.pk}").status_code == 200


def test_a_session_of_tenant_a_gets_404_for_tenant_b_events(other_tenant, admin_staff, session_api):
    theirs = fact(other_tenant, key="b1")
    api = session_api(admin_staff)
    assert_error(api.get(f"/events/{theirs.pk}"), 404, "not_found")
    assert theirs.pk not in ids(api.walk("/events"))


def test_sales_sees_only_events_about_themselves(tenant, api_as):
    # given
    sales = StaffFactory(tenant=tenant, roles=["sales"])
    colleague = StaffFactory(tenant=tenant, roles=["sales"])
    about_me = fact(tenant, "order.paid", staff=sales, key="me")
    about_colleague = fact(tenant, "order.paid", staff=colleague, key="them")
    about_nobody = fact(tenant, "order.paid", key="nobody")
    api = api_as(tenant, ["events:read"], staff=sales)
    # then: only events referencing them (the factory's staff.added event and the order)
    own = Event.objects.for_tenant(tenant).filter(staff=sales).order_by("-id")
    assert ids(api.walk("/events")) == list(own.values_list("id", flat=True))
    assert about_me.pk in ids(api.walk("/events"))
    assert_error(api.get(f"/events/{about_colleague.pk}"), 404, "not_found")
    assert_error(api.get(f"/events/{about_nobody.pk}"), 404, "not_found")


# --- reading -----------------------------------------------------------------------------
def test_get_event_returns_the_exact_row(tenant, api):
    staff = StaffFactory(tenant=tenant)
    event = fact(
        tenant,
        "order.paid",
        key="order:9",
        staff=staff,
        customer_id=7,
        group_id=8,
        payload={"fen": 9900},
        source="shop",
        occurred_at=T0,
    )
    body = api.get(f"/events/{event.pk}").json()
    assert body == {
        "id": event.pk,
        "type": "order.paid",
        "occurred_at": "2025-03-01T08:00:00Z",
        "recorded_at": body["recorded_at"],
        "staff_id": staff.pk,
        "customer_id": 7,
        "group_id": 8,
        "payload": {"fen": 9900},
        "source": "shop",
        "idempotency_key": "order:9",
    }


def test_list_filters(tenant, api):
    staff = StaffFactory(tenant=tenant)
    paid = fact(tenant, "order.paid", key="1", customer_id=5, occurred_at=T0)
    refunded = fact(tenant, "order.refunded", key="2", occurred_at=T0 + timedelta(days=1))
    joined = fact(tenant, "group.joined", key="3", staff=staff, occurred_at=T0 + timedelta(days=2))
    assert ids(api.walk("/events", type="order.paid")) == [paid.pk]
    assert ids(api.walk("/events", type_prefix="order.")) == [refunded.pk, paid.pk]
    assert ids(api.walk("/events", type_prefix="order.", customer_id=5)) == [paid.pk]
    assert joined.pk in ids(api.walk("/events", staff_id=staff.pk))
    window = {"since": "2025-03-02T08:00:00+00:00", "until": "2025-03-03T08:00:00Z"}
    assert ids(api.walk("/events", **window)) == [refunded.pk]


def test_a_naive_time_filter_is_a_validation_error(api):
    error = assert_error(api.get("/events", since="2025-03-02T08:00:00"), 422, "validation_error")
    assert [e["loc"] for e in error["details"]] == [["query", "since"]]


# --- cursor pagination -------------------------------------------------------------------
def test_cursor_pagination_walks_every_row_once_newest_first(tenant, api):
    # given 10 events in all (tenant.created plus 9)
    for n in range(9):
        fact(tenant, key=f"k{n}")
    expected = list(Event.objects.for_tenant(tenant).order_by("-id").values_list("id", flat=True))
    assert len(expected) == 10
    # when pages of 4 are walked
    pages = []
    cursor = None
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = api.get("/events", **params).json()
        pages.append(ids(page["items"]))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # then
    assert pages == [expected[0:4], expected[4:8], expected[8:10]]


def test_a_row_added_during_the_walk_does_not_shift_the_pages(tenant, api):
    for n in range(5):
        fact(tenant, key=f"k{n}")
    expected = list(Event.objects.for_tenant(tenant).order_by("-id").values_list("id", flat=True))
    first = api.get("/events", limit=3).json()
    fact(tenant, key="late")  # newer than everything: belongs before page one
    second = api.get("/events", limit=3, cursor=first["next_cursor"]).json()
    assert ids(first["items"]) + ids(second["items"]) == expected
    assert second["next_cursor"] is None


def test_an_exact_last_page_has_no_next_cursor(tenant, api):
    fact(tenant, key="one")  # two events with tenant.created
    page = api.get("/events", limit=2).json()
    assert len(page["items"]) == 2
    assert page["next_cursor"] is None


@pytest.mark.parametrize("limit", [0, 201, -1])
def test_limit_is_1_to_200(api, limit):
    error = assert_error(api.get("/events", limit=limit), 422, "validation_error")
    assert error["details"][0]["loc"] == ["query", "limit"]


def test_a_cursor_from_another_list_still_only_shows_the_callers_rows(tenant, other_tenant, api_as):
    for n in range(3):
        fact(other_tenant, key=f"b{n}")
    b_page = api_as(other_tenant).get("/events", limit=1).json()
    listed = ids(api_as(tenant).walk("/events", cursor=b_page["next_cursor"]))
    assert set(listed) <= set(Event.objects.for_tenant(tenant).values_list("id", flat=True))


# --- recording ---------------------------------------------------------------------------
def test_post_records_an_external_fact(tenant, api):
    staff = StaffFactory(tenant=tenant)
    # when
    response = api.post(
        "/events",
        {
            "type": "order.paid",
            "idempotency_key": "order:A1001:paid",
            "occurred_at": "2025-03-01T16:00:00+08:00",
            "payload": {"order_no": "A1001", "amount_fen": 9900},
            "staff_id": staff.pk,
            "customer_id": 42,
        },
    )
    # then
    assert response.status_code == 201, response.content
    event = Event.objects.for_tenant(tenant).get(type="order.paid")
    assert response.json() == {
        "id": event.pk,
        "type": "order.paid",
        "occurred_at": "2025-03-01T08:00:00Z",
        "recorded_at": response.json()["recorded_at"],
        "staff_id": staff.pk,
        "customer_id": 42,
        "group_id": None,
        "payload": {"order_no": "A1001", "amount_fen": 9900},
        "source": "api",
        "idempotency_key": "api:order:A1001:paid",
    }
    assert "Idempotent-Replayed" not in response


def test_a_duplicate_idempotency_key_records_one_event(tenant, api):
    body = {"type": "order.paid", "idempotency_key": "pay-1", "payload": {"fen": 1}}
    first = api.post("/events", body)
    again = api.post("/events", {**body, "payload": {"fen": 2}})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    rows = Event.objects.for_tenant(tenant).filter(type="order.paid")
    assert list(rows.values_list("payload", flat=True)) == [{"fen": 1}]


def test_api_keys_cannot_take_an_internal_idempotency_key(tenant, api):
    # given a client that guesses the key the platform uses for a staff departure
    staff = StaffFactory(tenant=tenant)
    api.post("/events", {"type": "x.y", "idempotency_key": f"staff.departed:{staff.pk}"})
    # when the staff departs, the platform's own fact is still recorded
    assert api.post(f"/staff/{staff.pk}/depart").status_code == 200
    assert Event.objects.for_tenant(tenant).filter(type="staff.departed").count() == 1


def test_the_same_key_in_two_tenants_is_two_events(tenant, other_tenant, api_as):
    body = {"type": "order.paid", "idempotency_key": "shared"}
    assert api_as(tenant).post("/events", body).status_code == 201
    assert api_as(other_tenant).post("/events", body).status_code == 201


def test_an_event_about_another_tenants_staff_is_404(tenant, other_tenant, api):
    b_staff = StaffFactory(tenant=other_tenant)
    response = api.post(
        "/events", {"type": "order.paid", "idempotency_key": "k", "staff_id": b_staff.pk}
    )
    error = assert_error(response, 404, "not_found")
    assert error["details"] == {"staff_id": b_staff.pk}
    assert not Event.objects.for_tenant(tenant).filter(type="order.paid").exists()


@pytest.mark.parametrize(
    "event_type",
    [
        "staff.departed",
        "tenant.updated",
        "apikey.created",
        "customer.added",
        "follow.deleted_by_customer",
        "group.member_joined",
        "tag.synced",
    ],
)
def test_platform_event_types_are_reserved(api, event_type):
    response = api.post("/events", {"type": event_type, "idempotency_key": "k"})
    assert_error(response, 400, "reserved_event_type")


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"type": "order.paid"}, ["body", "idempotency_key"]),
        ({"type": "order paid", "idempotency_key": "k"}, ["body", "type"]),
        ({"type": "", "idempotency_key": "k"}, ["body", "type"]),
        ({"type": "a.b", "idempotency_key": ""}, ["body", "idempotency_key"]),
        ({"type": "a.b", "idempotency_key": "k" * 197}, ["body", "idempotency_key"]),
        (
            {"type": "a.b", "idempotency_key": "k", "occurred_at": "2025-03-01T08:00:00"},
            ["body", "occurred_at"],
        ),
        ({"type": "a.b", "idempotency_key": "k", "payload": [1]}, ["body", "payload"]),
        (
            {"type": "a.b", "idempotency_key": "k", "customer_id": 0},
            ["body", "customer_id"],
        ),
    ],
    ids=[
        "no-key",
        "space-in-type",
        "empty-type",
        "empty-key",
        "long-key",
        "naive-time",
        "payload-not-object",
        "zero-customer",
    ],
)
def test_invalid_facts_are_422_with_the_field(tenant, api, body, loc):
    error = assert_error(api.post("/events", body), 422, "validation_error")
    assert [e["loc"] for e in error["details"]] == [loc]
    assert not Event.objects.for_tenant(tenant).filter(source="api").exists()


def test_recording_needs_the_events_write_scope(tenant, api_as):
    api = api_as(tenant, ["events:read"])
    response = api.post("/events", {"type": "order.paid", "idempotency_key": "k"})
    error = assert_error(response, 403, "forbidden")
    assert error["details"] == {"required_scope": "events:write"}
    assert not Event.objects.for_tenant(tenant).filter(type="order.paid").exists()


def test_an_operator_session_can_record_a_fact(tenant, session_api):
    operator = StaffFactory(tenant=tenant, roles=["operator"], login=True)
    response = session_api(operator).post(
        "/events", {"type": "form.submitted", "idempotency_key": "f1"}
    )
    assert response.status_code == 201
    assert response.json()["source"] == "api"
