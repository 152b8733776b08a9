"""The only writers of customer groups and their members.

WeCom sync and callbacks feed these with WeCom's ``groupchat/get`` data and with the
``change_external_chat`` callbacks (add_member, del_member, dismiss). Each function is one
transaction that writes and records its events (``siyu.community.events``) together and is
idempotent: the same input twice leaves the same rows and one event.

Ordering (``seen_at``: WeCom's timestamp of the change, or when a sync read the data):

* a full snapshot (``upsert_group``) older than the group's newest applied snapshot is
  ignored; within a newer one, a member whose own newest change is newer than the snapshot
  (a join or leave that overtook it) keeps that change;
* a member change (``add_group_members`` / ``remove_group_members``) older than the
  group's newest snapshot or the member's newest change is ignored, as is a leave that
  predates the membership it would end;
* ``seen_at=None`` applies the change without moving the watermarks;
* dismissal is final: a dismissed group ignores later snapshots and member changes.

Customer members are linked to ``Customer`` rows by external_userid through the customers
domain's selectors (read only); a customer that appears later is linked by the
``customer.added`` handler (``handlers.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from siyu.community import events
from siyu.community.models import STATE_MAX_LENGTH, Group, GroupMember
from siyu.core.audit import diff
from siyu.core.errors import InvalidInput, NotFound
from siyu.core.events import record_event
from siyu.customers.selectors import customers_by_external_userid
from siyu.customers.services import as_datetime, digest, event_key, is_stale, millis, newer
from siyu.tenancy.services import staff_by_userid

GROUP_FIELDS = ("name", "owner_userid", "notice", "created_at_wecom", "admin_userids")


# --- input ------------------------------------------------------------------------------
def _text(value: Any, length: int) -> str:
    return ("" if value is None else str(value)).strip()[:length]


def _number(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _clean_chat_id(chat_id: Any) -> str:
    value = _text(chat_id, 200)
    if not value or len(value) > 64:
        raise InvalidInput(_("chat_id must be 1 to 64 characters"), details={"chat_id": value})
    return value


def _userids(entries: Iterable[Any]) -> list[str]:
    """WeCom's ``admin_list`` is [{"userid": ...}]; plain userids are accepted too."""
    found = []
    for entry in entries or ():
        userid = _text(entry.get("userid") if isinstance(entry, dict) else entry, 64)
        if userid and userid not in found:
            found.append(userid)
    return found


def _member_values(entry: Any) -> dict[str, Any]:
    """One member of WeCom's ``member_list`` (or just a userid) as GroupMember fields."""
    if not isinstance(entry, dict):
        entry = {"userid": entry}
    userid = _text(entry.get("userid"), 65)
    if not userid or len(userid) > 64:
        raise InvalidInput(
            _("Every group member needs a userid of 1 to 64 characters"),
            details={"userid": entry.get("userid")},
        )
    invitor = entry.get("invitor")
    invitor_userid = invitor.get("userid") if isinstance(invitor, dict) else invitor
    values: dict[str, Any] = {
        "userid": userid,
        "member_type": _number(entry.get("type", entry.get("member_type")), 0),
        "join_time": as_datetime(entry.get("join_time"), "join_time"),
        "join_scene": _number(entry.get("join_scene")),
        "invitor_userid": _text(invitor_userid or entry.get("invitor_userid"), 64),
        "group_nickname": _text(entry.get("group_nickname"), 128),
        "name": _text(entry.get("name"), 128),
        "unionid": _text(entry.get("unionid"), 64),
        "state": _text(entry.get("state"), STATE_MAX_LENGTH),
    }
    return values


def _resolve(tenant: Any, entries: list[dict[str, Any]]) -> None:
    """Fill member_type, staff and customer of each entry from the tenant's records."""
    staff = staff_by_userid(tenant, [entry["userid"] for entry in entries])
    for entry in entries:
        if entry["member_type"] not in GroupMember.MemberType.values:
            entry["member_type"] = (
                GroupMember.MemberType.STAFF
                if entry["userid"] in staff
                else GroupMember.MemberType.CUSTOMER
            )
    customers = customers_by_external_userid(
        tenant,
        [e["userid"] for e in entries if e["member_type"] == GroupMember.MemberType.CUSTOMER],
    )
    for entry in entries:
        is_staff = entry["member_type"] == GroupMember.MemberType.STAFF
        entry["staff"] = staff.get(entry["userid"]) if is_staff else None
        entry["customer"] = None if is_staff else customers.get(entry["userid"])


