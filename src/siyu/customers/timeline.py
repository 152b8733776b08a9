"""A customer's timeline: their events, newest first, each told in one readable line.

The events are ``core.Event`` rows with the customer's id, and those of every record merged
into them (``Customer.merged_from``, followed through merges of merges), so a merge loses no
history. Pages are keyset-paged on (occurred_at, id): stable while new events arrive.

Each event type has a describer that turns it into a sentence (through gettext; the Chinese
comes from the catalogue). Other domains register theirs with ``@describes("order.paid")``;
an unknown type still gets a line (its type and staff).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db.models import Q
from django.utils.translation import gettext as _

from siyu.core.errors import InvalidInput
from siyu.core.models import Event
from siyu.customers.models import Customer, Follow, LifecycleStage, Tag

PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_MERGE_DEPTH = 10


# --- which customer ids -------------------------------------------------------------------------
def timeline_customer_ids(customer: Customer) -> list[int]:
    """The customer's id and those of every record merged into it (merges of merges too)."""
    ids = [customer.pk]
    frontier = [customer.pk]
    for _depth in range(MAX_MERGE_DEPTH):
        merged = list(
            Customer.objects.for_tenant(customer.tenant_id)
            .filter(merged_into_id__in=frontier)
            .exclude(pk__in=ids)
            .values_list("pk", flat=True)
        )
        if not merged:
            break
        ids += merged
        frontier = merged
    return ids


# --- paging ---------------------------------------------------------------------------------------
CURSOR_PREFIX = "t1"


def encode_cursor(event: Event) -> str:
    micros = int(event.occurred_at.timestamp() * 1_000_000)
    raw = f"{CURSOR_PREFIX}:{micros}:{event.pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        prefix, micros, event_id = base64.urlsafe_b64decode(padded).decode().split(":")
        if prefix != CURSOR_PREFIX:
            raise ValueError(prefix)
        moment = datetime.fromtimestamp(int(micros) / 1_000_000, tz=UTC)
        return moment, int(event_id)
    except (ValueError, binascii.Error, OverflowError, OSError):
        raise InvalidInput(
            _("The cursor is invalid: pass back a next_cursor this API returned"),
            code="invalid_cursor",
            details={"cursor": cursor},
        ) from None


@dataclass
class TimelineEntry:
    id: int
    type: str
    occurred_at: datetime
    text: str
    icon: str
    staff_id: int | None
    staff_name: str
    source: str
    customer_id: int
    merged: bool  # recorded on a record since merged into this one
    payload: dict[str, Any] = field(repr=False)


@dataclass
class TimelinePage:
    entries: list[TimelineEntry]
    next_cursor: str | None


def timeline(
    customer: Customer,
    *,
    limit: int = PAGE_SIZE,
    cursor: str | None = None,
    types: Iterable[str] | None = None,
    customer_ids: list[int] | None = None,
) -> TimelinePage:
    """One page of the customer's events, newest first (the caller checked visibility).

    ``customer_ids``: ``timeline_customer_ids(customer)`` when the caller has it already.
    """
    limit = max(1, min(int(limit), MAX_PAGE_SIZE))
    ids = customer_ids or timeline_customer_ids(customer)
    events = (
        Event.objects.for_tenant(customer.tenant_id)
        .filter(customer_id__in=ids)
        .select_related("staff")
        .order_by("-occurred_at", "-id")
    )
    if types:
        events = events.filter(type__in=list(types))
    if cursor:
        moment, event_id = decode_cursor(cursor)
        events = events.filter(Q(occurred_at__lt=moment) | Q(occurred_at=moment, id__lt=event_id))
    rows = list(events[: limit + 1])
    page = rows[:limit]
    context = DescribeContext.for_events(customer, page)
    entries = [entry_for(event, context) for event in page]
    return TimelinePage(entries, encode_cursor(page[-1]) if len(rows) > limit else None)


