"""API of the customers domain: customers with their friendships (follows) and corp tags.

Read-only for now (the rows mirror WeCom). Customers are found through the caller's data
scope (a sales key sees the customers it owns), so other tenants' and other owners'
customers answer 404. A visible customer's friendships are shown in full: who else has
added them is part of their profile.
"""

from datetime import datetime
from typing import Literal

from django.db.models import Prefetch, Q, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema
from ninja.pagination import paginate

from siyu.core.api_errors import error_responses
from siyu.core.api_support import CursorPagination, Id, require
from siyu.core.errors import NotFound
from siyu.customers.models import Customer, Follow, FollowTag
from siyu.tenancy.actor import Actor

router = Router(tags=["customers"])

READ_ERRORS = error_responses(401, 403, 404, 422)
LIST_ERRORS = error_responses(400, 401, 403, 422)


# --- schemas ----------------------------------------------------------------------------
class TagOut(Schema):
    id: int
    wecom_tag_id: str | None = Field(description="WeCom corp tag id; null for local tags")
    name: str = Field(examples=["高意向"])
    group_id: int
    group_name: str = Field(examples=["客户等级"])

    @staticmethod
    def resolve_wecom_tag_id(tag) -> str | None:
        return tag.wecom_tag_id or None

    @staticmethod
    def resolve_group_name(tag) -> str:
        return tag.group.name


class FollowOut(Schema):
    id: int
    staff_id: int
    staff_userid: str = Field(description="WeCom userid of the staff", examples=["zhangsan"])
    remark: str = Field(description="The staff's remark on the customer")
    description: str
    remark_mobiles: list[str]
    remark_corp_name: str
    added_at: datetime = Field(description="When the staff and the customer became friends")
    add_way: int = Field(description="WeCom add_way: 1 QR code, 2 mobile, 201 shared, …")
    state: str = Field(description="state of the contact way used (its channel)")
    oper_userid: str = Field(description="Who initiated the add (staff or customer id)")
    status: Literal["active", "deleted_by_customer", "deleted_by_staff"]
    deleted_at: datetime | None
    tags: list[TagOut] = Field(description="Corp tags this staff put on the customer")

    @staticmethod
    def resolve_staff_userid(follow: Follow) -> str:
        return follow.staff.wecom_userid

    @staticmethod
    def resolve_tags(follow: Follow) -> list:
        return [link.tag for link in follow.follow_tags.all() if not link.tag.deleted]


class CustomerOut(Schema):
    id: int
    external_userid: str = Field(examples=["wmAbCdEf0123456789"])
    unionid: str = Field(description="WeChat unionid, when WeCom provides it")
    name: str = Field(examples=["李四"])
    avatar: str
    type: int = Field(description="1 WeChat user, 2 WeCom user")
    gender: int = Field(description="0 unknown, 1 male, 2 female")
    corp_name: str
    corp_full_name: str
    position: str
    first_added_at: datetime | None
    source_state: str = Field(description="state of the first add (the acquisition channel)")
    owner_id: int | None = Field(description="Staff of the earliest active friendship")
    status: Literal["active", "lost"] = Field(description="lost: no active friendship remains")
    lost_at: datetime | None
    created_at: datetime
    updated_at: datetime


class CustomerDetailOut(CustomerOut):
    follows: list[FollowOut] = Field(description="Every friendship, oldest first")
    tags: list[TagOut] = Field(description="Corp tags of all active friendships, deduplicated")

    @staticmethod
    def resolve_follows(customer: Customer) -> list:
        return list(customer.follows.all())

    @staticmethod
    def resolve_tags(customer: Customer) -> list:
        tags = {}
        for follow in customer.follows.all():
            if follow.is_active:
                for link in follow.follow_tags.all():
                    if not link.tag.deleted:
                        tags.setdefault(link.tag_id, link.tag)
        return list(tags.values())


class CustomerFilters(Schema):
    status: Literal["active", "lost"] | None = Field(None, description="Only this status")
    owner_id: Id | None = Field(None, description="Only customers owned by this staff")
    q: str | None = Field(
        None,
        max_length=64,
        description="Substring of the name, or an exact external_userid or unionid",
    )


# --- lookups ----------------------------------------------------------------------------
def visible_customers(actor: Actor) -> QuerySet:
    return Customer.objects.for_actor(actor)


def customer_or_404(actor: Actor, customer_id: int) -> Customer:
    """A customer within the actor's tenant and data scope, with follows and tags."""
    tenant_id = actor.tenant_id
    links = FollowTag.objects.for_tenant(tenant_id).select_related("tag__group")
    follows = (
        Follow.objects.for_tenant(tenant_id)
        .select_related("staff")
        .prefetch_related(Prefetch("follow_tags", queryset=links))
        .order_by("added_at", "id")
    )
    customer = (
        visible_customers(actor)
        .prefetch_related(Prefetch("follows", queryset=follows))
        .filter(pk=customer_id)
        .first()
    )
    if customer is None:
        raise NotFound(_("Customer not found"), details={"id": customer_id})
    return customer


# --- endpoints --------------------------------------------------------------------------
@router.get(
    "/customers",
    response={200: list[CustomerOut], **LIST_ERRORS},
    summary="List customers",
)
@paginate(CursorPagination)
def list_customers(request: HttpRequest, filters: Query[CustomerFilters]) -> QuerySet:
    """Customers within the caller's data scope, newest first."""
    actor = require(request, "customers:read")
    customers = visible_customers(actor)
    if filters.status:
        customers = customers.filter(status=filters.status)
    if filters.owner_id:
        customers = customers.filter(owner_id=filters.owner_id)
    if filters.q and filters.q.strip():
        term = filters.q.strip()
        customers = customers.filter(
            Q(name__icontains=term) | Q(external_userid=term) | Q(unionid=term)
        )
    return customers


@router.get(
    "/customers/{customer_id}",
    response={200: CustomerDetailOut, **READ_ERRORS},
    summary="Get one customer with friendships and tags",
)
def get_customer(request: HttpRequest, customer_id: Id) -> Customer:
    actor = require(request, "customers:read")
    return customer_or_404(actor, customer_id)