# --- groups -------------------------------------------------------------------------------
@transaction.atomic
def upsert_group(
    tenant: Any,
    *,
    chat_id: str,
    name: str = "",
    owner_userid: str = "",
    notice: str = "",
    created_at: datetime | None = None,
    admin_userids: Iterable[Any] = (),
    members: list[dict[str, Any]] | None = None,
    seen_at: datetime | None = None,
    member_version: str = "",
    source: str = "sync",
) -> tuple[Group, bool]:
    """Create or refresh a group from WeCom's ``groupchat/get``; returns (group, created).

    Records ``group.created`` the first time and ``group.updated`` when the name, notice,
    owner or administrators change. With ``members`` (WeCom's ``member_list``) the member
    list is reconciled in full: newcomers record ``group.member_joined``, members missing
    from the list ``group.member_left``. ``members=None`` leaves the members alone.
    """
    chat_id = _clean_chat_id(chat_id)
    seen_at = as_datetime(seen_at, "seen_at")
    owner_userid = _text(owner_userid, 64)
    values = {
        "name": _text(name, 255),
        "owner_userid": owner_userid,
        "notice": _text(notice, 10_000),
        "created_at_wecom": as_datetime(created_at, "created_at"),
        "admin_userids": _userids(admin_userids),
    }
    owner = staff_by_userid(tenant, [owner_userid]).get(owner_userid)
    groups = Group.objects.for_tenant(tenant)
    group, created = groups.get_or_create(
        tenant=tenant,
        chat_id=chat_id,
        defaults={
            **values,
            "owner": owner,
            "member_version": _text(member_version, 64),
            "wecom_seen_at": seen_at,
        },
    )
    if created:
        record_event(
            tenant,
            events.GROUP_CREATED,
            key=event_key(events.GROUP_CREATED, chat_id),
            staff=owner,
            group_id=group.pk,
            payload={"chat_id": chat_id, "name": group.name, "owner_userid": owner_userid},
            source=source,
            occurred_at=group.created_at_wecom,
        )
    else:
        group = groups.select_for_update().get(pk=group.pk)
        if group.status == Group.Status.DISMISSED or is_stale(seen_at, group.wecom_seen_at):
            return group, False
        changes = diff(group, values)
        bookkeeping = {
            "owner": owner,
            "member_version": _text(member_version, 64) or group.member_version,
            "wecom_seen_at": newer(group.wecom_seen_at, seen_at),
        }
        if changes or diff(group, bookkeeping):
            for field, value in {**values, **bookkeeping}.items():
                setattr(group, field, value)
            group.save()
        if changes:
            record_event(
                tenant,
                events.GROUP_UPDATED,
                key=event_key(events.GROUP_UPDATED, chat_id, millis(seen_at), digest(changes)),
                staff=owner,
                group_id=group.pk,
                payload={"chat_id": chat_id, "changes": changes},
                source=source,
                occurred_at=seen_at,
            )
    if members is not None:
        _reconcile_members(group, members, seen_at=seen_at, initial=created, source=source)
    _refresh_counts(group)
    return group, created


def _locked_group(tenant: Any, chat_id: str) -> Group:
    group = (
        Group.objects.for_tenant(tenant)
        .select_for_update(of=("self",))
        .select_related("owner")
        .filter(chat_id=_clean_chat_id(chat_id))
        .first()
    )
    if group is None:
        raise NotFound(_("Group not found: sync it from WeCom first"), details={"chat_id": chat_id})
    return group


def _reconcile_members(
    group: Group,
    entries: list[Any],
    *,
    seen_at: datetime | None,
    initial: bool,
    source: str,
) -> None:
    wanted = {}
    for entry in entries:
        values = _member_values(entry)
        wanted[values["userid"]] = values
    _resolve(group.tenant_id, list(wanted.values()))
    existing = {
        member.userid: member
        for member in GroupMember.objects.for_tenant(group.tenant_id)
        .select_for_update()
        .filter(group=group)
    }
    for userid, values in wanted.items():
        _join(group, existing.get(userid), values, seen_at=seen_at, initial=initial, source=source)
    for userid, member in existing.items():
        if (
            userid not in wanted
            and member.is_active
            and not is_stale(seen_at, member.wecom_seen_at)
        ):
            _leave(group, member, at=seen_at or timezone.now(), quit_scene=None, source=source)