# --- describing events ----------------------------------------------------------------------------
@dataclass
class DescribeContext:
    """What describers may look up, loaded once per page (no query per event)."""

    customer: Customer
    tags_by_wecom_id: dict[str, str] = field(default_factory=dict)
    tags_by_id: dict[int, str] = field(default_factory=dict)
    groups: dict[int, str] = field(default_factory=dict)
    staff_by_userid: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_events(cls, customer: Customer, events: list[Event]) -> DescribeContext:
        from siyu.community.models import Group
        from siyu.tenancy.models import Staff

        context = cls(customer)
        tenant = customer.tenant_id
        wecom_tag_ids: set[str] = set()
        tag_ids: set[int] = set()
        group_ids: set[int] = set()
        userids: set[str] = set()
        for event in events:
            payload = event.payload or {}
            if event.type == "follow.tags_changed":
                wecom_tag_ids.update(payload.get("added") or ())
                wecom_tag_ids.update(payload.get("removed") or ())
            for key in ("tag_id", "tag_ids"):
                value = payload.get(key)
                values = value if isinstance(value, list) else [value]
                tag_ids.update(v for v in values if isinstance(v, int))
            if event.group_id:
                group_ids.add(event.group_id)
            if event.type == "customer.owner_changed":
                userids.update(filter(None, (payload.get("from_userid"), payload.get("to_userid"))))
        if wecom_tag_ids or tag_ids:
            query = Q(wecom_tag_id__in=wecom_tag_ids) | Q(pk__in=tag_ids)
            for pk, wecom_id, name in (
                Tag.objects.for_tenant(tenant)
                .filter(query)
                .values_list("pk", "wecom_tag_id", "name")
            ):
                context.tags_by_id[pk] = name
                if wecom_id:
                    context.tags_by_wecom_id[wecom_id] = name
        if group_ids:
            context.groups = dict(
                Group.objects.for_tenant(tenant).filter(pk__in=group_ids).values_list("pk", "name")
            )
        if userids:
            context.staff_by_userid = dict(
                Staff.objects.for_tenant(tenant)
                .filter(wecom_userid__in=userids)
                .values_list("wecom_userid", "name")
            )
        return context

    def tag_names(self, wecom_ids: Iterable[str]) -> str:
        return "、".join(self.tags_by_wecom_id.get(tag_id, tag_id) for tag_id in wecom_ids)


Describer = Callable[[Event, DescribeContext], str]
_describers: dict[str, tuple[Describer, str]] = {}


def describes(*event_types: str, icon: str = "history") -> Callable[[Describer], Describer]:
    """Register the sentence (and Material Symbols icon) for these event types."""

    def register(function: Describer) -> Describer:
        for event_type in event_types:
            _describers[event_type] = (function, icon)
        return function

    return register


def _staff(event: Event) -> str:
    return event.staff.name if event.staff_id and event.staff else _("a staff member")


def entry_for(event: Event, context: DescribeContext) -> TimelineEntry:
    describer, icon = _describers.get(event.type, (_fallback, "history"))
    try:
        text = describer(event, context)
    except (KeyError, TypeError, ValueError, AttributeError):  # an odd payload: still a line
        text = _fallback(event, context)
    return TimelineEntry(
        id=event.pk,
        type=event.type,
        occurred_at=event.occurred_at,
        text=text,
        icon=icon,
        staff_id=event.staff_id,
        staff_name=event.staff.name if event.staff_id and event.staff else "",
        source=event.source,
        customer_id=event.customer_id,
        merged=event.customer_id != context.customer.pk,
        payload=event.payload or {},
    )


def _fallback(event: Event, context: DescribeContext) -> str:
    if event.staff_id:
        return _("%(type)s (staff: %(staff)s)") % {"type": event.type, "staff": _staff(event)}
    return _("Event: %(type)s") % {"type": event.type}


def _way(payload: dict[str, Any]) -> str:
    try:
        return str(Follow.AddWay(int(payload.get("add_way") or 0)).label)
    except ValueError:
        return str(Follow.AddWay.UNKNOWN.label)


