"""Predicted value per customer: who is still buying, and what they will buy in 90 days.

Each night, per tenant, from the columnar copy's orders: every buyer's purchase history in
days — x = repeat purchase days (days with a paid order after the first), t_x = days from the
first to the last, T = days from the first to today, m_x = average net spend of the repeat
days — fits BG/NBD (frequency and dropout) and Gamma-Gamma (spend) with
``siyu.analytics.clv``, and stores each buyer's P(alive), expected purchases and expected
value over the next 90 days (``CustomerPrediction``), replacing yesterday's. A tenant with too
few buyers (a fit needs 10, and 10 repeat buyers for the spend) gets no predictions, and says
so in the report, rather than numbers from a model that cannot be fitted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone

from siyu.analytics import clv
from siyu.analytics.engine import DuckDBEngine, Engine
from siyu.analytics.models import CustomerPrediction

HORIZON_DAYS = 90
PURCHASE_STATUSES = ("paid", "partially_refunded")
# A tenant's data may not pin the models down (few buyers, nobody visibly lapsed): then the
# fit runs along a ridge and does not converge. A small L2 penalty on the parameters, as the
# models' authors and libraries advise, makes it converge to a sensible point.
PENALIZERS = (0.0, 0.001, 0.01)


@dataclass
class PredictionReport:
    tenant_id: int
    buyers: int = 0
    repeat_buyers: int = 0
    stored: int = 0
    skipped: str = ""  # why nothing was fitted


def purchase_histories(engine: Engine, tenant_id: int, as_of: date) -> list[tuple]:
    """(customer_id, x, t_x, T, m_x in fen) of every buyer whose first purchase is before
    ``as_of``."""
    return engine.rows(
        tenant_id,
        """
        WITH days AS (
            SELECT customer_id, local_day(paid_at) AS day, sum(paid_fen - refunded_fen) AS net
            FROM orders
            WHERE status IN ('paid', 'partially_refunded') AND customer_id IS NOT NULL
              AND local_day(paid_at) <= ?
            GROUP BY ALL
        ),
        buyers AS (
            SELECT customer_id, count(*) - 1 AS x,
                   date_diff('day', min(day), max(day)) AS t_x,
                   date_diff('day', min(day), CAST(? AS DATE)) AS age,
                   (sum(net) - arg_min(net, day)) / greatest(count(*) - 1, 1) AS m_x
            FROM days GROUP BY customer_id
        )
        SELECT customer_id, x, t_x, age, m_x FROM buyers WHERE age > 0 ORDER BY customer_id
        """,
        [as_of, as_of],
    )


def refresh_predictions(
    tenant_id: int, *, engine: Engine | None = None, as_of: date | None = None
) -> PredictionReport:
    """Fit the tenant's buyers and replace their stored predictions (see the module doc)."""
    engine = engine or DuckDBEngine()
    as_of = as_of or timezone.localdate()
    report = PredictionReport(tenant_id)
    rows = purchase_histories(engine, tenant_id, as_of)
    report.buyers = len(rows)
    if not rows:
        report.skipped = "no buyers"
        return report
    ids = np.array([row[0] for row in rows], dtype=np.int64)
    x, t_x, age, m_x = (np.array([row[i] for row in rows], dtype=float) for i in range(1, 5))
    repeat = (x > 0) & (m_x > 0)
    report.repeat_buyers = int(repeat.sum())
    try:
        bgnbd = _fit(lambda penalizer: clv.fit_bgnbd(x, t_x, age, penalizer=penalizer))
        # spend in yuan: in fen, the scale parameter of a brand with ¥300 baskets runs past
        # the optimiser's bounds
        m_yuan = m_x / 100
        gamma_gamma = _fit(
            lambda penalizer: clv.fit_gamma_gamma(x[repeat], m_yuan[repeat], penalizer=penalizer)
        )
        forecast = clv.predict(
            HORIZON_DAYS,
            x,
            t_x,
            age,
            np.where(repeat, m_yuan, 0.0),
            bgnbd=bgnbd,
            gamma_gamma=gamma_gamma,
        )
    except ValueError as error:  # too few buyers, a fit that does not converge, q <= 1 ...
        report.skipped = str(error)
        return report
    report.stored = _store(tenant_id, ids, x, t_x, age, forecast)
    return report


def _fit(fit: Any) -> Any:
    """The fit without a penalty, else with the smallest one that converges."""
    for penalizer in PENALIZERS:
        try:
            return fit(penalizer)
        except clv.FitError:
            if penalizer == PENALIZERS[-1]:
                raise
    raise AssertionError("unreachable")


def _store(tenant_id: int, ids: Any, x: Any, t_x: Any, age: Any, forecast: Any) -> int:
    now = timezone.now()
    rows = [
        CustomerPrediction(
            tenant_id=tenant_id,
            customer_id=int(customer_id),
            probability_alive=float(forecast.probability_alive[i]),
            expected_purchases=float(forecast.expected_purchases[i]),
            expected_value_fen=max(0, round(float(forecast.expected_value[i]) * 100)),
            repeat_purchases=int(x[i]),
            recency_days=int(t_x[i]),
            age_days=int(age[i]),
            computed_at=now,
        )
        for i, customer_id in enumerate(ids)
    ]
    with transaction.atomic():
        CustomerPrediction.objects.for_tenant(tenant_id).delete()
        CustomerPrediction.objects.bulk_create(rows, batch_size=5_000)
    return len(rows)
