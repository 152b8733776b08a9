"""API of the tenancy domain: the caller's own tenant, its staff and departments.

Handlers stay thin: check the scope, find the row through the caller's data scope (so other
tenants' rows are 404), call the service, return the schema.
"""

from datetime import datetime
from typing import Literal

from django.db.models import Prefetch, Q, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema
from ninja.pagination import paginate
from ninja.responses import Status

from siyu.core.api_errors import error_responses
from siyu.core.api_support import CursorPagination, Id, require
from siyu.core.errors import InvalidInput, NotFound
from siyu.tenancy import services
from siyu.tenancy.actor import Actor
from siyu.tenancy.models import Department, Role, Staff, Tenant

router = Router(tags=["tenancy"])

READ_ERRORS = error_responses(401, 403, 404, 422)
LIST_ERRORS = error_responses(400, 401, 403, 422)
WRITE_ERRORS = error_responses(400, 401, 403, 404, 409, 422)


# --- schemas ----------------------------------------------------------------------------
class MaskedSecretsOut(Schema):
    wecom_contact_secret: str = Field(
        description="Customer-contact secret, masked; empty when not configured",
        examples=["abc******xyz"],
    )
    wecom_callback_token: str = Field(description="Callback token, masked", examples=[""])
    wecom_callback_aes_key: str = Field(
        description="Callback EncodingAESKey, masked", examples=["k3Y******Zq9"]
    )
    wecom_agent_secret: str = Field(description="Self-built app secret, masked", examples=[""])


class TenantOut(Schema):
    id: int
    slug: str = Field(examples=["acme"])
    name: str = Field(examples=["ACME Coffee"])
    wecom_corp_id: str = Field(description="WeCom corp id", examples=["ww0123456789abcdef"])
    wecom_agent_id: str = Field(description="AgentId of the self-built app", examples=["1000002"])
    is_active: bool
    created_at: datetime
    secrets: MaskedSecretsOut = Field(description="WeCom secrets, only ever shown masked")

    @staticmethod
    def resolve_secrets(tenant: Tenant) -> dict[str, str]:
        return tenant.masked_secrets()


class StaffOut(Schema):
    id: int
    wecom_userid: str = Field(description="WeCom member userid", examples=["zhangsan"])
    name: str = Field(examples=["张三"])
    department_id: int | None = Field(description="Department, or null", examples=[3])
    status: Literal["active", "departed"]
    roles: list[str] = Field(description="Role codes, sorted", examples=[["sales"]])
    has_console_login: bool = Field(description="Whether the staff can log in to the console")
    departed_at: datetime | None
    created_at: datetime

    @staticmethod
    def resolve_roles(staff: Staff) -> list[str]:
        return sorted(role.code for role in staff.roles.all())

    @staticmethod
    def resolve_has_console_login(staff: Staff) -> bool:
        return staff.user_id is not None


class StaffFilters(Schema):
    status: Literal["active", "departed"] | None = Field(None, description="Only this status")
    department_id: Id | None = Field(None, description="Only staff of this department")
    q: str | None = Field(
        None, max_length=64, description="Substring of the name or the WeCom userid"
    )


class StaffIn(Schema):
    wecom_userid: str = Field(
        min_length=1,
        max_length=64,
        description="WeCom member userid: letters, digits and _ . @ -",
        examples=["zhangsan"],
    )
    name: str = Field(min_length=1, max_length=64, examples=["张三"])
    department_id: Id | None = Field(None, description="Department of the staff", examples=[3])
    roles: list[str] = Field(
        default_factory=lambda: ["sales"],
        min_length=1,
        max_length=20,
        description="Role codes: admin, operator, sales, content, service, analyst, …",
        examples=[["sales"]],
    )


class StaffPatch(Schema):
    """Only the fields sent change; ``department_id: null`` removes the department."""

    name: str | None = Field(None, min_length=1, max_length=64, examples=["张三丰"])
    department_id: Id | None = Field(None, description="New department, or null for none")
    roles: list[str] | None = Field(
        None, min_length=1, max_length=20, description="Replace the role codes"
    )


class DepartmentOut(Schema):
    id: int
    name: str = Field(examples=["华东区"])
    parent_id: int | None
    wecom_id: int | None = Field(description="WeCom department id, if synced")


# --- lookups ----------------------------------------------------------------------------
def visible_staff(actor: Actor) -> QuerySet:
    """Staff the actor may see, roles prefetched in the same tenant."""
    roles = Role.objects.for_tenant(actor.tenant_id)
    return Staff.objects.for_actor(actor).prefetch_related(Prefetch("roles", queryset=roles))