def _join(
    group: Group,
    member: GroupMember | None,
    values: dict[str, Any],
    *,
    seen_at: datetime | None,
    initial: bool = False,
    source: str,
) -> GroupMember | None:
    """Apply one member as WeCom shows them in the group; return them if they just joined."""
    if member is not None and is_stale(seen_at, member.wecom_seen_at):
        return None  # a newer change of this member (a leave or join) overtook this one
    if member is not None and not member.is_active and seen_at is None:
        join_time = values["join_time"]
        if join_time is not None and member.left_at and join_time < member.left_at:
            return None  # data read before they left: that membership has ended
    if values["join_time"] is None:
        values["join_time"] = (
            (member.join_time if member is not None and member.is_active else None)
            or seen_at
            or timezone.now()
        )
    if member is None:
        member = GroupMember.objects.for_tenant(group.tenant_id).create(
            tenant_id=group.tenant_id, group=group, wecom_seen_at=seen_at, **values
        )
    elif member.is_active:
        watermark = newer(member.wecom_seen_at, seen_at)
        detail = {k: v for k, v in values.items() if k != "join_time" or v is not None}
        if diff(member, detail) or watermark != member.wecom_seen_at:
            for field, value in detail.items():
                setattr(member, field, value)
            member.wecom_seen_at = watermark
            member.save()
        return None
    else:
        for field, value in values.items():
            setattr(member, field, value)
        member.status = GroupMember.Status.ACTIVE
        member.left_at = None
        member.quit_scene = None
        member.wecom_seen_at = newer(member.wecom_seen_at, seen_at)
        member.save()
    record_event(
        group.tenant_id,
        events.GROUP_MEMBER_JOINED,
        key=event_key(
            events.GROUP_MEMBER_JOINED,
            group.chat_id,
            member.userid,
            int(member.join_time.timestamp()),
        ),
        staff=group.owner,
        customer_id=member.customer_id,
        group_id=group.pk,
        payload={
            "chat_id": group.chat_id,
            "userid": member.userid,
            "member_type": member.member_type,
            "join_scene": member.join_scene,
            "invitor_userid": member.invitor_userid,
            "state": member.state,
            "join_time": member.join_time.isoformat(),
            "with_group": initial,
        },
        source=source,
        occurred_at=member.join_time,
    )
    return member


def _leave(
    group: Group, member: GroupMember, *, at: datetime, quit_scene: int | None, source: str
) -> GroupMember:
    member.status = GroupMember.Status.LEFT
    member.left_at = at
    member.quit_scene = quit_scene
    member.wecom_seen_at = newer(member.wecom_seen_at, at)
    member.save(update_fields=["status", "left_at", "quit_scene", "wecom_seen_at", "updated_at"])
    joined = member.join_time or member.created_at
    record_event(
        group.tenant_id,
        events.GROUP_MEMBER_LEFT,
        key=event_key(
            events.GROUP_MEMBER_LEFT, group.chat_id, member.userid, int(joined.timestamp())
        ),
        staff=group.owner,
        customer_id=member.customer_id,
        group_id=group.pk,
        payload={
            "chat_id": group.chat_id,
            "userid": member.userid,
            "member_type": member.member_type,
            "quit_scene": quit_scene,
            "join_time": joined.isoformat(),
            "left_at": at.isoformat(),
        },
        source=source,
        occurred_at=at,
    )
    return member


def _refresh_counts(group: Group) -> None:
    active = GroupMember.objects.for_tenant(group.tenant_id).filter(
        group=group, status=GroupMember.Status.ACTIVE
    )
    counts = {
        "member_count": active.count(),
        "customer_member_count": active.filter(member_type=GroupMember.MemberType.CUSTOMER).count(),
    }
    if any(getattr(group, field) != value for field, value in counts.items()):
        for field, value in counts.items():
            setattr(group, field, value)
        group.save(update_fields=[*counts, "updated_at"])


@transaction.atomic
def add_group_members(
    tenant: Any,
    chat_id: str,
    members: list[Any],
    seen_at: datetime | None = None,
    *,
    source: str = "callback",
) -> list[GroupMember]:
    """Members joined (WeCom's ``add_member`` change): dicts of ``member_list`` or userids.

    Returns the members whose membership began (each recorded ``group.member_joined``);
    members already in the group only get their details refreshed.
    """
    seen_at = as_datetime(seen_at, "seen_at")
    group = _locked_group(tenant, chat_id)
    if group.status == Group.Status.DISMISSED or is_stale(seen_at, group.wecom_seen_at):
        return []
    entries = {}
    for entry in members:
        values = _member_values(entry)
        entries[values["userid"]] = values
    _resolve(tenant, list(entries.values()))
    existing = {
        member.userid: member
        for member in GroupMember.objects.for_tenant(tenant)
        .select_for_update()
        .filter(group=group, userid__in=list(entries))
    }
    joined = [
        member
        for userid, values in entries.items()
        if (member := _join(group, existing.get(userid), values, seen_at=seen_at, source=source))
    ]
    _refresh_counts(group)
    return joined


