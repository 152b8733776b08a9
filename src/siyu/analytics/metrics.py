"""The metric definitions: each one function, its SQL over ``events`` / ``customers`` /
``orders`` of one tenant (``siyu.analytics.engine``), plain Python data out.

Formulas, in words, are in ``docs/metrics.md``. Days are the site's time zone's days (the
engine defines ``local_day(moment)``, the moment's date there). Customers are
the live records: a record merged into another is counted as that one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from siyu.analytics.engine import Engine

Period = Literal["day", "week", "month"]
PERIODS: tuple[str, ...] = ("day", "week", "month")
MAX_OFFSETS = 60
FRIENDSHIP_TYPES = ("customer.added", "customer.returned", "customer.lost")


def default_active_types() -> tuple[str, ...]:
    """What counts as being active unless the caller names event types: the interactions
    of the lifecycle stages (messages, opens, orders, group talk ...)."""
    from siyu.customers.lifecycle import DEFAULT_INTERACTION_TYPES

    return DEFAULT_INTERACTION_TYPES


# --- acquisition --------------------------------------------------------------------------------
def new_customers(engine: Engine, tenant_id: int, start: date, end: date) -> list[dict[str, Any]]:
    """New customers per local day and source channel (the ``state`` of their first add)."""
    rows = engine.rows(
        tenant_id,
        """
        SELECT local_day(first_added_at) AS day, coalesce(source_state, '') AS channel, count(*)
        FROM customers
        WHERE merged_into_id IS NULL AND first_added_at IS NOT NULL
          AND local_day(first_added_at) BETWEEN ? AND ?
        GROUP BY ALL ORDER BY day, channel
        """,
        [start, end],
    )
    return [{"day": day, "channel": channel, "customers": n} for day, channel, n in rows]


# --- retention ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cohort:
    start: date  # the first day of the cohort's period
    size: int
    retained: list[int]  # customers retained in offset 0, 1, ... (only periods begun by as_of)

    @property
    def rates(self) -> list[float]:
        return [count / self.size if self.size else 0.0 for count in self.retained]


def retention(
    engine: Engine,
    tenant_id: int,
    *,
    start: date,
    end: date,
    as_of: date,
    period: Period = "week",
    measure: Literal["friend", "active"] = "friend",
    active_types: Sequence[str] | None = None,
    offsets: int = 12,
) -> list[Cohort]:
    """Cohorts of customers by the period of their first add (between ``start`` and ``end``)
    and, for offset k = 0, 1, ...: how many are retained in period cohort + k —

    * ``friend``: still a friend at the end of that period (their latest friendship event by
      then is an add or a return, not a loss; a customer who deleted the staff and came back
      counts again);
    * ``active``: did one of ``active_types`` during that period.

    Only periods that have begun by ``as_of`` are reported (the last one may be partial).
    """
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}")
    offsets = max(1, min(offsets, MAX_OFFSETS))
    cohort_sql = f"""
        cohort AS (
            SELECT id AS customer_id,
                   date_trunc('{period}', local_day(first_added_at))::DATE AS cohort
            FROM customers
            WHERE merged_into_id IS NULL AND first_added_at IS NOT NULL
              AND local_day(first_added_at) BETWEEN ? AND ?
        )"""
    if measure == "friend":
        # For each cohort member and offset, the friendship event in force at the end of
        # that period: an ASOF join (the latest event before the moment), sort-merged.
        sql = f"""
            WITH {cohort_sql},
            checkpoints AS (
                SELECT c.customer_id, c.cohort, o.k,
                       CAST((c.cohort + (o.k + 1) * INTERVAL 1 {period})::DATE
                            AS TIMESTAMPTZ) AS period_end
                FROM cohort c CROSS JOIN range(0, ?) o(k)
                WHERE (c.cohort + o.k * INTERVAL 1 {period})::DATE <= ?
            ),
            friendship AS (
                SELECT customer_id, occurred_at, type FROM events
                WHERE type IN {_sql_list(FRIENDSHIP_TYPES)} AND customer_id IS NOT NULL
            )
            SELECT p.cohort, p.k,
                   count(*) FILTER (WHERE f.type IS DISTINCT FROM 'customer.lost')
            FROM checkpoints p
            ASOF LEFT JOIN friendship f
              ON f.customer_id = p.customer_id AND p.period_end > f.occurred_at
            GROUP BY ALL ORDER BY p.cohort, p.k
        """
        params: list[Any] = [start, end, offsets, as_of]
    elif measure == "active":
        # Each active day lands in one offset of its customer's cohort: no grid of
        # customers × offsets to join against.
        types = tuple(active_types or default_active_types())
        sql = f"""
            WITH {cohort_sql},
            activity AS (
                SELECT DISTINCT e.customer_id, c.cohort,
                       date_sub('{period}', c.cohort,
                                date_trunc('{period}', local_day(e.occurred_at))::DATE) AS k
                FROM events e JOIN cohort c ON c.customer_id = e.customer_id
                WHERE e.type IN {_sql_list(types)}
                  AND local_day(e.occurred_at) >= date_trunc('{period}', CAST(? AS DATE))
                  AND local_day(e.occurred_at) >= c.cohort
                  AND local_day(e.occurred_at) <= ?
            )
            SELECT cohort, k, count(*) FROM activity
            WHERE k < ?
            GROUP BY ALL ORDER BY cohort, k
        """
        params = [start, end, start, as_of, offsets]
    else:
        raise ValueError("measure must be friend or active")
    sizes = dict(
        engine.rows(
            tenant_id,
            f"""
            SELECT date_trunc('{period}', local_day(first_added_at))::DATE, count(*) FROM customers
            WHERE merged_into_id IS NULL AND first_added_at IS NOT NULL
              AND local_day(first_added_at) BETWEEN ? AND ?
            GROUP BY ALL
            """,
            [start, end],
        )
    )
    begun = {cohort: _periods_begun(cohort, as_of, period, offsets) for cohort in sizes}
    retained: dict[date, list[int]] = {cohort: [0] * begun[cohort] for cohort in sizes}
    for cohort, k, count in engine.rows(tenant_id, sql, params):
        if k < begun[cohort]:
            retained[cohort][k] = count
    return [Cohort(cohort, sizes[cohort], retained[cohort]) for cohort in sorted(sizes)]


def _periods_begun(cohort: date, as_of: date, period: str, offsets: int) -> int:
    """How many of the cohort's periods (at most ``offsets``) have begun by ``as_of``."""
    if as_of < cohort:
        return 0
    if period == "day":
        elapsed = (as_of - cohort).days
    elif period == "week":
        elapsed = (as_of - cohort).days // 7
    else:
        elapsed = (as_of.year - cohort.year) * 12 + as_of.month - cohort.month
    return min(offsets, elapsed + 1)


