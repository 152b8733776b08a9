"""The metrics API: answers from the columnar copy, per tenant, with clear 4xx."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from siyu.analytics.store import ColumnarStore
from siyu.analytics.sync import sync
from siyu.core.events import record_event
from siyu.testing.factories import CustomerFactory, StaffFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def copy(settings, tmp_path, tenant, other_tenant):
    settings.ANALYTICS_DIR = tmp_path / "analytics"
    today = timezone.localdate()
    moment = timezone.now() - timedelta(days=1)
    staff = StaffFactory(tenant=tenant, wecom_userid="s1")
    ann = CustomerFactory(tenant=tenant, staff=staff, added_at=moment, state="poster")
    record_event(tenant, "message.received", customer_id=ann.pk, occurred_at=moment, key="m1")
    elsewhere = StaffFactory(tenant=other_tenant, wecom_userid="s2")
    CustomerFactory.create_batch(3, tenant=other_tenant, staff=elsewhere, added_at=moment)
    sync(ColumnarStore())
    return today


def test_new_customers_of_the_own_tenant_only(api, copy):
    response = api.get("/analytics/new-customers")
    assert response.status_code == 200, response.content
    body = response.json()
    assert [(row["channel"], row["customers"]) for row in body["rows"]] == [("poster", 1)]
    assert body["freshness"]["events_copied_up_to"] > 0


def test_retention_and_activity(api, copy):
    day = str(copy - timedelta(days=1))
    retention = api.get("/analytics/retention", start=day, end=day, period="day", offsets=2)
    assert retention.status_code == 200, retention.content
    (cohort,) = retention.json()["cohorts"]
    assert (cohort["size"], cohort["retained"]) == (1, [1, 1])
    activity = api.get("/analytics/activity", start=day, end=day, types="message.received")
    assert [row["dau"] for row in activity.json()["rows"]] == [1]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/analytics/activity", {"start": "2026-02-01", "end": "2026-01-01"}),
        ("/analytics/activity", {"start": "2020-01-01", "end": "2026-01-01"}),
        ("/analytics/activity", {"types": "bad type!"}),
        ("/analytics/retention", {"offsets": 0}),
        ("/analytics/retention", {"period": "year"}),
    ],
)
def test_bad_parameters_are_4xx(api, copy, path, params):
    response = api.get(path, **params)
    assert response.status_code in (400, 422), response.content
    assert response.json()["error"]["message"]


def test_sales_may_not_read_tenant_metrics(api_as, tenant, copy):
    sales = StaffFactory(tenant=tenant, roles=["sales"], wecom_userid="seller")
    assert api_as(tenant, staff=sales).get("/analytics/activity").status_code == 403


def test_aarrr_revenue_and_value_endpoints(api, copy):
    day = str(copy - timedelta(days=1))
    funnel = api.get("/analytics/aarrr", start=day, end=str(copy)).json()
    assert [stage["stage"] for stage in funnel["stages"]] == [
        "acquisition",
        "activation",
        "retention",
        "revenue",
        "referral",
    ]
    assert funnel["stages"][0]["customers"] == 1
    assert api.get("/analytics/revenue").json()["rows"] == []
    (row,) = api.get("/analytics/value-by-channel", start=day).json()["rows"]
    assert (row["channel"], row["customers"], row["ltv_fen"]) == ("poster", 1, 0)


def test_the_funnel_endpoint(api, copy):
    day = str(copy - timedelta(days=1))
    answer = api.get(
        "/analytics/funnel", start=day, steps="customer.added,message.received", window_days=7
    )
    assert answer.status_code == 200, answer.content
    assert [step["customers"] for step in answer.json()["steps"]] == [1, 1]
    assert api.get("/analytics/funnel", steps="customer.added").status_code == 400