def _channel(payload: dict[str, Any]) -> str:
    state = payload.get("state") or ""
    return _(", channel %(state)s") % {"state": state} if state else ""


@describes("customer.added", icon="person_add")
def _customer_added(event: Event, context: DescribeContext) -> str:
    payload = event.payload
    return _("Added %(staff)s for the first time (%(way)s%(channel)s)") % {
        "staff": _staff(event),
        "way": _way(payload),
        "channel": _channel(payload),
    }


@describes("follow.added", icon="handshake")
def _follow_added(event: Event, context: DescribeContext) -> str:
    payload = event.payload
    return _("Became friends with %(staff)s (%(way)s%(channel)s)") % {
        "staff": _staff(event),
        "way": _way(payload),
        "channel": _channel(payload),
    }


@describes("follow.updated", icon="edit_note")
def _follow_updated(event: Event, context: DescribeContext) -> str:
    names = ", ".join(sorted((event.payload.get("changes") or {}).keys()))
    return _("%(staff)s updated their remark (%(fields)s)") % {
        "staff": _staff(event),
        "fields": names,
    }


@describes("follow.deleted_by_customer", icon="person_remove")
def _deleted_by_customer(event: Event, context: DescribeContext) -> str:
    return _("Deleted %(staff)s from their contacts") % {"staff": _staff(event)}


@describes("follow.deleted_by_staff", icon="person_off")
def _deleted_by_staff(event: Event, context: DescribeContext) -> str:
    return _("%(staff)s deleted the customer") % {"staff": _staff(event)}


@describes("follow.tags_changed", icon="sell")
def _tags_changed(event: Event, context: DescribeContext) -> str:
    added = event.payload.get("added") or []
    removed = event.payload.get("removed") or []
    parts = []
    if added:
        parts.append(_("tagged %(tags)s") % {"tags": context.tag_names(added)})
    if removed:
        parts.append(_("removed %(tags)s") % {"tags": context.tag_names(removed)})
    return _("%(staff)s %(changes)s") % {"staff": _staff(event), "changes": "; ".join(parts)}


def _tag_list(event: Event, context: DescribeContext) -> str:
    payload = event.payload
    ids = payload.get("tag_ids") or ([payload["tag_id"]] if payload.get("tag_id") else [])
    names = [context.tags_by_id.get(tag_id, str(tag_id)) for tag_id in ids]
    return "、".join(names) or payload.get("tag_name", "")


@describes("customer.tagged", icon="sell")
def _customer_tagged(event: Event, context: DescribeContext) -> str:
    return _("Tagged %(tags)s") % {"tags": _tag_list(event, context)}


@describes("customer.untagged", icon="label_off")
def _customer_untagged(event: Event, context: DescribeContext) -> str:
    return _("Tag removed: %(tags)s") % {"tags": _tag_list(event, context)}


@describes("customer.updated", icon="badge")
def _customer_updated(event: Event, context: DescribeContext) -> str:
    names = ", ".join(sorted((event.payload.get("changes") or {}).keys()))
    return _("WeCom profile changed (%(fields)s)") % {"fields": names}


@describes("customer.owner_changed", icon="swap_horiz")
def _owner_changed(event: Event, context: DescribeContext) -> str:
    payload = event.payload
    names = context.staff_by_userid
    return _("Owner changed from %(from)s to %(to)s") % {
        "from": names.get(payload.get("from_userid"), payload.get("from_userid", "")),
        "to": names.get(payload.get("to_userid"), payload.get("to_userid", "")),
    }


@describes("customer.lost", icon="heart_broken")
def _customer_lost(event: Event, context: DescribeContext) -> str:
    return _("Lost: no staff is their WeCom friend any more")


@describes("customer.returned", icon="undo")
def _customer_returned(event: Event, context: DescribeContext) -> str:
    return _("Came back and added %(staff)s again") % {"staff": _staff(event)}


