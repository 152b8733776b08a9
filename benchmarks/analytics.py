"""Benchmark: the analytics engine (DuckDB over the Parquet copy) against plain pandas.

Issue targets (1 000 000 customers, 20 000 000 events, 2 000 000 orders; this 2-core
machine): each metric under 1 s, beside the same result computed by a plain pandas
implementation in the same run (the ratio is the figure); and the time to bring the
columnar copy up to date after 100 000 new events.

What runs, in a child process on one SQLite database (``--keep DIR`` reuses the data set of
``benchmarks/segments.py`` / ``crm_pages.py``: 1 M customers and 10 M events at scale 1):

1. the full copy (``siyu.analytics.sync.rebuild``): events/s;
2. each metric, median of ``--runs`` after a warm-up: DuckDB over the copy, and the same
   numbers from pandas over frames already in memory (loading them is not counted: the
   baseline is pandas' computation, not its I/O); both must agree;
3. 100 000 new events inserted (bulk), then one ``sync``: seconds and events/s; the events
   are removed again afterwards so that a kept data set stays as it was.

Metrics measured: new customers per day and channel over 90 days; 12-week retention
(active: did an interaction event); DAU/WAU/MAU and stickiness for 90 days.
Not a test: it prints figures. Run:
``.venv/bin/python benchmarks/analytics.py --scale 0.01`` or ``--scale 1 --keep DIR``.
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
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
TARGET_SECONDS = 1.0
NEW_EVENTS = 100_000


def median_seconds(function: Any, runs: int, warmup: int) -> tuple[float, Any]:
    result = None
    for _ in range(warmup):
        result = function()
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def measure(scale: float, runs: int, warmup: int) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "src"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "siyu.settings")
    import django

    django.setup()
    from crm_dataset import load
    from django.core.management import call_command
    from django.utils import timezone
    from segments import kept_data

    from siyu.analytics import metrics
    from siyu.analytics.engine import DuckDBEngine
    from siyu.analytics.store import ColumnarStore
    from siyu.analytics.sync import rebuild, sync
    from siyu.tenancy.models import Tenant

    call_command("migrate", verbosity=0)
    data = kept_data(scale)
    if data is None:
        data = load(scale, report=lambda line: print(line, file=sys.stderr, flush=True))
        data["scale"] = scale
        Tenant.objects.filter(pk=data["tenant_id"]).update(settings={"bench": data})
    tenant_id = data["tenant_id"]
    store = ColumnarStore()
    reused = (store.root / "state.json").exists()
    log("bringing the kept copy up to date …" if reused else "full copy of the database …")
    started = time.perf_counter()
    copied = sync(store) if reused else rebuild(store)
    full_seconds = time.perf_counter() - started
    engine = DuckDBEngine(store)

    end = timezone.localdate()
    start90 = end - timedelta(days=89)
    start12w = end - timedelta(weeks=12)
    types = ("message.received", "message.sent", "material.opened", "order.paid")
    frames = pandas_frames(engine, tenant_id)

    cases = {
        "new customers by day × channel, 90 days": (
            lambda: metrics.new_customers(engine, tenant_id, start90, end),
            lambda: pandas_new_customers(frames, start90, end),
            lambda rows: {(r["day"], r["channel"]): r["customers"] for r in rows},
        ),
        "retention, 12 weekly cohorts (active)": (
            lambda: metrics.retention(
                engine,
                tenant_id,
                start=start12w,
                end=end,
                as_of=end,
                period="week",
                measure="active",
                active_types=types,
                offsets=12,
            ),
            lambda: pandas_retention(frames, start12w, end, types),
            lambda cohorts: {c.start: (c.size, c.retained) for c in cohorts},
        ),
        "DAU / WAU / MAU, 90 days": (
            lambda: metrics.activity(engine, tenant_id, start=start90, end=end, active_types=types),
            lambda: pandas_activity(frames, start90, end, types),
            lambda rows: {r["day"]: (r["dau"], r["wau"], r["mau"]) for r in rows},
        ),
    }
    figures = {}
    for label, (duck, panda, normalise) in cases.items():
        log(f"{label} …")
        duck_seconds, duck_result = median_seconds(duck, runs, warmup)
        panda_seconds, panda_result = median_seconds(panda, max(1, runs // 2), 0)
        figures[label] = {
            "duckdb": duck_seconds,
            "pandas": panda_seconds,
            "agree": normalise(duck_result) == panda_result,
        }

    log(f"{NEW_EVENTS:,} new events, then one sync …")
    incremental = new_events_then_sync(tenant_id, sync, store)
    return {
        "reused": reused,
        "scale": scale,
        "counts": data["counts"],
        "copied_events": copied.events,
        "full_copy_seconds": full_seconds,
        "figures": figures,
        "incremental": incremental,
    }


# --- the pandas baseline ---------------------------------------------------------------------
def pandas_frames(engine: Any, tenant_id: int) -> dict[str, Any]:
    """The tenant's customers and events as pandas frames, local days already computed."""
    with engine.connection(tenant_id) as connection:
        customers = connection.execute(
            "SELECT id, first_added_at::DATE AS day, coalesce(source_state, '') AS channel "
            "FROM customers WHERE merged_into_id IS NULL AND first_added_at IS NOT NULL"
        ).df()
        events = connection.execute(
            "SELECT customer_id, type, occurred_at::DATE AS day FROM events "
            "WHERE customer_id IS NOT NULL"
        ).df()
    return {"customers": customers, "events": events}


