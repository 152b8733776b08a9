"""Fixtures of the customers domain's tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from siyu.core.models import Event
from siyu.testing.factories import StaffFactory

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def at():
    """``at(minutes)``: a fixed moment, ``minutes`` after 2026-11-01 09:00 UTC."""

    def moment(minutes: float = 0) -> datetime:
        return T0 + timedelta(minutes=minutes)

    return moment


@pytest.fixture
def other_sales(tenant):
    return StaffFactory(tenant=tenant, roles=["sales"], login=True, wecom_userid="sales2")


@pytest.fixture
def events_of(tenant):
    """``events_of("follow.added")``: the tenant's events of these types, oldest first."""

    def find(*types: str) -> list[Event]:
        return list(Event.objects.for_tenant(tenant).filter(type__in=types).order_by("id"))

    return find
