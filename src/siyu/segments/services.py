"""Segments (分群 / 分层): the only writer of the segments tables, and the audience look-ups
other domains use.

The contract other domains call:

* ``validate_rules(tenant, rules)`` — the rules normalised, or ``InvalidInput`` naming the
  bad path (see ``siyu.segments.compiler``);
* ``matching_customers(tenant, rules)`` — the tenant's customers (never merged-away ones)
  matching the rules, as ONE SQL query;
* ``resolve_audience(actor, segment=|rules=|customer_ids=)`` — a segment (static: its
  members; dynamic: its rules), ad-hoc rules or explicit ids, always narrowed to the
  actor's data scope.

A dynamic segment is its rule, evaluated live; its tenant-wide count is cached on the row
(``cached_count``) and refreshed when read after ``COUNT_TTL`` and by a periodic task. A
static segment is a snapshot of the rule's matches, taken when it is created and whenever it
is rebuilt — in the request for small tenants, as a background job with progress for large
ones. Every count also upserts today's ``SegmentSize``, and a daily task samples every
segment, so the console can draw each segment's size over time.

Data scope: a segment is a definition shared by the tenant; the customers in it are narrowed
to whoever looks (a sales staff's count and members are their own customers only).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import F, Max, Min, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from siyu.core.audit import record_audit
from siyu.core.errors import Conflict, InvalidInput, NotFound
from siyu.core.events import record_event
from siyu.core.jobs import Progress, job_actor, job_runner, start_job
from siyu.core.models import BackgroundJob
from siyu.core.scoping import DataScope
from siyu.customers.models import Customer
from siyu.segments import events
from siyu.segments.compiler import (
    EMPTY_RULES,
    compile_rules,
    validate_and_compile,
    validate_rules,
)
from siyu.segments.models import RFMPolicy, Segment, SegmentMember, SegmentSize

__all__ = [
    "COUNT_TTL",
    "Preview",
    "create_segment",
    "delete_segment",
    "matching_customers",
    "preview",
    "rebuild_snapshot",
    "record_sizes",
    "resolve_audience",
    "segment_count",
    "segment_or_404",
    "update_segment",
    "validate_rules",
    "visible_customers",
]

COUNT_TTL = timedelta(minutes=5)  # a cached count older than this is recounted on read
SYNC_SNAPSHOT_LIMIT = 20_000  # tenants with more customers rebuild snapshots as a job
SNAPSHOT_STEPS = 20  # progress steps of a snapshot job (ranges of customer ids)
SNAPSHOT_JOB = "segments.snapshot"
MAX_CUSTOMER_IDS = 10_000
MAX_SAMPLE = 50
NAME_MAX = 100
DESCRIPTION_MAX = 300


# --- audiences (the contract) -------------------------------------------------------------------
def visible_customers(actor: Any) -> QuerySet:
    """The customers the actor may see (tenant and data scope), never merged-away records."""
    return Customer.objects.for_actor(actor).filter(merged_into__isnull=True)


def matching_customers(tenant: Any, rules: Any, *, now: datetime | None = None) -> QuerySet:
    """The tenant's customers matching ``rules`` (validated first), as one SQL query."""
    condition = compile_rules(tenant, rules, now=now)
    return Customer.objects.for_tenant(tenant).filter(merged_into__isnull=True).filter(condition)


def resolve_audience(
    actor: Any,
    *,
    segment: Segment | int | None = None,
    rules: Any = None,
    customer_ids: Any = None,
) -> QuerySet:
    """The customers of a segment (instance or id), of ad-hoc rules, or with these ids —
    exactly one of the three — narrowed to the actor's data scope. Ids the actor may not
    see (or that do not exist) are simply not in the result."""
    sources = {"segment": segment, "rules": rules, "customer_ids": customer_ids}
    given = [name for name, value in sources.items() if value is not None]
    if len(given) != 1:
        raise InvalidInput(
            _("Give exactly one of: a segment, rules or customer ids"), details={"given": given}
        )
    customers = visible_customers(actor)
    if segment is not None:
        return _members_of(segment_or_404(actor, segment), customers)
    if rules is not None:
        return customers.filter(compile_rules(actor.tenant, rules))
    return customers.filter(pk__in=_clean_customer_ids(customer_ids))


