"""Tags both ways with WeCom: the tag library edited in Siyu, and tags put on customers.

**The tag library** (``TagGroup`` / ``Tag``). WeCom owns the corp tags: an edit made in Siyu
(create, rename, reorder, delete) is sent to WeCom first (``add_corp_tag``,
``edit_corp_tag``, ``del_corp_tag``) and written locally, with WeCom's ids, only once WeCom
accepted it, so that a refusal leaves nothing half-written. WeCom's errcodes come back as
plain messages (a taken name, the 3 000-tag limit, a tag deleted in WeCom meanwhile). Local
(Siyu-only) groups and tags, without a WeCom id, never reach WeCom. Edits made in WeCom arrive
through ``change_external_tag`` callbacks and the sync (``services.sync_corp_tags``); WeCom
sends no callback for an API edit, and if one came (an echo), the reconcile finds nothing to
change.

**Tagging customers.** ``CustomerTag`` is "the customer carries this tag". Tagging writes the
link and a ``customer.tagged`` event on the customer's timeline in one transaction, then
mirrors a WeCom tag onto every active friendship of the customer with ``mark_tag``: one queued
task per friendship (``push_follow_tags``), which compares what the customer carries with
what the friendship is marked with and sends only the difference, so it is idempotent,
order-independent and safe to retry; transient WeCom errors make the queue retry it. A
friendship whose staff has left is skipped (WeCom refuses them). ``FollowTag`` is updated
when WeCom accepts (``services.apply_marked_tags``).

**Bulk tagging** runs as a background job (``customers.bulk_tag``) over explicit customer
ids, a segment or ad-hoc rules, always narrowed to the starter's data scope, in chunks that
each commit on their own; running it again changes nothing already done.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from huey.contrib.djhuey import db_task

from siyu.core.audit import diff, record_audit
from siyu.core.errors import Conflict, Forbidden, InvalidInput, NotFound, ServiceError
from siyu.core.events import EventSpec, record_event, record_events
from siyu.core.jobs import Progress, job_actor, job_runner, start_job
from siyu.core.tasks import on_commit_task
from siyu.customers import events
from siyu.customers import services as customer_services
from siyu.customers.models import Customer, CustomerTag, Follow, FollowTag, Tag, TagGroup
from siyu.customers.services import digest, event_key, millis

logger = logging.getLogger(__name__)

MAX_NAME_CHARS = 30  # WeCom: tag and tag group names are at most 30 characters
MAX_ORDER = 2**32 - 1  # WeCom: order is in [0, 2^32)
CHUNK = 500  # customers written per transaction in bulk paths
MAX_BULK_IDS = 200_000  # explicit ids per bulk job (larger selections: use a segment)
BULK_KIND = "customers.bulk_tag"
TAG_PERMISSION = "customers.add_customertag"  # put tags on customers
UNTAG_PERMISSION = "customers.delete_customertag"  # take them off

# WeCom errcodes of the tag APIs (Tencent's global errcode page, document/path/90313).
TAG_NAME_TAKEN = 40071  # 不合法的标签名字 (标签名字已经存在)
TAG_NAME_LENGTH = 40072  # 不合法的标签名字长度
TAG_ID_INVALID = 40068  # 不合法的标签ID (unknown or deleted)
TAG_LIMIT = 40126  # 企业标签个数达到上限，最多为3000个


# --- WeCom, in words ------------------------------------------------------------------------
def _client(tenant: Any) -> Any:
    from siyu.wecom.client import client_for

    return client_for(tenant)


def _refusal(error: Any, name: str = "") -> ServiceError:
    """A WeCom refusal of a tag library edit as a message an operator can act on.

    The errcode and WeCom's own message stay in ``details``; unknown errcodes keep the
    client's generic message (which names the API and the errcode).
    """
    details = {"errcode": error.errcode, "errmsg": error.errmsg, "api": error.api, "name": name}
    if error.errcode == TAG_NAME_TAKEN:
        return Conflict(
            _("WeCom already has a tag or tag group named “%(name)s”: choose another name.")
            % {"name": name},
            code="tag_name_taken",
            details=details,
        )
    if error.errcode == TAG_NAME_LENGTH:
        return InvalidInput(
            _("WeCom refused the name “%(name)s”: names are 1 to 30 characters.") % {"name": name},
            details=details,
        )
    if error.errcode == TAG_ID_INVALID:
        return NotFound(
            _(
                "WeCom no longer has this tag or tag group (it was deleted in WeCom); "
                "a tag sync brings Siyu up to date."
            ),
            code="tag_not_in_wecom",
            details=details,
        )
    if error.errcode == TAG_LIMIT:
        return Conflict(
            _("The corp has reached WeCom's limit of 3 000 corp tags: delete unused tags first."),
            code="tag_limit",
            details=details,
        )
    return error


def _call_wecom(tenant: Any, method: str, *, label: str = "", **arguments: Any) -> dict:
    """Call a tag API of the tenant's WeCom client; refusals become clear service errors
    (``label``: the name the message should quote)."""
    from siyu.wecom.errors import WeComError, WeComInvalidArgument

    client = _client(tenant)
    try:
        return getattr(client, method)(**arguments)
    except WeComInvalidArgument:
        raise
    except WeComError as error:
        raise _refusal(error, label) from error


# --- validation -------------------------------------------------------------------------------
def _clean_name(value: Any, field_name: str = "name") -> str:
    name = ("" if value is None else str(value)).strip()
    if not name:
        raise InvalidInput(_("A name is required."), details={field_name: value})
    if len(name) > MAX_NAME_CHARS:
        raise InvalidInput(
            _("Names are at most %(limit)d characters (WeCom's limit); “%(name)s” has %(count)d.")
            % {"limit": MAX_NAME_CHARS, "name": name, "count": len(name)},
            details={field_name: name},
        )
    return name


def _clean_order(value: Any) -> int:
    try:
        order = int(value or 0)
    except (TypeError, ValueError):
        raise InvalidInput(_("order must be a whole number"), details={"order": value}) from None
    if not 0 <= order <= MAX_ORDER:
        raise InvalidInput(
            _("order must be between 0 and %(max)d") % {"max": MAX_ORDER},
            details={"order": value},
        )
    return order


def live_group(actor: Any, group: TagGroup | int) -> TagGroup:
    group_id = getattr(group, "pk", group)
    found = TagGroup.objects.for_tenant(actor.tenant).filter(pk=group_id, deleted=False).first()
    if found is None:
        raise NotFound(_("Tag group not found"), details={"id": group_id})
    return found


def live_tag(actor: Any, tag: Tag | int) -> Tag:
    tag_id = getattr(tag, "pk", tag)
    found = (
        Tag.objects.for_tenant(actor.tenant)
        .select_related("group")
        .filter(pk=tag_id, deleted=False)
        .first()
    )
    if found is None:
        raise NotFound(_("Tag not found"), details={"id": tag_id})
    return found


def _check_group_name_free(actor: Any, name: str, *, other_than: TagGroup | None = None) -> None:
    taken = TagGroup.objects.for_tenant(actor.tenant).filter(name=name, deleted=False)
    if other_than is not None:
        taken = taken.exclude(pk=other_than.pk)
    if taken.exists():
        raise Conflict(
            _("A tag group named “%(name)s” already exists.") % {"name": name},
            code="tag_name_taken",
            details={"name": name},
        )


def _check_no_repeats(names: Sequence[str]) -> None:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InvalidInput(
            _("Tag names repeat: %(names)s") % {"names": ", ".join(repeated)},
            details={"tags": repeated},
        )


def _check_tag_names_free(
    actor: Any, group: TagGroup, names: Sequence[str], *, other_than: Tag | None = None
) -> None:
    _check_no_repeats(names)
    taken = Tag.objects.for_tenant(actor.tenant).filter(group=group, deleted=False, name__in=names)
    if other_than is not None:
        taken = taken.exclude(pk=other_than.pk)
    existing = sorted(taken.values_list("name", flat=True))
    if existing:
        raise Conflict(
            _("The group “%(group)s” already has a tag named %(names)s.")
            % {"group": group.name, "names": ", ".join(f"“{n}”" for n in existing)},
            code="tag_name_taken",
            details={"tags": existing},
        )


def _tag_specs(tags: Iterable[Any]) -> list[dict[str, Any]]:
    """``[{"name", "order"}]`` from names or dicts, cleaned."""
    specs = []
    for item in tags or ():
        if isinstance(item, dict):
            specs.append(
                {"name": _clean_name(item.get("name")), "order": _clean_order(item.get("order"))}
            )
        else:
            specs.append({"name": _clean_name(item), "order": 0})
    return specs


def _when(value: Any) -> Any:
    return customer_services.as_datetime(value, "create_time") if value else None


def _record(actor: Any, event_type: str, row: Any, payload: dict[str, Any]) -> None:
    """The library edit as an event and in the audit log (same transaction as the write)."""
    record_event(
        actor.tenant,
        event_type,
        key=event_key(event_type, row.pk, millis(timezone.now()), digest(payload)),
        staff=actor.staff,
        payload=payload,
        source=actor.channel,
    )
    record_audit(actor, event_type, row, changes=payload.get("changes"))


# --- the tag library: groups -----------------------------------------------------------------
def create_tag_group(
    actor: Any,
    *,
    name: str,
    tags: Iterable[Any] = (),
    order: Any = 0,
    local: bool = False,
) -> TagGroup:
    """Create a tag group with its first tags, in WeCom (unless ``local``) and then in Siyu.

    WeCom keeps no empty group, so a WeCom group needs at least one tag. ``tags`` are names
    or ``{"name", "order"}``. A taken name is refused before WeCom is asked.
    """
    name = _clean_name(name, "name")
    order = _clean_order(order)
    specs = _tag_specs(tags)
    if not specs and not local:
        raise InvalidInput(_("A WeCom tag group needs at least one tag."), details={"tags": []})
    _check_group_name_free(actor, name)
    _check_no_repeats([spec["name"] for spec in specs])
    if local:
        with transaction.atomic():
            group = TagGroup.objects.for_tenant(actor.tenant).create(
                tenant=actor.tenant, name=name, order=order
            )
            created = [
                Tag.objects.for_tenant(actor.tenant).create(
                    tenant=actor.tenant, group=group, name=spec["name"], order=spec["order"]
                )
                for spec in specs
            ]
            _record(actor, events.TAG_GROUP_CREATED, group, _group_payload(group, created))
        return group
    with customer_services.tag_library_lock(actor.tenant):
        answer = _call_wecom(
            actor.tenant, "add_corp_tag", label=name, group_name=name, order=order, tag=specs
        )
        group, created = _store_wecom_group(actor.tenant, answer.get("tag_group") or {})
        _record(actor, events.TAG_GROUP_CREATED, group, _group_payload(group, created))
    return group


def _group_payload(group: TagGroup, tags: Sequence[Tag]) -> dict[str, Any]:
    return {
        "group_id": group.pk,
        "name": group.name,
        "wecom_group_id": group.wecom_group_id,
        "tags": [{"id": t.pk, "name": t.name, "wecom_tag_id": t.wecom_tag_id} for t in tags],
    }


def _store_wecom_group(tenant: Any, answer: dict[str, Any]) -> tuple[TagGroup, list[Tag]]:
    """Upsert the group and tags ``add_corp_tag`` answered with, by their WeCom ids.

    An upsert, not an insert: a callback or sync may have stored them a moment earlier.
    """
    group_id = str(answer.get("group_id") or "")
    if not group_id:
        raise ServiceError(_("WeCom answered without a tag group id."), code="wecom_error")
    groups = TagGroup.objects.for_tenant(tenant)
    values = {
        "name": str(answer.get("group_name") or "")[:64],
        "order": int(answer.get("order") or 0),
        "deleted": False,
        "wecom_created_at": _when(answer.get("create_time")),
    }
    group = groups.filter(wecom_group_id=group_id).first()
    if group is None:
        try:
            with transaction.atomic():
                group = groups.create(tenant=tenant, wecom_group_id=group_id, **values)
        except IntegrityError:
            group = groups.get(wecom_group_id=group_id)
    else:
        for name, value in values.items():
            setattr(group, name, value)
        group.save()
    stored = []
    for item in answer.get("tag") or ():
        stored.append(_store_wecom_tag(tenant, group, item))
    return group, stored


def _store_wecom_tag(tenant: Any, group: TagGroup, item: dict[str, Any]) -> Tag:
    tag_id = str(item.get("id") or "")
    if not tag_id:
        raise ServiceError(_("WeCom answered without a tag id."), code="wecom_error")
    tags = Tag.objects.for_tenant(tenant)
    values = {
        "group": group,
        "name": str(item.get("name") or "")[:64],
        "order": int(item.get("order") or 0),
        "deleted": False,
        "wecom_created_at": _when(item.get("create_time")),
    }
    tag = tags.filter(wecom_tag_id=tag_id).first()
    if tag is None:
        try:
            with transaction.atomic():
                return tags.create(tenant=tenant, wecom_tag_id=tag_id, **values)
        except IntegrityError:
            tag = tags.get(wecom_tag_id=tag_id)
    for name, value in values.items():
        setattr(tag, name, value)
    tag.save()
    return tag


def update_tag_group(
    actor: Any, group: TagGroup | int, *, name: Any = None, order: Any = None
) -> TagGroup:
    """Rename and/or reorder a tag group (in WeCom first); unchanged values are a no-op."""
    group = live_group(actor, group)
    values: dict[str, Any] = {}
    if name is not None and _clean_name(name) != group.name:
        values["name"] = _clean_name(name)
        _check_group_name_free(actor, values["name"], other_than=group)
    if order is not None and _clean_order(order) != group.order:
        values["order"] = _clean_order(order)
    if not values:
        return group
    return _edit(actor, group, group.wecom_group_id, values, events.TAG_GROUP_UPDATED, "group_id")


def delete_tag_group(actor: Any, group: TagGroup | int) -> TagGroup:
    """Delete a tag group and its tags (in WeCom first): they leave every customer."""
    group = live_group(actor, group)
    with customer_services.tag_library_lock(actor.tenant):
        if group.wecom_group_id:
            _delete_in_wecom(actor.tenant, group_id=[group.wecom_group_id], label=group.name)
        tags = list(Tag.objects.for_tenant(actor.tenant).filter(group=group, deleted=False))
        _mark_deleted(actor.tenant, group, tags)
        _record(actor, events.TAG_GROUP_DELETED, group, _group_payload(group, tags))
    return group


def _delete_in_wecom(tenant: Any, *, label: str, **ids: list[str]) -> None:
    """``del_corp_tag``; one WeCom no longer knows is already deleted, which is the goal."""
    try:
        _call_wecom(tenant, "del_corp_tag", label=label, **ids)
    except NotFound as error:
        if error.code != "tag_not_in_wecom":
            raise


def _mark_deleted(tenant: Any, group: TagGroup | None, tags: Sequence[Tag]) -> None:
    for tag in tags:
        tag.deleted = True
        tag.save(update_fields=["deleted", "updated_at"])
    customer_services.drop_tag_links(tenant, [tag.pk for tag in tags])
    if group is not None:
        group.deleted = True
        group.save(update_fields=["deleted", "updated_at"])


# --- the tag library: tags --------------------------------------------------------------------
def create_tag(actor: Any, group: TagGroup | int, *, name: str, order: Any = 0) -> Tag:
    """Add a tag to a group (in WeCom first, for a WeCom group)."""
    group = live_group(actor, group)
    spec = _tag_specs([{"name": name, "order": order}])[0]
    _check_tag_names_free(actor, group, [spec["name"]])
    if not group.wecom_group_id:
        with transaction.atomic():
            tag = Tag.objects.for_tenant(actor.tenant).create(
                tenant=actor.tenant, group=group, **spec
            )
            _record(actor, events.TAG_CREATED, tag, _tag_payload(tag))
        return tag
    with customer_services.tag_library_lock(actor.tenant):
        answer = _call_wecom(
            actor.tenant,
            "add_corp_tag",
            label=spec["name"],
            group_id=group.wecom_group_id,
            tag=[spec],
        )
        items = (answer.get("tag_group") or {}).get("tag") or []
        if not items:
            raise ServiceError(_("WeCom answered without the new tag."), code="wecom_error")
        tag = _store_wecom_tag(actor.tenant, group, items[0])
        _record(actor, events.TAG_CREATED, tag, _tag_payload(tag))
    return tag


def _tag_payload(tag: Tag) -> dict[str, Any]:
    return {
        "tag_id": tag.pk,
        "name": tag.name,
        "group_id": tag.group_id,
        "wecom_tag_id": tag.wecom_tag_id,
    }


def update_tag(actor: Any, tag: Tag | int, *, name: Any = None, order: Any = None) -> Tag:
    """Rename and/or reorder a tag (in WeCom first); unchanged values are a no-op."""
    tag = live_tag(actor, tag)
    values: dict[str, Any] = {}
    if name is not None and _clean_name(name) != tag.name:
        values["name"] = _clean_name(name)
        _check_tag_names_free(actor, tag.group, [values["name"]], other_than=tag)
    if order is not None and _clean_order(order) != tag.order:
        values["order"] = _clean_order(order)
    if not values:
        return tag
    return _edit(actor, tag, tag.wecom_tag_id, values, events.TAG_UPDATED, "tag_id")


def _edit(actor: Any, row: Any, wecom_id: str, values: dict, event_type: str, id_key: str) -> Any:
    """Rename / reorder a tag or tag group: ``edit_corp_tag`` (WeCom edits both by id) for a
    WeCom row, then the same change in Siyu, under the library lock."""
    with customer_services.tag_library_lock(actor.tenant):
        if wecom_id:
            _call_wecom(
                actor.tenant,
                "edit_corp_tag",
                label=values.get("name", row.name),
                id=wecom_id,
                name=values.get("name"),
                order=values.get("order"),
            )
        changes = diff(row, values)
        for key, value in values.items():
            setattr(row, key, value)
        row.save(update_fields=[*values, "updated_at"])
        _record(actor, event_type, row, {id_key: row.pk, "changes": changes})
    return row


def delete_tag(actor: Any, tag: Tag | int) -> Tag:
    """Delete a tag (in WeCom first): it leaves every customer and friendship. WeCom deletes
    a group with its last tag, and so does Siyu."""
    tag = live_tag(actor, tag)
    group = tag.group
    with customer_services.tag_library_lock(actor.tenant):
        if tag.wecom_tag_id:
            _delete_in_wecom(actor.tenant, tag_id=[tag.wecom_tag_id], label=tag.name)
        _mark_deleted(actor.tenant, None, [tag])
        _record(actor, events.TAG_DELETED, tag, _tag_payload(tag))
        left = Tag.objects.for_tenant(actor.tenant).filter(group=group, deleted=False)
        if group.wecom_group_id and not left.exists():
            _mark_deleted(actor.tenant, group, [])
            _record(actor, events.TAG_GROUP_DELETED, group, _group_payload(group, []))
    return tag


def reorder(actor: Any, rows: Sequence[TagGroup | Tag]) -> list[Any]:
    """Put groups (or the tags of one group) in this order, first shown first.

    WeCom shows a bigger ``order`` first: the first row gets ``len(rows)``, the last 1. Each
    changed row is one ``edit_corp_tag``; should WeCom refuse one, those before it are kept
    (each was accepted and written) and the refusal is raised.
    """
    kinds = {type(row) for row in rows}
    if len(kinds) > 1:
        raise InvalidInput(_("Reorder either tag groups or the tags of one group."))
    if kinds == {Tag} and len({row.group_id for row in rows}) > 1:
        raise InvalidInput(_("Reorder the tags of one group at a time."))
    update = update_tag_group if kinds == {TagGroup} else update_tag
    return [update(actor, row, order=len(rows) - position) for position, row in enumerate(rows)]


def tag_usage(tenant: Any, tags: Iterable[Tag | int] | None = None) -> dict[int, int]:
    """How many customers carry each tag (one grouped count)."""
    links = CustomerTag.objects.for_tenant(tenant)
    if tags is not None:
        links = links.filter(tag_id__in=[getattr(tag, "pk", tag) for tag in tags])
    return dict(links.values("tag_id").annotate(n=Count("id")).values_list("tag_id", "n"))


# --- tagging customers ------------------------------------------------------------------------
@dataclass
class TaggingResult:
    """What a tagging call changed: links added and removed, customers left out."""

    tagged: int = 0
    untagged: int = 0
    skipped: int = 0  # customers outside the actor's scope, merged away, or unknown
    mirrors: int = 0  # mark_tag tasks queued (one per friendship)
    added: list[int] = field(default_factory=list)  # (single customer calls) tag ids
    removed: list[int] = field(default_factory=list)

    def merge(self, other: TaggingResult) -> None:
        self.tagged += other.tagged
        self.untagged += other.untagged
        self.skipped += other.skipped
        self.mirrors += other.mirrors


def require_tagging(actor: Any, *, adding: bool, removing: bool) -> None:
    """Tagging needs ``add_customertag``, untagging ``delete_customertag`` (sales hold both;
    the tag library itself is another right)."""
    needed = [TAG_PERMISSION] * bool(adding) + [UNTAG_PERMISSION] * bool(removing)
    missing = [permission for permission in needed if not actor.has_perm(permission)]
    if missing:
        raise Forbidden(
            _("Your role does not allow tagging or untagging customers."),
            details={"required_permissions": missing},
        )


def visible_customer(
    actor: Any, customer: Customer | int, *, allow_merged: bool = False
) -> Customer:
    """A customer within the actor's tenant and data scope (else 404); one merged into
    another is refused unless ``allow_merged`` (reads)."""
    customer_id = getattr(customer, "pk", customer)
    found = Customer.objects.for_actor(actor).filter(pk=customer_id).first()
    if found is None:
        raise NotFound(_("Customer not found"), details={"id": customer_id})
    if found.merged_into_id is not None and not allow_merged:
        raise Conflict(
            _("This customer was merged into another one: tag that one instead."),
            code="customer_merged",
            details={"id": found.pk, "merged_into": found.merged_into_id},
        )
    return found


def live_tags(actor: Any, tag_ids: Iterable[Any]) -> list[Tag]:
    """The actor's tenant's live tags with these ids, in the order given; unknown or deleted
    ids are an error that names them."""
    wanted: list[int] = []
    for value in tag_ids or ():
        try:
            wanted.append(int(getattr(value, "pk", value)))
        except (TypeError, ValueError):
            raise InvalidInput(_("Tag ids are numbers"), details={"tag_ids": value}) from None
    wanted = list(dict.fromkeys(wanted))
    found = {
        tag.pk: tag
        for tag in Tag.objects.for_tenant(actor.tenant).filter(pk__in=wanted, deleted=False)
    }
    missing = [tag_id for tag_id in wanted if tag_id not in found]
    if missing:
        raise NotFound(
            _("Tags not found: %(ids)s") % {"ids": ", ".join(map(str, missing))},
            details={"tag_ids": missing},
        )
    return [found[tag_id] for tag_id in wanted]


def tag_customer(actor: Any, customer: Customer | int, tag: Tag | int, *, via: str = "") -> bool:
    """Put a tag on a customer; True if it was not on them yet. Mirrors a WeCom tag to every
    active friendship that lacks it (also when the customer already carried it)."""
    result = set_customer_tags(actor, customer, add=[tag], via=via)
    return bool(result.added)


def untag_customer(actor: Any, customer: Customer | int, tag: Tag | int, *, via: str = "") -> bool:
    """Take a tag off a customer (and off their friendships in WeCom); True if they had it."""
    result = set_customer_tags(actor, customer, remove=[tag], via=via)
    return bool(result.removed)


def set_customer_tags(
    actor: Any,
    customer: Customer | int,
    tags: Iterable[Tag | int] | None = None,
    *,
    add: Iterable[Tag | int] = (),
    remove: Iterable[Tag | int] = (),
    via: str = "",
) -> TaggingResult:
    """Change a customer's tags: exactly ``tags`` (when given), or ``add`` / ``remove``.

    With ``tags``, every tag the customer carries that is not listed is taken off (also off
    their friendships in WeCom). The customer must be within the actor's data scope.
    """
    customer = visible_customer(actor, customer)
    add_tags = live_tags(actor, add)
    remove_tags = live_tags(actor, remove)
    if tags is not None:
        wanted = live_tags(actor, tags)
        carried = set(
            CustomerTag.objects.for_tenant(actor.tenant)
            .filter(customer=customer)
            .values_list("tag_id", flat=True)
        )
        wanted_ids = {tag.pk for tag in wanted}
        add_tags += [tag for tag in wanted if tag.pk not in carried]
        remove_tags += list(
            Tag.objects.for_tenant(actor.tenant).filter(pk__in=carried - wanted_ids)
        )
    both = {tag.pk for tag in add_tags} & {tag.pk for tag in remove_tags}
    if both:
        raise InvalidInput(
            _("A tag cannot be added and removed at once"), details={"tag_ids": sorted(both)}
        )
    require_tagging(actor, adding=bool(add_tags), removing=bool(remove_tags))
    return apply_tag_changes(
        actor, [customer.pk], add=add_tags, remove=remove_tags, via=via or actor.channel
    )


def apply_tag_changes(
    actor: Any,
    customer_ids: Sequence[int],
    *,
    add: Sequence[Tag] = (),
    remove: Sequence[Tag] = (),
    via: str,
    extra: dict[str, Any] | None = None,
) -> TaggingResult:
    """Add and remove tags on up to a chunk of customers the caller already checked, in one
    transaction, set-based: links and timeline events for what changed, then one queued
    ``mark_tag`` task per friendship that needs one (after commit).

    Idempotent: links already there (or already gone) record nothing; mirrors are queued from
    the friendships' state, so a re-run completes mirrors that failed before.
    """
    tenant_id = actor.tenant_id
    ids = sorted(set(customer_ids))
    result = TaggingResult()
    if not ids or not (add or remove):
        return result
    links = CustomerTag.objects.for_tenant(tenant_id)
    with transaction.atomic():
        owners = dict(
            Customer.objects.for_tenant(tenant_id).filter(pk__in=ids).values_list("pk", "owner_id")
        )
        specs: list[EventSpec] = []
        base = {"via": via, "by_staff_id": actor.staff_id, **(extra or {})}
        if add:
            before = set(
                links.filter(customer_id__in=ids, tag__in=add).values_list("customer_id", "tag_id")
            )
            new = {(c, tag.pk) for c in ids for tag in add if (c, tag.pk) not in before}
            customer_services.link_customer_tags(tenant_id, new)
            by_id = {tag.pk: tag for tag in add}
            for link_id, customer_id, tag_id in links.filter(
                customer_id__in=ids, tag__in=add
            ).values_list("id", "customer_id", "tag_id"):
                if (customer_id, tag_id) in new:
                    specs.append(
                        _tag_event(
                            events.CUSTOMER_TAGGED,
                            tenant_id,
                            link_id,
                            customer_id,
                            by_id[tag_id],
                            owners.get(customer_id),
                            base,
                            actor.channel,
                        )
                    )
                    result.added.append(tag_id)
            result.tagged = len(new)
        if remove:
            by_id = {tag.pk: tag for tag in remove}
            gone = list(
                links.filter(customer_id__in=ids, tag__in=remove).values_list(
                    "id", "customer_id", "tag_id"
                )
            )
            links.filter(pk__in=[link_id for link_id, _c, _t in gone]).delete()
            for link_id, customer_id, tag_id in gone:
                specs.append(
                    _tag_event(
                        events.CUSTOMER_UNTAGGED,
                        tenant_id,
                        link_id,
                        customer_id,
                        by_id[tag_id],
                        owners.get(customer_id),
                        base,
                        actor.channel,
                    )
                )
                result.removed.append(tag_id)
            result.untagged = len(gone)
        record_events(tenant_id, specs)
        result.mirrors = _queue_mirrors(tenant_id, ids, add, remove)
    return result


def _tag_event(
    event_type: str,
    tenant_id: int,
    link_id: int,
    customer_id: int,
    tag: Tag,
    owner_id: int | None,
    base: dict[str, Any],
    source: str,
) -> EventSpec:
    from siyu.tenancy.models import Staff

    return EventSpec(
        event_type,
        key=event_key(event_type, customer_id, tag.pk, link_id),
        staff=Staff(pk=owner_id, tenant_id=tenant_id) if owner_id else None,
        customer_id=customer_id,
        payload={
            "tag_id": tag.pk,
            "tag_name": tag.name,
            "wecom_tag_id": tag.wecom_tag_id,
            **base,
        },
        source=source,
    )


def _queue_mirrors(
    tenant_id: int, customer_ids: Sequence[int], add: Sequence[Tag], remove: Sequence[Tag]
) -> int:
    """Queue ``push_follow_tags`` for each active friendship (of a staff still here) whose
    WeCom marks differ from what was asked; returns how many were queued."""
    from siyu.tenancy.models import Staff

    wecom_add = [tag for tag in add if tag.wecom_tag_id]
    wecom_remove = [tag for tag in remove if tag.wecom_tag_id]
    if not (wecom_add or wecom_remove):
        return 0
    follows = list(
        Follow.objects.for_tenant(tenant_id)
        .filter(
            customer_id__in=customer_ids,
            status=Follow.Status.ACTIVE,
            staff__status=Staff.Status.ACTIVE,
        )
        .values_list("pk", flat=True)
    )
    if not follows:
        return 0
    marked = set(
        FollowTag.objects.for_tenant(tenant_id)
        .filter(follow_id__in=follows, tag__in=[*wecom_add, *wecom_remove])
        .values_list("follow_id", "tag_id")
    )
    queued = 0
    for follow_id in follows:
        needed = [tag.pk for tag in wecom_add if (follow_id, tag.pk) not in marked]
        needed += [tag.pk for tag in wecom_remove if (follow_id, tag.pk) in marked]
        if needed:
            on_commit_task(push_follow_tags, tenant_id, follow_id, needed)
            queued += 1
    return queued


# --- mirroring to WeCom -----------------------------------------------------------------------
@db_task(retries=5, retry_delay=30, retry_backoff=2)
def push_follow_tags(tenant_id: int, follow_id: int, tag_ids: list[int]) -> None:
    """Queued: bring one friendship's WeCom marks of these tags in line with the customer's.

    Returns nothing (Huey would store a result). Transient WeCom errors raise, so that the
    queue retries (up to 5 times, backing off from 30 s).
    """
    mirror_follow_tags(tenant_id, follow_id, tag_ids)


def mirror_follow_tags(tenant_id: int, follow_id: int, tag_ids: Iterable[int]) -> str:
    """The body of ``push_follow_tags`` (tests call it directly); returns what it did.

    For each tag: the customer carries it and the friendship is not marked → add it; the
    customer no longer carries it and the friendship is marked → remove it; otherwise there is
    nothing to do. So running it twice, late, or out of order with another one is harmless.
    """
    from siyu.wecom.errors import WeComError, WeComNotConfigured
    from siyu.wecom.sync import TRANSIENT_ERRORS

    follow = (
        Follow.objects.for_tenant(tenant_id)
        .select_related("customer", "staff", "tenant")
        .filter(pk=follow_id)
        .first()
    )
    if follow is None or not follow.is_active or not follow.staff.is_active:
        return "skipped"  # ended meanwhile, or a staff who has left (WeCom refuses them)
    tags = list(
        Tag.objects.for_tenant(tenant_id).filter(pk__in=list(tag_ids)).exclude(wecom_tag_id="")
    )
    carried = set(
        CustomerTag.objects.for_tenant(tenant_id)
        .filter(customer_id=follow.customer_id, tag__in=tags)
        .values_list("tag_id", flat=True)
    )
    marked = set(
        FollowTag.objects.for_tenant(tenant_id)
        .filter(follow=follow, tag__in=tags)
        .values_list("tag_id", flat=True)
    )
    add = [tag for tag in tags if tag.pk in carried and tag.pk not in marked and not tag.deleted]
    remove = [tag for tag in tags if tag.pk not in carried and tag.pk in marked]
    if not (add or remove):
        return "unchanged"
    try:
        _client(follow.tenant).mark_tag(
            follow.staff.wecom_userid,
            follow.customer.external_userid,
            add_tag=[tag.wecom_tag_id for tag in add] or None,
            remove_tag=[tag.wecom_tag_id for tag in remove] or None,
        )
    except TRANSIENT_ERRORS:
        raise  # the queue retries
    except WeComNotConfigured:
        return "not_configured"
    except WeComError as error:  # refused for good (no longer friends, tag gone in WeCom)
        logger.warning(
            "mark_tag for follow %s refused by WeCom (errcode %s): %s",
            follow_id,
            error.errcode,
            error.errmsg,
        )
        return "refused"
    customer_services.apply_marked_tags(
        follow.tenant, follow, added=add, removed=remove, source="siyu"
    )
    return "marked"


# --- bulk tagging -----------------------------------------------------------------------------
def _ids(values: Any, name: str) -> list[int]:
    if values is None:
        return []
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InvalidInput(_("%(field)s must be a list of ids") % {"field": name})
    ids = []
    for value in values:
        try:
            ids.append(int(value))
        except (TypeError, ValueError):
            raise InvalidInput(
                _("%(field)s must be a list of ids") % {"field": name}, details={name: value}
            ) from None
    return list(dict.fromkeys(ids))


def start_bulk_tagging(
    actor: Any,
    *,
    add: Iterable[Any] = (),
    remove: Iterable[Any] = (),
    customer_ids: Iterable[Any] | None = None,
    segment: Any = None,
    rules: dict[str, Any] | None = None,
    label: str = "",
) -> Any:
    """Start a background job that adds / removes tags on a selection of customers.

    The selection is exactly one of: explicit ``customer_ids``, a ``segment`` (instance or
    id), or ad-hoc ``rules``; whichever, it is narrowed to the actor's data scope when the
    job runs (with the rights the actor had when starting it).
    """
    add_tags = live_tags(actor, _ids(add, "add"))
    remove_tags = live_tags(actor, _ids(remove, "remove"))
    if not (add_tags or remove_tags):
        raise InvalidInput(_("Give tags to add or to remove."), details={"add": [], "remove": []})
    both = {t.pk for t in add_tags} & {t.pk for t in remove_tags}
    if both:
        raise InvalidInput(
            _("A tag cannot be added and removed at once"), details={"tag_ids": sorted(both)}
        )
    require_tagging(actor, adding=bool(add_tags), removing=bool(remove_tags))
    given = [
        name
        for name, value in (("customer_ids", customer_ids), ("segment", segment), ("rules", rules))
        if value is not None
    ]
    if len(given) != 1:
        raise InvalidInput(
            _("Choose the customers one way: customer_ids, a segment or rules."),
            details={"given": given},
        )
    params: dict[str, Any] = {
        "add": [t.pk for t in add_tags],
        "remove": [t.pk for t in remove_tags],
    }
    if customer_ids is not None:
        ids = _ids(customer_ids, "customer_ids")
        if not ids:
            raise InvalidInput(_("No customers selected."), details={"customer_ids": []})
        if len(ids) > MAX_BULK_IDS:
            raise InvalidInput(
                _("At most %(limit)d customers by id; use a segment for more.")
                % {"limit": MAX_BULK_IDS},
                details={"customer_ids": len(ids)},
            )
        params["customer_ids"] = ids
    elif segment is not None:
        params["segment_id"] = _segment_id(actor, segment)
    else:
        from siyu.segments.services import validate_rules

        params["rules"] = validate_rules(actor.tenant, rules)
    names = ", ".join([f"+{t.name}" for t in add_tags] + [f"−{t.name}" for t in remove_tags])
    return start_job(
        actor, BULK_KIND, label or _("Bulk tagging: %(tags)s") % {"tags": names}, params=params
    )


def _segment_id(actor: Any, segment: Any) -> int:
    from siyu.segments.models import Segment

    segment_id = getattr(segment, "pk", segment)
    try:
        segment_id = int(segment_id)
    except (TypeError, ValueError):
        raise InvalidInput(_("segment must be an id"), details={"segment": segment}) from None
    if not Segment.objects.for_tenant(actor.tenant).filter(pk=segment_id).exists():
        raise NotFound(_("Segment not found"), details={"segment": segment_id})
    return segment_id


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def audience_ids(actor: Any, params: dict[str, Any]) -> tuple[list[int], int]:
    """The ids a bulk job works on, in the actor's scope, and how many asked-for ids were
    left out (outside the scope, merged away or unknown)."""
    if params.get("customer_ids") is not None:
        asked = sorted(set(params["customer_ids"]))
        visible: list[int] = []
        for chunk in _chunks(asked):
            visible += (
                Customer.objects.for_actor(actor)
                .filter(pk__in=list(chunk), merged_into__isnull=True)
                .values_list("pk", flat=True)
            )
        return sorted(visible), len(asked) - len(visible)
    from siyu.segments.services import resolve_audience

    audience: QuerySet = resolve_audience(
        actor, segment=params.get("segment_id"), rules=params.get("rules")
    )
    return list(audience.order_by("pk").values_list("pk", flat=True)), 0


@job_runner(BULK_KIND)
def run_bulk_tagging(job: Any, progress: Progress) -> dict[str, Any]:
    """Tag / untag the job's customers chunk by chunk (each chunk commits on its own)."""
    actor = job_actor(job)
    params = job.params
    live = {t.pk: t for t in Tag.objects.for_tenant(job.tenant_id).filter(deleted=False)}
    add = [live[t] for t in params.get("add") or () if t in live]
    remove = [live[t] for t in params.get("remove") or () if t in live]
    ids, left_out = audience_ids(actor, params)
    progress.set_total(len(ids))
    total = TaggingResult(skipped=left_out)
    for chunk in _chunks(ids):
        total.merge(
            apply_tag_changes(
                actor, chunk, add=add, remove=remove, via="bulk", extra={"job_id": job.pk}
            )
        )
        progress.advance(len(chunk))
    return {
        "customers": len(ids),
        "tagged": total.tagged,
        "untagged": total.untagged,
        "skipped": total.skipped,
        "mirrors_queued": total.mirrors,
        "tags_gone": sorted(set(params.get("add", []) + params.get("remove", [])) - set(live)),
    }


