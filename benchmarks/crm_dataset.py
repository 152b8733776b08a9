"""A synthetic CRM for benchmarks: one tenant with 1 000 000 customers, 3 000 000 customer tag
links, 1 500 000 friendships and 10 000 000 events (× ``--scale``), bulk-loaded.

Why raw bulk loading: the services write one customer at a time with events and checks,
which is right for production and far too slow to build ten million rows. This module writes
the tables directly — ``COPY ... FROM STDIN`` on PostgreSQL, ``executemany`` in one big
transaction on SQLite (foreign-key checks and fsync off while loading) — with values shaped
like the services' own (owner = staff of the first friendship, ``source_state`` = its state,
one ``CustomerTag`` per (customer, tag), purchases as ``order.paid`` with ``amount_fen``).
The same seed gives the same data on both databases.

Shape (for scale 1):

* 200 staff; 10 tag groups × 20 tags with skewed popularity; 30 cities (上海, 北京, 杭州 …);
  50 acquisition channels (``ch_wx_*``, ``ch_dy_*``, ``ch_ks_*``, ``ch_xhs_*``) and 10 % no
  channel; lifecycle stages, birthdays, interests and a couple of custom fields;
* every customer has one friendship and half of them a second (1.5 per customer);
* 3 tags per customer on average (0–6), 10 M events over the last 365 days (messages,
  materials, tags, joins, orders …), more of them from the more active customers.

Run alone to fill the configured database (``SIYU_DATABASE_URL`` or the SQLite file in
``var/``) for trying the console on a big tenant::

    .venv/bin/python benchmarks/crm_dataset.py --scale 0.01
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SEED = 20261123
BATCH = 50_000

CITIES = [
    ("上海", "上海", 8), ("北京", "北京", 8), ("杭州", "浙江", 5), ("深圳", "广东", 6),
    ("广州", "广东", 6), ("成都", "四川", 5), ("武汉", "湖北", 4), ("南京", "江苏", 4),
    ("苏州", "江苏", 4), ("西安", "陕西", 3), ("重庆", "重庆", 4), ("天津", "天津", 3),
    ("长沙", "湖南", 3), ("郑州", "河南", 3), ("青岛", "山东", 2), ("厦门", "福建", 2),
    ("宁波", "浙江", 2), ("合肥", "安徽", 2), ("昆明", "云南", 2), ("沈阳", "辽宁", 2),
    ("大连", "辽宁", 1), ("济南", "山东", 2), ("福州", "福建", 2), ("无锡", "江苏", 2),
    ("东莞", "广东", 2), ("佛山", "广东", 2), ("南昌", "江西", 1), ("贵阳", "贵州", 1),
    ("南宁", "广西", 1), ("哈尔滨", "黑龙江", 1),
]  # fmt: skip
CHANNELS = [f"ch_{platform}_{n}" for platform in ("wx", "dy", "ks", "xhs") for n in range(12)]
CHANNELS += ["ch_offline_1", "ch_offline_2"]
STAGES = [("new", 10), ("active", 35), ("silent", 25), ("at_risk", 15), ("churned", 15)]
AGE_BANDS = ["lt18", "18-24", "25-34", "35-44", "45-54", "55+"]
INTERESTS = ["护肤", "彩妆", "咖啡", "瑜伽", "跑步", "烘焙", "母婴", "数码", "旅行", "读书"]
EVENT_TYPES = [
    ("message.received", 38),
    ("message.sent", 20),
    ("material.opened", 10),
    ("customer.tagged", 10),
    ("follow.added", 8),
    ("group.joined", 5),
    ("order.paid", 6),
    ("customer.updated", 3),
]
STAFF = 200
TAG_GROUPS, TAGS_PER_GROUP = 10, 20


def weighted(choices: Sequence[tuple[Any, int]]) -> Callable[[random.Random], Any]:
    """A picker of a value by weight (one ``random()`` and a bisect)."""
    import bisect

    values, cumulative, total = [], [], 0
    for value, weight in choices:
        total += weight
        values.append(value)
        cumulative.append(total)

    def pick(rng: random.Random) -> Any:
        return values[bisect.bisect_right(cumulative, rng.random() * total)]

    return pick


# --- writing rows: COPY on PostgreSQL, executemany on SQLite ------------------------------------
class Loader:
    """Writes many rows into a table of the Django connection as fast as the database takes."""

    def __init__(self) -> None:
        from django.db import connection

        self.connection = connection
        self.vendor = connection.vendor
        connection.ensure_connection()

    def moment(self, value: datetime) -> Any:
        """A UTC datetime as the column stores it (SQLite: naive text, as Django writes)."""
        if self.vendor == "postgresql":
            return value
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")

    def day(self, value: date | None) -> Any:
        return value if value is None or self.vendor == "postgresql" else value.isoformat()

    def flag(self, value: bool) -> Any:
        return value if self.vendor == "postgresql" else int(value)

    def write(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        if self.vendor == "postgresql":
            return self._copy(table, columns, rows)
        return self._insert(table, columns, rows)

    def _copy(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        raw = self.connection.connection
        count = 0
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
                count += 1
        raw.commit() if not raw.autocommit else None
        return count

    def _insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        raw = self.connection.connection
        marks = ", ".join("?" * len(columns))
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
        count = 0
        raw.execute("PRAGMA foreign_keys=OFF")
        raw.execute("PRAGMA synchronous=OFF")
        raw.execute("PRAGMA cache_size=-262144")
        raw.execute("BEGIN")
        try:
            batch: list[Sequence[Any]] = []
            for row in rows:
                batch.append(row)
                if len(batch) >= BATCH:
                    raw.executemany(sql, batch)
                    count += len(batch)
                    batch = []
            if batch:
                raw.executemany(sql, batch)
                count += len(batch)
            raw.execute("COMMIT")
        except BaseException:
            raw.execute("ROLLBACK")
            raise
        finally:
            raw.execute("PRAGMA foreign_keys=ON")
            raw.execute("PRAGMA synchronous=NORMAL")
        return count

    def analyze(self) -> None:
        """Fresh planner statistics, as a maintained production database has them."""
        if self.vendor == "postgresql":
            raw = self.connection.connection
            autocommit = raw.autocommit
            raw.autocommit = True
            with raw.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")
            raw.autocommit = autocommit
        else:
            self.connection.connection.execute("ANALYZE")


def _defaults(model: Any, loader: Loader) -> dict[str, Any]:
    """Every column of ``model`` with its default as stored (JSON as text), by column."""
    from django.db.models import JSONField

    values = {}
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        default = field.get_default()
        if isinstance(field, JSONField):
            default = json.dumps(default if default is not None else {})
        elif isinstance(default, bool):
            default = loader.flag(default)
        values[field.column] = default
    return values


def _rows(
    columns: list[str], defaults: dict[str, Any], values: Iterable[dict[str, Any]]
) -> Iterator[tuple]:
    for row in values:
        yield tuple(row[c] if c in row else defaults[c] for c in columns)


# --- the data set --------------------------------------------------------------------------------
def load(
    scale: float = 1.0,
    *,
    seed: int = SEED,
    now: datetime | None = None,
    report: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Create a tenant and bulk-load the data set into it (Django must be set up)."""
    from siyu.core.models import Event
    from siyu.customers.models import Customer, CustomerTag, Follow, Tag, TagGroup
    from siyu.tenancy.models import Staff
    from siyu.tenancy.services import create_tenant

    now = now or datetime.now(UTC).replace(microsecond=0)
    rng = random.Random(seed)
    loader = Loader()
    customers_n = max(100, int(1_000_000 * scale))
    tenant = create_tenant(slug=f"bench-crm-{uuid.uuid4().hex[:8]}", name="CRM bench")
    timings: dict[str, float] = {}

    def timed(name: str, work: Callable[[], int]) -> int:
        started = time.perf_counter()
        count = work()
        timings[name] = time.perf_counter() - started
        report(f"  {name}: {count:,} rows in {timings[name]:.1f} s")
        return count

    # staff and tags: few rows, through the ORM
    staff_ids = [
        s.pk
        for s in Staff.objects.for_tenant(tenant).bulk_create(
            Staff(tenant=tenant, wecom_userid=f"bench{n:03d}", name=f"导购{n:03d}")
            for n in range(STAFF)
        )
    ]
    if not staff_ids[0]:  # SQLite before 3.35 does not return ids
        staff_ids = list(
            Staff.objects.for_tenant(tenant).order_by("pk").values_list("pk", flat=True)
        )
    groups = TagGroup.objects.for_tenant(tenant).bulk_create(
        TagGroup(tenant=tenant, name=f"标签组{g}", wecom_group_id=f"bg{g}")
        for g in range(TAG_GROUPS)
    )
    Tag.objects.for_tenant(tenant).bulk_create(
        Tag(tenant=tenant, group_id=group.pk, name=f"标签{g}-{t}", wecom_tag_id=f"bt{g}-{t}")
        for g, group in enumerate(groups)
        for t in range(TAGS_PER_GROUP)
    )
    tag_ids = list(Tag.objects.for_tenant(tenant).order_by("pk").values_list("pk", flat=True))
    # popularity: the first tags are on many customers, the last on few (Zipf-like)
    pick_tag = weighted([(tag_id, 1000 // (rank + 1) + 1) for rank, tag_id in enumerate(tag_ids)])
    pick_city = weighted([((city, province), weight) for city, province, weight in CITIES])
    pick_stage = weighted(STAGES)
    pick_event = weighted(EVENT_TYPES)

    # customers, with their first (and maybe second) friendship decided now
    plans: list[tuple[int, int | None, str, datetime]] = []

    def customer_values() -> Iterator[dict[str, Any]]:
        for n in range(customers_n):
            owner = rng.choice(staff_ids)
            second = rng.choice(staff_ids) if rng.random() < 0.5 else None
            if second == owner:
                second = None
            state = rng.choice(CHANNELS) if rng.random() < 0.9 else ""
            added = now - timedelta(seconds=rng.random() * 730 * 86400)
            plans.append((owner, second, state, added))
            city, province = pick_city(rng) if rng.random() < 0.85 else ("", "")
            interacted = added + (now - added) * rng.random() if rng.random() < 0.8 else None
            custom = {}
            if rng.random() < 0.3:
                custom = {"level": rng.randint(1, 10), "skin": rng.choice(["干性", "油性", "混合"])}
            yield {
                "tenant_id": tenant.pk,
                "external_userid": f"wmbench{n:09d}",
                "name": f"客户{n}",
                "gender": rng.randint(0, 2),
                "first_added_at": loader.moment(added),
                "source_state": state,
                "owner_id": owner,
                "status": "active" if rng.random() < 0.95 else "lost",
                "birthday": loader.day(date(1960, 1, 1) + timedelta(days=rng.randrange(16000)))
                if rng.random() < 0.7
                else None,
                "age_band": rng.choice(AGE_BANDS) if rng.random() < 0.6 else "",
                "province": province,
                "city": city,
                "interests": json.dumps(
                    rng.sample(INTERESTS, rng.randint(1, 3)), ensure_ascii=False
                )
                if rng.random() < 0.3
                else "[]",
                "custom": json.dumps(custom, ensure_ascii=False),
                "lifecycle_stage": pick_stage(rng),
                "last_interaction_at": loader.moment(interacted) if interacted else None,
                "phone_verified": loader.flag(False),
                "created_at": loader.moment(added),
                "updated_at": loader.moment(now),
            }

    customer_columns = list(_defaults(Customer, loader))
    report(f"loading {customers_n:,} customers into {loader.vendor} …")
    timed(
        "customers",
        lambda: loader.write(
            Customer._meta.db_table,
            customer_columns,
            _rows(customer_columns, _defaults(Customer, loader), customer_values()),
        ),
    )
    customer_ids = list(
        Customer.objects.for_tenant(tenant).order_by("pk").values_list("pk", flat=True)
    )

    def follow_values() -> Iterator[dict[str, Any]]:
        for customer_id, (owner, second, state, added) in zip(customer_ids, plans, strict=True):
            for offset, staff_id in enumerate((owner, second)):
                if staff_id is None:
                    continue
                at = added + timedelta(days=offset * 3)
                yield {
                    "tenant_id": tenant.pk,
                    "customer_id": customer_id,
                    "staff_id": staff_id,
                    "added_at": loader.moment(at),
                    "add_way": 1,
                    "state": state if offset == 0 else "",
                    "status": "active",
                    "remark_mobiles": "[]",
                    "created_at": loader.moment(at),
                    "updated_at": loader.moment(now),
                }

    follow_columns = list(_defaults(Follow, loader))
    timed(
        "follows",
        lambda: loader.write(
            Follow._meta.db_table,
            follow_columns,
            _rows(follow_columns, _defaults(Follow, loader), follow_values()),
        ),
    )
    plans.clear()

    def tag_rows() -> Iterator[tuple]:
        created = loader.moment(now)
        for customer_id in customer_ids:
            wanted = int(rng.random() * 7)  # 0–6, 3 on average; one in seven has none
            chosen: set[int] = set()
            while len(chosen) < wanted:
                chosen.add(pick_tag(rng))
            for tag_id in chosen:
                yield (tenant.pk, customer_id, tag_id, created)

    timed(
        "customer tags",
        lambda: loader.write(
            CustomerTag._meta.db_table,
            ["tenant_id", "customer_id", "tag_id", "created_at"],
            tag_rows(),
        ),
    )

    events_n = int(10_000_000 * scale)
    recorded = loader.moment(now)

    def event_rows() -> Iterator[tuple]:
        total = len(customer_ids)
        for n in range(events_n):
            kind = pick_event(rng)
            customer_id = customer_ids[int(total * rng.random() ** 1.6)]
            at = now - timedelta(seconds=rng.random() * 365 * 86400)
            payload = (
                f'{{"amount_fen": {rng.choice((990, 4900, 9900, 19900, 29900, 99900))}}}'
                if kind == "order.paid"
                else "{}"
            )
            yield (
                tenant.pk,
                kind,
                loader.moment(at),
                recorded,
                None,
                customer_id,
                None,
                payload,
                "bench",
                f"bench:{n}",
            )

    timed(
        "events",
        lambda: loader.write(
            Event._meta.db_table,
            [
                "tenant_id",
                "type",
                "occurred_at",
                "recorded_at",
                "staff_id",
                "customer_id",
                "group_id",
                "payload",
                "source",
                "idempotency_key",
            ],
            event_rows(),
        ),
    )
    started = time.perf_counter()
    loader.analyze()
    timings["analyze"] = time.perf_counter() - started
    report(f"  analyze: {timings['analyze']:.1f} s")
    return {
        "tenant_id": tenant.pk,
        "now": now.isoformat(),
        "popular_tags": tag_ids[:3],
        "staff_ids": staff_ids[:5],
        "counts": {
            "customers": len(customer_ids),
            "customer_tags": CustomerTag.objects.for_tenant(tenant).count(),
            "follows": Follow.objects.for_tenant(tenant).count(),
            "events": Event.objects.for_tenant(tenant).count(),
        },
        "load_seconds": timings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.01, help="1 = the full data set")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "siyu.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    result = load(args.scale, seed=args.seed)
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
