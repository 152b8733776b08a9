"""Console pages of the customers domain (the 客户 section): customers and corp tags.

The customer list filters by lifecycle stage, owner, tag, source channel and status and
searches names, remarks and phone numbers (by fingerprint: a number is never decrypted to
be searched). A customer's page is the customer 360 (``siyu.customers.views_360``):
identity, profile and custom fields (edited through ``siyu.customers.profiles``), every
friendship, tags, groups, stage, notes and follow-ups, open tasks and the timeline. Rows are
scoped to the signed-in staff's tenant and data scope by ``TenantScopedAdmin`` (a sales
member sees the customers they own); anything else is a 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, Exists, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from unfold.contrib.filters.admin import DropdownFilter, TextFilter
from unfold.decorators import display

from siyu.core.console import (
    DayRangeFilter,
    ReadOnlyAdminMixin,
    TenantScopedAdmin,
    TenantScopedInline,
    add_model_page,
    console_actor,
)
from siyu.core.errors import ServiceError
from siyu.customers import profiles, timeline, views_360
from siyu.customers.models import Customer, CustomerTag, Follow, LifecycleStage, Tag, TagGroup

STATUS_COLOURS = {
    Customer.Status.ACTIVE: "success",
    Customer.Status.LOST: "danger",
    Follow.Status.ACTIVE: "success",
    Follow.Status.DELETED_BY_CUSTOMER: "danger",
    Follow.Status.DELETED_BY_STAFF: "warning",
}
STAGE_COLOURS = {
    LifecycleStage.NEW: "info",
    LifecycleStage.ACTIVE: "success",
    LifecycleStage.SILENT: "warning",
    LifecycleStage.AT_RISK: "danger",
    LifecycleStage.CHURNED: "danger",
}
TAG_FILTER_LIMIT = 500
MERGED_RECORD_VIEWS = (
    "customers_customer_change",
    "customers_customer_timeline",
)  # a dropdown beyond this is unusable; search or segments then


# --- list filters -----------------------------------------------------------------------------
class TagFilter(DropdownFilter):
    title = _("tag")
    parameter_name = "tag"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        tags = (
            Tag.objects.for_tenant(console_actor(request).tenant_id)
            .filter(deleted=False)
            .select_related("group")
            .order_by("-group__order", "group_id", "-order", "id")[:TAG_FILTER_LIMIT]
        )
        return [(str(tag.pk), f"{tag.group.name} / {tag.name}") for tag in tags]

    def queryset(self, request: HttpRequest, queryset):
        value = self.value()
        if not value or not str(value).isdigit():
            return queryset
        links = CustomerTag.objects.for_tenant(console_actor(request).tenant_id).filter(
            customer_id=OuterRef("pk"), tag_id=int(value)
        )
        return queryset.filter(Exists(links))


class ChannelFilter(TextFilter):
    """Source channel: the ``state`` of the first add, matched by prefix (a channel family)."""

    title = _("source channel")
    parameter_name = "channel"

    def queryset(self, request: HttpRequest, queryset):
        value = (self.value() or "").strip()
        return queryset.filter(source_state__startswith=value) if value else queryset


# --- customers ------------------------------------------------------------------------------
@admin.register(Customer)
class CustomerAdmin(TenantScopedAdmin):
    list_display = (
        "customer_name",
        "stage_label",
        "owner",
        "status_label",
        "source_state",
        "first_added_at",
        "last_interaction_at",
        "follow_count",
    )
    list_filter = (
        ("lifecycle_stage", admin.ChoicesFieldListFilter),
        "owner",
        TagFilter,
        ChannelFilter,
        ("first_added_at", DayRangeFilter),
        "status",
        "type",
        "gender",
    )
    list_filter_submit = True
    search_fields = ("name",)  # shows the search box; ``get_search_results`` does the work
    search_help_text = _("Name, remark, exact WeCom id or unionid, or a phone number")
    list_select_related = ("owner",)
    show_full_result_count = False  # one COUNT per page is enough on a million customers
    change_form_template = "customers/customer_360.html"

    # -- the list ------------------------------------------------------------------------------
    def get_queryset(self, request: HttpRequest):
        follows = (
            Follow.objects.for_tenant(console_actor(request).tenant_id)
            .filter(customer_id=OuterRef("pk"), status=Follow.Status.ACTIVE)
            .order_by()
            .values("customer_id")
            .annotate(n=Count("pk"))
            .values("n")
        )
        # A correlated count: evaluated for the page's rows only, not the whole table.
        customers = (
            super()
            .get_queryset(request)
            .annotate(active_follows=Coalesce(Subquery(follows, output_field=IntegerField()), 0))
        )
        # Merged-away records leave lists and pickers; their own 360 still opens (it links
        # to the kept customer).
        url_name = getattr(getattr(request, "resolver_match", None), "url_name", "")
        if url_name not in MERGED_RECORD_VIEWS:
            customers = customers.filter(merged_into__isnull=True)
        return customers

    def get_search_results(self, request: HttpRequest, queryset, search_term: str):
        """Name (WeCom's or the brand's) or remark (substring), exact external_userid /
        unionid, or a phone number (matched through its fingerprint, so only a whole number
        finds anyone). ``siyu.customers.exports.search_condition`` searches the same way."""
        term = (search_term or "").strip()
        if not term:
            return queryset, False
        if profiles.looks_like_phone(term):
            return profiles.find_by_phone(queryset, term), False
        remarks = Follow.objects.for_tenant(console_actor(request).tenant_id).filter(
            customer_id=OuterRef("pk"), remark__icontains=term
        )
        return (
            queryset.filter(
                Q(name__icontains=term)
                | Q(**{f"custom__{profiles.DISPLAY_NAME_KEY}__icontains": term})
                | Q(external_userid=term)
                | Q(unionid=term)
                | Exists(remarks)
            ),
            False,
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # customers come from WeCom (sync, callbacks) and imports

    @display(description=_("name"), ordering="name")
    def customer_name(self, customer: Customer) -> str:
        name = profiles.display_name(customer)
        if customer.avatar:
            return format_html(
                '<span class="flex items-center gap-2"><img src="{}" alt="" '
                'class="h-6 w-6 rounded-full" referrerpolicy="no-referrer">{}</span>',
                customer.avatar,
                name,
            )
        return name

    @display(description=_("stage"), ordering="lifecycle_stage", label=STAGE_COLOURS)
    def stage_label(self, customer: Customer):
        return customer.lifecycle_stage, customer.get_lifecycle_stage_display()

    @display(description=_("status"), ordering="status", label=STATUS_COLOURS)
    def status_label(self, customer: Customer):
        return customer.status, customer.get_status_display()

    @display(description=_("friendships"), ordering="active_follows")
    def follow_count(self, customer: Customer) -> int:
        return customer.active_follows

    # -- the customer 360 -------------------------------------------------------------------------
    def get_urls(self):
        def view(function):
            return self.admin_site.admin_view(function)

        name = "customers_customer"
        return [
            path("<int:object_id>/profile/", view(self.profile_view), name=f"{name}_profile"),
            path(
                "<int:object_id>/custom-fields/",
                view(self.custom_fields_view),
                name=f"{name}_custom_fields",
            ),
            path("<int:object_id>/notes/", view(self.add_note_view), name=f"{name}_add_note"),
            path(
                "<int:object_id>/notes/<int:note_id>/",
                view(self.edit_note_view),
                name=f"{name}_edit_note",
            ),
            path(
                "<int:object_id>/notes/<int:note_id>/delete/",
                view(self.delete_note_view),
                name=f"{name}_delete_note",
            ),
            path("<int:object_id>/timeline/", view(self.timeline_view), name=f"{name}_timeline"),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The customer 360 replaces the model form: edits go through the forms on it."""
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        customer = self.get_object(request, object_id)
        return self.render_360(request, customer)

    def _customer(self, request: HttpRequest, object_id: Any) -> Customer:
        return self.get_object(request, str(object_id))  # 403 without rights, 404 unseen

    def render_360(
        self,
        request: HttpRequest,
        customer: Customer,
        *,
        forms: dict[str, Any] | None = None,
        status: int = 200,
    ) -> HttpResponse:
        actor = console_actor(request)
        data = views_360.build_360(actor, customer)
        may_see_phone = not data.phone_masked
        forms = forms or {}
        edit_note = None
        edit_id = request.GET.get("edit_note", "")
        if "edit_note" not in forms and edit_id.isdigit():
            edit_note = next((n for n in data.notes if n.pk == int(edit_id)), None)
        if edit_note is not None:
            forms["edit_note"] = views_360.NoteForm(
                initial=views_360.NoteForm.initial_for(edit_note), prefix="edit"
            )
            forms["edit_note_id"] = edit_note.pk
        fields = [value.field for value in data.custom_values]
        user = request.user
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "app_label": self.model._meta.app_label,
            "original": customer,
            "title": data.display_name,
            "subtitle": None,
            "has_view_permission": True,
            "view": data,
            "profile_form": forms.get("profile")
            or views_360.ProfileForm(
                initial=views_360.ProfileForm.initial_for(customer), may_see_phone=may_see_phone
            ),
            "custom_form": forms.get("custom")
            or views_360.custom_fields_form(fields, initial=customer.custom or {}),
            "note_form": forms.get("note") or views_360.NoteForm(initial={"kind": "call"}),
            "edit_note_form": forms.get("edit_note"),
            "edit_note_id": forms.get("edit_note_id"),
            "can_change": user.has_perm("customers.change_customer"),
            "can_add_note": user.has_perm("customers.add_customernote"),
            "actor": actor,
            "timeline_url": reverse("admin:customers_customer_timeline", args=[customer.pk]),
        }
        return TemplateResponse(request, self.change_form_template, context, status=status)

    def _done(self, request: HttpRequest, customer: Customer, message: str, anchor: str):
        messages.success(request, message)
        return redirect(reverse("admin:customers_customer_change", args=[customer.pk]) + anchor)

    def profile_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        customer = self._customer(request, object_id)
        actor = console_actor(request)
        form = views_360.ProfileForm(request.POST, may_see_phone=profiles.may_see_phone(actor))
        if form.is_valid():
            try:
                profiles.update_profile(actor, customer, **form.service_values())
            except ServiceError as error:
                form.add_error(_field_of(error, form), error.message)
            else:
                return self._done(request, customer, _("The profile was saved."), "#profile")
        return self.render_360(request, customer, forms={"profile": form})

    def custom_fields_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        customer = self._customer(request, object_id)
        actor = console_actor(request)
        fields = profiles.custom_fields(actor.tenant)
        form = views_360.custom_fields_form(fields, data=request.POST)
        if form.is_valid():
            try:
                profiles.set_custom_values(actor, customer, dict(form.cleaned_data))
            except ServiceError as error:
                key = next(iter(error.details), "") if isinstance(error.details, dict) else ""
                field = key.removeprefix("custom.")
                form.add_error(field if field in form.fields else None, error.message)
            else:
                return self._done(request, customer, _("The custom fields were saved."), "#custom")
        return self.render_360(request, customer, forms={"custom": form})

    def add_note_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        customer = self._customer(request, object_id)
        form = views_360.NoteForm(request.POST)
        if form.is_valid():
            try:
                profiles.add_note(console_actor(request), customer, **form.cleaned_data)
            except ServiceError as error:
                form.add_error(_field_of(error, form), error.message)
            else:
                return self._done(request, customer, _("The follow-up was added."), "#notes")
        return self.render_360(request, customer, forms={"note": form})

    def edit_note_view(self, request: HttpRequest, object_id: int, note_id: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        customer = self._customer(request, object_id)
        form = views_360.NoteForm(request.POST, prefix="edit")
        if form.is_valid():
            values = dict(form.cleaned_data)
            if values.get("happened_at") is None:
                values.pop("happened_at", None)  # left empty: keep when it happened
            try:
                actor = console_actor(request)
                note = profiles.note_or_404(actor, note_id, customer_id=customer.pk)
                profiles.update_note(actor, note, **values)
            except ServiceError as error:
                if error.status == 404:
                    raise_404()
                form.add_error(_field_of(error, form), error.message)
            else:
                return self._done(request, customer, _("The note was saved."), "#notes")
        return self.render_360(
            request, customer, forms={"edit_note": form, "edit_note_id": note_id}
        )

    def delete_note_view(self, request: HttpRequest, object_id: int, note_id: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        customer = self._customer(request, object_id)
        actor = console_actor(request)
        try:
            profiles.delete_note(
                actor, profiles.note_or_404(actor, note_id, customer_id=customer.pk)
            )
        except ServiceError as error:
            if error.status == 404:
                raise_404()
            messages.error(request, error.message)
            return redirect(reverse("admin:customers_customer_change", args=[customer.pk]))
        return self._done(request, customer, _("The note was deleted."), "#notes")

    def timeline_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """The next page of the timeline (loaded into the 360 page by htmx)."""
        customer = self._customer(request, object_id)
        try:
            page = timeline.timeline(customer, cursor=request.GET.get("cursor") or None)
        except ServiceError:
            raise_404()
        return TemplateResponse(
            request,
            "customers/_timeline_entries.html",
            {
                "page": page,
                "timeline_url": reverse("admin:customers_customer_timeline", args=[customer.pk]),
            },
        )


def raise_404():
    from django.http import Http404

    raise Http404(_("Not found"))


def _field_of(error: ServiceError, form) -> str | None:
    """The form field a service error names (its only ``details`` key), else the form."""
    if isinstance(error.details, dict) and len(error.details) == 1:
        (name,) = error.details
        return name if name in form.fields else None
    return None


# --- tags -------------------------------------------------------------------------------------
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

from siyu.customers import (  # noqa: E402  (the domain's other console pages)
    admin_io,  # noqa: F401  (import, export)
    admin_profiles,  # noqa: F401  (custom fields, lifecycle rules)
    admin_retention,  # noqa: F401  (churn, hand-over, merge)
    admin_tags,  # noqa: F401  (tags, auto-tag rules, bulk tagging)
)
