"""RFM layering: recency, frequency and monetary value of each customer's purchases.

For every customer of a tenant (not merged away), over a window (``RFMPolicy.window_days``,
365 by default) of purchase events (``order.paid`` with ``payload["amount_fen"]``, or the
event types and amount key the tenant configures in ``RFMPolicy``):

* recency: days since the newest purchase; frequency: purchases; monetary: their sum (fen);
* each scored 1–5 by quintile *within the tenant's purchasers*, in SQL with window functions:
  ``1 + 5 * (RANK() OVER (ORDER BY x) - 1) / COUNT(*) OVER ()``. Why RANK and not NTILE: NTILE
  splits equal values across buckets (two customers who each bought once would get different
  F scores); with RANK equal values share a score, and the buckets are still quintiles of
  the ranking. 5 is best (recent, frequent, big spenders);
* customers without a purchase in the window get recency NULL, frequency 0, monetary 0 and
  the lowest scores (1, 1, 1), layer ``no_purchase``;
* the layer is one of the classic eight RFM layers from R, F and M each high (score 4–5,
  above the average of 3) or low.

Everything is ONE ``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` per tenant (SQLite ≥ 3.24
and PostgreSQL both speak it): no customer goes through Python.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, F, Max, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from siyu.core.events import record_event
from siyu.segments import events
from siyu.segments.fields import CompileContext, JsonNumber, survivor_of
from siyu.segments.models import CustomerRFM, RFMPolicy

DEFAULT_PURCHASE_TYPES = ("order.paid",)
HIGH_SCORE = 4  # a score of 4 or 5 is "high" (above the average score of 3)

# (code, label, R high, F high, M high) — the classic eight layers (RFM 八大客户分层).
LAYER_RULES: tuple[tuple[str, Any, bool, bool, bool], ...] = (
    ("important_value", _("Important value (champions)"), True, True, True),
    ("important_retain", _("Important to retain"), False, True, True),
    ("important_develop", _("Important to develop"), True, False, True),
    ("important_winback", _("Important to win back"), False, False, True),
    ("general_value", _("General value"), True, True, False),
    ("general_retain", _("General to retain"), False, True, False),
    ("general_develop", _("General to develop"), True, False, False),
    ("general_winback", _("General to win back"), False, False, False),
)
NO_PURCHASE = "no_purchase"
LAYERS: tuple[tuple[str, Any], ...] = (
    *((code, label) for code, label, *_flags in LAYER_RULES),
    (NO_PURCHASE, _("No purchase yet")),
)
LAYER_LABELS = dict(LAYERS)


def layer_of(r_score: int, f_score: int, m_score: int, *, purchased: bool = True) -> str:
    """The layer code of a score triple (the same rule as the SQL below)."""
    if not purchased:
        return NO_PURCHASE
    flags = (r_score >= HIGH_SCORE, f_score >= HIGH_SCORE, m_score >= HIGH_SCORE)
    return next(code for code, _label, *rule in LAYER_RULES if tuple(rule) == flags)


def policy_for(tenant: Any) -> RFMPolicy:
    """The tenant's RFM settings (defaults until someone changes them)."""
    tenant_id = getattr(tenant, "pk", tenant)
    policy = RFMPolicy.objects.for_tenant(tenant_id).first()
    return policy or RFMPolicy(tenant_id=tenant_id)


def purchase_types(policy: RFMPolicy) -> list[str]:
    return list(policy.purchase_event_types or DEFAULT_PURCHASE_TYPES)


def _purchases_sql(ctx: CompileContext, policy: RFMPolicy) -> tuple[str, tuple]:
    """Per customer (the survivor of any merge): newest purchase, count and sum."""
    from siyu.core.models import Event

    start = ctx.now - timedelta(days=policy.window_days)
    purchases = (
        Event.objects.for_tenant(ctx.tenant_id)
        .filter(
            type__in=purchase_types(policy),
            occurred_at__gte=start,
            occurred_at__lte=ctx.now,
            customer_id__isnull=False,
        )
        .order_by()
        .annotate(buyer=survivor_of(ctx, "customer_id") if ctx.has_merges else F("customer_id"))
        .values("buyer")
        .annotate(
            last_at=Max("occurred_at"),
            times=Count("pk"),
            spend=Coalesce(Sum(JsonNumber("payload", policy.amount_key or "amount_fen")), 0.0),
        )
        .values("buyer", "last_at", "times", "spend")
    )
    return purchases.query.sql_with_params()


