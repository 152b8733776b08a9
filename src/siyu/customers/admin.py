"""Console pages of the customers domain (the 客户 section): customers and corp tags.

Read-only for now: these rows mirror WeCom and are written by the sync and callbacks
through ``siyu.customers.services``; the CRM issue adds the edits (remarks, tags, owner
hand-over). Rows are scoped to the signed-in staff's tenant and data scope by
``TenantScopedAdmin`` (a sales member sees the customers they own).
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, Prefetch, Q
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from unfold.decorators import display

from siyu.core.console import (
    ReadOnlyAdminMixin,
    TenantScopedAdmin,
    TenantScopedInline,
    add_model_page,
    console_actor,
)
from siyu.customers.models import Customer, Follow, FollowTag, Tag, TagGroup

STATUS_COLOURS = {
    Customer.Status.ACTIVE: "success",
    Customer.Status.LOST: "danger",
    Follow.Status.ACTIVE: "success",
    Follow.Status.DELETED_BY_CUSTOMER: "danger",
    Follow.Status.DELETED_BY_STAFF: "warning",
}


def _tag_names(links) -> str:
    names = [link.tag.name for link in links if not link.tag.deleted]
    return ", ".join(names) or "-"


class FollowInline(TenantScopedInline):
    model = Follow
    fk_name = "customer"
    verbose_name = _("friendship")
    verbose_name_plural = _("friendships (staff who added this customer)")
    fields = ("staff", "remark", "status_label", "added_at", "add_way", "state", "tag_names")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest):
        links = FollowTag.objects.for_tenant(console_actor(request).tenant_id).select_related("tag")
        return (
            super()
            .get_queryset(request)
            .select_related("staff")
            .prefetch_related(Prefetch("follow_tags", queryset=links))
        )

    @display(description=_("status"))
    def status_label(self, follow: Follow) -> str:
        # Plain text: unfold renders coloured labels in changelists, not in inline rows.
        return follow.get_status_display()

    @display(description=_("tags"))
    def tag_names(self, follow: Follow) -> str:
        return _tag_names(follow.follow_tags.all())


@admin.register(Customer)
class CustomerAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = (
        "customer_name",
        "type",
        "owner",
        "status_label",
        "first_added_at",
        "follow_count",
    )
    list_filter = ("status", "type", "gender", "owner")
    search_fields = ("name", "external_userid", "unionid", "corp_name")
    list_select_related = ("owner",)
    date_hierarchy = "first_added_at"
    inlines = (FollowInline,)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "name",
                    "external_userid",
                    "unionid",
                    "type",
                    "gender",
                    "status",
                    "lost_at",
                )
            },
        ),
        (_("Company"), {"fields": ("corp_name", "corp_full_name", "position")}),
        (
            _("Source and owner"),
            {"fields": ("owner", "first_added_at", "source_state", "customer_tags")},
        ),
        (_("Record"), {"fields": ("created_at", "updated_at", "wecom_seen_at")}),
    )
    readonly_fields = ("customer_tags",)

    def get_queryset(self, request: HttpRequest):
        return (
            super()
            .get_queryset(request)
            .annotate(
                active_follows=Count("follows", filter=Q(follows__status=Follow.Status.ACTIVE))
            )
        )

    @display(description=_("name"), ordering="name")
    def customer_name(self, customer: Customer) -> str:
        if customer.avatar:
            return format_html(
                '<span class="flex items-center gap-2"><img src="{}" alt="" '
                'class="h-6 w-6 rounded-full" referrerpolicy="no-referrer">{}</span>',
                customer.avatar,
                customer,
            )
        return str(customer)

    @display(description=_("status"), ordering="status", label=STATUS_COLOURS)
    def status_label(self, customer: Customer):
        return customer.status, customer.get_status_display()

    @display(description=_("friendships"), ordering="active_follows")
    def follow_count(self, customer: Customer) -> int:
        return customer.active_follows

    @display(description=_("tags"))
    def customer_tags(self, customer: Customer) -> str:
        links = (
            FollowTag.objects.for_tenant(customer.tenant_id)
            .filter(follow__customer=customer, follow__status=Follow.Status.ACTIVE)
            .select_related("tag")
            .order_by("tag__name")
        )
        unique = {link.tag_id: link for link in links}
        return _tag_names(unique.values())


class TagInline(TenantScopedInline):
    model = Tag
    fields = ("name", "wecom_tag_id", "order", "deleted")
    readonly_fields = fields


@admin.register(TagGroup)
class TagGroupAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ("name", "order", "tag_count", "deleted", "wecom_group_id")
    list_filter = ("deleted",)
    search_fields = ("name", "wecom_group_id")
    fields = ("name", "wecom_group_id", "order", "deleted", "wecom_created_at", "updated_at")
    inlines = (TagInline,)

    def get_queryset(self, request: HttpRequest):
        return (
            super()
            .get_queryset(request)
            .annotate(live_tags=Count("tags", filter=Q(tags__deleted=False)))
        )

    @display(description=_("tags"), ordering="live_tags")
    def tag_count(self, group: TagGroup) -> int:
        return group.live_tags


@admin.register(Tag)
class TagAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ("name", "group", "order", "deleted", "wecom_tag_id")
    list_filter = ("deleted", "group")
    search_fields = ("name", "wecom_tag_id", "group__name")
    list_select_related = ("group",)
    fields = ("name", "group", "wecom_tag_id", "order", "deleted", "wecom_created_at", "updated_at")


add_model_page("customers", Customer, icon="person")
add_model_page("customers", TagGroup, icon="folder")
add_model_page("customers", Tag, icon="sell")
