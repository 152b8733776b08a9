"""Console pages of the community domain (the 社群 section): customer groups and members.

Read-only for now: groups mirror WeCom and are written by the sync and callbacks through
``siyu.community.services``. A sales member sees the groups they own.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from unfold.decorators import display

from siyu.community.models import Group, GroupMember
from siyu.core.console import (
    ReadOnlyAdminMixin,
    TenantScopedAdmin,
    TenantScopedInline,
    add_model_page,
)

STATUS_COLOURS = {
    Group.Status.ACTIVE: "success",
    Group.Status.DISMISSED: "danger",
    GroupMember.Status.ACTIVE: "success",
    GroupMember.Status.LEFT: "warning",
}


class GroupMemberInline(TenantScopedInline):
    model = GroupMember
    verbose_name = _("member")
    verbose_name_plural = _("members")
    fields = (
        "display_name",
        "member_type",
        "customer",
        "staff",
        "join_time",
        "join_scene",
        "status_label",
        "left_at",
    )
    readonly_fields = fields
    ordering = ("status", "join_time", "id")

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).select_related("customer", "staff")

    @display(description=_("member"))
    def display_name(self, member: GroupMember) -> str:
        return str(member)

    @display(description=_("status"))
    def status_label(self, member: GroupMember) -> str:
        # Plain text: unfold renders coloured labels in changelists, not in inline rows.
        return member.get_status_display()


@admin.register(Group)
class GroupAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = (
        "group_name",
        "owner",
        "status_label",
        "member_count",
        "customer_member_count",
        "created_at_wecom",
    )
    list_filter = ("status", "owner")
    search_fields = ("name", "chat_id")
    list_select_related = ("owner",)
    inlines = (GroupMemberInline,)
    fieldsets = (
        (None, {"fields": ("name", "chat_id", "owner", "owner_userid", "status", "notice")}),
        (
            _("Members"),
            {"fields": ("member_count", "customer_member_count", "admin_userids")},
        ),
        (
            _("Record"),
            {"fields": ("created_at_wecom", "dismissed_at", "created_at", "updated_at")},
        ),
    )

    @display(description=_("name"), ordering="name")
    def group_name(self, group: Group) -> str:
        return str(group)

    @display(description=_("status"), ordering="status", label=STATUS_COLOURS)
    def status_label(self, group: Group):
        return group.status, group.get_status_display()


add_model_page("community", Group, icon="groups")
