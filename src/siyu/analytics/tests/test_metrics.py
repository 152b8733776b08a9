"""Metrics on small hand-computed fixtures, through the real path: services write the
database, the sync copies it to Parquet, DuckDB answers. Expected numbers are written by hand.

The population (site time zone Asia/Shanghai; "day 0" is Monday 2026-11-02):

* ann: added day 0, active day 1 and day 8 — friend all along;
* bob: added day 0 at 23:30 local (15:30 UTC, still day 0 locally), deleted the staff day 3,
  came back day 9 — not a friend at the end of week 0, a friend again at the end of week 1;
* cat: added day 1, active day 1 (23:50 local = 15:50 UTC: day 1, not day 2), never again;
* dan: added day 7 (week 1), active day 7;
* eve: another tenant's customer, added day 0, active every day: never counted.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest
from django.utils import timezone

from siyu.analytics import metrics
from siyu.analytics.engine import DuckDBEngine
from siyu.analytics.store import ColumnarStore
from siyu.analytics.sync import sync
from siyu.core.events import record_event
from siyu.customers import services as customer_services
from siyu.testing.factories import CustomerFactory, StaffFactory

pytestmark = pytest.mark.django_db

DAY0 = date(2026, 11, 2)  # a Monday


def at(day: int, hour: int = 10, minute: int = 0) -> datetime:
    return timezone.make_aware(datetime.combine(DAY0 + timedelta(days=day), time(hour, minute)))


def active(tenant, customer, day: int, hour: int = 10, minute: int = 0) -> None:
    record_event(
        tenant,
        "message.received",
        customer_id=customer.pk,
        occurred_at=at(day, hour, minute),
        key=f"msg:{customer.pk}:{day}:{hour}:{minute}",
    )


@pytest.fixture
def population(tenant, other_tenant, tmp_path):
    staff = StaffFactory(tenant=tenant, wecom_userid="s1")
    people = {
        "ann": CustomerFactory(tenant=tenant, name="ann", staff=staff, added_at=at(0)),
        "bob": CustomerFactory(tenant=tenant, name="bob", staff=staff, added_at=at(0, 23, 30)),
        "cat": CustomerFactory(tenant=tenant, name="cat", staff=staff, added_at=at(1)),
        "dan": CustomerFactory(tenant=tenant, name="dan", staff=staff, added_at=at(7)),
    }
    active(tenant, people["ann"], 1)
    active(tenant, people["ann"], 8)
    active(tenant, people["cat"], 1, 23, 50)
    active(tenant, people["dan"], 7)
    bob = people["bob"]
    customer_services.remove_follow(tenant, customer=bob, staff=staff, by="customer", at=at(3))
    customer_services.upsert_follow(tenant, customer=bob, staff=staff, added_at=at(9))
    other_staff = StaffFactory(tenant=other_tenant, wecom_userid="s9")
    eve = CustomerFactory(tenant=other_tenant, name="eve", staff=other_staff, added_at=at(0))
    for day in range(14):
        active(other_tenant, eve, day)
    store = ColumnarStore(tmp_path / "analytics")
    sync(store)
    return DuckDBEngine(store), people


def test_new_customers_per_local_day(population, tenant):
    engine, _people = population
    rows = metrics.new_customers(engine, tenant.pk, DAY0, DAY0 + timedelta(days=13))
    assert [(row["day"], row["customers"]) for row in rows] == [
        (DAY0, 2),  # ann, and bob at 23:30 local
        (DAY0 + timedelta(days=1), 1),
        (DAY0 + timedelta(days=7), 1),
    ]


def test_weekly_friend_retention(population, tenant):
    engine, _people = population
    cohorts = metrics.retention(
        engine,
        tenant.pk,
        start=DAY0,
        end=DAY0 + timedelta(days=13),
        as_of=DAY0 + timedelta(days=13),
        period="week",
        measure="friend",
    )
    week0, week1 = cohorts
    assert (week0.start, week0.size, week0.retained) == (DAY0, 3, [2, 3])  # bob lost, back
    assert (week1.start, week1.size, week1.retained) == (DAY0 + timedelta(days=7), 1, [1])


def test_weekly_active_retention(population, tenant):
    engine, _people = population
    cohorts = metrics.retention(
        engine,
        tenant.pk,
        start=DAY0,
        end=DAY0 + timedelta(days=13),
        as_of=DAY0 + timedelta(days=13),
        period="week",
        measure="active",
        active_types=["message.received"],
    )
    week0, week1 = cohorts
    assert week0.retained == [2, 1]  # ann and cat in week 0; ann in week 1
    assert week1.retained == [1]
    assert week0.rates == [2 / 3, 1 / 3]


def test_day_retention_and_d1(population, tenant):
    engine, _people = population
    cohorts = metrics.retention(
        engine,
        tenant.pk,
        start=DAY0,
        end=DAY0 + timedelta(days=1),
        as_of=DAY0 + timedelta(days=13),
        period="day",
        measure="active",
        active_types=["message.received"],
        offsets=8,
    )
    day0, day1 = cohorts
    # day 0: ann, bob. ann active day 1 (D1) and day 8 (beyond 8 offsets: 0..7)
    assert day0.retained == [0, 1, 0, 0, 0, 0, 0, 0]
    # day 1: cat, active on day 1 (D0), at 23:50 local: not day 2
    assert day1.retained == [1, 0, 0, 0, 0, 0, 0, 0]
    assert metrics.day_n_retention(cohorts, (1, 7)) == {1: 1 / 3, 7: 0.0}


def test_dau_wau_mau(population, tenant):
    engine, _people = population
    rows = metrics.activity(
        engine,
        tenant.pk,
        start=DAY0 + timedelta(days=1),
        end=DAY0 + timedelta(days=8),
        active_types=["message.received"],
    )
    by_day = {row["day"]: (row["dau"], row["wau"], row["mau"]) for row in rows}
    assert by_day[DAY0 + timedelta(days=1)] == (2, 2, 2)  # ann, cat
    assert by_day[DAY0 + timedelta(days=2)] == (0, 2, 2)
    assert by_day[DAY0 + timedelta(days=7)] == (1, 3, 3)  # dan; ann, cat within 7 days
    assert by_day[DAY0 + timedelta(days=8)] == (1, 2, 3)  # ann; the window drops day 1
    assert rows[-1]["stickiness"] == pytest.approx(1 / 3)


def test_an_empty_tenant_has_empty_metrics(tmp_path, other_tenant, tenant):
    engine = DuckDBEngine(ColumnarStore(tmp_path / "empty"))
    assert metrics.new_customers(engine, tenant.pk, DAY0, DAY0) == []
    assert metrics.retention(engine, tenant.pk, start=DAY0, end=DAY0, as_of=DAY0) == []
    assert [row["dau"] for row in metrics.activity(engine, tenant.pk, start=DAY0, end=DAY0)] == [0]