def _members_of(segment: Segment, customers: QuerySet) -> QuerySet:
    if segment.kind == Segment.Kind.STATIC:
        members = SegmentMember.objects.for_tenant(segment.tenant_id).filter(segment=segment)
        return customers.filter(pk__in=members.values("customer_id"))
    try:
        condition = compile_rules(segment.tenant_id, segment.rules)
    except InvalidInput as error:  # a tag, field or staff it names is gone
        raise InvalidInput(
            _("The rules of segment %(name)s no longer apply: %(reason)s")
            % {"name": segment.name, "reason": error.details.get("message", error.message)},
            code="segment_rules_invalid",
            details={"segment_id": segment.pk, **error.details},
        ) from error
    return customers.filter(condition)


def _clean_customer_ids(customer_ids: Any) -> list[int]:
    if not isinstance(customer_ids, (list, tuple, set, frozenset)):
        raise InvalidInput(_("customer_ids must be a list of ids"), details={"customer_ids": None})
    if len(customer_ids) > MAX_CUSTOMER_IDS:
        raise InvalidInput(
            _("At most %(count)s customer ids at once; use a segment for more")
            % {"count": MAX_CUSTOMER_IDS},
            details={"customer_ids": len(customer_ids)},
        )
    cleaned = []
    for value in customer_ids:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise InvalidInput(_("Customer ids are whole numbers"), details={"customer_ids": value})
        try:
            number = int(value)
        except ValueError as error:
            raise InvalidInput(
                _("Customer ids are whole numbers"), details={"customer_ids": value}
            ) from error
        if not 1 <= number <= 2**63 - 1:
            raise InvalidInput(_("Customer ids are whole numbers"), details={"customer_ids": value})
        cleaned.append(number)
    return sorted(set(cleaned))


def segment_or_404(actor: Any, segment: Segment | int) -> Segment:
    """A segment of the actor's tenant (an instance is checked, an id looked up)."""
    segment_id = segment.pk if isinstance(segment, Segment) else segment
    if isinstance(segment_id, str) and segment_id.strip().isdigit():
        segment_id = int(segment_id)
    valid = isinstance(segment_id, int) and not isinstance(segment_id, bool)
    found = (
        Segment.objects.for_tenant(actor.tenant_id).filter(pk=segment_id).first()
        if valid and 1 <= segment_id <= 2**63 - 1
        else None
    )
    if found is None:
        raise NotFound(_("Segment not found"), details={"id": segment_id})
    return found


# --- previews, samples and pages ----------------------------------------------------------------
@dataclass(frozen=True)
class Preview:
    """What a rule would select now, as the actor may see it."""

    rules: dict[str, Any]
    count: int
    sample: list[Customer]


def preview(actor: Any, rules: Any, *, sample_size: int = 10) -> Preview:
    """Count (and a sample of) the customers matching ``rules`` without saving anything."""
    normalised, condition = validate_and_compile(actor.tenant, rules)
    customers = visible_customers(actor).filter(condition)
    size = max(0, min(int(sample_size), MAX_SAMPLE))
    rows = sample(customers, size)
    # Fewer rows than asked for: that was all of them, and the sample query has counted.
    count = len(rows) if size and len(rows) < size else customers.count()
    return Preview(normalised, count, rows)


def sample(customers: QuerySet, size: int = 10) -> list[Customer]:
    """A few customers of a set, shown newest first.

    Which few is left to the database (no ORDER BY before the LIMIT): "the newest N that
    match" makes it walk the whole table backwards testing the rule on each row until N
    match, seconds on a big tenant when matches are rare; any N stop as soon as found.
    """
    size = max(0, min(int(size), MAX_SAMPLE))
    if not size:
        return []
    rows = list(customers.select_related("owner").order_by()[:size])
    return sorted(rows, key=lambda customer: customer.pk, reverse=True)


def page(
    customers: QuerySet, *, before: int | None = None, limit: int = 50
) -> tuple[list, int | None]:
    """One page of a set, newest first, after the id ``before``; returns (rows, next before)."""
    if before is not None:
        customers = customers.filter(pk__lt=before)
    rows = list(customers.select_related("owner").order_by("-pk")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].pk if more and rows else None)