def _layer_case() -> str:
    high = f">= {HIGH_SCORE}"
    branches = " ".join(
        f"WHEN s.r {high if r else '< ' + str(HIGH_SCORE)} AND s.f "
        f"{high if f else '< ' + str(HIGH_SCORE)} AND s.m "
        f"{high if m else '< ' + str(HIGH_SCORE)} THEN '{code}'"
        for code, _label, r, f, m in LAYER_RULES
    )
    return f"CASE WHEN s.buyer IS NULL THEN '{NO_PURCHASE}' {branches} END"


def _recency_sql() -> str:
    if connection.vendor == "postgresql":
        return "EXTRACT(DAY FROM (%s::timestamptz - a.last_at))::integer"
    return "CAST(julianday(%s) - julianday(a.last_at) AS INTEGER)"


@transaction.atomic
def compute_rfm(tenant: Any, *, now: datetime | None = None) -> dict[str, int]:
    """Recompute every customer's RFM row of the tenant; returns counts for the log."""
    tenant_id = getattr(tenant, "pk", tenant)
    ctx = CompileContext(tenant_id, now=now or timezone.now())
    policy = policy_for(tenant_id)
    purchases_sql, purchases_params = _purchases_sql(ctx, policy)
    adapt = connection.ops.adapt_datetimefield_value
    customer_table = "customers_customer"
    rfm_table = CustomerRFM._meta.db_table
    score = "1 + (5 * (RANK() OVER (ORDER BY a.{column}) - 1)) / COUNT(*) OVER ()"
    sql = f"""
        INSERT INTO {rfm_table} (tenant_id, customer_id, recency_days, frequency, monetary_fen,
                                 r_score, f_score, m_score, layer, computed_at)
        SELECT %s, c.id, s.recency_days, COALESCE(s.times, 0),
               CAST(COALESCE(s.spend, 0) AS BIGINT),
               COALESCE(s.r, 1), COALESCE(s.f, 1), COALESCE(s.m, 1), {_layer_case()}, %s
        FROM {customer_table} c
        LEFT JOIN (
            SELECT a.buyer, a.times, a.spend, {_recency_sql()} AS recency_days,
                   {score.format(column="last_at")} AS r,
                   {score.format(column="times")} AS f,
                   {score.format(column="spend")} AS m
            FROM ({purchases_sql}) a
        ) s ON s.buyer = c.id
        WHERE c.tenant_id = %s AND c.merged_into_id IS NULL
        ON CONFLICT (tenant_id, customer_id) DO UPDATE SET
            recency_days = excluded.recency_days, frequency = excluded.frequency,
            monetary_fen = excluded.monetary_fen, r_score = excluded.r_score,
            f_score = excluded.f_score, m_score = excluded.m_score, layer = excluded.layer,
            computed_at = excluded.computed_at
    """
    params = [
        tenant_id,
        adapt(ctx.now),
        adapt(ctx.now),
        *purchases_params,
        tenant_id,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        scored = cursor.rowcount
    # Rows of customers merged away since the last run: their purchases now count above.
    removed, _detail = (
        CustomerRFM.objects.for_tenant(tenant_id)
        .filter(customer__merged_into__isnull=False)
        .delete()
    )
    purchasers = CustomerRFM.objects.for_tenant(tenant_id).exclude(layer=NO_PURCHASE).count()
    _remember_run(tenant_id, policy, ctx.now)
    record_event(
        tenant_id,
        events.RFM_COMPUTED,
        key=f"{events.RFM_COMPUTED}:{ctx.now.isoformat()}",
        payload={"customers": scored, "purchasers": purchasers, "removed": removed},
        occurred_at=ctx.now,
    )
    return {"customers": scored, "purchasers": purchasers, "removed": removed}


def _remember_run(tenant_id: int, policy: RFMPolicy, now: datetime) -> None:
    policies = RFMPolicy.objects.for_tenant(tenant_id)
    if policy.pk is None:
        policies.get_or_create(tenant_id=tenant_id, defaults={"last_run_at": now})
    policies.update(last_run_at=now)


def layer_counts(tenant: Any, customers: Any) -> list[dict[str, Any]]:
    """How many of ``customers`` (a Customer queryset, e.g. the actor's) are in each layer."""
    rows = dict(
        CustomerRFM.objects.for_tenant(tenant)
        .filter(customer__in=customers.values("pk"))
        .order_by()
        .values("layer")
        .annotate(n=Count("pk"))
        .values_list("layer", "n")
    )
    return [
        {"layer": code, "label": str(label), "customers": rows.get(code, 0)}
        for code, label in LAYERS
    ]