@transaction.atomic
def remove_group_members(
    tenant: Any,
    chat_id: str,
    userids: Iterable[str],
    quit_scene: int | None = GroupMember.QuitScene.SELF,
    seen_at: datetime | None = None,
    *,
    source: str = "callback",
) -> list[GroupMember]:
    """Members left (WeCom's ``del_member`` change; ``quit_scene`` 0 left, 1 removed).

    Returns the members whose membership ended (each recorded ``group.member_left``).
    """
    seen_at = as_datetime(seen_at, "seen_at")
    at = seen_at or timezone.now()
    group = _locked_group(tenant, chat_id)
    if group.status == Group.Status.DISMISSED or is_stale(seen_at, group.wecom_seen_at):
        return []
    wanted = {_text(userid, 64) for userid in userids} - {""}
    quit_scene = None if quit_scene is None else _number(quit_scene)
    left = []
    for member in (
        GroupMember.objects.for_tenant(tenant)
        .select_for_update()
        .filter(group=group, userid__in=wanted, status=GroupMember.Status.ACTIVE)
    ):
        if is_stale(seen_at, member.wecom_seen_at):
            continue
        if seen_at is not None and member.join_time and seen_at < member.join_time:
            continue  # the leave predates this membership (they re-joined since)
        left.append(_leave(group, member, at=at, quit_scene=quit_scene, source=source))
    _refresh_counts(group)
    return left


@transaction.atomic
def dismiss_group(
    tenant: Any, chat_id: str, at: datetime | None = None, *, source: str = "callback"
) -> Group | None:
    """The owner dismissed the group (final): records ``group.dismissed``; None if unknown.

    Its members are marked as left without a ``group.member_left`` each (they did not
    leave; the group ended); the event's payload counts them.
    """
    at = as_datetime(at, "at") or timezone.now()
    group = (
        Group.objects.for_tenant(tenant)
        .select_for_update(of=("self",))
        .select_related("owner")
        .filter(chat_id=_clean_chat_id(chat_id))
        .first()
    )
    if group is None or group.status == Group.Status.DISMISSED:
        return group
    members = GroupMember.objects.for_tenant(tenant).filter(
        group=group, status=GroupMember.Status.ACTIVE
    )
    counts = {
        "member_count": group.member_count,
        "customer_member_count": group.customer_member_count,
    }
    members.update(status=GroupMember.Status.LEFT, left_at=at, updated_at=timezone.now())
    group.status = Group.Status.DISMISSED
    group.dismissed_at = at
    group.wecom_seen_at = newer(group.wecom_seen_at, at)
    group.member_count = group.customer_member_count = 0
    group.save()
    record_event(
        tenant,
        events.GROUP_DISMISSED,
        key=event_key(events.GROUP_DISMISSED, group.chat_id),
        staff=group.owner,
        group_id=group.pk,
        payload={"chat_id": group.chat_id, "dismissed_at": at.isoformat(), **counts},
        source=source,
        occurred_at=at,
    )
    return group


@transaction.atomic
def link_customers_memberships(tenant: Any, external_userids: Iterable[str]) -> int:
    """``link_customer_memberships`` for many new customers: one look-up finds the few
    who were in groups before anybody added them (usually none)."""
    wanted = {userid for userid in external_userids if userid}
    if not wanted:
        return 0
    waiting = set(
        GroupMember.objects.for_tenant(tenant)
        .filter(
            userid__in=wanted,
            member_type=GroupMember.MemberType.CUSTOMER,
            customer__isnull=True,
        )
        .values_list("userid", flat=True)
    )
    return sum(link_customer_memberships(tenant, userid) for userid in sorted(waiting))


def link_customer_memberships(tenant: Any, external_userid: str) -> int:
    """Point customer memberships with this external_userid at the (now known) customer."""
    customer = customers_by_external_userid(tenant, [external_userid]).get(external_userid)
    if customer is None:
        return 0
    return (
        GroupMember.objects.for_tenant(tenant)
        .filter(
            userid=external_userid,
            member_type=GroupMember.MemberType.CUSTOMER,
            customer__isnull=True,
        )
        .update(customer=customer, updated_at=timezone.now())
    )
