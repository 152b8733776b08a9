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


def pay(tenant, customer, order_id: str, day: int, fen: int, *, refunded: bool = False) -> None:
    from siyu.commerce import services as commerce

    paid_at = at(day)
    refunds = (commerce.RefundIn(f"R-{order_id}", fen, paid_at + timedelta(hours=1)),)
    commerce.ingest_order(
        tenant,
        commerce.OrderIn(
            shop_order_id=order_id,
            status="refunded" if refunded else "paid",
            updated_at=paid_at + timedelta(hours=2),
            paid_at=paid_at,
            buyer=commerce.BuyerIn(external_userid=customer.external_userid),
            lines=(commerce.LineIn(sku="A", unit_price_fen=fen),),
            refunds=refunds if refunded else (),
        ),
    )


@pytest.fixture
def with_orders(population, tenant, tmp_path):
    """The population, plus: ann pays ¥9.90 on day 2 and ¥299 on day 10; cat pays ¥9.90 on
    day 20, refunded in full."""
    engine, people = population
    pay(tenant, people["ann"], "A1", 2, 990)
    pay(tenant, people["ann"], "A2", 10, 29900)
    pay(tenant, people["cat"], "C1", 20, 990, refunded=True)
    sync(engine.store)
    return engine, people


def test_the_aarrr_funnel(with_orders, tenant):
    engine, _people = with_orders
    funnel = metrics.aarrr(
        engine,
        tenant.pk,
        start=DAY0,
        end=DAY0 + timedelta(days=13),
        activation_days=7,
        active_types=["message.received"],
    )
    stages = {stage["stage"]: (stage["customers"], stage["rate"]) for stage in funnel["stages"]}
    assert stages == {
        "acquisition": (4, 1.0),  # ann, bob, cat, dan
        "activation": (3, 3 / 4),  # ann, cat (day 1), dan (day 7); bob did nothing
        "retention": (1, 1 / 3),  # ann, active again on day 8 (after her first 7 days)
        "revenue": (1, 1.0),  # ann paid by day 13; cat's order is on day 20
        "referral": (0, 0.0),
    }
    assert (funnel["revenue_fen"], funnel["arppu_fen"]) == (30890, 30890)


def test_revenue_by_day_is_net_of_refunds(with_orders, tenant):
    engine, _people = with_orders
    rows = metrics.revenue_by_day(engine, tenant.pk, DAY0, DAY0 + timedelta(days=30))
    assert [(row["day"], row["paid_fen"], row["net_fen"]) for row in rows] == [
        (DAY0 + timedelta(days=2), 990, 990),
        (DAY0 + timedelta(days=10), 29900, 29900),
        (DAY0 + timedelta(days=20), 990, 0),
    ]


def test_value_by_channel(with_orders, tenant):
    engine, _people = with_orders
    (row,) = metrics.value_by_channel(engine, tenant.pk, start=DAY0, end=DAY0 + timedelta(days=13))
    # one channel (none): 4 customers, ann bought twice, cat's only order was refunded
    assert row == {
        "channel": "",
        "customers": 4,
        "buyers": 1,
        "repeat_buyers": 1,
        "net_fen": 30890,
        "ltv_fen": 30890 // 4,
        "repurchase_rate": 1.0,
    }


def test_a_funnel_with_a_window_and_a_repeated_step(with_orders, tenant):
    """added → wrote → paid → paid again, 14-day window: ann wrote (day 1), paid (day 2) and
    paid again (day 10); cat wrote (day 1) but paid on day 20, outside her window; dan wrote
    the moment he was added; bob never wrote."""
    engine, _people = with_orders
    rows = metrics.funnel(
        engine,
        tenant.pk,
        steps=["customer.added", "message.received", "order.paid", "order.paid"],
        start=DAY0,
        end=DAY0 + timedelta(days=13),
        window_days=14,
    )
    assert [(row["customers"], round(row["rate_from_previous"], 4)) for row in rows] == [
        (4, 1.0),
        (3, 0.75),
        (1, round(1 / 3, 4)),
        (1, 1.0),
    ]
    # ann: 8 days between her first and second order
    assert rows[3]["median_seconds_from_previous"] == 8 * 86400
    assert rows[1]["median_seconds_from_previous"] is not None


def test_a_funnel_by_channel(population, tenant):
    engine, _people = population
    rows = metrics.funnel(
        engine,
        tenant.pk,
        steps=["customer.added", "message.received"],
        start=DAY0,
        end=DAY0 + timedelta(days=13),
        by_channel=True,
    )
    assert {(row["channel"], row["step"], row["customers"]) for row in rows} == {
        ("", 0, 4),
        ("", 1, 3),
    }
    with pytest.raises(ValueError):
        metrics.funnel(engine, tenant.pk, steps=["x"], start=DAY0, end=DAY0)


def test_local_days_are_shifted_epochs_only_where_the_offset_never_changes():
    import duckdb

    from siyu.analytics.engine import _local_day_sql

    assert "make_timestamp" in _local_day_sql("Asia/Shanghai")
    assert _local_day_sql("Europe/Berlin") == "CAST(moment AS DATE)"  # daylight saving
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'Asia/Shanghai'")
    connection.execute(f"CREATE MACRO local_day(moment) AS {_local_day_sql('Asia/Shanghai')}")
    moments = ["2026-11-02 15:59:59+00", "2026-11-02 16:00:00+00", "1999-12-31 16:00:00+00"]
    for moment in moments:
        fast, exact = connection.execute(
            f"SELECT local_day(TIMESTAMPTZ '{moment}'), CAST(TIMESTAMPTZ '{moment}' AS DATE)"
        ).fetchone()
        assert fast == exact, moment
