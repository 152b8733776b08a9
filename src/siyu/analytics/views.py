"""The console's analytics page: acquisition by channel, activity, retention — as charts.

Served at /console/analytics/ inside the console (``admin.site.admin_view``: logged-in staff
of a tenant), for staff with ``analytics.view_metrics`` (operators, analysts, admins). The
numbers come from ``siyu.analytics.metrics`` over the columnar copy, the same functions the
API serves; the page embeds them as JSON and draws them with ECharts.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from siyu.analytics import metrics
from siyu.analytics.engine import DuckDBEngine
from siyu.analytics.store import ColumnarStore
from siyu.core.console import console_actor

PERMISSION = "analytics.view_metrics"
DEFAULT_DAYS = 30
MAX_DAYS = 366
PERIODS = {"day": 14, "week": 12, "month": 6}  # cohort offsets shown per period


def dashboard(request: HttpRequest) -> HttpResponse:
    actor = console_actor(request)
    if not actor.has_perm(PERMISSION):
        raise PermissionDenied
    start, end = _range(request)
    period = request.GET.get("period", "week")
    if period not in PERIODS:
        period = "week"
    measure = "active" if request.GET.get("measure") == "active" else "friend"
    store = ColumnarStore()
    engine = DuckDBEngine(store)
    tenant_id = actor.tenant_id
    charts = {
        "funnel": _funnel(metrics.aarrr(engine, tenant_id, start=start, end=end)),
        "revenue": _revenue(metrics.revenue_by_day(engine, tenant_id, start, end)),
        "acquisition": _acquisition(metrics.new_customers(engine, tenant_id, start, end)),
        "activity": _activity(metrics.activity(engine, tenant_id, start=start, end=end)),
        "retention": _retention(
            metrics.retention(
                engine,
                tenant_id,
                start=start,
                end=end,
                as_of=timezone.localdate(),
                period=period,
                measure=measure,
                offsets=PERIODS[period],
            ),
            period,
        ),
    }
    context = {
        **admin.site.each_context(request),
        "title": _("Analytics"),
        "charts": charts,
        "start": start,
        "end": end,
        "period": period,
        "measure": measure,
        "periods": [("day", _("days")), ("week", _("weeks")), ("month", _("months"))],
        "freshness": store.load_state().events_watermark,
        "csv_links": [
            ("aarrr", _("AARRR")),
            ("revenue", _("revenue")),
            ("new-customers", _("new customers")),
            ("activity", _("activity")),
            ("retention", _("retention")),
        ],
    }
    return TemplateResponse(request, "analytics/dashboard.html", context)


def _range(request: HttpRequest) -> tuple[date, date]:
    today = timezone.localdate()

    def day(name: str) -> date | None:
        try:
            return parse_date(request.GET.get(name, "") or "")
        except ValueError:
            return None

    end = day("end") or today
    start = day("start") or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        start, end = end, start
    if (end - start).days + 1 > MAX_DAYS:
        start = end - timedelta(days=MAX_DAYS - 1)
    return start, end


STAGE_LABELS = {
    "acquisition": gettext_lazy("acquired"),
    "activation": gettext_lazy("activated"),
    "retention": gettext_lazy("retained"),
    "revenue": gettext_lazy("paying"),
    "referral": gettext_lazy("referring"),
}


def _funnel(funnel: dict[str, Any]) -> dict[str, Any]:
    """AARRR as a funnel: each stage's customers and its rate over the previous stage."""
    stages = funnel["stages"]
    return {
        "stages": [
            {
                "name": str(STAGE_LABELS[stage["stage"]]),
                "value": stage["customers"],
                "rate": round(stage["rate"] * 100, 1),
            }
            for stage in stages
        ],
        "revenue": f"¥{funnel['revenue_fen'] / 100:,.2f}",
        "total": stages[0]["customers"] if stages else 0,
    }