def _dates(series: Any) -> Any:
    import pandas as pd

    return pd.to_datetime(series).dt.date


def pandas_new_customers(frames: dict[str, Any], start: Any, end: Any) -> dict:
    customers = frames["customers"]
    days = _dates(customers["day"])
    chosen = customers[(days >= start) & (days <= end)].assign(day=days)
    counts = chosen.groupby(["day", "channel"]).size()
    return {key: int(value) for key, value in counts.items()}


def pandas_retention(frames: dict[str, Any], start: Any, end: Any, types: tuple) -> dict:
    import pandas as pd

    customers = frames["customers"].assign(day=lambda f: pd.to_datetime(f["day"]))
    customers = customers[
        (customers["day"] >= pd.Timestamp(start)) & (customers["day"] <= pd.Timestamp(end))
    ]
    customers = customers.assign(cohort=customers["day"].dt.to_period("W-SUN").dt.start_time)
    events = frames["events"]
    events = events[events["type"].isin(types)][["customer_id", "day"]].drop_duplicates()
    events = events.assign(day=pd.to_datetime(events["day"]))
    joined = customers[["id", "cohort"]].merge(events, left_on="id", right_on="customer_id")
    joined = joined[joined["day"] >= joined["cohort"]]
    joined = joined.assign(k=(joined["day"] - joined["cohort"]).dt.days // 7)
    as_of = pd.Timestamp(end)
    result = {}
    for cohort, group in customers.groupby("cohort"):
        offsets = min(12, int((as_of - cohort).days // 7) + 1)
        mine = joined[(joined["cohort"] == cohort) & (joined["k"] < offsets)]
        retained = mine.groupby("k")["id"].nunique()
        result[cohort.date()] = (len(group), [int(retained.get(k, 0)) for k in range(offsets)])
    return result


def pandas_activity(frames: dict[str, Any], start: Any, end: Any, types: tuple) -> dict:
    import pandas as pd

    events = frames["events"]
    events = events[events["type"].isin(types)][["customer_id", "day"]].drop_duplicates()
    events = events.assign(day=pd.to_datetime(events["day"]))
    result = {}
    for day in pd.date_range(start, end):
        window = events[(events["day"] > day - pd.Timedelta(days=30)) & (events["day"] <= day)]
        in_week = window[window["day"] > day - pd.Timedelta(days=7)]
        result[day.date()] = (
            int(window[window["day"] == day]["customer_id"].nunique()),
            int(in_week["customer_id"].nunique()),
            int(window["customer_id"].nunique()),
        )
    return result


# --- incremental ---------------------------------------------------------------------------------
def new_events_then_sync(tenant_id: int, sync: Any, store: Any) -> dict[str, float]:
    from django.db import connection, transaction
    from django.utils import timezone

    from siyu.core.models import Event
    from siyu.customers.models import Customer

    customer_ids = list(
        Customer.objects.for_tenant(tenant_id).order_by("id").values_list("id", flat=True)[:50_000]
    )
    now = timezone.now()
    marker = f"bench-incremental-{int(time.time())}"
    rows = [
        Event(
            tenant_id=tenant_id,
            type="message.received",
            occurred_at=now - timedelta(seconds=n),
            customer_id=customer_ids[n % len(customer_ids)],
            idempotency_key=f"{marker}:{n}",
            source=marker,
        )
        for n in range(NEW_EVENTS)
    ]
    with transaction.atomic():
        Event.objects.bulk_create(rows, batch_size=5_000)
    started = time.perf_counter()
    report = sync(store)
    seconds = time.perf_counter() - started
    with connection.cursor() as cursor:  # leave a kept data set as it was
        cursor.execute("DELETE FROM core_event WHERE source = %s", [marker])
    return {"events": report.events, "customers": report.customers, "seconds": seconds}


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- the parent ----------------------------------------------------------------------------------
def report(result: dict[str, Any]) -> None:
    counts = result["counts"]
    print(
        f"\n== SQLite → Parquet → DuckDB (scale {result['scale']}): {counts['customers']:,} "
        f"customers, {counts['events']:,} events =="
    )
    full = result["full_copy_seconds"]
    if result["reused"]:
        print(f"kept copy brought up to date in {full:.1f} s (full copy: run without --keep)")
    else:
        print(
            f"full copy: {result['copied_events']:,} events in {full:.1f} s "
            f"({result['copied_events'] / full:,.0f} events/s)"
        )
    print(f"{'metric':<44}{'DuckDB':>10}{'pandas':>10}{'ratio':>8}  agree  target")
    for label, figure in result["figures"].items():
        met = "met" if figure["duckdb"] < TARGET_SECONDS else "NOT met"
        print(
            f"{label:<44}{figure['duckdb'] * 1000:>8.0f}ms{figure['pandas'] * 1000:>8.0f}ms"
            f"{figure['duckdb'] / figure['pandas']:>8.2f}  {'yes' if figure['agree'] else 'NO':>5}"
            f"  < 1 s: {met}"
        )
    incremental = result["incremental"]
    print(
        f"sync after {NEW_EVENTS:,} new events: {incremental['seconds']:.2f} s "
        f"({incremental['events']:,} events, {incremental['customers']:,} customer rows)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--keep", metavar="DIR", help="keep / reuse the data set and its copy (as segments.py)"
    )
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.scale, args.runs, args.warmup), default=str))
        return
    print(f"Analytics benchmark: scale {args.scale}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="siyu-bench-analytics-") as scratch:
        data_dir = Path(args.keep).resolve() / "sqlite" if args.keep else Path(scratch)
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "SIYU_DATA_DIR": str(data_dir)}
        env.pop("SIYU_DATABASE_URL", None)
        analytics = Path(args.keep).resolve() / "analytics" if args.keep else Path(scratch)
        env["SIYU_ANALYTICS_DIR"] = str(analytics / "analytics" if not args.keep else analytics)
        command = [sys.executable, __file__, "--measure", "--scale", str(args.scale)]
        command += ["--runs", str(args.runs), "--warmup", str(args.warmup)]
        result = subprocess.run(command, env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)
        if result.returncode != 0:
            raise SystemExit("the measurement failed")
        report(json.loads(result.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    main()
