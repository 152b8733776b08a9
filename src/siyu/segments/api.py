"""API of the segments domain (/api/v1/segments): segments, previews, members, sizes, RFM.

Handlers stay thin: check the scope, call ``siyu.segments.services``. Segments are shared by
the tenant (another tenant's segment is a 404); the customers *in* them are narrowed to the
caller's data scope, so a sales key counts and lists its own customers only. Rules are the
JSON rule language (docs/segments.md); a bad rule is a 400 ``invalid_rules`` whose
``details.path`` names the bad part (``conditions[1].value``) and ``details.errors`` lists all.
"""

from datetime import date, datetime
from typing import Any, Literal

from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Field, Router, Schema
from ninja.pagination import paginate
from ninja.responses import Status

from siyu.core.api_errors import error_responses
from siyu.core.api_support import CursorPagination, Id, require
from siyu.core.errors import Forbidden
from siyu.segments import rfm, services
from siyu.segments.catalogue import field_catalogue
from siyu.segments.models import Segment
from siyu.segments.tasks import compute_rfm_for_tenant
from siyu.tenancy.actor import Actor

router = Router(tags=["segments"])

READ_ERRORS = error_responses(400, 401, 403, 404, 422)
LIST_ERRORS = error_responses(400, 401, 403, 422)
WRITE_ERRORS = error_responses(400, 401, 403, 404, 409, 422)

RULES_EXAMPLE = {
    "op": "and",
    "conditions": [
        {"field": "city", "operator": "eq", "value": "上海"},
        {"field": "tags", "operator": "has_any", "value": [12, 13]},
        {
            "field": "event",
            "operator": "at_least",
            "value": {"type": "order.paid", "count": 2, "within_days": 90},
        },
    ],
}


# --- schemas ----------------------------------------------------------------------------
class SegmentOut(Schema):
    id: int
    name: str = Field(examples=["上海高意向"])
    description: str
    kind: Literal["dynamic", "static"] = Field(
        description="dynamic: evaluated live; static: a snapshot of members"
    )
    rules: dict[str, Any] = Field(description="The rule (normalised)", examples=[RULES_EXAMPLE])
    count: int | None = Field(
        None,
        description="Customers in the segment the caller may see (detail responses only)",
    )
    cached_count: int | None = Field(
        description="Size over the whole tenant as last counted; null for callers who see "
        "only part of the tenant"
    )
    counted_at: datetime | None
    snapshot_at: datetime | None = Field(description="When a static segment was last built")
    created_by_id: int | None
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_count(segment: Segment) -> int | None:
        return getattr(segment, "visible_count", None)

    @staticmethod
    def resolve_cached_count(segment: Segment, context: dict[str, Any]) -> int | None:
        return segment.cached_count if services.tenant_wide(context["request"].actor) else None

    @staticmethod
    def resolve_counted_at(segment: Segment, context: dict[str, Any]) -> datetime | None:
        return segment.counted_at if services.tenant_wide(context["request"].actor) else None


class SegmentIn(Schema):
    name: str = Field(min_length=1, max_length=100, examples=["上海高意向"])
    description: str = Field("", max_length=300)
    kind: Literal["dynamic", "static"] = "dynamic"
    rules: dict[str, Any] = Field(default_factory=dict, examples=[RULES_EXAMPLE])


class SegmentPatch(Schema):
    """Only the fields sent change."""

    name: str | None = Field(None, min_length=1, max_length=100)
    description: str | None = Field(None, max_length=300)
    kind: Literal["dynamic", "static"] | None = None
    rules: dict[str, Any] | None = None


class PreviewIn(Schema):
    rules: dict[str, Any] = Field(examples=[RULES_EXAMPLE])
    sample_size: int = Field(10, ge=0, le=services.MAX_SAMPLE)


class CustomerBriefOut(Schema):
    id: int
    external_userid: str
    name: str
    avatar: str
    owner_id: int | None
    lifecycle_stage: str
    source_state: str
    first_added_at: datetime | None


