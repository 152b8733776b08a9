"""Benchmark: a segment preview count over a big CRM, compiled vs. hand-written SQL.

Issue targets: the preview count of a 5-condition rule (tags + attribute + event window +
channel + stage) over 1 000 000 customers, 3 000 000 tag links, 1 500 000 friendships and
10 000 000 events has a median under 1 s on PostgreSQL and under 2 s on SQLite, and the
compiled rule is within 1.3× of the same rule written by hand in SQL, measured in the same run.

What runs, for each database — a fresh SQLite file, and PostgreSQL when ``SIYU_DATABASE_URL``
is set (a throwaway database is created on that server and dropped afterwards) — in a child
process (Django's settings are per process):

1. migrate, then bulk-load the data set of ``benchmarks/crm_dataset.py`` (× ``--scale``) and
   refresh the planner's statistics (ANALYZE);
2. the rule::

       tags has any of [the two most popular tags]
       AND city in [上海, 北京, 杭州]
       AND did message.received at least 2 times in the last 30 days
       AND source channel starts with "ch_wx"
       AND lifecycle stage is not churned

3. **compiled**: what a preview does for a whole-tenant operator — validate the rule, compile
   it (``siyu.segments.compiler``) and count (one SQL statement); **hand-written**: the same
   count as one SQL statement written by hand; both must give the same number. Runs
   alternate (compiled, hand-written, …) after warm-up; median and p95 of each, and the ratio
   of the medians;
4. the same preview for a sales staff (own customers only), for information;
5. with ``--without-event-index``: again without the core index ``event_type_time_customer``
   (``core_event (tenant_id, type, occurred_at, customer_id)``, which makes the event
   window's subquery index-only), to see what it buys; it is rebuilt afterwards.

Run: ``.venv/bin/python benchmarks/segments.py --scale 0.01`` for a quick run;
``--scale 1`` for the issue's figures (loading takes minutes). Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

CITIES = ["上海", "北京", "杭州"]
CHANNEL_PREFIX = "ch_wx"
EVENT = {"type": "message.received", "count": 2, "within_days": 30}
EVENT_INDEX = "event_type_time_customer"  # siyu.core's migration 0003
KEPT_DATABASE = "siyu_bench_segments_kept"

HAND_WRITTEN = """
SELECT COUNT(*) FROM customers_customer c
WHERE c.tenant_id = %s AND c.merged_into_id IS NULL
  AND c.city IN (%s, %s, %s)
  AND c.source_state LIKE %s ESCAPE '\\'
  AND c.lifecycle_stage <> %s
  AND c.id IN (SELECT t.customer_id FROM customers_customertag t
               WHERE t.tenant_id = %s AND t.tag_id IN (%s, %s))
  AND c.id IN (SELECT e.customer_id FROM core_event e
               WHERE e.tenant_id = %s AND e.type = %s AND e.occurred_at >= %s
                 AND e.customer_id IS NOT NULL
               GROUP BY e.customer_id HAVING COUNT(*) >= %s)