def _revenue(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Bars per day of payment: paid and net of refunds, in yuan."""
    return {
        "days": [row["day"].isoformat() for row in rows],
        "paid": [row["paid_fen"] / 100 for row in rows],
        "net": [row["net_fen"] / 100 for row in rows],
        "total": sum(row["orders"] for row in rows),
    }


def _acquisition(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Stacked bars: new customers per day, one series per channel (the top 8, then other)."""
    totals: dict[str, int] = {}
    for row in rows:
        totals[row["channel"]] = totals.get(row["channel"], 0) + row["customers"]
    top = sorted(totals, key=lambda channel: -totals[channel])[:8]
    days = sorted({row["day"] for row in rows})
    other = str(_("other channels"))
    names = {channel: channel or str(_("no channel")) for channel in top}
    series: dict[str, dict[date, int]] = {}
    for row in rows:
        name = names.get(row["channel"], other)
        by_day = series.setdefault(name, {})
        by_day[row["day"]] = by_day.get(row["day"], 0) + row["customers"]
    return {
        "days": [day.isoformat() for day in days],
        "series": [
            {"name": name, "data": [by_day.get(day, 0) for day in days]}
            for name, by_day in series.items()
        ],
        "total": sum(totals.values()),
    }


def _activity(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "days": [row["day"].isoformat() for row in rows],
        "dau": [row["dau"] for row in rows],
        "wau": [row["wau"] for row in rows],
        "mau": [row["mau"] for row in rows],
        "stickiness": [round(row["stickiness"] * 100, 1) for row in rows],
        "total": sum(row["mau"] for row in rows),
    }


def _retention(cohorts: list[metrics.Cohort], period: str) -> dict[str, Any]:
    """A heatmap: cohorts down, offsets across, the rate in % in each cell."""
    offsets = max((len(cohort.retained) for cohort in cohorts), default=0)
    cells = [
        [k, row, round(rate * 100, 1)]
        for row, cohort in enumerate(cohorts)
        for k, rate in enumerate(cohort.rates)
    ]
    return {
        "cohorts": [f"{cohort.start.isoformat()} ({cohort.size})" for cohort in cohorts],
        "offsets": [f"+{k}" for k in range(offsets)],
        "cells": cells,
        "total": sum(cohort.size for cohort in cohorts),
        "period": period,
    }


# --- CSV exports -----------------------------------------------------------------------------
def export_csv(request: HttpRequest, metric: str) -> HttpResponse:
    """One metric of the page as CSV (UTF-8 with a BOM, so that Excel opens Chinese text)."""
    import csv

    actor = console_actor(request)
    if not actor.has_perm(PERMISSION):
        raise PermissionDenied
    start, end = _range(request)
    engine = DuckDBEngine(ColumnarStore())
    tenant_id = actor.tenant_id
    if metric == "new-customers":
        header = ["day", "channel", "customers"]
        rows = [
            [r["day"], r["channel"], r["customers"]]
            for r in metrics.new_customers(engine, tenant_id, start, end)
        ]
    elif metric == "activity":
        header = ["day", "dau", "wau", "mau", "stickiness"]
        rows = [
            [r["day"], r["dau"], r["wau"], r["mau"], f"{r['stickiness']:.4f}"]
            for r in metrics.activity(engine, tenant_id, start=start, end=end)
        ]
    elif metric == "retention":
        period = request.GET.get("period", "week")
        period = period if period in PERIODS else "week"
        measure = "active" if request.GET.get("measure") == "active" else "friend"
        cohorts = metrics.retention(
            engine,
            tenant_id,
            start=start,
            end=end,
            as_of=timezone.localdate(),
            period=period,
            measure=measure,
            offsets=PERIODS[period],
        )
        width = max((len(c.retained) for c in cohorts), default=0)
        header = ["cohort", "size", *[f"+{k}" for k in range(width)]]
        rows = [[c.start, c.size, *c.retained] for c in cohorts]
    elif metric == "revenue":
        header = ["day", "orders", "customers", "paid_fen", "net_fen"]
        rows = [
            [r["day"], r["orders"], r["customers"], r["paid_fen"], r["net_fen"]]
            for r in metrics.revenue_by_day(engine, tenant_id, start, end)
        ]
    elif metric == "aarrr":
        funnel = metrics.aarrr(engine, tenant_id, start=start, end=end)
        header = ["stage", "customers", "rate"]
        rows = [[s["stage"], s["customers"], f"{s['rate']:.4f}"] for s in funnel["stages"]]
    else:
        raise Http404
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    name = f"{metric}-{start.isoformat()}-{end.isoformat()}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response.write("\ufeff")
    writer = csv.writer(response)
    writer.writerow(header)
    writer.writerows(rows)
    return response