@describes("customer.merged", icon="merge")
def _customer_merged(event: Event, context: DescribeContext) -> str:
    payload = event.payload
    other = payload.get("merged_name") or payload.get("merged_external_userid") or ""
    return _("Another record of this customer was merged in (%(other)s)") % {"other": other}


@describes("group.member_joined", icon="group_add")
def _joined_group(event: Event, context: DescribeContext) -> str:
    name = context.groups.get(event.group_id) or event.payload.get("chat_id", "")
    return _("Joined the group %(group)s") % {"group": name}


@describes("group.member_left", icon="group_remove")
def _left_group(event: Event, context: DescribeContext) -> str:
    name = context.groups.get(event.group_id) or event.payload.get("chat_id", "")
    return _("Left the group %(group)s") % {"group": name}


@describes("customer.profile_updated", icon="edit")
def _profile_updated(event: Event, context: DescribeContext) -> str:
    names = ", ".join(sorted((event.payload.get("changes") or {}).keys()))
    return _("%(staff)s updated the profile (%(fields)s)") % {
        "staff": _staff(event),
        "fields": names,
    }


def _note_text(event: Event) -> str:
    from siyu.customers.models import CustomerNote

    payload = event.payload
    kind = payload.get("kind") or CustomerNote.Kind.NOTE
    try:
        label = str(CustomerNote.Kind(kind).label)
    except ValueError:
        label = kind
    return f"{label}: {payload.get('content', '')}"


@describes("customer.note_added", icon="sticky_note_2")
def _note_added(event: Event, context: DescribeContext) -> str:
    return _("%(staff)s wrote a note — %(note)s") % {
        "staff": _staff(event),
        "note": _note_text(event),
    }


@describes("customer.followed_up", icon="support_agent")
def _followed_up(event: Event, context: DescribeContext) -> str:
    return _("%(staff)s followed up — %(note)s") % {
        "staff": _staff(event),
        "note": _note_text(event),
    }


@describes("customer.note_updated", icon="edit_note")
def _note_updated(event: Event, context: DescribeContext) -> str:
    return _("%(staff)s edited a note — %(note)s") % {
        "staff": _staff(event),
        "note": _note_text(event),
    }


@describes("customer.note_deleted", icon="delete")
def _note_deleted(event: Event, context: DescribeContext) -> str:
    return _("%(staff)s deleted a note") % {"staff": _staff(event)}


def _stage_label(value: Any) -> str:
    try:
        return str(LifecycleStage(value).label)
    except ValueError:
        return str(value)


@describes("customer.stage_changed", icon="timeline")
def _stage_changed(event: Event, context: DescribeContext) -> str:
    return _("Lifecycle stage: %(from)s → %(to)s") % {
        "from": _stage_label(event.payload.get("from")),
        "to": _stage_label(event.payload.get("to")),
    }


@describes("task.created", icon="task")
def _task_created(event: Event, context: DescribeContext) -> str:
    return _("A task for %(staff)s was created") % {"staff": _staff(event)}


@describes("task.done", icon="task_alt")
def _task_done(event: Event, context: DescribeContext) -> str:
    return _("%(staff)s finished a task") % {"staff": _staff(event)}


@describes("task.dismissed", icon="cancel")
def _task_dismissed(event: Event, context: DescribeContext) -> str:
    return _("A task of %(staff)s was dismissed") % {"staff": _staff(event)}


@describes("message.received", "message.sent", "chat.replied", icon="chat")
def _message(event: Event, context: DescribeContext) -> str:
    if event.type == "message.sent":
        return _("%(staff)s sent a message") % {"staff": _staff(event)}
    return _("Wrote to %(staff)s") % {"staff": _staff(event)}


@describes("material.opened", "link.clicked", icon="visibility")
def _material_opened(event: Event, context: DescribeContext) -> str:
    title = event.payload.get("title") or event.payload.get("material_id") or ""
    return _("Opened %(title)s") % {"title": title}
