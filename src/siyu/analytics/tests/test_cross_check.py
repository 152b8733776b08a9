"""Retention and activity cross-checked against an independent, straightforward pandas
implementation on a generated population (random adds, deletions, returns, activity)."""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from django.conf import settings
from django.utils import timezone

from siyu.analytics import metrics
from siyu.analytics.engine import DuckDBEngine
from siyu.analytics.store import ColumnarStore
from siyu.analytics.sync import sync
from siyu.core.events import EventSpec, record_events
from siyu.core.models import Event
from siyu.customers import services as customer_services
from siyu.customers.models import Customer
from siyu.testing.factories import CustomerFactory, StaffFactory

pytestmark = pytest.mark.django_db

DAY0 = date(2026, 9, 7)  # a Monday
DAYS = 42
AS_OF = DAY0 + timedelta(days=DAYS - 1)
ACTIVE = "message.received"


def moment(rng: random.Random, day: int) -> datetime:
    minutes = rng.randrange(24 * 60)
    local = datetime.combine(DAY0 + timedelta(days=day), time(minutes // 60, minutes % 60))
    return timezone.make_aware(local)


@pytest.fixture
def generated(tenant, tmp_path):
    rng = random.Random(20261123)
    staff = StaffFactory(tenant=tenant, wecom_userid="gen")
    activity: list[EventSpec] = []
    for n in range(70):
        added_day = rng.randrange(DAYS)
        customer = CustomerFactory(tenant=tenant, staff=staff, added_at=moment(rng, added_day))
        day = added_day
        friend = True
        while day < DAYS - 1:
            day += rng.randrange(1, 9)
            if day >= DAYS:
                break
            roll = rng.random()
            if friend and roll < 0.15:
                customer_services.remove_follow(
                    tenant, customer=customer, staff=staff, by="customer", at=moment(rng, day)
                )
                friend = False
            elif not friend and roll < 0.5:
                customer_services.upsert_follow(
                    tenant, customer=customer, staff=staff, added_at=moment(rng, day)
                )
                friend = True
            elif roll < 0.8:
                activity.append(
                    EventSpec(
                        type=ACTIVE,
                        key=f"gen:{n}:{day}",
                        customer_id=customer.pk,
                        occurred_at=moment(rng, day),
                    )
                )
    record_events(tenant, activity)
    store = ColumnarStore(tmp_path / "analytics")
    sync(store)
    return DuckDBEngine(store)


def frames(tenant) -> tuple[pd.DataFrame, pd.DataFrame]:
    zone = ZoneInfo(settings.TIME_ZONE)
    customers = pd.DataFrame(
        [
            {"id": c.pk, "added": c.first_added_at.astimezone(zone).date()}
            for c in Customer.objects.for_tenant(tenant).filter(merged_into__isnull=True)
        ]
    )
    events = pd.DataFrame(
        [
            {"customer_id": e.customer_id, "type": e.type, "at": e.occurred_at}
            for e in Event.objects.for_tenant(tenant).exclude(customer_id=None)
        ]
    )
    events["day"] = [moment.astimezone(zone).date() for moment in events["at"]]
    return customers, events


def period_start(day: date, period: str) -> date:
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def shift(start: date, period: str, k: int) -> date:
    if period == "day":
        return start + timedelta(days=k)
    if period == "week":
        return start + timedelta(weeks=k)
    month = start.month - 1 + k
    return date(start.year + month // 12, month % 12 + 1, 1)


def pandas_retention(customers, events, period: str, measure: str, offsets: int) -> dict:
    """The same definitions, customer by customer, in plain pandas/Python."""
    zone = ZoneInfo(settings.TIME_ZONE)
    result: dict[date, list[int]] = {}
    sizes: dict[date, int] = {}
    friendship = events[events["type"].isin(metrics.FRIENDSHIP_TYPES)].sort_values("at")
    active = events[events["type"] == ACTIVE]
    for customer in customers.itertuples():
        cohort = period_start(customer.added, period)
        sizes[cohort] = sizes.get(cohort, 0) + 1
        counts = result.setdefault(cohort, [])
        for k in range(offsets):
            begin, finish = shift(cohort, period, k), shift(cohort, period, k + 1)
            if begin > AS_OF:
                break
            if len(counts) <= k:
                counts.append(0)
            if measure == "friend":
                cutoff = datetime.combine(finish, time.min, tzinfo=zone)
                mine = friendship[
                    (friendship["customer_id"] == customer.id) & (friendship["at"] < cutoff)
                ]
                last = mine["type"].iloc[-1] if len(mine) else None
                counts[k] += int(last != "customer.lost")
            else:
                days = active[active["customer_id"] == customer.id]["day"]
                counts[k] += int(any(begin <= day < finish for day in days))
    return {cohort: (sizes[cohort], result[cohort]) for cohort in sizes}


def test_retention_and_activity_match_pandas(generated, tenant):
    """One population (building it is the slow part), every period and measure on it."""
    customers, events = frames(tenant)
    assert (events["type"] == "customer.lost").any()  # the population does churn and return
    for period, offsets in (("day", 10), ("week", 6), ("month", 2)):
        for measure in ("friend", "active"):
            cohorts = metrics.retention(
                generated,
                tenant.pk,
                start=DAY0,
                end=AS_OF,
                as_of=AS_OF,
                period=period,
                measure=measure,
                active_types=[ACTIVE],
                offsets=offsets,
            )
            expected = pandas_retention(customers, events, period, measure, offsets)
            assert {c.start: (c.size, c.retained) for c in cohorts} == expected, (period, measure)

    rows = metrics.activity(generated, tenant.pk, start=DAY0, end=AS_OF, active_types=[ACTIVE])
    active = events[events["type"] == ACTIVE][["customer_id", "day"]].drop_duplicates()
    for row in rows:
        day = row["day"]

        def window(width: int, day=day) -> int:
            recent = (active["day"] > day - timedelta(days=width)) & (active["day"] <= day)
            return active[recent]["customer_id"].nunique()

        assert (row["dau"], row["wau"], row["mau"]) == (window(1), window(7), window(30)), day
