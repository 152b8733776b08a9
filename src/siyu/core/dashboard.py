"""Live numbers for the console's first dashboard, read within the actor's tenant and scope.

Every count goes through ``for_actor``, so a sales member sees their own events and a
department lead their department's; a card whose model the actor may not view is left out
rather than shown as zero.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from siyu.core.models import AuditEntry, Event
from siyu.tenancy.models import ApiKey, Staff

if TYPE_CHECKING:
    from siyu.tenancy.actor import Actor

CHART_DAYS = 14
CHART_MAX_FAMILIES = 6  # the rest are stacked as "other" so the legend stays readable

# Display names of event families (the part of an event type before its first dot).
FAMILY_LABELS = {
    "tenant": gettext_lazy("Tenant"),
    "staff": gettext_lazy("Staff"),
    "customer": gettext_lazy("Customers"),
    "follow": gettext_lazy("Friendships"),
    "group": gettext_lazy("Groups"),
    "order": gettext_lazy("Orders"),
    "message": gettext_lazy("Messages"),
    "campaign": gettext_lazy("Campaigns"),
    "points": gettext_lazy("Points"),
}
OTHER_FAMILY = "other"


@dataclass(frozen=True)
class Kpi:
    key: str
    title: str
    value: int
    icon: str
    hint: str
    link: str | None


def build_dashboard(actor: Actor, *, link: Callable[..., str | None]) -> dict[str, Any]:
    """Everything the dashboard template shows: KPI cards and the events chart data."""
    now = timezone.now()
    kpis = [*staff_kpis(actor, link), *event_kpis(actor, link, now)]
    kpis += [*api_key_kpis(actor, link, now), *audit_kpis(actor, link, now)]
    chart = events_per_day(actor, now=now) if _may_view(actor, "core", "event") else None
    return {"kpis": [asdict(kpi) for kpi in kpis], "chart": chart}


def _may_view(actor: Actor, app_label: str, model_name: str) -> bool:
    return actor.has_perm(f"{app_label}.view_{model_name}") or actor.has_perm(
        f"{app_label}.change_{model_name}"
    )


def _start_of_today(now: datetime) -> datetime:
    today = timezone.localtime(now).date()
    return timezone.make_aware(datetime.combine(today, time.min))


def staff_kpis(actor: Actor, link: Callable[..., str | None]) -> list[Kpi]:
    if not _may_view(actor, "tenancy", "staff"):
        return []
    counts = Staff.objects.for_actor(actor).aggregate(
        active=Count("pk", filter=Q(status=Staff.Status.ACTIVE)),
        departed=Count("pk", filter=Q(status=Staff.Status.DEPARTED)),
    )
    return [
        Kpi(
            "staff_active",
            _("Active staff"),
            counts["active"],
            "badge",
            _("members working with customers"),
            link("tenancy_staff_changelist", "status__exact=active"),
        ),
        Kpi(
            "staff_departed",
            _("Departed staff"),
            counts["departed"],
            "person_off",
            _("customers to hand over"),
            link("tenancy_staff_changelist", "status__exact=departed"),
        ),
    ]


def event_kpis(actor: Actor, link: Callable[..., str | None], now: datetime) -> list[Kpi]:
    if not _may_view(actor, "core", "event"):
        return []
    today = _start_of_today(now)
    counts = Event.objects.for_actor(actor).aggregate(
        today=Count("pk", filter=Q(occurred_at__gte=today)),
        week=Count("pk", filter=Q(occurred_at__gte=today - timedelta(days=6))),
    )
    return [
        Kpi(
            "events_today",
            _("Events today"),
            counts["today"],
            "bolt",
            _("facts recorded since midnight"),
            link("core_event_changelist"),
        ),
        Kpi(
            "events_week",
            _("Events, last 7 days"),
            counts["week"],
            "timeline",
            _("including today"),
            link("core_event_changelist"),
        ),
    ]


def api_key_kpis(actor: Actor, link: Callable[..., str | None], now: datetime) -> list[Kpi]:
    if not _may_view(actor, "tenancy", "apikey"):
        return []
    live = (
        ApiKey.objects.for_actor(actor)
        .filter(revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .count()
    )
    return [
        Kpi(
            "api_keys",
            _("Active API keys"),
            live,
            "key",
            _("not revoked, not expired"),
            link("tenancy_apikey_changelist"),
        )
    ]


def audit_kpis(actor: Actor, link: Callable[..., str | None], now: datetime) -> list[Kpi]:
    if not _may_view(actor, "core", "auditentry"):
        return []
    since = _start_of_today(now) - timedelta(days=6)
    recent = AuditEntry.objects.for_actor(actor).filter(at__gte=since).count()
    return [
        Kpi(
            "audit_entries",
            _("Audit entries, last 7 days"),
            recent,
            "history",
            _("changes and sign-ins"),
            link("core_auditentry_changelist"),
        )
    ]


def event_family(event_type: str) -> str:
    return event_type.split(".", 1)[0]


def events_per_day(
    actor: Actor, *, now: datetime | None = None, days: int = CHART_DAYS
) -> dict[str, Any]:
    """Events per local day over the last ``days`` days, one stacked series per family.

    ``{"days": ["03-01", ...], "series": [{"key", "name", "data": [int per day]}], "total"}``
    """
    now = now or timezone.now()
    tz = timezone.get_current_timezone()
    first_day = timezone.localtime(now, tz).date() - timedelta(days=days - 1)
    day_list = [first_day + timedelta(days=offset) for offset in range(days)]
    rows = (
        Event.objects.for_actor(actor)
        .filter(occurred_at__gte=timezone.make_aware(datetime.combine(first_day, time.min), tz))
        .annotate(day=TruncDate("occurred_at", tzinfo=tz))
        .values("day", "type")
        .annotate(count=Count("pk"))
        .order_by()
    )
    per_family: dict[str, dict[Any, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        per_family[event_family(row["type"])][row["day"]] += row["count"]
    ranked = sorted(per_family, key=lambda family: (-sum(per_family[family].values()), family))
    kept, folded = ranked[:CHART_MAX_FAMILIES], ranked[CHART_MAX_FAMILIES:]
    if folded:
        other: dict[Any, int] = defaultdict(int)
        for family in folded:
            for day, count in per_family[family].items():
                other[day] += count
        per_family[OTHER_FAMILY] = other
        kept.append(OTHER_FAMILY)
    series = [
        {
            "key": family,
            "name": str(
                FAMILY_LABELS.get(family, _("Other") if family == OTHER_FAMILY else family)
            ),
            "data": [per_family[family].get(day, 0) for day in day_list],
        }
        for family in kept
    ]
    return {
        "days": [day.strftime("%m-%d") for day in day_list],
        "series": series,
        "total": sum(sum(s["data"]) for s in series),
    }
