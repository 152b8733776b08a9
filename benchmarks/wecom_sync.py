"""Benchmark: a full WeCom sync of 10 000 customers × 20 staff from the emulator.

Issue target: a full sync of 10 000 customers × 20 staff from the emulator in under 60 s.

What runs, for real:

1. the WeCom emulator (``EmulatorServer``: uvicorn in its own process, so that its CPU does
   not compete with the sync for the GIL — WeCom is another machine in production);
2. seeding through its control API: a corp with 4 departments, 20 staff, 2 tag groups of 5
   tags, 10 000 customers each followed by 1 or 2 staff (about 15 000 friendships, one in
   ten tagged) — in batches through ``POST /control/bulk/customers`` — and 20 groups of 31
   members;
3. for each database — a fresh SQLite file, and PostgreSQL when ``SIYU_DATABASE_URL`` is set
   (a throwaway database is created on that server and dropped afterwards) — a child
   process that migrates it, creates the tenant and measures:

   * **floor**: the raw time to page through ``batch/get_by_user`` for every staff (100
     userids a call, 100 items a page) without writing anything: no sync can be faster;
   * **read floor**: every WeCom read the sync makes (directory, tags, customers, group list
     and details), still without writing;
   * **full sync**: ``sync_tenant(full=True)`` into the empty database: wall time,
     customers/s, friendships/s, WeCom calls, and its ratio to both floors;
   * **second run**: ``sync_tenant(full=False)`` with nothing changed (it reads everything
     again and writes nothing).

Run: ``.venv/bin/python benchmarks/wecom_sync.py`` (``--customers``, ``--staff`` to scale;
``--emulator thread`` to run the emulator in this process). Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CORP_ID = "wwbenchsync000001"
CONTACT_SECRET = "bench-contact-secret"
AGENT_SECRET = "bench-agent-secret"
AGENT_ID = 1000002
AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
SEED_BATCH = 2000


# --- the emulator ---------------------------------------------------------------------------
def _serve(queue: Any, stop: Any) -> None:
    from siyu.wecom.emulator import EmulatorServer, World

    server = EmulatorServer(World(seed="bench-sync"), callback_delivery=False).start()
    queue.put(server.base_url)
    stop.wait()
    server.stop()


class Emulator:
    """``EmulatorServer`` in a child process (default) or a thread of this one."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.server = None
        self.process = None

    def __enter__(self) -> str:
        if self.mode == "thread":
            from siyu.wecom.emulator import EmulatorServer, World

            self.server = EmulatorServer(World(seed="bench-sync"), callback_delivery=False)
            return self.server.start().base_url
        context = multiprocessing.get_context("spawn")
        queue, self.stop = context.Queue(), context.Event()
        self.process = context.Process(target=_serve, args=(queue, self.stop), daemon=True)
        self.process.start()
        return queue.get(timeout=30)

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.stop()
        if self.process is not None:
            self.stop.set()
            self.process.join(timeout=10)
            if self.process.is_alive():
                self.process.terminate()


def seed(base_url: str, customers: int, staff: int, groups: int) -> dict[str, int]:
    """The corp, through the control API; returns what was created."""
    from siyu.wecom.emulator import EmulatorControl

    rng = random.Random(20261123)
    control = EmulatorControl(base_url, corp_id=CORP_ID, timeout=300)
    departments = [{"id": 2 + n, "name": f"门店{n + 1}", "parentid": 1} for n in range(4)]
    members = [
        {"userid": f"s{n:03d}", "name": f"导购{n:03d}", "department": [2 + n % 4]}
        for n in range(staff)
    ]
    control.setup_corp(
        CORP_ID,
        name="Bench",
        contact_secret=CONTACT_SECRET,
        agent_secret=AGENT_SECRET,
        agent_id=AGENT_ID,
        token="benchtoken",
        encoding_aes_key=AES_KEY,
        departments=departments,
        staff=members,
    )
    tag_ids: list[str] = []
    for group_name in ("客户等级", "兴趣"):
        names = [f"{group_name}{n}" for n in range(5)]
        tag_ids += control.tag_change("create", group_name=group_name, tags=names)["tag_ids"]
    now = int(time.time())
    follows = 0
    specs: list[dict[str, Any]] = []
    for number in range(customers):
        first = number % staff
        owners = [first]
        second = (number * 7 + 3) % staff
        if number % 2 == 0 and second != first:
            owners.append(second)
        items = []
        for userid in owners:
            tagged = rng.random() < 0.1
            items.append(
                {
                    "userid": f"s{userid:03d}",
                    "createtime": now - rng.randrange(86400 * 365),
                    "state": f"bench_{number % 10}",
                    "remark": f"备注{number}" if rng.random() < 0.2 else "",
                    "tags": rng.sample(tag_ids, rng.randint(1, 2)) if tagged else [],
                }
            )
        follows += len(items)
        specs.append(
            {
                "external_userid": f"wmbench{number:07d}",
                "name": f"客户{number}",
                "gender": number % 3,
                "follows": items,
            }
        )
        if len(specs) >= SEED_BATCH:
            control.bulk_customers(specs)
            specs = []
    if specs:
        control.bulk_customers(specs)
    for number in range(groups):
        customers_in = [f"wmbench{(number * 31 + k) % customers:07d}" for k in range(30)]
        control.create_group(
            f"s{number % staff:03d}",
            f"社群{number}",
            members=[f"s{(number + 1) % staff:03d}", *customers_in],
        )
    control.close()
    return {"customers": customers, "follows": follows, "staff": staff, "groups": groups}


