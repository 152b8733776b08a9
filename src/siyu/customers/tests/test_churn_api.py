"""Churn alerts through the REST API and the console: lists, filters, status changes, data
scope and tenant isolation."""

from __future__ import annotations

import pytest

from siyu.core.events import record_event
from siyu.customers import services
from siyu.customers.models import ChurnAlert
from siyu.engagement.models import StaffTask
from siyu.testing.console import change_url, changelist_url
from siyu.testing.factories import CustomerFactory, StaffFactory


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    def block():
        return django_capture_on_commit_callbacks(execute=True)

    return block


def lose(tenant, staff, by, at, on_commit, **customer):
    """A customer of ``staff`` whose friendship ends (``by`` customer or staff)."""
    row = CustomerFactory(tenant=tenant, staff=staff, added_at=at(0), **customer)
    with on_commit():
        services.remove_follow(
            tenant, customer=row, staff=staff, by=by, at=at(60 * 24 * 3), source="callback"
        )
    return ChurnAlert.objects.for_tenant(tenant).get(customer=row)


@pytest.fixture
def alerts(tenant, sales_staff, other_sales, at, on_commit):
    """Sales1 lost Lin (by the customer, 12.34 yuan) and Ma (by the staff); sales2 lost Niu."""
    lin = lose(
        tenant, sales_staff, "customer", at, on_commit, name="Lin-Customer", state="poster-1"
    )
    record_event(tenant, "order.paid", customer_id=lin.customer_id, payload={"amount_fen": 1234})
    ChurnAlert.objects.for_tenant(tenant).filter(pk=lin.pk).update(value_fen=1234)
    ma = lose(tenant, sales_staff, "staff", at, on_commit, name="Ma-Customer")
    niu = lose(tenant, other_sales, "customer", at, on_commit, name="Niu-Customer")
    return {"lin": lin, "ma": ma, "niu": niu}


@pytest.fixture
def foreign_alert(other_tenant, at, on_commit):
    staff = StaffFactory(tenant=other_tenant, wecom_userid="zeta")
    return lose(other_tenant, staff, "customer", at, on_commit, name="Zeta-Customer")


# --- API ----------------------------------------------------------------------------------
def test_the_list_shows_the_context_newest_first(api, alerts):
    items = api.walk("/churn-alerts")
    assert [item["customer"]["name"] for item in items] == [
        "Niu-Customer",
        "Ma-Customer",
        "Lin-Customer",
    ]
    lin = items[2]
    assert {k: lin[k] for k in ("kind", "status", "tenure_days", "value_fen", "other_follows")} == {
        "kind": "by_customer",
        "status": "open",
        "tenure_days": 3,
        "value_fen": 1234,
        "other_follows": 0,
    }
    assert lin["source_state"] == "poster-1"
    assert lin["staff"]["wecom_userid"] == "sales1"


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"kind": "by_staff"}, ["Ma-Customer"]),
        ({"kind": "by_customer", "status": "open"}, ["Niu-Customer", "Lin-Customer"]),
        ({"staff_id": "sales2"}, ["Niu-Customer"]),
        (
            {"since": "2026-11-04", "until": "2026-11-04"},
            ["Niu-Customer", "Ma-Customer", "Lin-Customer"],
        ),
        ({"until": "2026-11-03"}, []),
    ],
)
def test_the_list_filters(api, alerts, other_sales, params, names):
    if params.get("staff_id") == "sales2":
        params = {**params, "staff_id": other_sales.pk}
    items = api.walk("/churn-alerts", **params)
    assert [item["customer"]["name"] for item in items] == names


def test_a_sales_key_sees_only_its_own_alerts(api_as, tenant, sales_staff, alerts):
    mine = api_as(tenant, staff=sales_staff)
    assert sorted(i["customer"]["name"] for i in mine.walk("/churn-alerts")) == [
        "Lin-Customer",
        "Ma-Customer",
    ]
    assert mine.get(f"/churn-alerts/{alerts['niu'].pk}").status_code == 404


