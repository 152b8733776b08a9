"""Dedupe and merge: one customer per person within a tenant.

Two records are the same person when they share a WeChat ``unionid`` or the same *verified*
phone (``phone_hash`` with ``phone_verified`` on both). ``merge_customers`` folds the
duplicate into the survivor in one transaction and loses nothing:

* friendships move; when both records have one with the same staff, the earlier add is kept
  (taking the live state if only the other one is active) and the other's tags are folded in;
* friendship tags, customer tags, notes and follow-ups, staff tasks, churn alerts, hand-over
  items, static segment memberships, RFM scores and group memberships point at the survivor
  (a row the survivor already has — same tag, same segment, same hand-over — is dropped after
  being written into the snapshot);
* profile fields the survivor lacks are filled from the duplicate, custom fields merged
  (the survivor's values win), interests united;
* the duplicate stays as a tombstone with ``merged_into`` set (customers merged into it move
  on to the survivor), a ``CustomerMerge`` row keeps a full JSON snapshot of it and of every
  related row, and ``customer.merged`` goes on the survivor's timeline. Events are
  append-only and keep the duplicate's id: timelines read ``merged_customer_ids``.

Group memberships belong to the community domain, which has no service for re-pointing
them; the merge updates ``GroupMember.customer`` of the duplicate's rows and nothing else
(its WeCom ``userid`` stays). Staff tasks (engagement) are re-pointed the same narrow way.

A new friendship whose customer carries a ``unionid`` already known merges automatically
(``auto_merge_on_unionid``, run by ``handlers.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Count, Subquery
from django.utils import timezone
from django.utils.translation import gettext as _

from siyu.core.audit import record_audit
from siyu.core.crypto import encrypt
from siyu.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from siyu.core.events import record_event
from siyu.customers.models import (
    ChurnAlert,
    Customer,
    CustomerMerge,
    CustomerNote,
    CustomerTag,
    Follow,
    FollowTag,
    HandoverItem,
)
from siyu.tenancy.actor import Actor

CUSTOMER_MERGED = "customer.merged"  # key "customer.merged:{duplicate_id}"
MERGE_PERMISSION = "customers.merge_customer"

# Profile fields copied from the duplicate when the survivor has no value.
FILLED_FIELDS = (
    "name",
    "avatar",
    "unionid",
    "corp_name",
    "corp_full_name",
    "position",
    "birthday",
    "age_band",
    "province",
    "city",
)
# What a live friendship carries over onto an ended one it is folded with.
LIVE_FOLLOW_FIELDS = (
    "status",
    "deleted_at",
    "remark",
    "description",
    "remark_mobiles",
    "remark_corp_name",
    "wecom_seen_at",
)


# --- reading ---------------------------------------------------------------------------------
def merged_customer_ids(tenant: Any, customer_id: int) -> list[int]:
    """The customer's id and the ids of every record merged into it (for timelines and
    sums over events, which keep the id they were recorded with)."""
    merged = Customer.objects.for_tenant(tenant).filter(merged_into_id=customer_id)
    return [customer_id, *merged.order_by("id").values_list("id", flat=True)]


@dataclass
class DuplicateGroup:
    """Customers that look like one person, and why."""

    reason: str  # CustomerMerge.Reason
    customers: list[Customer] = field(default_factory=list)

    @property
    def suggested_survivor(self) -> Customer:
        return pick_survivor(self.customers)

    @property
    def ids(self) -> list[int]:
        return [customer.pk for customer in self.customers]


def live_customers(actor: Actor):
    return Customer.objects.for_actor(actor).filter(merged_into__isnull=True)


def duplicate_groups(actor: Actor, *, limit: int = 100) -> list[DuplicateGroup]:
    """Candidates within the actor's data scope: same unionid, then same verified phone.

    Grouped in SQL (one GROUP BY per key), so the page stays fast on a million customers.
    """
    base = live_customers(actor)
    groups: list[DuplicateGroup] = []
    seen: set[frozenset[int]] = set()
    keys = (
        (CustomerMerge.Reason.UNIONID, "unionid", base.exclude(unionid="")),
        (
            CustomerMerge.Reason.PHONE,
            "phone_hash",
            base.filter(phone_verified=True).exclude(phone_hash=""),
        ),
    )
    for reason, column, rows in keys:
        values = (
            rows.values(column)
            .annotate(count=Count("id"))
            .filter(count__gt=1)
            .order_by(column)
            .values_list(column, flat=True)[:limit]
        )
        for value in values:
            members = list(rows.filter(**{column: value}).select_related("owner").order_by("id"))
            ids = frozenset(member.pk for member in members)
            if len(ids) > 1 and ids not in seen:
                seen.add(ids)
                groups.append(DuplicateGroup(reason, members))
    return groups[:limit]


def pick_survivor(customers: list[Customer]) -> Customer:
    """The record to keep: one WeCom knows (with friendships) before a local one, then the
    earliest added, then the oldest row — so that WeCom calls keep a real external_userid."""
    tenant_id = customers[0].tenant_id
    befriended = set(
        Follow.objects.for_tenant(tenant_id)
        .filter(customer_id__in=[c.pk for c in customers])
        .values_list("customer_id", flat=True)
    )

    def rank(customer: Customer) -> tuple[Any, ...]:
        added = customer.first_added_at
        return (customer.pk not in befriended, added is None, added or 0, customer.pk)

    return min(customers, key=rank)


# --- merging ---------------------------------------------------------------------------------
def _customer(actor: Actor, value: Customer | int, name: str) -> Customer:
    pk = getattr(value, "pk", value)
    try:
        pk = int(pk)
    except (TypeError, ValueError):
        pk = 0
    customer = Customer.objects.for_actor(actor).filter(pk=pk).first() if pk else None
    if customer is None:
        raise NotFound(_("Customer not found"), details={name: pk})
    return customer


def merge_customers(
    actor: Actor,
    survivor: Customer | int,
    duplicate: Customer | int,
    reason: str = CustomerMerge.Reason.MANUAL,
) -> CustomerMerge:
    """Fold ``duplicate`` into ``survivor`` (see the module docstring); one transaction."""
    if not actor.has_perm(MERGE_PERMISSION):
        raise Forbidden(_("Your role may not merge customers"))
    if reason not in CustomerMerge.Reason.values:
        raise InvalidInput(
            _("Unknown merge reason %(reason)s") % {"reason": reason}, details={"reason": reason}
        )
    survivor = _customer(actor, survivor, "survivor_id")
    duplicate = _customer(actor, duplicate, "duplicate_id")
    if survivor.pk == duplicate.pk:
        raise InvalidInput(
            _("A customer cannot be merged into itself"), details={"duplicate_id": duplicate.pk}
        )
    tenant = actor.tenant
    with transaction.atomic():
        rows = {
            row.pk: row
            for row in Customer.objects.for_tenant(tenant)
            .select_for_update()
            .filter(pk__in=[survivor.pk, duplicate.pk])
            .order_by("pk")
        }
        survivor, duplicate = rows[survivor.pk], rows[duplicate.pk]
        for row, name in ((survivor, "survivor_id"), (duplicate, "duplicate_id")):
            if row.merged_into_id is not None:
                raise Conflict(
                    _("%(customer)s was already merged into another customer") % {"customer": row},
                    details={name: row.pk},
                )
        snapshot = _snapshot(duplicate)
        moved = _move_related(tenant, survivor, duplicate)
        changes = _fill_profile(survivor, duplicate)
        _retire(tenant, survivor, duplicate)
        merge = CustomerMerge.objects.for_tenant(tenant).create(
            tenant=tenant,
            survivor=survivor,
            merged_customer_id=duplicate.pk,
            merged_external_userid=duplicate.external_userid,
            reason=reason,
            snapshot=snapshot,
            merged_by=actor.staff,
        )
        record_event(
            tenant,
            CUSTOMER_MERGED,
            key=f"{CUSTOMER_MERGED}:{duplicate.pk}",
            staff=actor.staff,
            customer_id=survivor.pk,
            payload={
                "merge_id": merge.pk,
                "merged_customer_id": duplicate.pk,
                "merged_external_userid": duplicate.external_userid,
                "reason": reason,
                "moved": moved,
                "filled": sorted(changes),
            },
            source=actor.channel,
        )
        record_audit(
            actor,
            "customer.merged",
            survivor,
            changes={"merged_customer_id": [None, duplicate.pk], **changes},
        )
    return merge


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False))


def _snapshot(customer: Customer) -> dict[str, Any]:
    """Everything about the record, so the merge can be audited (and undone by hand).

    The phone stays encrypted in the snapshot: a JSON column is no reason to store it in
    clear.
    """
    from siyu.community.models import GroupMember
    from siyu.engagement.models import StaffTask
    from siyu.segments.models import CustomerRFM, SegmentMember

    tenant = customer.tenant_id
    record = {
        f.attname: getattr(customer, f.attname)
        for f in Customer._meta.concrete_fields
        if f.attname not in ("phone", "tenant_id")
    }
    record["phone_encrypted"] = encrypt(customer.phone) if customer.phone else ""
    follows = []
    for follow in (
        Follow.objects.for_tenant(tenant)
        .filter(customer=customer)
        .select_related("staff")
        .order_by("id")
    ):
        follows.append(
            {
                **{
                    f.attname: getattr(follow, f.attname)
                    for f in Follow._meta.concrete_fields
                    if f.attname != "tenant_id"
                },
                "staff_userid": follow.staff.wecom_userid,
                "tag_ids": list(
                    FollowTag.objects.for_tenant(tenant)
                    .filter(follow=follow)
                    .order_by("id")
                    .values_list("tag_id", flat=True)
                ),
            }
        )

    def ids(model: Any, **filters: Any) -> list[int]:
        rows = model.objects.for_tenant(tenant).filter(**filters).order_by("id")
        return list(rows.values_list("id", flat=True))

    rfm = CustomerRFM.objects.for_tenant(tenant).filter(customer=customer).values().first()
    return _json(
        {
            "customer": record,
            "follows": follows,
            "customer_tag_ids": list(
                CustomerTag.objects.for_tenant(tenant)
                .filter(customer=customer)
                .order_by("id")
                .values_list("tag_id", flat=True)
            ),
            "note_ids": ids(CustomerNote, customer=customer),
            "task_ids": ids(StaffTask, customer=customer),
            "churn_alert_ids": ids(ChurnAlert, customer=customer),
            "handover_items": list(
                HandoverItem.objects.for_tenant(tenant)
                .filter(customer=customer)
                .order_by("id")
                .values("id", "handover_id", "status", "errcode", "detail", "takeover_at")
            ),
            "segment_ids": list(
                SegmentMember.objects.for_tenant(tenant)
                .filter(customer=customer)
                .order_by("id")
                .values_list("segment_id", flat=True)
            ),
            "group_member_ids": ids(GroupMember, customer=customer),
            "rfm": rfm,
            "merged_from_ids": ids(Customer, merged_into=customer),
        }
    )


def _move_related(tenant: Any, survivor: Customer, duplicate: Customer) -> dict[str, int]:
    """Point every row of the duplicate at the survivor; return counts per kind."""
    from siyu.community.models import GroupMember
    from siyu.engagement.models import StaffTask
    from siyu.segments.models import CustomerRFM, SegmentMember

    moved = {"follows": _move_follows(tenant, survivor, duplicate)}
    moved["follows_folded"] = moved["follows"].pop("folded")
    moved["follows"] = moved["follows"]["moved"]
    moved["customer_tags"] = _move_unique(CustomerTag, tenant, survivor, duplicate, "tag_id")
    moved["segment_members"] = _move_unique(
        SegmentMember, tenant, survivor, duplicate, "segment_id"
    )
    moved["handover_items"] = _move_unique(HandoverItem, tenant, survivor, duplicate, "handover_id")
    moved["rfm"] = _move_unique(CustomerRFM, tenant, survivor, duplicate, None)
    for name, model in (
        ("notes", CustomerNote),
        ("churn_alerts", ChurnAlert),
        ("staff_tasks", StaffTask),
        ("group_members", GroupMember),
    ):
        moved[name] = (
            model.objects.for_tenant(tenant).filter(customer=duplicate).update(customer=survivor)
        )
    return moved


def _move_unique(
    model: Any, tenant: Any, survivor: Customer, duplicate: Customer, key: str | None
) -> int:
    """Move rows unique per (customer, ``key``) — or per customer when ``key`` is None: the
    survivor's own row wins a clash (the duplicate's is in the snapshot)."""
    rows = model.objects.for_tenant(tenant)
    if key is None:
        if rows.filter(customer=survivor).exists():
            rows.filter(customer=duplicate).delete()
    else:
        taken = set(rows.filter(customer=survivor).values_list(key, flat=True))
        rows.filter(customer=duplicate, **{f"{key}__in": taken}).delete()
    return rows.filter(customer=duplicate).update(customer=survivor)


def _move_follows(tenant: Any, survivor: Customer, duplicate: Customer) -> dict[str, int]:
    follows = Follow.objects.for_tenant(tenant)
    by_staff = {follow.staff_id: follow for follow in follows.filter(customer=survivor)}
    counts = {"moved": 0, "folded": 0}
    for follow in follows.filter(customer=duplicate).order_by("id"):
        other = by_staff.get(follow.staff_id)
        if other is None:
            follows.filter(pk=follow.pk).update(customer=survivor)
            counts["moved"] += 1
            continue
        _fold_follow(tenant, survivor, follow, other)
        counts["folded"] += 1
    return counts


def _fold_follow(tenant: Any, survivor: Customer, follow: Follow, other: Follow) -> None:
    """Two friendships with the same staff: keep the earlier add, fold the other in."""
    kept, folded = (other, follow) if other.added_at <= follow.added_at else (follow, other)
    if folded.is_active and not kept.is_active:
        for name in LIVE_FOLLOW_FIELDS:
            setattr(kept, name, getattr(folded, name))
    links = FollowTag.objects.for_tenant(tenant)
    have = set(links.filter(follow=kept).values_list("tag_id", flat=True))
    links.filter(follow=folded, tag_id__in=have).delete()
    links.filter(follow=folded).update(follow=kept)
    alerts = ChurnAlert.objects.for_tenant(tenant)
    clash = set(alerts.filter(follow=kept).values_list("occurred_at", flat=True))
    alerts.filter(follow=folded).exclude(occurred_at__in=clash).update(follow=kept)
    alerts.filter(follow=folded).delete()  # the same deletion, seen on both records
    Follow.objects.for_tenant(tenant).filter(pk=folded.pk).delete()
    kept.customer = survivor
    kept.save()


def _fill_profile(survivor: Customer, duplicate: Customer) -> dict[str, list[Any]]:
    changes: dict[str, list[Any]] = {}

    def put(name: str, value: Any) -> None:
        before = getattr(survivor, name)
        if before != value:
            setattr(survivor, name, value)
            changes[name] = [before, value]

    for name in FILLED_FIELDS:
        if not getattr(survivor, name) and getattr(duplicate, name):
            put(name, getattr(duplicate, name))
    if survivor.gender == Customer.Gender.UNKNOWN and duplicate.gender:
        put("gender", duplicate.gender)
    # The survivor's own phone is kept (the duplicate's is in the snapshot); the same number
    # verified on the duplicate counts as verified.
    if duplicate.phone and not survivor.phone:
        survivor.phone, survivor.phone_hash = duplicate.phone, duplicate.phone_hash
        survivor.phone_verified = duplicate.phone_verified
        changes["phone"] = ["", "***"]
    elif duplicate.phone_verified and duplicate.phone_hash == (survivor.phone_hash or None):
        put("phone_verified", True)
    interests = list(dict.fromkeys([*(survivor.interests or []), *(duplicate.interests or [])]))
    if interests != (survivor.interests or []):
        put("interests", interests)
    custom = {**(duplicate.custom or {}), **(survivor.custom or {})}
    if custom != (survivor.custom or {}):
        put("custom", custom)
    if duplicate.last_interaction_at and (
        survivor.last_interaction_at is None
        or duplicate.last_interaction_at > survivor.last_interaction_at
    ):
        put("last_interaction_at", duplicate.last_interaction_at)
    if duplicate.first_added_at and (
        survivor.first_added_at is None or duplicate.first_added_at < survivor.first_added_at
    ):
        put("first_added_at", duplicate.first_added_at)
        put("source_state", duplicate.source_state)
    return _json(changes)


def _retire(tenant: Any, survivor: Customer, duplicate: Customer) -> None:
    """Survivor: owner and status from its friendships now; duplicate: a tombstone."""
    first = (
        Follow.objects.for_tenant(tenant)
        .filter(customer=survivor, status=Follow.Status.ACTIVE)
        .order_by("added_at", "id")
        .first()
    )
    if first is not None:
        survivor.owner_id = first.staff_id
        survivor.status, survivor.lost_at = Customer.Status.ACTIVE, None
    elif survivor.owner_id is None:
        survivor.owner_id = duplicate.owner_id
    survivor.save()
    Customer.objects.for_tenant(tenant).filter(merged_into=duplicate).update(
        merged_into=survivor, updated_at=timezone.now()
    )
    Customer.objects.for_tenant(tenant).filter(pk=duplicate.pk).update(
        merged_into=survivor, owner=None, updated_at=timezone.now()
    )
    duplicate.merged_into, duplicate.owner = survivor, None


# --- automatic merges ------------------------------------------------------------------------
def auto_merge_on_unionid(tenant: Any, customer_id: int | None) -> list[CustomerMerge]:
    """Fold every live record sharing this customer's unionid into one (the handler of new
    friendships and profile changes). Nothing happens without a unionid or a second record."""
    from siyu.tenancy.services import system_actor

    if customer_id is None:
        return []
    customers = Customer.objects.for_tenant(tenant).filter(merged_into__isnull=True)
    customer = customers.filter(pk=customer_id).exclude(unionid="").first()
    if customer is None:
        return []
    same = list(customers.filter(unionid=customer.unionid).order_by("id"))
    if len(same) < 2:
        return []
    survivor = pick_survivor(same)
    actor = system_actor(customer.tenant, channel="system")
    return [
        merge_customers(actor, survivor, other, CustomerMerge.Reason.UNIONID)
        for other in same
        if other.pk != survivor.pk
    ]


def auto_merge_on_unionids(tenant: Any, customer_ids: Iterable[int]) -> list[CustomerMerge]:
    """``auto_merge_on_unionid`` for many new customers: one query finds those whose unionid
    another live record shares (usually none), and only they are merged."""
    ids = {customer_id for customer_id in customer_ids if customer_id is not None}
    if not ids:
        return []
    live = Customer.objects.for_tenant(tenant).filter(merged_into__isnull=True)
    theirs = live.filter(pk__in=ids).exclude(unionid="").values("unionid")
    shared = (
        live.filter(unionid__in=Subquery(theirs))
        .values("unionid")
        .annotate(records=Count("id"))
        .filter(records__gte=2)
        .values_list("unionid", flat=True)
    )
    to_merge = live.filter(pk__in=ids, unionid__in=list(shared)).order_by("id")
    merges: list[CustomerMerge] = []
    done: set[str] = set()
    for customer_id, unionid in to_merge.values_list("id", "unionid"):
        if unionid not in done:
            done.add(unionid)
            merges += auto_merge_on_unionid(tenant, customer_id)
    return merges


def merges_for(actor: Actor):
    """Merge history the actor may see (by the survivor's owner)."""
    return CustomerMerge.objects.for_actor(actor).select_related("survivor", "merged_by")