# --- counts ---------------------------------------------------------------------------------------
def tenant_wide(actor: Any) -> bool:
    """Whether the actor sees the whole tenant (and so its tenant-wide counts)."""
    return actor.data_scope == DataScope.TENANT


def segment_count(actor: Any, segment: Segment, *, refresh: bool = False) -> int:
    """The number of the segment's customers the actor may see.

    Tenant-wide viewers get the cached count, recounted when older than ``COUNT_TTL`` (or
    on ``refresh``); narrower scopes are counted live and cached briefly per viewer.
    """
    if tenant_wide(actor):
        fresh = segment.counted_at and timezone.now() - segment.counted_at < COUNT_TTL
        if segment.cached_count is not None and fresh and not refresh:
            return segment.cached_count
        return store_count(segment)
    key = _scoped_count_key(actor, segment)
    cached = None if refresh else cache.get(key)
    if cached is None:
        cached = resolve_audience(actor, segment=segment).count()
        cache.set(key, cached, COUNT_TTL.total_seconds())
    return cached


def _scoped_count_key(actor: Any, segment: Segment) -> str:
    scope = f"{actor.data_scope}:{actor.staff_id}:{sorted(actor.department_ids)}"
    version = f"{segment.updated_at.timestamp()}:{segment.snapshot_at}"
    digest = hashlib.sha256(f"{scope}:{version}".encode()).hexdigest()[:24]
    return f"segments:count:{segment.tenant_id}:{segment.pk}:{digest}"


def tenant_count(segment: Segment, *, now: datetime | None = None) -> int:
    """The segment's size over the whole tenant, counted now."""
    customers = Customer.objects.for_tenant(segment.tenant_id).filter(merged_into__isnull=True)
    return (
        _members_of(segment, customers).count()
        if segment.kind == Segment.Kind.STATIC
        else (customers.filter(compile_rules(segment.tenant_id, segment.rules, now=now)).count())
    )


def store_count(segment: Segment, *, now: datetime | None = None) -> int:
    """Count the segment over the tenant, cache it on the row and as today's size."""
    now = now or timezone.now()
    count = tenant_count(segment, now=now)
    Segment.objects.for_tenant(segment.tenant_id).filter(pk=segment.pk).update(
        cached_count=count, counted_at=now
    )
    segment.cached_count, segment.counted_at = count, now
    _store_size(segment, timezone.localtime(now).date(), count)
    return count


def _store_size(segment: Segment, day: date, size: int) -> None:
    SegmentSize.objects.for_tenant(segment.tenant_id).update_or_create(
        tenant_id=segment.tenant_id, segment=segment, day=day, defaults={"size": size}
    )


def record_sizes(tenant: Any, *, now: datetime | None = None) -> int:
    """Count every segment of the tenant and keep today's size (the daily sample)."""
    segments = list(Segment.objects.for_tenant(tenant))
    for segment in segments:
        try:
            store_count(segment, now=now)
        except InvalidInput:  # its rules name something deleted: nothing to count
            continue
    return len(segments)


def refresh_stale_counts(tenant: Any, *, older_than: timedelta = COUNT_TTL) -> int:
    """Recount the dynamic segments whose cached count is older than ``older_than``."""
    cutoff = timezone.now() - older_than
    stale = Segment.objects.for_tenant(tenant).filter(
        Q(counted_at__isnull=True) | Q(counted_at__lt=cutoff), kind=Segment.Kind.DYNAMIC
    )
    refreshed = 0
    for segment in stale:
        try:
            store_count(segment)
        except InvalidInput:
            continue
        refreshed += 1
    return refreshed


def size_history(segment: Segment, *, days: int = 90) -> list[SegmentSize]:
    since = timezone.localdate() - timedelta(days=days)
    return list(
        SegmentSize.objects.for_tenant(segment.tenant_id)
        .filter(segment=segment, day__gte=since)
        .order_by("day")
    )