def test_marking_an_alert_recovered_closes_its_tasks(api_as, tenant, sales_staff, alerts):
    mine = api_as(tenant, staff=sales_staff)
    response = mine.post(f"/churn-alerts/{alerts['lin'].pk}/status", {"status": "recovered"})
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "recovered"
    tasks = StaffTask.objects.for_tenant(tenant).filter(
        source_key=f"churn_alert:{alerts['lin'].pk}"
    )
    assert set(tasks.values_list("status", flat=True)) == {"done"}
    again = mine.post(f"/churn-alerts/{alerts['lin'].pk}/status", {"status": "contacted"})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"


@pytest.mark.parametrize(
    ("scopes", "body", "status"),
    [
        (["customers:read"], {"status": "closed"}, 403),
        (["customers:read", "customers:write"], {"status": "lost"}, 422),
        (["customers:read", "customers:write"], {}, 422),
    ],
)
def test_bad_status_changes_are_4xx(api_as, tenant, alerts, scopes, body, status):
    response = api_as(tenant, scopes).post(f"/churn-alerts/{alerts['lin'].pk}/status", body)
    assert response.status_code == status
    assert ChurnAlert.objects.for_tenant(tenant).get(pk=alerts["lin"].pk).status == "open"


def test_another_tenant_cannot_read_or_change_alerts_through_the_api(
    api, tenant, alerts, foreign_alert
):
    assert "Zeta-Customer" not in str(api.walk("/churn-alerts"))
    assert api.get(f"/churn-alerts/{foreign_alert.pk}").status_code == 404
    response = api.post(f"/churn-alerts/{foreign_alert.pk}/status", {"status": "closed"})
    assert response.status_code == 404
    foreign_alert.refresh_from_db()
    assert foreign_alert.status == "open"


# --- console ------------------------------------------------------------------------------
def test_the_churn_list_shows_the_context_and_filters(login, admin_staff, alerts):
    client = login(admin_staff)
    page = client.get(changelist_url(ChurnAlert)).content.decode()
    for text in ("Lin-Customer", "Ma-Customer", "Niu-Customer", "poster-1", "12.34"):
        assert text in page
    filtered = client.get(changelist_url(ChurnAlert), {"kind": "by_staff"}).content.decode()
    assert "Ma-Customer" in filtered and "Lin-Customer" not in filtered


@pytest.mark.parametrize(
    ("action", "status"),
    [("mark_contacted", "contacted"), ("mark_recovered", "recovered"), ("mark_closed", "closed")],
)
def test_console_actions_change_the_status(login, sales_staff, alerts, action, status):
    client = login(sales_staff)
    response = client.post(
        changelist_url(ChurnAlert),
        {"action": action, "_selected_action": [alerts["lin"].pk, alerts["ma"].pk]},
        follow=True,
    )
    assert response.status_code == 200
    alerts["lin"].refresh_from_db()
    alerts["ma"].refresh_from_db()
    assert (alerts["lin"].status, alerts["ma"].status) == (status, status)


def test_a_refused_console_action_is_a_message_not_an_error(login, sales_staff, alerts):
    client = login(sales_staff)
    selected = {"_selected_action": [alerts["lin"].pk]}
    client.post(changelist_url(ChurnAlert), {"action": "mark_closed", **selected}, follow=True)
    response = client.post(
        changelist_url(ChurnAlert), {"action": "mark_recovered", **selected}, follow=True
    )
    assert response.status_code == 200
    assert [m.level_tag for m in response.context["messages"]] == ["error"]
    alerts["lin"].refresh_from_db()
    assert alerts["lin"].status == "closed"


def test_a_sales_staff_sees_only_their_alerts_in_the_console(login, sales_staff, alerts):
    client = login(sales_staff)
    page = client.get(changelist_url(ChurnAlert)).content.decode()
    assert "Lin-Customer" in page and "Niu-Customer" not in page
    assert client.get(change_url(alerts["lin"])).status_code == 200
    assert client.get(change_url(alerts["niu"])).status_code == 404


def test_another_tenant_cannot_see_or_change_alerts_in_the_console(
    login, admin_staff, alerts, foreign_alert
):
    client = login(admin_staff)
    assert "Zeta-Customer" not in client.get(changelist_url(ChurnAlert)).content.decode()
    assert client.get(change_url(foreign_alert)).status_code == 404
    client.post(
        changelist_url(ChurnAlert),
        {"action": "mark_closed", "_selected_action": [foreign_alert.pk]},
    )
    foreign_alert.refresh_from_db()
    assert foreign_alert.status == "open"