def bulk_job(actor: Any, job_id: int) -> Any:
    """A bulk tagging job the actor may see (their own; every one for administrators)."""
    from siyu.core.jobs import visible_jobs

    job = visible_jobs(actor).filter(pk=job_id, kind=BULK_KIND).first()
    if job is None:
        raise NotFound(_("Job not found"), details={"id": job_id})
    return job


def bulk_tag_queryset(actor: Any, queryset: QuerySet, *, add=(), remove=()) -> Any:
    """Start bulk tagging over a console selection (a scoped customers queryset)."""
    ids = list(queryset.values_list("pk", flat=True)[: MAX_BULK_IDS + 1])
    return start_bulk_tagging(actor, add=add, remove=remove, customer_ids=ids)


__all__ = [
    "BULK_KIND",
    "TaggingResult",
    "apply_tag_changes",
    "audience_ids",
    "bulk_job",
    "bulk_tag_queryset",
    "create_tag",
    "create_tag_group",
    "delete_tag",
    "delete_tag_group",
    "live_group",
    "live_tag",
    "live_tags",
    "mirror_follow_tags",
    "push_follow_tags",
    "reorder",
    "set_customer_tags",
    "start_bulk_tagging",
    "tag_customer",
    "tag_usage",
    "untag_customer",
    "update_tag",
    "update_tag_group",
    "visible_customer",
]