# --- writing segments ----------------------------------------------------------------------------
def _clean_name(name: Any) -> str:
    text = (name or "").strip() if isinstance(name, str) else ""
    if not text:
        raise InvalidInput(_("A segment needs a name"), details={"name": name})
    if len(text) > NAME_MAX:
        raise InvalidInput(
            _("A segment name has at most %(count)s characters") % {"count": NAME_MAX},
            details={"name": text},
        )
    return text


def _clean_description(description: Any) -> str:
    text = (description or "").strip() if isinstance(description, str) else ""
    if len(text) > DESCRIPTION_MAX:
        raise InvalidInput(
            _("A description has at most %(count)s characters") % {"count": DESCRIPTION_MAX},
            details={"description": len(text)},
        )
    return text


def _clean_kind(kind: Any) -> str:
    if kind not in Segment.Kind.values:
        raise InvalidInput(_("The kind is dynamic or static"), details={"kind": kind})
    return kind


def _ensure_unique_name(tenant: Any, name: str, *, exclude: int | None = None) -> None:
    rows = Segment.objects.for_tenant(tenant).filter(name=name)
    if exclude is not None:
        rows = rows.exclude(pk=exclude)
    if rows.exists():
        raise Conflict(
            _("A segment named %(name)s already exists") % {"name": name}, details={"name": name}
        )


@transaction.atomic
def create_segment(
    actor: Any,
    *,
    name: str,
    rules: Any = None,
    kind: str = Segment.Kind.DYNAMIC,
    description: str = "",
) -> Segment:
    """Define a segment; a static one takes its first snapshot (as a job when large)."""
    tenant = actor.tenant
    name = _clean_name(name)
    description = _clean_description(description)
    kind = _clean_kind(kind)
    normalised = validate_rules(tenant, rules)
    _ensure_unique_name(tenant, name)
    segment = Segment.objects.for_tenant(tenant).create(
        tenant=tenant,
        name=name,
        description=description,
        kind=kind,
        rules=normalised,
        created_by=actor.staff,
    )
    record_event(
        tenant,
        events.SEGMENT_CREATED,
        key=f"{events.SEGMENT_CREATED}:{segment.pk}",
        staff=actor.staff,
        payload={"segment_id": segment.pk, "name": name, "kind": kind, "rules": normalised},
        source=actor.channel,
    )
    record_audit(actor, "segment.created", segment, changes={"rules": [None, normalised]})
    if kind == Segment.Kind.STATIC:
        rebuild_snapshot(actor, segment)
        segment.refresh_from_db()
    return segment


_UNSET: Any = object()


@transaction.atomic
def update_segment(
    actor: Any,
    segment: Segment,
    *,
    name: Any = _UNSET,
    description: Any = _UNSET,
    rules: Any = _UNSET,
    kind: Any = _UNSET,
) -> Segment:
    """Change what is given; new rules reset the cached count (and rebuild a static one)."""
    segment = (
        Segment.objects.for_tenant(actor.tenant_id)
        .select_for_update()
        .filter(pk=segment.pk)
        .first()
    )
    if segment is None:
        raise NotFound(_("Segment not found"))
    values: dict[str, Any] = {}
    if name is not _UNSET:
        values["name"] = _clean_name(name)
        _ensure_unique_name(actor.tenant_id, values["name"], exclude=segment.pk)
    if description is not _UNSET:
        values["description"] = _clean_description(description)
    if kind is not _UNSET:
        values["kind"] = _clean_kind(kind)
    if rules is not _UNSET:
        values["rules"] = validate_rules(actor.tenant, rules)
    changes = {
        field: [getattr(segment, field), value]
        for field, value in values.items()
        if getattr(segment, field) != value
    }
    if not changes:
        return segment
    for field, value in values.items():
        setattr(segment, field, value)
    if "rules" in changes or "kind" in changes:
        segment.cached_count = None
        segment.counted_at = None
    if segment.kind == Segment.Kind.DYNAMIC and "kind" in changes:
        SegmentMember.objects.for_tenant(segment.tenant_id).filter(segment=segment).delete()
        segment.snapshot_at = None
    segment.save()
    record_event(
        segment.tenant_id,
        events.SEGMENT_UPDATED,
        key=f"{events.SEGMENT_UPDATED}:{segment.pk}:{int(segment.updated_at.timestamp() * 1000)}",
        staff=actor.staff,
        payload={"segment_id": segment.pk, "changes": changes},
        source=actor.channel,
    )
    record_audit(actor, "segment.updated", segment, changes=changes)
    if segment.kind == Segment.Kind.STATIC and ("rules" in changes or "kind" in changes):
        rebuild_snapshot(actor, segment)
        segment.refresh_from_db()
    return segment


