"""Benchmark: the console's customer 360 page and filtered customer list over a big CRM.

Issue targets (1 000 000 customers, 3 000 000 tag links, 1 500 000 friendships, 10 000 000
events): the customer 360 page renders in under 200 ms and the list page with filters in
under 300 ms, on SQLite and on PostgreSQL.

What runs, for each database (a fresh SQLite file; PostgreSQL when ``SIYU_DATABASE_URL`` is
set), in a child process: migrate, bulk-load ``benchmarks/crm_dataset.py`` (× ``--scale``;
``--keep DIR`` shares the kept data set of ``benchmarks/segments.py``), then through Django's
test client, logged in as an administrator (whole tenant) and as a sales staff (own
customers), every request a full render through the middleware stack:

* baseline: ``/ping`` (same middleware, no database) — the floor the ratios are against;
* the 360 page of a typical customer and of the customer with the most events;
* the customer list, first page, unfiltered and filtered by lifecycle stage + a popular tag
  + a source channel prefix;
* the same filtered list for the sales staff.

Median and p95 of ``--runs`` requests after ``--warmup``. Not a test: it prints figures.
Run: ``.venv/bin/python benchmarks/crm_pages.py --scale 0.01`` (quick) or ``--scale 1``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from segments import kept_data, postgres_database, run_child, summary, tenant_roles  # noqa: E402

TARGETS_MS = {"360": 200, "list": 300}


def measure(scale: float, runs: int, warmup: int) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "src"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "siyu.settings")
    import django

    django.setup()
    from crm_dataset import load
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count
    from django.test import Client

    from siyu.core.models import Event
    from siyu.customers.models import Customer
    from siyu.tenancy.models import Staff, Tenant
    from siyu.testing.factories import StaffFactory

    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)
    data = kept_data(scale)
    if data is None:
        data = load(scale, report=lambda line: print(line, file=sys.stderr, flush=True))
        data["scale"] = scale
        Tenant.objects.filter(pk=data["tenant_id"]).update(settings={"bench": data})
    tenant = Tenant.objects.get(pk=data["tenant_id"])
    run = uuid.uuid4().hex[:8]  # a kept data set is measured again: new logins each run
    admin = StaffFactory(tenant=tenant, roles=["admin"], login=True, wecom_userid=f"admin-{run}")
    sales_staff = Staff.objects.for_tenant(tenant).get(pk=data["staff_ids"][0])
    sales_staff.roles.set(tenant_roles(tenant, "sales"))
    sales_login = StaffFactory(
        tenant=tenant, roles=["sales"], login=True, wecom_userid=f"sales-{run}"
    )
    # the sales login acts for the bulk-loaded staff who owns customers
    sales_staff.user, sales_login.user = sales_login.user, None
    sales_login.save(update_fields=["user"])
    sales_staff.save(update_fields=["user"])

    as_admin, as_sales = Client(), Client()
    as_admin.force_login(admin.user)
    as_sales.force_login(sales_staff.user)
    customers = Customer.objects.for_tenant(tenant)
    typical = customers.order_by("pk")[customers.count() // 2]
    busiest_id = (
        Event.objects.for_tenant(tenant)
        .exclude(customer_id=None)
        .values("customer_id")
        .annotate(events=Count("id"))
        .order_by("-events")
        .values_list("customer_id", flat=True)[:1][0]
    )
    base = "/console/customers/customer/"
    filters = f"?lifecycle_stage__exact=active&tag={data['popular_tags'][0]}&channel=ch_wx"
    pages = {
        "ping": (as_admin, "/ping"),
        "360 typical": (as_admin, f"{base}{typical.pk}/change/"),
        "360 busiest": (as_admin, f"{base}{busiest_id}/change/"),
        "list": (as_admin, base),
        "list filtered": (as_admin, base + filters),
        "list filtered, sales": (as_sales, base + filters),
    }
    figures = {}
    for label, (client, url) in pages.items():
        figures[label] = timed_get(client, url, runs, warmup)
    return {
        "database": connection.vendor,
        "scale": scale,
        "counts": data["counts"],
        "busiest_events": Event.objects.for_tenant(tenant).filter(customer_id=busiest_id).count(),
        "figures": figures,
    }


def timed_get(client: Any, url: str, runs: int, warmup: int) -> dict[str, float]:
    for _run in range(warmup):
        response = client.get(url)
        if response.status_code != 200:
            raise SystemExit(f"GET {url} answered {response.status_code}")
    seconds = []
    for _run in range(runs):
        started = time.perf_counter()
        client.get(url)
        seconds.append(time.perf_counter() - started)
    return summary(seconds)


def report(result: dict[str, Any]) -> None:
    counts = result["counts"]
    print(
        f"\n== {result['database']} (scale {result['scale']}): {counts['customers']:,} "
        f"customers, {counts['events']:,} events; the busiest customer has "
        f"{result['busiest_events']:,} events =="
    )
    ping = result["figures"]["ping"]["median"]
    print(f"{'page':<24}{'median':>10}{'p95':>10}{'× /ping':>10}  target")
    for label, figure in result["figures"].items():
        kind = "360" if label.startswith("360") else "list" if label.startswith("list") else ""
        target = TARGETS_MS.get(kind)
        verdict = ""
        if target:
            verdict = f"< {target} ms: {'met' if figure['median'] * 1000 < target else 'NOT met'}"
        print(
            f"{label:<24}{figure['median'] * 1000:>8.0f}ms{figure['p95'] * 1000:>8.0f}ms"
            f"{figure['median'] / ping:>9.0f}×  {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="0.01 for a quick run")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--postgres-only", action="store_true")
    parser.add_argument("--keep", metavar="DIR", help="keep / reuse the data sets (as segments.py)")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # the child: one database
        print(json.dumps(measure(args.scale, args.runs, args.warmup)))
        return
    print(
        f"Customer pages benchmark: scale {args.scale} (1 = 1 M customers, 10 M events), "
        f"{args.runs} requests after {args.warmup} warm-up; {os.cpu_count()} CPUs"
    )
    args.without_event_index = False  # run_child (shared with segments.py) passes it on
    if not args.postgres_only:
        report(run_child(args, None, script=__file__))
    database_url = os.environ.get("SIYU_DATABASE_URL", "")
    if args.sqlite_only:
        return
    if database_url.startswith(("postgres://", "postgresql://")):
        url, drop = postgres_database(database_url, keep=bool(args.keep))
        try:
            report(run_child(args, url, script=__file__))
        finally:
            drop()
    else:
        print("\n(PostgreSQL: set SIYU_DATABASE_URL=postgres://… to measure it too)")


if __name__ == "__main__":
    main()