class PreviewOut(Schema):
    count: int = Field(description="Matching customers the caller may see")
    rules: dict[str, Any] = Field(description="The rule, normalised")
    sample: list[CustomerBriefOut] = Field(
        description="The newest matching customers (empty without customers:read)"
    )


class SizeOut(Schema):
    day: date
    size: int


class OperatorOut(Schema):
    operator: str
    label: str
    value: str = Field(description="Shape of the value: none, text, texts, number, ...")


class ChoiceOut(Schema):
    value: Any
    label: str


class FieldOut(Schema):
    name: str = Field(examples=["city", "tags", "custom.skin"])
    label: str
    kind: str
    category: str
    operators: list[OperatorOut]
    choices: list[ChoiceOut] | None
    picker: str = Field(description="tags, groups or staff: ids of those rows")
    help_text: str


class RebuildOut(Schema):
    status: Literal["done", "queued"]
    job_id: int | None = Field(description="The background job rebuilding a large segment")
    members: int | None


class LayerOut(Schema):
    layer: str
    label: str
    customers: int


class RecomputeOut(Schema):
    status: Literal["queued"]


# --- helpers ----------------------------------------------------------------------------
def _with_count(actor: Actor, segment: Segment) -> Segment:
    """The segment, carrying the count of its customers the caller may see."""
    segment.visible_count = services.segment_count(actor, segment)
    return segment


def _require_perm(actor: Actor, permission: str) -> None:
    if not actor.has_perm(permission):
        raise Forbidden(
            _("Your role does not allow this (needs '%(permission)s')")
            % {"permission": permission},
            details={"required_permission": permission},
        )


# --- the rule language ----------------------------------------------------------------------
@router.get(
    "/segments/fields",
    response={200: list[FieldOut], **LIST_ERRORS},
    summary="The fields and operators rules may use",
)
def list_fields(request: HttpRequest) -> list[dict[str, Any]]:
    """Every field of the tenant's rule language (custom fields included), its operators
    and the shape of their values, and the choices of choice fields."""
    actor = require(request, "segments:read")
    return field_catalogue(actor)


@router.post(
    "/segments/preview",
    response={200: PreviewOut, **WRITE_ERRORS},
    summary="Count the customers a rule matches, without saving",
)
def preview_rules(request: HttpRequest, body: PreviewIn) -> dict[str, Any]:
    actor = require(request, "segments:read")
    size = body.sample_size if actor.can("customers:read") else 0
    result = services.preview(actor, body.rules, sample_size=size)
    return {"count": result.count, "rules": result.rules, "sample": result.sample}


# --- RFM --------------------------------------------------------------------------------------
@router.get(
    "/segments/rfm/layers",
    response={200: list[LayerOut], **LIST_ERRORS},
    summary="Customers per RFM layer",
)
def rfm_layers(request: HttpRequest) -> list[dict[str, Any]]:
    """The caller's customers per RFM layer (the classic eight, and no purchase yet)."""
    actor = require(request, "segments:read")
    return rfm.layer_counts(actor.tenant_id, services.visible_customers(actor))


@router.post(
    "/segments/rfm/recompute",
    response={202: RecomputeOut, **WRITE_ERRORS},
    summary="Recompute the tenant's RFM scores now",
)
def rfm_recompute(request: HttpRequest) -> Status:
    """Queued; the daily task does the same every night."""
    actor = require(request, "segments:write")
    _require_perm(actor, "segments.change_customerrfm")
    compute_rfm_for_tenant(actor.tenant_id)
    return Status(202, {"status": "queued"})


# --- segments ---------------------------------------------------------------------------------
@router.get(
    "/segments",
    response={200: list[SegmentOut], **LIST_ERRORS},
    summary="List segments",
)
@paginate(CursorPagination)
def list_segments(request: HttpRequest) -> Any:
    """The tenant's segments, newest first; ``cached_count`` for whole-tenant callers."""
    actor = require(request, "segments:read")
    return Segment.objects.for_tenant(actor.tenant_id)


