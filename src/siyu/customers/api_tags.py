"""API of tags: the tag library (groups and tags, mirrored with WeCom), the tags a customer
carries, bulk tagging as a background job, and auto-tag rules.

Reads need ``customers:read``; writes need ``customers:write`` and the console permission of
the change (``customers.add_tag``, ``customers.add_customertag``, ``customers.change_
autotagrule`` ...), so a key acting as a sales staff can tag their customers but not edit
the tag library. Customers are found through the caller's data scope: another tenant's or
another owner's customer is a 404. A WeCom refusal of a library edit is a 4xx with WeCom's
errcode in ``details`` (a taken name is 409 ``tag_name_taken``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Field, Router, Schema
from ninja.responses import Status

from siyu.core.api_errors import error_responses
from siyu.core.api_support import Id, require
from siyu.core.errors import Forbidden, NotFound
from siyu.customers import autotag, tagging
from siyu.customers.models import AutoTagRule, CustomerTag, Tag, TagGroup
from siyu.tenancy.actor import Actor

router = Router(tags=["tags"])

READ_ERRORS = error_responses(401, 403, 404, 422)
WRITE_ERRORS = error_responses(400, 401, 403, 404, 409, 422, 502)


# --- schemas -------------------------------------------------------------------------------
class TagOut(Schema):
    id: int
    name: str = Field(examples=["高意向"])
    group_id: int
    group_name: str = Field(examples=["客户等级"])
    order: int = Field(description="Bigger first (WeCom's order)")
    wecom_tag_id: str | None = Field(description="WeCom corp tag id; null for Siyu-only tags")
    customers: int = Field(description="How many customers carry the tag")

    @staticmethod
    def resolve_group_name(tag: Tag) -> str:
        return tag.group.name

    @staticmethod
    def resolve_wecom_tag_id(tag: Tag) -> str | None:
        return tag.wecom_tag_id or None

    @staticmethod
    def resolve_customers(tag: Tag) -> int:
        return getattr(tag, "usage", 0)


class TagGroupOut(Schema):
    id: int
    name: str = Field(examples=["客户等级"])
    order: int
    wecom_group_id: str | None = Field(description="WeCom tag group id; null for Siyu-only")
    tags: list[TagOut]

    @staticmethod
    def resolve_wecom_group_id(group: TagGroup) -> str | None:
        return group.wecom_group_id or None

    @staticmethod
    def resolve_tags(group: TagGroup) -> list[Tag]:
        return getattr(group, "live_tags", [])


class TagSpec(Schema):
    name: str = Field(min_length=1, max_length=30, examples=["9.9 体验课"])
    order: int = Field(0, ge=0, le=2**32 - 1)


class TagGroupIn(Schema):
    name: str = Field(min_length=1, max_length=30, examples=["购买价位"])
    order: int = Field(0, ge=0, le=2**32 - 1, description="Bigger first")
    tags: list[TagSpec] = Field(
        default_factory=list, description="The first tags; a WeCom group needs at least one"
    )
    local: bool = Field(False, description="Siyu only: not created in WeCom, never marked there")


class TagGroupPatch(Schema):
    name: str | None = Field(None, min_length=1, max_length=30)
    order: int | None = Field(None, ge=0, le=2**32 - 1)


class TagIn(TagSpec):
    pass


class TagPatch(TagGroupPatch):
    pass


class ReorderIn(Schema):
    ids: list[Id] = Field(min_length=1, description="All of them, first shown first")


class CustomerTagsIn(Schema):
    tag_ids: list[Id] = Field(description="Tag ids")


class CustomerTagsOut(Schema):
    customer_id: int
    tags: list[TagOut]


class BulkTagIn(Schema):
    add_tag_ids: list[Id] = Field(default_factory=list, description="Tags to put on")
    remove_tag_ids: list[Id] = Field(default_factory=list, description="Tags to take off")
    customer_ids: list[Id] | None = Field(
        None, max_length=tagging.MAX_BULK_IDS, description="Explicit customers …"
    )
    segment_id: Id | None = Field(None, description="… or a segment's customers …")
    rules: dict[str, Any] | None = Field(None, description="… or customers matching rules")


class JobOut(Schema):
    id: int
    kind: str
    label: str
    status: str = Field(description="queued, running, succeeded, failed, cancelled")
    done: int
    total: int | None
    percent: int | None
    result: dict[str, Any]
    error: str
    created_at: datetime
    finished_at: datetime | None


class RuleIn(Schema):
    name: str = Field(min_length=1, max_length=100, examples=["买过 9.9 体验课"])
    tag_id: Id
    rules: dict[str, Any] = Field(description="The segment rule language")
    remove_when_unmatched: bool = False
    is_active: bool = True


class RulePatch(Schema):
    name: str | None = Field(None, min_length=1, max_length=100)
    tag_id: Id | None = None
    rules: dict[str, Any] | None = None
    remove_when_unmatched: bool | None = None
    is_active: bool | None = None


class RuleOut(Schema):
    id: int
    name: str
    tag_id: int
    rules: dict[str, Any]
    remove_when_unmatched: bool
    is_active: bool
    last_run_at: datetime | None
    last_tagged: int
    last_untagged: int


class RuleRunOut(Schema):
    rule_id: int
    tagged: int
    untagged: int
    skipped: bool


# --- helpers -------------------------------------------------------------------------------
def _writer(request: HttpRequest, *permissions: str) -> Actor:
    """The actor, if it may write (``customers:write``) and holds these permissions."""
    actor = require(request, "customers:write")
    missing = [p for p in permissions if not actor.has_perm(p)]
    if missing:
        raise Forbidden(
            _("Your role does not allow this (needs %(perms)s)") % {"perms": ", ".join(missing)},
            details={"required_permissions": missing},
        )
    return actor


def _tags(actor: Actor, **filters: Any) -> list[Tag]:
    usage = tagging.tag_usage(actor.tenant)
    tags = list(
        Tag.objects.for_tenant(actor.tenant)
        .filter(deleted=False, group__deleted=False, **filters)
        .select_related("group")
        .order_by("group_id", "-order", "id")
    )
    for tag in tags:
        tag.usage = usage.get(tag.pk, 0)
    return tags


def _groups(actor: Actor, **filters: Any) -> list[TagGroup]:
    groups = list(
        TagGroup.objects.for_tenant(actor.tenant)
        .filter(deleted=False, **filters)
        .order_by("-order", "id")
    )
    tags = _tags(actor, group__in=groups)
    for group in groups:
        group.live_tags = [tag for tag in tags if tag.group_id == group.pk]
    return groups


def _group_out(actor: Actor, group_id: int) -> TagGroup:
    groups = _groups(actor, pk=group_id)
    if not groups:
        raise NotFound(_("Tag group not found"), details={"id": group_id})
    return groups[0]


def _tag_out(actor: Actor, tag_id: int) -> Tag:
    tags = _tags(actor, pk=tag_id)
    if not tags:
        raise NotFound(_("Tag not found"), details={"id": tag_id})
    return tags[0]


def _customer_tags(actor: Actor, customer_id: int) -> dict[str, Any]:
    customer = tagging.visible_customer(actor, customer_id, allow_merged=True)
    carried = CustomerTag.objects.for_tenant(actor.tenant).filter(customer=customer)
    return {"customer_id": customer.pk, "tags": _tags(actor, pk__in=carried.values("tag_id"))}


# --- the tag library -----------------------------------------------------------------------
@router.get("/tags/groups", response={200: list[TagGroupOut], **READ_ERRORS}, summary="Tag groups")
def list_tag_groups(request: HttpRequest) -> list[TagGroup]:
    """Every live tag group with its live tags and how many customers carry each."""
    return _groups(require(request, "customers:read"))


@router.post(
    "/tags/groups",
    response={201: TagGroupOut, **WRITE_ERRORS},
    summary="Create a tag group (in WeCom too)",
)
def create_tag_group(request: HttpRequest, body: TagGroupIn) -> Status:
    actor = _writer(request, "customers.add_taggroup", "customers.add_tag")
    group = tagging.create_tag_group(
        actor,
        name=body.name,
        order=body.order,
        tags=[tag.dict() for tag in body.tags],
        local=body.local,
    )
    return Status(201, _group_out(actor, group.pk))


@router.get(
    "/tags/groups/{int:group_id}", response={200: TagGroupOut, **READ_ERRORS}, summary="A tag group"
)
def get_tag_group(request: HttpRequest, group_id: Id) -> TagGroup:
    return _group_out(require(request, "customers:read"), group_id)


@router.patch(
    "/tags/groups/{int:group_id}",
    response={200: TagGroupOut, **WRITE_ERRORS},
    summary="Rename or reorder a tag group",
)
def update_tag_group(request: HttpRequest, group_id: Id, body: TagGroupPatch) -> TagGroup:
    actor = _writer(request, "customers.change_taggroup")
    tagging.update_tag_group(actor, group_id, name=body.name, order=body.order)
    return _group_out(actor, group_id)


@router.delete(
    "/tags/groups/{int:group_id}",
    response={204: None, **WRITE_ERRORS},
    summary="Delete a tag group and its tags",
)
def delete_tag_group(request: HttpRequest, group_id: Id) -> Status:
    actor = _writer(request, "customers.delete_taggroup")
    tagging.delete_tag_group(actor, group_id)
    return Status(204, None)


@router.post(
    "/tags/groups/reorder",
    response={200: list[TagGroupOut], **WRITE_ERRORS},
    summary="Put tag groups in order",
)
def reorder_tag_groups(request: HttpRequest, body: ReorderIn) -> list[TagGroup]:
    actor = _writer(request, "customers.change_taggroup")
    groups = [tagging.live_group(actor, group_id) for group_id in body.ids]
    tagging.reorder(actor, groups)
    return _groups(actor)


@router.post(
    "/tags/groups/{int:group_id}/tags",
    response={201: TagOut, **WRITE_ERRORS},
    summary="Add a tag to a group (in WeCom too)",
)
def create_tag(request: HttpRequest, group_id: Id, body: TagIn) -> Status:
    actor = _writer(request, "customers.add_tag")
    tag = tagging.create_tag(actor, group_id, name=body.name, order=body.order)
    return Status(201, _tag_out(actor, tag.pk))


@router.post(
    "/tags/groups/{int:group_id}/reorder",
    response={200: TagGroupOut, **WRITE_ERRORS},
    summary="Put a group's tags in order",
)
def reorder_tags(request: HttpRequest, group_id: Id, body: ReorderIn) -> TagGroup:
    actor = _writer(request, "customers.change_tag")
    group = tagging.live_group(actor, group_id)
    tags = [tagging.live_tag(actor, tag_id) for tag_id in body.ids]
    if any(tag.group_id != group.pk for tag in tags):
        raise NotFound(_("Tag not found in this group"), details={"ids": body.ids})
    tagging.reorder(actor, tags)
    return _group_out(actor, group_id)


@router.get("/tags", response={200: list[TagOut], **READ_ERRORS}, summary="Tags")
def list_tags(request: HttpRequest, group_id: Id | None = None) -> list[Tag]:
    """Every live tag (of one group with ``group_id``) with its number of customers."""
    actor = require(request, "customers:read")
    return _tags(actor, **({"group_id": group_id} if group_id else {}))


@router.get("/tags/{int:tag_id}", response={200: TagOut, **READ_ERRORS}, summary="A tag")
def get_tag(request: HttpRequest, tag_id: Id) -> Tag:
    return _tag_out(require(request, "customers:read"), tag_id)


@router.patch(
    "/tags/{int:tag_id}", response={200: TagOut, **WRITE_ERRORS}, summary="Rename or reorder a tag"
)
def update_tag(request: HttpRequest, tag_id: Id, body: TagPatch) -> Tag:
    actor = _writer(request, "customers.change_tag")
    tagging.update_tag(actor, tag_id, name=body.name, order=body.order)
    return _tag_out(actor, tag_id)


@router.delete(
    "/tags/{int:tag_id}",
    response={204: None, **WRITE_ERRORS},
    summary="Delete a tag (it leaves every customer)",
)
def delete_tag(request: HttpRequest, tag_id: Id) -> Status:
    actor = _writer(request, "customers.delete_tag")
    tagging.delete_tag(actor, tag_id)
    return Status(204, None)


# --- a customer's tags -----------------------------------------------------------------------
@router.get(
    "/customers/{int:customer_id}/tags",
    response={200: CustomerTagsOut, **READ_ERRORS},
    summary="The tags a customer carries",
)
def get_customer_tags(request: HttpRequest, customer_id: Id) -> dict[str, Any]:
    return _customer_tags(require(request, "customers:read"), customer_id)


@router.put(
    "/customers/{int:customer_id}/tags",
    response={200: CustomerTagsOut, **WRITE_ERRORS},
    summary="Set a customer's tags (exactly these)",
)
def set_customer_tags(request: HttpRequest, customer_id: Id, body: CustomerTagsIn) -> dict:
    """Tags not listed are taken off (also off the customer's friendships in WeCom)."""
    actor = require(request, "customers:write")
    tagging.set_customer_tags(actor, customer_id, body.tag_ids, via="api")
    return _customer_tags(actor, customer_id)


@router.post(
    "/customers/{int:customer_id}/tags",
    response={200: CustomerTagsOut, **WRITE_ERRORS},
    summary="Put tags on a customer",
)
def add_customer_tags(request: HttpRequest, customer_id: Id, body: CustomerTagsIn) -> dict:
    """Idempotent: tags the customer already carries are left as they are."""
    actor = require(request, "customers:write")
    tagging.set_customer_tags(actor, customer_id, add=body.tag_ids, via="api")
    return _customer_tags(actor, customer_id)


@router.delete(
    "/customers/{int:customer_id}/tags/{int:tag_id}",
    response={200: CustomerTagsOut, **WRITE_ERRORS},
    summary="Take a tag off a customer",
)
def remove_customer_tag(request: HttpRequest, customer_id: Id, tag_id: Id) -> dict:
    actor = require(request, "customers:write")
    tagging.set_customer_tags(actor, customer_id, remove=[tag_id], via="api")
    return _customer_tags(actor, customer_id)


# --- bulk tagging -------------------------------------------------------------------------------
@router.post(
    "/customers/bulk-tag",
    response={202: JobOut, **WRITE_ERRORS},
    summary="Tag / untag many customers (a background job)",
)
def bulk_tag(request: HttpRequest, body: BulkTagIn) -> Status:
    """Starts a job over ``customer_ids``, a ``segment_id`` or ``rules`` (exactly one), in the
    caller's data scope; poll ``GET /customers/bulk-tag/{job_id}`` for its progress."""
    actor = require(request, "customers:write")
    job = tagging.start_bulk_tagging(
        actor,
        add=body.add_tag_ids,
        remove=body.remove_tag_ids,
        customer_ids=body.customer_ids,
        segment=body.segment_id,
        rules=body.rules,
    )
    job.refresh_from_db()
    return Status(202, job)


@router.get(
    "/customers/bulk-tag/{int:job_id}",
    response={200: JobOut, **READ_ERRORS},
    summary="Progress of a bulk tagging job",
)
def bulk_tag_job(request: HttpRequest, job_id: Id) -> Any:
    actor = require(request, "customers:read")
    job = tagging.bulk_job(actor, job_id)
    return job


# --- auto-tag rules -----------------------------------------------------------------------------
def _rule_out(actor: Actor, rule_id: int) -> AutoTagRule:
    rule = AutoTagRule.objects.for_tenant(actor.tenant).filter(pk=rule_id).first()
    if rule is None:
        raise NotFound(_("Auto-tag rule not found"), details={"id": rule_id})
    return rule


@router.get("/tags/auto-rules", response={200: list[RuleOut], **READ_ERRORS}, summary="Rules")
def list_rules(request: HttpRequest) -> Any:
    actor = require(request, "customers:read")
    return list(AutoTagRule.objects.for_tenant(actor.tenant).order_by("name", "id"))


@router.post(
    "/tags/auto-rules", response={201: RuleOut, **WRITE_ERRORS}, summary="Create an auto-tag rule"
)
def create_rule(request: HttpRequest, body: RuleIn) -> Status:
    actor = _writer(request, "customers.add_autotagrule")
    rule = autotag.create_rule(
        actor,
        name=body.name,
        tag=body.tag_id,
        rules=body.rules,
        remove_when_unmatched=body.remove_when_unmatched,
        is_active=body.is_active,
    )
    return Status(201, rule)


@router.get(
    "/tags/auto-rules/{int:rule_id}", response={200: RuleOut, **READ_ERRORS}, summary="A rule"
)
def get_rule(request: HttpRequest, rule_id: Id) -> AutoTagRule:
    return _rule_out(require(request, "customers:read"), rule_id)


@router.patch(
    "/tags/auto-rules/{int:rule_id}",
    response={200: RuleOut, **WRITE_ERRORS},
    summary="Change a rule",
)
def update_rule(request: HttpRequest, rule_id: Id, body: RulePatch) -> AutoTagRule:
    actor = _writer(request, "customers.change_autotagrule")
    values = body.dict(exclude_unset=True)
    if "tag_id" in values:
        values["tag"] = values.pop("tag_id")
    return autotag.update_rule(actor, rule_id, **values)


@router.delete(
    "/tags/auto-rules/{int:rule_id}", response={204: None, **WRITE_ERRORS}, summary="Delete a rule"
)
def delete_rule(request: HttpRequest, rule_id: Id) -> Status:
    actor = _writer(request, "customers.delete_autotagrule")
    autotag.delete_rule(actor, rule_id)
    return Status(204, None)


@router.post(
    "/tags/auto-rules/{int:rule_id}/run",
    response={200: RuleRunOut, **WRITE_ERRORS},
    summary="Run a rule now",
)
def run_rule(request: HttpRequest, rule_id: Id) -> Any:
    actor = _writer(request, "customers.change_autotagrule")
    return autotag.run_rule(rule_id, actor=actor)
