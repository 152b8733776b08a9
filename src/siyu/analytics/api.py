"""API of the metrics (``siyu.analytics.metrics``; formulas in docs/metrics.md).

Every endpoint answers for the caller's tenant from the columnar copy, which the worker keeps
a few seconds behind the database (``freshness`` in each answer says how far). Dates are
local days of the site's time zone; a range is at most ``MAX_DAYS`` long.
"""

from datetime import date, timedelta
from typing import Literal

from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema

from siyu.analytics import metrics
from siyu.analytics.engine import DuckDBEngine
from siyu.analytics.store import ColumnarStore
from siyu.core.api_errors import error_responses
from siyu.core.api_support import require
from siyu.core.errors import InvalidInput

router = Router(tags=["analytics"])

READ_ERRORS = error_responses(400, 401, 403, 422)
MAX_DAYS = 731
MAX_TYPES = 50


class RangeIn(Schema):
    start: date | None = Field(None, description="First local day (default: 29 days ago)")
    end: date | None = Field(None, description="Last local day, included (default: today)")


class Freshness(Schema):
    events_copied_up_to: int = Field(description="The id of the newest event copied")
    synced_at: float | None = Field(description="Epoch seconds of the copy's last write")


def _range(filters: RangeIn) -> tuple[date, date]:
    today = timezone.localdate()
    end = filters.end or today
    start = filters.start or end - timedelta(days=29)
    if start > end:
        raise InvalidInput(_("start must not be after end"), details={"start": str(start)})
    if (end - start).days + 1 > MAX_DAYS:
        raise InvalidInput(
            _("A range is at most %(days)d days") % {"days": MAX_DAYS},
            details={"start": str(start), "end": str(end)},
        )
    return start, end


def _types(raw: str | None) -> list[str] | None:
    if not raw:
        return None
    types = [part.strip() for part in raw.split(",") if part.strip()]
    if len(types) > MAX_TYPES or any(
        len(kind) > 80 or not kind.replace(".", "").replace("_", "").isalnum() for kind in types
    ):
        raise InvalidInput(
            _("types is a comma-separated list of event types"), details={"types": raw[:200]}
        )
    return types


def _engine() -> tuple[DuckDBEngine, dict]:
    store = ColumnarStore()
    state_file = store.root / "state.json"
    state = store.load_state()
    freshness = {
        "events_copied_up_to": state.events_watermark,
        "synced_at": state_file.stat().st_mtime if state_file.exists() else None,
    }
    return DuckDBEngine(store), freshness


# --- acquisition ----------------------------------------------------------------------------
class NewCustomersRow(Schema):
    day: date
    channel: str = Field(description="The state of the first add ('' for none)")
    customers: int


class NewCustomersOut(Schema):
    start: date
    end: date
    rows: list[NewCustomersRow]
    freshness: Freshness


@router.get("/analytics/new-customers", response={200: NewCustomersOut, **READ_ERRORS})
def new_customers(request: HttpRequest, filters: Query[RangeIn]):
    """New customers per local day and source channel."""
    actor = require(request, "analytics:read")
    start, end = _range(filters)
    engine, freshness = _engine()
    rows = metrics.new_customers(engine, actor.tenant_id, start, end)
    return {"start": start, "end": end, "rows": rows, "freshness": freshness}


# --- retention ------------------------------------------------------------------------------
class RetentionIn(RangeIn):
    period: Literal["day", "week", "month"] = "week"
    measure: Literal["friend", "active"] = Field(
        "friend",
        description="friend: still a friend at the period's end; active: did one of "
        "the types in the period",
    )
    types: str | None = Field(
        None, description="Comma-separated event types that count as active (measure=active)"
    )
    offsets: int = Field(12, ge=1, le=metrics.MAX_OFFSETS)


class CohortOut(Schema):
    start: date
    size: int
    retained: list[int]
    rates: list[float]


class RetentionOut(Schema):
    period: str
    measure: str
    cohorts: list[CohortOut]
    day_n: dict[int, float] = Field(description="D1 / D7 / D30 (period=day only)")
    freshness: Freshness


@router.get("/analytics/retention", response={200: RetentionOut, **READ_ERRORS})
def retention(request: HttpRequest, filters: Query[RetentionIn]):
    """Cohorts by first-add period and how many are retained in each later period."""
    actor = require(request, "analytics:read")
    start, end = _range(filters)
    engine, freshness = _engine()
    cohorts = metrics.retention(
        engine,
        actor.tenant_id,
        start=start,
        end=end,
        as_of=timezone.localdate(),
        period=filters.period,
        measure=filters.measure,
        active_types=_types(filters.types),
        offsets=filters.offsets,
    )
    return {
        "period": filters.period,
        "measure": filters.measure,
        "cohorts": [
            {"start": c.start, "size": c.size, "retained": c.retained, "rates": c.rates}
            for c in cohorts
        ],
        "day_n": metrics.day_n_retention(cohorts) if filters.period == "day" else {},
        "freshness": freshness,
    }


# --- activity -------------------------------------------------------------------------------
class ActivityIn(RangeIn):
    types: str | None = Field(None, description="Comma-separated event types that count")