# --- one database: runs in a child process (Django's settings are per process) -----------------
def measure(base_url: str) -> dict[str, Any]:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "siyu.settings")
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from siyu.core.models import Event
    from siyu.customers.models import Customer, Follow
    from siyu.tenancy.services import create_tenant
    from siyu.wecom.client import MAX_BATCH_LIMIT, MAX_BATCH_USERIDS, client_for
    from siyu.wecom.sync import sync_tenant

    call_command("migrate", verbosity=0)
    tenant = create_tenant(
        slug=f"bench-{uuid.uuid4().hex[:8]}",
        name="Bench",
        wecom_corp_id=CORP_ID,
        wecom_contact_secret=CONTACT_SECRET,
        wecom_agent_id=str(AGENT_ID),
        wecom_agent_secret=AGENT_SECRET,
    )
    contact = client_for(tenant, base_url=f"{base_url}/cgi-bin")
    directory = client_for(tenant, secret="app", base_url=f"{base_url}/cgi-bin")
    contact.access_token(), directory.access_token()  # tokens are not what we measure

    # floor: page through batch/get_by_user, nothing written
    userids = [u["userid"] for u in directory.list_users(1, fetch_child=True)["userlist"]]
    started = time.perf_counter()
    calls = items = 0
    for start in range(0, len(userids), MAX_BATCH_USERIDS):
        chunk, cursor = userids[start : start + MAX_BATCH_USERIDS], None
        while True:
            page = contact.batch_get_by_user(chunk, cursor=cursor, limit=MAX_BATCH_LIMIT)
            calls += 1
            items += len(page.get("external_contact_list") or ())
            cursor = page.get("next_cursor")
            if not cursor:
                break
    floor = time.perf_counter() - started

    # read floor: every read the sync makes, nothing written
    started = time.perf_counter()
    read_calls = 3 + calls
    directory.list_departments()
    directory.list_users(1, fetch_child=True)
    contact.get_corp_tag_list()
    for start in range(0, len(userids), MAX_BATCH_USERIDS):
        for _item in contact.iter_customers_by_user(userids[start : start + MAX_BATCH_USERIDS]):
            pass
    chats = [g["chat_id"] for g in contact.iter_group_chats(status_filter=0)]
    read_calls += 1 + len(chats)
    for chat_id in chats:
        contact.get_group_chat(chat_id, need_name=True)
    read_floor = time.perf_counter() - started

    started = time.perf_counter()
    full = sync_tenant(tenant, full=True, client=contact, directory_client=directory)
    full_seconds = time.perf_counter() - started
    events_after_full = Event.objects.for_tenant(tenant).count()

    started = time.perf_counter()
    again = sync_tenant(tenant, full=False, client=contact, directory_client=directory)
    again_seconds = time.perf_counter() - started
    return {
        "database": connection.vendor,
        "floor_seconds": floor,
        "floor_calls": calls,
        "floor_items": items,
        "read_floor_seconds": read_floor,
        "read_floor_calls": read_calls,
        "full_seconds": full_seconds,
        "full": full.counters,
        "incremental_seconds": again_seconds,
        "incremental": again.counters,
        "customers_stored": Customer.objects.for_tenant(tenant).count(),
        "follows_stored": Follow.objects.for_tenant(tenant).count(),
        "events": events_after_full,
        "events_added_by_second_run": Event.objects.for_tenant(tenant).count() - events_after_full,
    }