def staff_or_404(actor: Actor, staff_id: int) -> Staff:
    """A staff row of the actor's tenant and data scope; anything else does not exist."""
    staff = visible_staff(actor).select_related("tenant").filter(pk=staff_id).first()
    if staff is None:
        raise NotFound(_("Staff not found"), details={"id": staff_id})
    return staff


def department_or_404(actor: Actor, department_id: int | None) -> Department | None:
    if department_id is None:
        return None
    department = Department.objects.for_tenant(actor.tenant_id).filter(pk=department_id).first()
    if department is None:
        raise NotFound(_("Department not found"), details={"department_id": department_id})
    return department


def reloaded(actor: Actor, staff: Staff) -> Staff:
    """Re-read after a write so the response shows committed roles, not a stale cache."""
    return visible_staff(actor).filter(pk=staff.pk).first() or staff


# --- tenant -----------------------------------------------------------------------------
@router.get(
    "/tenant",
    response={200: TenantOut, **READ_ERRORS},
    summary="The caller's own tenant",
    tags=["tenant"],
)
def get_tenant(request: HttpRequest) -> Tenant:
    """The tenant of the API key or the logged-in staff; secrets are masked."""
    actor = require(request, "tenant:read")
    return actor.tenant


# --- staff ------------------------------------------------------------------------------
@router.get(
    "/staff",
    response={200: list[StaffOut], **LIST_ERRORS},
    summary="List staff",
    tags=["staff"],
)
@paginate(CursorPagination)
def list_staff(request: HttpRequest, filters: Query[StaffFilters]) -> QuerySet:
    """Staff within the caller's data scope, newest first."""
    actor = require(request, "staff:read")
    staff = visible_staff(actor)
    if filters.status:
        staff = staff.filter(status=filters.status)
    if filters.department_id:
        staff = staff.filter(department_id=filters.department_id)
    if filters.q and filters.q.strip():
        term = filters.q.strip()
        staff = staff.filter(Q(name__icontains=term) | Q(wecom_userid__icontains=term))
    return staff


@router.get(
    "/staff/{staff_id}",
    response={200: StaffOut, **READ_ERRORS},
    summary="Get one staff member",
    tags=["staff"],
)
def get_staff(request: HttpRequest, staff_id: Id) -> Staff:
    actor = require(request, "staff:read")
    return staff_or_404(actor, staff_id)


@router.post(
    "/staff",
    response={201: StaffOut, **WRITE_ERRORS},
    summary="Add a staff member",
    tags=["staff"],
)
def create_staff(request: HttpRequest, body: StaffIn) -> Status:
    """Add a WeCom member to the tenant's staff (records ``staff.added``)."""
    actor = require(request, "staff:write")
    staff = services.add_staff(
        actor.tenant,
        wecom_userid=body.wecom_userid,
        name=body.name,
        department=department_or_404(actor, body.department_id),
        role_codes=body.roles,
        by=actor,
    )
    return Status(201, reloaded(actor, staff))


@router.patch(
    "/staff/{staff_id}",
    response={200: StaffOut, **WRITE_ERRORS},
    summary="Change a staff member's name, department or roles",
    tags=["staff"],
)
def patch_staff(request: HttpRequest, staff_id: Id, body: StaffPatch) -> Staff:
    actor = require(request, "staff:write")
    staff = staff_or_404(actor, staff_id)
    sent = body.model_fields_set
    if "name" in sent and body.name is None:
        raise_null("name")
    if "roles" in sent and body.roles is None:
        raise_null("roles")
    department = department_or_404(actor, body.department_id) if "department_id" in sent else ...
    services.update_staff(
        staff, by=actor, name=body.name, department=department, role_codes=body.roles
    )
    return reloaded(actor, staff)


def raise_null(field: str) -> None:
    raise InvalidInput(
        _("%(field)s cannot be null; omit it to keep the current value") % {"field": field},
        details={"field": field},
    )


@router.post(
    "/staff/{staff_id}/depart",
    response={200: StaffOut, **WRITE_ERRORS},
    summary="Mark a staff member as departed",
    tags=["staff"],
)
def depart_staff(request: HttpRequest, staff_id: Id) -> Staff:
    """Keeps their history, stops their console login and API keys (idempotent)."""
    actor = require(request, "staff:write")
    staff = staff_or_404(actor, staff_id)
    services.mark_staff_departed(staff, by=actor)
    return reloaded(actor, staff)


# --- departments ------------------------------------------------------------------------
@router.get(
    "/departments",
    response={200: list[DepartmentOut], **LIST_ERRORS},
    summary="List departments",
    tags=["staff"],
)
@paginate(CursorPagination)
def list_departments(request: HttpRequest) -> QuerySet:
    """All departments of the tenant (the org chart is not data-scoped)."""
    actor = require(request, "staff:read")
    return Department.objects.for_tenant(actor.tenant_id)