@router.post(
    "/segments",
    response={201: SegmentOut, **WRITE_ERRORS},
    summary="Create a segment",
)
def create_segment(request: HttpRequest, body: SegmentIn) -> Status:
    """A static segment takes its first snapshot at once (a background job when large)."""
    actor = require(request, "segments:write")
    _require_perm(actor, "segments.add_segment")
    segment = services.create_segment(
        actor, name=body.name, description=body.description, kind=body.kind, rules=body.rules
    )
    return Status(201, _with_count(actor, segment))


@router.get(
    "/segments/{int:segment_id}",
    response={200: SegmentOut, **READ_ERRORS},
    summary="Get a segment with its count",
)
def get_segment(request: HttpRequest, segment_id: Id) -> Segment:
    actor = require(request, "segments:read")
    segment = services.segment_or_404(actor, segment_id)
    return _with_count(actor, segment)


@router.patch(
    "/segments/{int:segment_id}",
    response={200: SegmentOut, **WRITE_ERRORS},
    summary="Change a segment",
)
def patch_segment(request: HttpRequest, segment_id: Id, body: SegmentPatch) -> Segment:
    actor = require(request, "segments:write")
    segment = services.segment_or_404(actor, segment_id)
    changes = {
        name: getattr(body, name)
        for name in body.model_fields_set
        if getattr(body, name) is not None
    }
    segment = services.update_segment(actor, segment, **changes)
    return _with_count(actor, segment)


@router.delete(
    "/segments/{int:segment_id}",
    response={204: None, **WRITE_ERRORS},
    summary="Delete a segment",
)
def delete_segment(request: HttpRequest, segment_id: Id) -> Status:
    actor = require(request, "segments:write")
    _require_perm(actor, "segments.delete_segment")
    services.delete_segment(actor, services.segment_or_404(actor, segment_id))
    return Status(204, None)


@router.get(
    "/segments/{int:segment_id}/members",
    response={200: list[CustomerBriefOut], **LIST_ERRORS, **error_responses(404)},
    summary="The customers in a segment",
)
@paginate(CursorPagination)
def segment_members(request: HttpRequest, segment_id: Id) -> Any:
    """The segment's customers the caller may see, newest first (cursor-paginated)."""
    actor = require(request, "segments:read")
    require(request, "customers:read")
    return services.resolve_audience(actor, segment=segment_id)


@router.get(
    "/segments/{int:segment_id}/sizes",
    response={200: list[SizeOut], **READ_ERRORS},
    summary="A segment's size over time",
)
def segment_sizes(request: HttpRequest, segment_id: Id, days: int = 90) -> list[Any]:
    """Daily sizes over the whole tenant; callers who see only part of it are refused."""
    actor = require(request, "segments:read")
    segment = services.segment_or_404(actor, segment_id)
    if not services.tenant_wide(actor):
        raise Forbidden(
            _("The size history covers the whole tenant; your role sees only part of it"),
            details={"data_scope": str(actor.data_scope)},
        )
    return services.size_history(segment, days=max(1, min(days, 3650)))


@router.post(
    "/segments/{int:segment_id}/rebuild",
    response={200: RebuildOut, 202: RebuildOut, **WRITE_ERRORS},
    summary="Rebuild a static segment's members",
)
def rebuild_segment(request: HttpRequest, segment_id: Id) -> Status:
    actor = require(request, "segments:write")
    segment = services.segment_or_404(actor, segment_id)
    job = services.rebuild_snapshot(actor, segment)
    if job is not None:
        return Status(202, {"status": "queued", "job_id": job.pk, "members": None})
    segment.refresh_from_db()
    return Status(200, {"status": "done", "job_id": None, "members": segment.cached_count})