def run_child(base_url: str, database_url: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="siyu-bench-sync-") as data_dir:
        env = {
            **os.environ,
            "SIYU_DATA_DIR": data_dir,
            "SIYU_WECOM_API_BASE": f"{base_url}/cgi-bin",
            "SIYU_TASKS_IMMEDIATE": "0",  # handlers go to the queue, as in production
        }
        env.pop("SIYU_DATABASE_URL", None)
        if database_url:
            env["SIYU_DATABASE_URL"] = database_url
        result = subprocess.run(
            [sys.executable, __file__, "--measure", base_url],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            sys.stderr.write(result.stderr[-4000:])
            raise SystemExit(f"the measurement on {database_url or 'SQLite'} failed")
        return json.loads(result.stdout.strip().splitlines()[-1])


def postgres_database(url: str) -> tuple[str, Any]:
    """A throwaway database on the server of ``url``; returns (its URL, a drop function)."""
    import psycopg
    from psycopg import sql

    base, _, _name = url.rpartition("/")
    name = f"siyu_bench_sync_{uuid.uuid4().hex[:8]}"
    admin_url = f"{base}/postgres"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop() -> None:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    return f"{base}/{name}", drop


def report(result: dict[str, Any], seeded: dict[str, int]) -> None:
    full, again = result["full"], result["incremental"]
    seconds = result["full_seconds"]
    print(f"\n== {result['database']} ==")
    print(
        f"floor (page through batch/get_by_user, no writes): {result['floor_seconds']:.2f} s, "
        f"{result['floor_calls']} calls, {result['floor_items']} items"
    )
    print(
        f"read floor (every WeCom read of the sync, no writes): "
        f"{result['read_floor_seconds']:.2f} s, {result['read_floor_calls']} calls"
    )
    print(
        f"full sync: {seconds:.2f} s wall — {full['customers'] / seconds:,.0f} customers/s, "
        f"{full['follows'] / seconds:,.0f} friendships/s, {full['calls']} WeCom calls"
    )
    print(
        f"   {full['customers']} customers ({full['customers_created']} new), "
        f"{full['follows']} friendships ({full['follows_created']} new), "
        f"{full['staff']} staff, {full['tags']} tags, {full['groups']} groups / "
        f"{full['members']} members; {result['events']} events recorded"
    )
    print(
        f"   ratio to the floor: {seconds / result['floor_seconds']:.1f}×; "
        f"to the read floor: {seconds / result['read_floor_seconds']:.1f}×; "
        f"target < 60 s: {'met' if seconds < 60 else 'NOT met'}"
    )
    print(
        f"second run (incremental, nothing changed): {result['incremental_seconds']:.2f} s, "
        f"{again['calls']} calls, {again['customers_updated'] + again['follows_updated']} rows "
        f"changed, {result['events_added_by_second_run']} events added; "
        f"ratio to the read floor: "
        f"{result['incremental_seconds'] / result['read_floor_seconds']:.1f}×"
    )
    stored = (result["customers_stored"], result["follows_stored"])
    expected = (seeded["customers"], seeded["follows"])
    print(f"   stored customers/friendships: {stored} (seeded {expected})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--staff", type=int, default=20)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--emulator", choices=("process", "thread"), default="process")
    parser.add_argument("--measure", metavar="EMULATOR_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # the child: one database
        print(json.dumps(measure(args.measure)))
        return
    print(
        f"WeCom sync benchmark: {args.customers} customers × {args.staff} staff, "
        f"{args.groups} groups; emulator in a {args.emulator}; {os.cpu_count()} CPUs"
    )
    with Emulator(args.emulator) as base_url:
        started = time.perf_counter()
        seeded = seed(base_url, args.customers, args.staff, args.groups)
        print(
            f"seeded the emulator in {time.perf_counter() - started:.1f} s: "
            f"{seeded['customers']} customers, {seeded['follows']} friendships"
        )
        report(run_child(base_url, None), seeded)
        database_url = os.environ.get("SIYU_DATABASE_URL", "")
        if database_url.startswith(("postgres://", "postgresql://")):
            url, drop = postgres_database(database_url)
            try:
                report(run_child(base_url, url), seeded)
            finally:
                drop()
        else:
            print("\n(PostgreSQL: set SIYU_DATABASE_URL=postgres://… to measure it too)")


if __name__ == "__main__":
    main()