class ActivityRow(Schema):
    day: date
    dau: int
    wau: int
    mau: int
    stickiness: float = Field(description="DAU / MAU")


class ActivityOut(Schema):
    rows: list[ActivityRow]
    freshness: Freshness


@router.get("/analytics/activity", response={200: ActivityOut, **READ_ERRORS})
def activity(request: HttpRequest, filters: Query[ActivityIn]):
    """Daily, weekly and monthly active customers, and stickiness."""
    actor = require(request, "analytics:read")
    start, end = _range(filters)
    engine, freshness = _engine()
    rows = metrics.activity(
        engine, actor.tenant_id, start=start, end=end, active_types=_types(filters.types)
    )
    return {"rows": rows, "freshness": freshness}


# --- AARRR and value ------------------------------------------------------------------------
class AarrrIn(RangeIn):
    activation_days: int = Field(7, ge=1, le=90)
    types: str | None = Field(None, description="Comma-separated event types that count")


class StageOut(Schema):
    stage: Literal["acquisition", "activation", "retention", "revenue", "referral"]
    customers: int
    rate: float = Field(description="Customers over the previous stage's")


class AarrrOut(Schema):
    stages: list[StageOut]
    revenue_fen: int
    arppu_fen: int
    activation_days: int
    freshness: Freshness


@router.get("/analytics/aarrr", response={200: AarrrOut, **READ_ERRORS})
def aarrr(request: HttpRequest, filters: Query[AarrrIn]):
    """The pirate funnel of the customers first added in the range (docs/metrics.md)."""
    actor = require(request, "analytics:read")
    start, end = _range(filters)
    engine, freshness = _engine()
    funnel = metrics.aarrr(
        engine,
        actor.tenant_id,
        start=start,
        end=end,
        activation_days=filters.activation_days,
        active_types=_types(filters.types),
    )
    return {**funnel, "freshness": freshness}


class RevenueRow(Schema):
    day: date
    orders: int
    customers: int
    paid_fen: int
    net_fen: int = Field(description="Paid minus what those orders had refunded by now")


class RevenueOut(Schema):
    rows: list[RevenueRow]
    freshness: Freshness


@router.get("/analytics/revenue", response={200: RevenueOut, **READ_ERRORS})
def revenue(request: HttpRequest, filters: Query[RangeIn]):
    """Orders, paying customers and revenue per local day of payment."""
    actor = require(request, "analytics:read")
    start, end = _range(filters)
    engine, freshness = _engine()
    rows = metrics.revenue_by_day(engine, actor.tenant_id, start, end)
    return {"rows": rows, "freshness": freshness}


class ChannelValueRow(Schema):
    channel: str
    customers: int
    buyers: int
    repeat_buyers: int
    net_fen: int
    ltv_fen: int = Field(description="Net revenue to date per acquired customer")
    repurchase_rate: float


class ChannelValueOut(Schema):
    rows: list[ChannelValueRow]
    freshness: Freshness


@router.get("/analytics/value-by-channel", response={200: ChannelValueOut, **READ_ERRORS})
def value_by_channel(request: HttpRequest, filters: Query[RangeIn]):
    """Per source channel, for the customers first added in the range: buyers, net revenue,
    historical LTV and repurchase rate."""
    actor = require(request, "analytics:read")
    start, end = _range(filters)
    engine, freshness = _engine()
    rows = metrics.value_by_channel(engine, actor.tenant_id, start=start, end=end)
    return {"rows": rows, "freshness": freshness}


# --- funnels ----------------------------------------------------------------------------------
class FunnelIn(RangeIn):
    steps: str = Field(
        description="Comma-separated event types in order, 2 to 8 "
        "(e.g. customer.added,material.opened,order.paid,order.paid)",
        examples=["customer.added,material.opened,order.paid,order.paid"],
    )
    window_days: int = Field(30, ge=1, le=365, description="From entering the funnel")
    by: Literal["", "channel"] = Field("", description="channel: one funnel per source channel")


class FunnelStep(Schema):
    channel: str
    step: int
    type: str
    customers: int
    rate_from_previous: float
    rate_from_first: float
    median_seconds_from_previous: float | None


class FunnelOut(Schema):
    steps: list[FunnelStep]
    freshness: Freshness


@router.get("/analytics/funnel", response={200: FunnelOut, **READ_ERRORS})
def funnel(request: HttpRequest, filters: Query[FunnelIn]):
    """Customers through ordered steps within a conversion window (docs/metrics.md)."""
    actor = require(request, "analytics:read")
    start, end = _range(filters)
    steps = _types(filters.steps) or []
    if not 2 <= len(steps) <= metrics.MAX_STEPS:
        raise InvalidInput(
            _("A funnel has 2 to %(max)d steps") % {"max": metrics.MAX_STEPS},
            details={"steps": filters.steps[:200]},
        )
    engine, freshness = _engine()
    rows = metrics.funnel(
        engine,
        actor.tenant_id,
        steps=steps,
        start=start,
        end=end,
        window_days=filters.window_days,
        by_channel=filters.by == "channel",
    )
    return {"steps": rows, "freshness": freshness}