@transaction.atomic
def delete_segment(actor: Any, segment: Segment) -> None:
    """Delete a segment with its members and size history."""
    segment = segment_or_404(actor, segment)
    record_event(
        segment.tenant_id,
        events.SEGMENT_DELETED,
        key=f"{events.SEGMENT_DELETED}:{segment.pk}",
        staff=actor.staff,
        payload={"segment_id": segment.pk, "name": segment.name, "kind": segment.kind},
        source=actor.channel,
    )
    record_audit(actor, "segment.deleted", segment)
    SegmentSize.objects.for_tenant(segment.tenant_id).filter(segment=segment).delete()
    SegmentMember.objects.for_tenant(segment.tenant_id).filter(segment=segment).delete()
    Segment.objects.for_tenant(segment.tenant_id).filter(pk=segment.pk).delete()


# --- static snapshots -----------------------------------------------------------------------------
def rebuild_snapshot(actor: Any, segment: Segment) -> BackgroundJob | None:
    """Replace a static segment's members by its rule's matches over the whole tenant.

    Small tenants are rebuilt at once (returns None); larger ones in a background job with
    progress (returned), started when the current transaction commits.
    """
    segment = segment_or_404(actor, segment)
    if segment.kind != Segment.Kind.STATIC:
        raise InvalidInput(
            _("Only static segments keep a snapshot of members"), details={"kind": segment.kind}
        )
    customers = Customer.objects.for_tenant(segment.tenant_id).count()
    if customers <= SYNC_SNAPSHOT_LIMIT:
        take_snapshot(actor, segment)
        return None
    return start_job(
        actor,
        SNAPSHOT_JOB,
        _("Rebuild the members of segment %(name)s") % {"name": segment.name},
        params={"segment_id": segment.pk},
    )


@job_runner(SNAPSHOT_JOB)
def _run_snapshot_job(job: BackgroundJob, progress: Progress) -> dict[str, Any]:
    actor = job_actor(job)
    segment = (
        Segment.objects.for_tenant(job.tenant_id).filter(pk=job.params.get("segment_id")).first()
    )
    if segment is None:
        raise NotFound(_("Segment not found"))
    return take_snapshot(actor, segment, progress=progress)


def take_snapshot(
    actor: Any, segment: Segment, *, progress: Progress | None = None
) -> dict[str, int]:
    """Members := the tenant's customers matching the rules now, in ranges of ids.

    Stale members are removed in one statement, then the new ones are inserted range by
    range (``INSERT ... SELECT`` each), so a job reports progress and readers never wait
    for one long transaction; the segment's count and ``snapshot_at`` are set at the end.
    """
    tenant_id = segment.tenant_id
    now = timezone.now()
    matches = matching_customers(tenant_id, segment.rules, now=now)
    members = SegmentMember.objects.for_tenant(tenant_id).filter(segment=segment)
    removed, _detail = members.exclude(customer_id__in=matches.values("pk")).delete()
    bounds = Customer.objects.for_tenant(tenant_id).aggregate(low=Min("pk"), high=Max("pk"))
    ranges = _id_ranges(bounds["low"], bounds["high"], steps=SNAPSHOT_STEPS if progress else 1)
    if progress:
        progress.set_total(len(ranges))
    added = 0
    for low, high in ranges:
        chunk = matches.filter(pk__gte=low, pk__lt=high).exclude(
            pk__in=members.values("customer_id")
        )
        added += _insert_members(segment, chunk, now)
        if progress:
            progress.advance(1)
    with transaction.atomic():
        total = members.count()
        Segment.objects.for_tenant(tenant_id).filter(pk=segment.pk).update(
            snapshot_at=now, cached_count=total, counted_at=now
        )
        segment.snapshot_at, segment.cached_count, segment.counted_at = now, total, now
        _store_size(segment, timezone.localtime(now).date(), total)
        record_event(
            tenant_id,
            events.SEGMENT_SNAPSHOT_TAKEN,
            key=f"{events.SEGMENT_SNAPSHOT_TAKEN}:{segment.pk}:{int(now.timestamp() * 1000)}",
            staff=actor.staff,
            payload={
                "segment_id": segment.pk,
                "members": total,
                "added": added,
                "removed": removed,
            },
            source=actor.channel,
            occurred_at=now,
        )
    return {"members": total, "added": added, "removed": removed}


