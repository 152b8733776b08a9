"""API of the community domain: customer groups and their members.

Read-only for now (the rows mirror WeCom). Groups are found through the caller's data scope
(a sales key sees the groups it owns), so other tenants' and other owners' groups are 404.
"""

from datetime import datetime
from typing import Literal

from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema
from ninja.pagination import paginate

from siyu.community.models import Group, GroupMember
from siyu.core.api_errors import error_responses
from siyu.core.api_support import CursorPagination, Id, require
from siyu.core.errors import NotFound
from siyu.tenancy.actor import Actor

router = Router(tags=["groups"])

READ_ERRORS = error_responses(401, 403, 404, 422)
LIST_ERRORS = error_responses(400, 401, 403, 422)


class GroupOut(Schema):
    id: int
    chat_id: str = Field(examples=["wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA"])
    name: str = Field(examples=["会员福利群 1"])
    owner_id: int | None = Field(description="Staff who owns the group, if known")
    owner_userid: str = Field(description="WeCom userid of the owner")
    notice: str
    created_at_wecom: datetime | None = Field(description="When the group was created in WeCom")
    status: Literal["active", "dismissed"]
    member_count: int
    customer_member_count: int = Field(description="Members who are customers")
    admin_userids: list[str]
    dismissed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class GroupMemberOut(Schema):
    id: int
    userid: str = Field(description="Staff userid or customer external_userid")
    member_type: int = Field(description="1 staff, 2 customer")
    customer_id: int | None
    staff_id: int | None
    join_time: datetime | None
    join_scene: int = Field(description="1 invited directly, 2 invited by link, 3 QR code")
    invitor_userid: str
    group_nickname: str
    name: str
    unionid: str
    state: str = Field(description="state of the join way used")
    status: Literal["active", "left"]
    left_at: datetime | None
    quit_scene: int | None = Field(description="0 left by themselves, 1 removed")


class GroupDetailOut(GroupOut):
    members: list[GroupMemberOut] = Field(description="Members, in joining order")

    @staticmethod
    def resolve_members(group: Group) -> list:
        return list(group.visible_members)


class GroupFilters(Schema):
    status: Literal["active", "dismissed"] | None = Field(None, description="Only this status")
    owner_id: Id | None = Field(None, description="Only groups owned by this staff")
    q: str | None = Field(None, max_length=64, description="Substring of the name, or a chat_id")


class GroupDetailQuery(Schema):
    include_left: bool = Field(False, description="Also list members who have left")


def group_or_404(actor: Actor, group_id: int, *, include_left: bool = False) -> Group:
    group = Group.objects.for_actor(actor).filter(pk=group_id).first()
    if group is None:
        raise NotFound(_("Group not found"), details={"id": group_id})
    members = GroupMember.objects.for_tenant(actor.tenant_id).filter(group=group)
    if not include_left:
        members = members.filter(status=GroupMember.Status.ACTIVE)
    group.visible_members = list(members.order_by("join_time", "id"))
    return group


@router.get(
    "/groups",
    response={200: list[GroupOut], **LIST_ERRORS},
    summary="List customer groups",
)
@paginate(CursorPagination)
def list_groups(request: HttpRequest, filters: Query[GroupFilters]) -> QuerySet:
    """Customer groups within the caller's data scope, newest first."""
    actor = require(request, "groups:read")
    groups = Group.objects.for_actor(actor)
    if filters.status:
        groups = groups.filter(status=filters.status)
    if filters.owner_id:
        groups = groups.filter(owner_id=filters.owner_id)
    if filters.q and filters.q.strip():
        term = filters.q.strip()
        groups = groups.filter(Q(name__icontains=term) | Q(chat_id=term))
    return groups


@router.get(
    "/groups/{group_id}",
    response={200: GroupDetailOut, **READ_ERRORS},
    summary="Get one customer group with its members",
)
def get_group(request: HttpRequest, group_id: Id, query: Query[GroupDetailQuery]) -> Group:
    actor = require(request, "groups:read")
    return group_or_404(actor, group_id, include_left=query.include_left)