def day_n_retention(cohorts: list[Cohort], days: Sequence[int] = (1, 7, 30)) -> dict[int, float]:
    """D1 / D7 / D30 of day cohorts: retained on day N over the size of the cohorts old
    enough to have a day N (none old enough: the figure is left out)."""
    figures: dict[int, float] = {}
    for n in days:
        eligible = [cohort for cohort in cohorts if len(cohort.retained) > n]
        size = sum(cohort.size for cohort in eligible)
        if size:
            figures[n] = sum(cohort.retained[n] for cohort in eligible) / size
    return figures


# --- activity -----------------------------------------------------------------------------------
def activity(
    engine: Engine,
    tenant_id: int,
    *,
    start: date,
    end: date,
    active_types: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Per local day: DAU (customers active that day), WAU (in the 7 days ending that day),
    MAU (in the 30 days ending that day) and stickiness = DAU / MAU."""
    types = tuple(active_types or default_active_types())
    # Each customer's active days become spans "counted in the w-day window" that never
    # overlap: from an active day to w-1 days later or the day before their next active
    # day. A +1 where a span starts and a -1 after it ends, summed in day order, gives the
    # active customers of every day at once; an ASOF join reads it for each day asked.
    rows = engine.rows(
        tenant_id,
        f"""
        WITH active AS (
            SELECT DISTINCT customer_id, local_day(occurred_at) AS day FROM events
            WHERE type IN {_sql_list(types)} AND customer_id IS NOT NULL
              AND occurred_at >= CAST(CAST(? AS DATE) - 31 AS TIMESTAMPTZ)
              AND occurred_at < CAST(CAST(? AS DATE) + 2 AS TIMESTAMPTZ)
              AND local_day(occurred_at) BETWEEN CAST(? AS DATE) - 29 AND CAST(? AS DATE)
        ),
        nexts AS (
            SELECT day, lead(day) OVER (PARTITION BY customer_id ORDER BY day) AS next_day
            FROM active
        ),
        windows AS (SELECT * FROM (VALUES (1), (7), (30)) windows(w)),
        spans AS (
            SELECT w, day AS first_day,
                   least(day + (w - 1), coalesce(next_day - 1, day + (w - 1))) AS last_day
            FROM nexts CROSS JOIN windows
        ),
        steps AS (
            SELECT w, first_day AS day, 1 AS delta FROM spans
            UNION ALL
            SELECT w, last_day + 1 AS day, -1 AS delta FROM spans
        ),
        running AS (
            SELECT w, day, sum(sum(delta)) OVER (PARTITION BY w ORDER BY day) AS customers
            FROM steps GROUP BY w, day
        ),
        days AS (
            SELECT CAST(generate_series AS DATE) AS day, w
            FROM generate_series(CAST(? AS DATE), CAST(? AS DATE), INTERVAL 1 DAY)
            CROSS JOIN windows
        ),
        counted AS (
            SELECT d.day, d.w, coalesce(r.customers, 0) AS customers
            FROM days d ASOF LEFT JOIN running r ON r.w = d.w AND d.day >= r.day
        )
        SELECT day,
               max(customers) FILTER (WHERE w = 1),
               max(customers) FILTER (WHERE w = 7),
               max(customers) FILTER (WHERE w = 30)
        FROM counted GROUP BY day ORDER BY day
        """,
        [start, end, start, end, start, end],
    )
    return [
        {
            "day": day,
            "dau": dau,
            "wau": wau,
            "mau": mau,
            "stickiness": dau / mau if mau else 0.0,
        }
        for day, dau, wau, mau in rows
    ]


# --- AARRR -------------------------------------------------------------------------------------
MONEY_STATUSES = ("paid", "partially_refunded", "refunded")


def aarrr(
    engine: Engine,
    tenant_id: int,
    *,
    start: date,
    end: date,
    activation_days: int = 7,
    active_types: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The pirate funnel of the customers first added between ``start`` and ``end``:

    * acquisition: how many were added;
    * activation: of those, who did an active event within ``activation_days`` of being added
      (or paid an order in that time);
    * retention: of the activated, who were active again later, up to ``end``;
    * revenue: of the acquired, who paid an order by ``end`` (and how much, net of refunds);
    * referral: who brought someone in (counted once campaigns exist; 0 until then).

    Each stage's ``rate`` is its count over the previous stage's.
    """
    types = tuple(active_types or default_active_types())
    [row] = engine.rows(
        tenant_id,
        f"""
        WITH cohort AS (
            SELECT id, first_added_at FROM customers
            WHERE merged_into_id IS NULL AND first_added_at IS NOT NULL
              AND local_day(first_added_at) BETWEEN ? AND ?
        ),
        acts AS (
            SELECT e.customer_id, e.occurred_at, c.first_added_at FROM events e
            JOIN cohort c ON c.id = e.customer_id
            WHERE e.type IN {_sql_list(types)}
              AND e.occurred_at >= c.first_added_at
              AND local_day(e.occurred_at) <= ?
        ),
        paid AS (
            SELECT o.customer_id, o.paid_at, c.first_added_at,
                   o.paid_fen - o.refunded_fen AS net_fen
            FROM orders o JOIN cohort c ON c.id = o.customer_id
            WHERE o.status IN {_sql_list(MONEY_STATUSES)} AND local_day(o.paid_at) <= ?
        ),
        activated AS (
            SELECT customer_id FROM acts
            WHERE occurred_at < first_added_at + to_days(?)
            UNION
            SELECT customer_id FROM paid WHERE paid_at < first_added_at + to_days(?)
        ),
        retained AS (
            SELECT DISTINCT a.customer_id FROM acts a JOIN activated USING (customer_id)
            WHERE a.occurred_at >= a.first_added_at + to_days(?)
        )
        SELECT (SELECT count(*) FROM cohort),
               (SELECT count(*) FROM activated),
               (SELECT count(*) FROM retained),
               (SELECT count(DISTINCT customer_id) FROM paid),
               (SELECT coalesce(sum(net_fen), 0) FROM paid)
        """,
        [start, end, end, end, activation_days, activation_days, activation_days],
    )
    acquired, activated, retained, paying, revenue_fen = row
    stages = [
        ("acquisition", acquired),
        ("activation", activated),
        ("retention", retained),
        ("revenue", paying),
        ("referral", 0),
    ]
    result = []
    previous = None
    for name, count in stages:
        rate = count / previous if previous else (1.0 if name == "acquisition" else 0.0)
        result.append({"stage": name, "customers": count, "rate": rate})
        previous = count
    return {
        "stages": result,
        "revenue_fen": int(revenue_fen),
        "arppu_fen": int(revenue_fen) // paying if paying else 0,
        "activation_days": activation_days,
    }


# --- funnels -------------------------------------------------------------------------------------
MAX_STEPS = 8


def funnel(
    engine: Engine,
    tenant_id: int,
    *,
    steps: Sequence[str],
    start: date,
    end: date,
    window_days: int = 30,
    by_channel: bool = False,
) -> list[dict[str, Any]]:
    """Ordered steps over events: customers whose first ``steps[0]`` falls between ``start``
    and ``end`` enter; a customer reaches step n at their first ``steps[n]`` after the time
    they reached step n-1, within ``window_days`` of entering. The same type may repeat
    (``order.paid, order.paid``: a first and a second order).

    Per step (and per source channel with ``by_channel``): customers, conversion from the
    previous step and from the first, and the median time from the previous step (seconds).
    """
    if not 2 <= len(steps) <= MAX_STEPS:
        raise ValueError(f"a funnel has 2 to {MAX_STEPS} steps")
    ctes = [
        f"""
        s0 AS (
            SELECT customer_id, min(occurred_at) AS t, min(occurred_at) AS t0 FROM events
            WHERE type IN {_sql_list([steps[0]])} AND customer_id IS NOT NULL
              AND local_day(occurred_at) BETWEEN ? AND ?
            GROUP BY customer_id
        )"""
    ]
    for n, step in enumerate(steps[1:], start=1):
        # the same moment counts as "after" unless the step repeats the previous type (one
        # event must not be a first and a second order at once)
        after = ">" if step == steps[n - 1] else ">="
        ctes.append(
            f"""
        s{n} AS (
            SELECT p.customer_id, min(e.occurred_at) AS t, any_value(p.t0) AS t0,
                   any_value(p.t) AS previous
            FROM s{n - 1} p JOIN events e
              ON e.customer_id = p.customer_id AND e.type IN {_sql_list([step])}
             AND e.occurred_at {after} p.t AND e.occurred_at <= p.t0 + to_days(?)
            GROUP BY p.customer_id
        )"""
        )
    channel = "coalesce(c.source_state, '')" if by_channel else "''"
    selects = [
        f"""
        SELECT 0 AS step, {channel} AS channel, count(*) AS customers, NULL AS median_seconds
        FROM s0 LEFT JOIN customers c ON c.id = s0.customer_id GROUP BY ALL"""
    ]
    for n in range(1, len(steps)):
        selects.append(
            f"""
        SELECT {n}, {channel}, count(*),
               median(epoch(s{n}.t) - epoch(s{n}.previous))
        FROM s{n} LEFT JOIN customers c ON c.id = s{n}.customer_id GROUP BY ALL"""
        )
    sql = "WITH " + ",".join(ctes) + "\n" + "\nUNION ALL".join(selects)
    params: list[Any] = [start, end] + [window_days] * (len(steps) - 1)
    counts: dict[tuple[str, int], tuple[int, float | None]] = {}
    for step, channel_name, customers, median_seconds in engine.rows(tenant_id, sql, params):
        counts[(channel_name, step)] = (customers, median_seconds)
    channels = sorted({key[0] for key in counts}) or [""]
    result = []
    for channel_name in channels:
        first = counts.get((channel_name, 0), (0, None))[0]
        previous = first
        for n, step in enumerate(steps):
            customers, median_seconds = counts.get((channel_name, n), (0, None))
            result.append(
                {
                    "channel": channel_name,
                    "step": n,
                    "type": step,
                    "customers": customers,
                    "rate_from_previous": customers / previous if previous else 0.0,
                    "rate_from_first": customers / first if first else 0.0,
                    "median_seconds_from_previous": (
                        None if median_seconds is None else float(median_seconds)
                    ),
                }
            )
            previous = customers
    return result


# --- value ----------------------------------------------------------------------------------------
def revenue_by_day(engine: Engine, tenant_id: int, start: date, end: date) -> list[dict[str, Any]]:
    """Per local day of payment: orders paid, paying customers, revenue paid and net of the
    refunds those orders had by now (net revenue by order date)."""
    rows = engine.rows(
        tenant_id,
        f"""
        SELECT local_day(paid_at) AS day, count(*), count(DISTINCT customer_id),
               sum(paid_fen), sum(paid_fen - refunded_fen)
        FROM orders
        WHERE status IN {_sql_list(MONEY_STATUSES)} AND local_day(paid_at) BETWEEN ? AND ?
        GROUP BY ALL ORDER BY day
        """,
        [start, end],
    )
    return [
        {"day": day, "orders": n, "customers": buyers, "paid_fen": int(paid), "net_fen": int(net)}
        for day, n, buyers, paid, net in rows
    ]


def value_by_channel(
    engine: Engine, tenant_id: int, *, start: date, end: date
) -> list[dict[str, Any]]:
    """For the customers first added between ``start`` and ``end``, per source channel: how
    many, how many bought, their net revenue to date, historical LTV (net revenue per
    acquired customer), repurchase rate (buyers with 2+ orders over buyers)."""
    rows = engine.rows(
        tenant_id,
        f"""
        WITH cohort AS (
            SELECT id, coalesce(source_state, '') AS channel FROM customers
            WHERE merged_into_id IS NULL AND first_added_at IS NOT NULL
              AND local_day(first_added_at) BETWEEN ? AND ?
        ),
        spend AS (
            SELECT customer_id, count(*) FILTER (WHERE status <> 'refunded') AS orders,
                   sum(paid_fen - refunded_fen) AS net_fen
            FROM orders WHERE status IN {_sql_list(MONEY_STATUSES)}
            GROUP BY customer_id
        )
        SELECT c.channel, count(*),
               count(s.customer_id) FILTER (WHERE s.orders > 0),
               count(s.customer_id) FILTER (WHERE s.orders > 1),
               coalesce(sum(s.net_fen), 0)
        FROM cohort c LEFT JOIN spend s ON s.customer_id = c.id
        GROUP BY ALL ORDER BY 2 DESC, 1
        """,
        [start, end],
    )
    return [
        {
            "channel": channel,
            "customers": customers,
            "buyers": buyers,
            "repeat_buyers": repeat,
            "net_fen": int(net),
            "ltv_fen": int(net) // customers if customers else 0,
            "repurchase_rate": repeat / buyers if buyers else 0.0,
        }
        for channel, customers, buyers, repeat, net in rows
    ]


def _sql_list(values: Sequence[str]) -> str:
    """A literal list of event types for IN (...): checked names only (no quotes inside)."""
    cleaned = []
    for value in values:
        if not value or "'" in value or len(value) > 80:
            raise ValueError(f"not an event type: {value!r}")
        cleaned.append(f"'{value}'")
    return "(" + ", ".join(cleaned) + ")" if cleaned else "('')"