def _id_ranges(low: int | None, high: int | None, *, steps: int) -> list[tuple[int, int]]:
    if low is None or high is None:
        return []
    width = max(1, -(-(high - low + 1) // steps))
    return [(start, start + width) for start in range(low, high + 1, width)]


def _insert_members(segment: Segment, customers: QuerySet, now: datetime) -> int:
    """``INSERT INTO members SELECT`` the given customers: the rows never leave the database."""
    chosen = customers.order_by().annotate(chosen_id=F("pk")).values("chosen_id")
    select_sql, select_params = chosen.query.sql_with_params()
    table = SegmentMember._meta.db_table
    sql = (
        f"INSERT INTO {table} (tenant_id, segment_id, customer_id, added_at) "
        f"SELECT %s, %s, chosen.chosen_id, %s FROM ({select_sql}) chosen WHERE true "
        "ON CONFLICT (tenant_id, segment_id, customer_id) DO NOTHING"
    )
    params = [
        segment.tenant_id,
        segment.pk,
        connection.ops.adapt_datetimefield_value(now),
        *select_params,
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return max(cursor.rowcount, 0)


# --- RFM settings ---------------------------------------------------------------------------------
def rfm_policy(actor: Any) -> RFMPolicy:
    """The tenant's RFM settings row, created with the defaults on first use."""
    policy, _created = RFMPolicy.objects.for_tenant(actor.tenant_id).get_or_create(
        tenant_id=actor.tenant_id
    )
    return policy


@transaction.atomic
def update_rfm_policy(
    actor: Any,
    *,
    window_days: int | None = None,
    purchase_event_types: list[str] | None = None,
    amount_key: str | None = None,
) -> RFMPolicy:
    """Change which events are purchases, where their amount is, and the window."""
    from siyu.segments.compiler import EVENT_TYPE

    policy, _created = RFMPolicy.objects.for_tenant(actor.tenant_id).get_or_create(
        tenant_id=actor.tenant_id
    )
    values: dict[str, Any] = {}
    if window_days is not None:
        if (
            isinstance(window_days, bool)
            or not isinstance(window_days, int)
            or not 1 <= window_days <= 3650
        ):
            raise InvalidInput(
                _("The window is 1 to 3650 days"), details={"window_days": window_days}
            )
        values["window_days"] = window_days
    if purchase_event_types is not None:
        types = [str(t).strip() for t in purchase_event_types if str(t).strip()]
        bad = [t for t in types if len(t) > 80 or not EVENT_TYPE.match(t)]
        if bad or len(types) > 20:
            raise InvalidInput(
                _("Event types are dotted names such as order.paid (at most 20)"),
                details={"purchase_event_types": bad or len(types)},
            )
        values["purchase_event_types"] = list(dict.fromkeys(types))
    if amount_key is not None:
        key = amount_key.strip()
        if not key or len(key) > 40 or not key.replace("_", "").isalnum():
            raise InvalidInput(
                _("The amount key is a payload key such as amount_fen"),
                details={"amount_key": amount_key},
            )
        values["amount_key"] = key
    changes = {f: [getattr(policy, f), v] for f, v in values.items() if getattr(policy, f) != v}
    for field, value in values.items():
        setattr(policy, field, value)
    if changes:
        policy.save()
        record_audit(actor, "rfm_policy.updated", policy, changes=changes)
    return policy


def rules_or_empty(rules: Any) -> dict[str, Any]:
    """Stored rules, or the rule that matches everyone."""
    return rules if isinstance(rules, dict) and rules else dict(EMPTY_RULES, conditions=[])