"""


def the_rule(tag_ids: list[int]) -> dict[str, Any]:
    return {
        "op": "and",
        "conditions": [
            {"field": "tags", "operator": "has_any", "value": tag_ids[:2]},
            {"field": "city", "operator": "in", "value": CITIES},
            {"field": "event", "operator": "at_least", "value": EVENT},
            {"field": "source_state", "operator": "starts_with", "value": CHANNEL_PREFIX},
            {"field": "lifecycle_stage", "operator": "ne", "value": "churned"},
        ],
    }


def timings(function: Any, runs: int) -> list[float]:
    seconds = []
    for _run in range(runs):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return seconds


def summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median": statistics.median(ordered), "p95": p95, "min": ordered[0]}


def compare(compiled: Any, hand: Any, runs: int, warmup: int) -> dict[str, Any]:
    for _run in range(warmup):
        compiled(), hand()
    compiled_seconds, hand_seconds = [], []
    for _run in range(runs):  # alternate, so that both see the same cache and load
        compiled_seconds += timings(compiled, 1)
        hand_seconds += timings(hand, 1)
    result = {"compiled": summary(compiled_seconds), "hand": summary(hand_seconds)}
    result["ratio"] = result["compiled"]["median"] / result["hand"]["median"]
    return result


# --- one database: runs in a child process -------------------------------------------------------
def measure(scale: float, runs: int, warmup: int, without_index: bool) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "src"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "siyu.settings")
    import django

    django.setup()
    from crm_dataset import load
    from django.core.management import call_command
    from django.db import connection

    from siyu.segments import services
    from siyu.tenancy.models import Staff, Tenant
    from siyu.tenancy.services import actor_for_staff, system_actor

    call_command("migrate", verbosity=0)
    data = kept_data(scale)
    if data is None:
        data = load(scale, report=lambda line: print(line, file=sys.stderr, flush=True))
        data["scale"] = scale
        Tenant.objects.filter(pk=data["tenant_id"]).update(settings={"bench": data})
    tenant = Tenant.objects.get(pk=data["tenant_id"])
    now = datetime.fromisoformat(data["now"])
    rules = the_rule(data["popular_tags"])
    boss = system_actor(tenant)
    sales_staff = Staff.objects.for_tenant(tenant).get(pk=data["staff_ids"][0])
    sales_staff.roles.set(tenant_roles(tenant, "sales"))
    sales = actor_for_staff(sales_staff)

    def compiled() -> int:
        # a preview: validate + compile + one counting statement
        return services.preview(boss, rules, sample_size=0).count

    cutoff = connection.ops.adapt_datetimefield_value(now - timedelta(days=EVENT["within_days"]))
    tag_a, tag_b = data["popular_tags"][:2]
    params = [
        tenant.pk,
        *CITIES,
        CHANNEL_PREFIX.replace("_", "\\_") + "%",
        "churned",
        tenant.pk,
        tag_a,
        tag_b,
        tenant.pk,
        EVENT["type"],
        cutoff,
        EVENT["count"],
    ]

    def hand() -> int:
        with connection.cursor() as cursor:
            cursor.execute(HAND_WRITTEN, params)
            return cursor.fetchone()[0]

    # the preview counts from the real clock: pin it to the load's "now" for equal answers
    from django.utils import timezone

    real_now = timezone.now
    timezone.now = lambda: now
    try:
        answers = (compiled(), hand())
        if answers[0] != answers[1]:
            raise SystemExit(f"compiled and hand-written counts differ: {answers}")
        result = {
            "database": connection.vendor,
            "scale": scale,
            "counts": data["counts"],
            "load_seconds": data["load_seconds"],
            "matches": answers[0],
            "plain": compare(compiled, hand, runs, warmup),
            "sales_preview": summary(
                timings(lambda: services.preview(sales, rules, sample_size=10), max(3, runs // 3))
            ),
            "sql": str(
                services.matching_customers(tenant, rules, now=now).order_by().values("pk").query
            )[:4000],
        }
        if without_index:
            result["without_event_index"] = measure_without_index(compiled, hand, runs, warmup)
    finally:
        timezone.now = real_now
    return result


def measure_without_index(compiled: Any, hand: Any, runs: int, warmup: int) -> dict[str, Any]:
    """The comparison without the event index, which is then built again (timed)."""
    from django.db import connection

    def analyze(cursor: Any) -> None:
        cursor.execute("ANALYZE core_event" if connection.vendor == "postgresql" else "ANALYZE")

    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX {EVENT_INDEX}")
        analyze(cursor)
    try:
        figures = compare(compiled, hand, runs, warmup)
    finally:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE INDEX {EVENT_INDEX} ON core_event "
                "(tenant_id, type, occurred_at, customer_id)"
            )
            analyze(cursor)
        figures["index_seconds"] = time.perf_counter() - started
    return figures


def kept_data(scale: float) -> dict[str, Any] | None:
    """The data set of an earlier run at this scale, when the database was kept (--keep)."""
    from siyu.tenancy.models import Tenant

    tenant = Tenant.objects.filter(
        slug__startswith="bench-crm-", settings__bench__scale=scale
    ).first()
    if tenant is None:
        return None
    print(f"reusing the data set loaded {tenant.created_at:%Y-%m-%d %H:%M}", file=sys.stderr)
    return tenant.settings["bench"]


def tenant_roles(tenant: Any, code: str) -> Any:
    from siyu.tenancy.models import Role

    return Role.objects.for_tenant(tenant).filter(code=code)


def run_child(
    args: argparse.Namespace, database_url: str | None, *, script: str = __file__
) -> dict[str, Any]:
    """Run ``script --measure`` on one database (also used by ``crm_pages.py``, which shares
    the kept data sets)."""
    if args.keep:
        data_dir = Path(args.keep).resolve() / "sqlite"
        data_dir.mkdir(parents=True, exist_ok=True)
        return _run_child(args, database_url, str(data_dir), script)
    with tempfile.TemporaryDirectory(prefix="siyu-bench-segments-") as data_dir:
        return _run_child(args, database_url, data_dir, script)


def _run_child(
    args: argparse.Namespace, database_url: str | None, data_dir: str, script: str
) -> dict[str, Any]:
    env = {**os.environ, "SIYU_DATA_DIR": data_dir}
    env.pop("SIYU_DATABASE_URL", None)
    if database_url:
        env["SIYU_DATABASE_URL"] = database_url
    command = [
        sys.executable,
        script,
        "--measure",
        "--scale",
        str(args.scale),
        "--runs",
        str(args.runs),
        "--warmup",
        str(args.warmup),
    ]
    if args.without_event_index:
        command.append("--without-event-index")
    result = subprocess.run(
        command, env=env, cwd=REPO, stdout=subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"the measurement on {database_url or 'SQLite'} failed")
    return json.loads(result.stdout.strip().splitlines()[-1])


def postgres_database(url: str, *, keep: bool = False) -> tuple[str, Any]:
    """A throwaway database on the server of ``url``; returns (its URL, a drop function).
    With ``keep``, a database kept between runs (created once, never dropped)."""
    import psycopg
    from psycopg import sql

    base, _, _name = url.rpartition("/")
    admin_url = f"{base}/postgres"
    if keep:
        name = KEPT_DATABASE
        with psycopg.connect(admin_url, autocommit=True) as connection:
            found = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [name]
            ).fetchone()
            if not found:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return f"{base}/{name}", lambda: None
    name = f"siyu_bench_segments_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop() -> None:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    return f"{base}/{name}", drop


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def report(result: dict[str, Any]) -> None:
    database = result["database"]
    target = 1.0 if database == "postgresql" else 2.0
    counts = result["counts"]
    print(f"\n== {database} (scale {result['scale']}) ==")
    print(
        f"data: {counts['customers']:,} customers, {counts['customer_tags']:,} tag links, "
        f"{counts['follows']:,} friendships, {counts['events']:,} events; loaded in "
        + ", ".join(f"{k} {v:.0f} s" for k, v in result["load_seconds"].items())
    )
    print(f"rule matches {result['matches']:,} customers")

    def line(label: str, figures: dict[str, Any]) -> None:
        compiled, hand = figures["compiled"], figures["hand"]
        print(
            f"{label}: compiled median {compiled['median'] * 1000:.0f} ms, "
            f"p95 {compiled['p95'] * 1000:.0f} ms | hand-written median "
            f"{hand['median'] * 1000:.0f} ms, p95 {hand['p95'] * 1000:.0f} ms | ratio "
            f"{figures['ratio']:.2f} (target < 1.3: {verdict(figures['ratio'] < 1.3)}); "
            f"median < {target:.0f} s: {verdict(compiled['median'] < target)}"
        )

    line("preview count", result["plain"])
    sales = result["sales_preview"]
    print(
        f"the same preview for one sales staff (own customers, with a 10-row sample): "
        f"median {sales['median'] * 1000:.0f} ms, p95 {sales['p95'] * 1000:.0f} ms"
    )
    if "without_event_index" in result:
        figures = result["without_event_index"]
        line("without the event index", figures)
        print(f"(the event index took {figures['index_seconds']:.0f} s to build again)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="0.01 for a quick run")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--without-event-index", action="store_true", help="also measure without it"
    )
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--postgres-only", action="store_true")
    parser.add_argument("--show-sql", action="store_true", help="print the compiled SQL")
    parser.add_argument(
        "--keep",
        metavar="DIR",
        help="keep the data sets (SQLite under DIR, PostgreSQL database "
        f"{KEPT_DATABASE}) and reuse them on the next run at the same scale",
    )
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # the child: one database
        print(json.dumps(measure(args.scale, args.runs, args.warmup, args.without_event_index)))
        return
    print(
        f"Segment preview benchmark: scale {args.scale} (1 = 1 M customers, 10 M events), "
        f"{args.runs} runs after {args.warmup} warm-up; {os.cpu_count()} CPUs"
    )
    results = []
    if not args.postgres_only:
        results.append(run_child(args, None))
        report(results[-1])
    database_url = os.environ.get("SIYU_DATABASE_URL", "")
    if args.sqlite_only:
        pass
    elif database_url.startswith(("postgres://", "postgresql://")):
        url, drop = postgres_database(database_url, keep=bool(args.keep))
        try:
            results.append(run_child(args, url))
            report(results[-1])
        finally:
            drop()
    else:
        print("\n(PostgreSQL: set SIYU_DATABASE_URL=postgres://… to measure it too)")
    if args.show_sql:
        for result in results:
            print(f"\n-- compiled SQL on {result['database']}:\n{result['sql']}")


if __name__ == "__main__":
    main()
