"""Console pages of the segments domain (in the 客户 section): segments with the rule
builder, members, RFM layers and the RFM settings.

The segment list shows each segment's kind and count (as the signed-in staff may see it);
adding or opening one shows the rule builder (``segments/builder.html`` with
``static/segments/rule_builder.js``): nested AND / OR groups, a field picker, operators and
value inputs that fit the field, a live preview count with a sample (a JSON view), and for a
saved segment its size over time (ECharts). Every write goes through
``siyu.segments.services``; a refusal is shown on the page, never a 500.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminTextareaWidget

from siyu.core.console import (
    ReadOnlyAdminMixin,
    ServiceModelForm,
    TenantScopedAdmin,
    add_model_page,
    console_actor,
)
from siyu.core.errors import ServiceError
from siyu.segments import rfm, services
from siyu.segments.catalogue import field_catalogue, picker_options
from siyu.segments.models import CustomerRFM, RFMPolicy, Segment
from siyu.segments.tasks import compute_rfm_for_tenant

# The staff looking at the segment list: its count column counts what they may see. A
# context variable, not an attribute: the admin object is shared by concurrent requests.
_viewer: ContextVar[Any] = ContextVar("segments_viewer", default=None)
KIND_COLOURS = {Segment.Kind.DYNAMIC: "info", Segment.Kind.STATIC: "warning"}
KNOWN_EVENT_TYPES = (
    "customer.added",
    "customer.tagged",
    "customer.untagged",
    "customer.lost",
    "customer.returned",
    "follow.added",
    "follow.deleted_by_customer",
    "follow.deleted_by_staff",
    "group.joined",
    "group.left",
    "order.paid",
    "order.refunded",
    "message.received",
    "message.sent",
    "material.opened",
)


@admin.register(Segment)
class SegmentAdmin(TenantScopedAdmin):
    list_display = ("name", "kind_label", "customers", "counted", "updated_at", "created_by")
    list_filter = ("kind",)
    search_fields = ("name", "description")
    list_select_related = ("created_by",)
    ordering = ("name", "id")

    # -- the list -------------------------------------------------------------------------------
    @display(description=gettext_lazy("kind"), ordering="kind", label=KIND_COLOURS)
    def kind_label(self, segment: Segment):
        return segment.kind, segment.get_kind_display()

    @display(description=gettext_lazy("customers"))
    def customers(self, segment: Segment) -> Any:
        actor = _viewer.get()
        if actor is None:
            return segment.cached_count
        if services.tenant_wide(actor) and segment.cached_count is not None:
            return segment.cached_count  # kept fresh by the periodic task and by each visit
        try:
            return services.segment_count(actor, segment)
        except ServiceError as error:
            return error.message

    @display(description=gettext_lazy("counted at"))
    def counted(self, segment: Segment) -> Any:
        actor = _viewer.get()
        if actor is not None and not services.tenant_wide(actor):
            return "-"  # narrower viewers' counts are live
        return segment.counted_at or "-"

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        token = _viewer.set(console_actor(request))
        try:
            response = super().changelist_view(request, extra_context)
            if hasattr(response, "render"):
                response.render()  # while the viewer is known
            return response
        finally:
            _viewer.reset(token)

    # -- the builder instead of the admin's forms --------------------------------------------------
    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("preview/", wrap(self.preview_view), name="segments_segment_preview"),
            path(
                "<int:object_id>/members/",
                wrap(self.members_view),
                name="segments_segment_members",
            ),
            path(
                "<int:object_id>/rebuild/",
                wrap(self.rebuild_view),
                name="segments_segment_rebuild",
            ),
            *super().get_urls(),
        ]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        return self.builder_view(request, None)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ):
        segment = self.get_object(request, object_id)
        return self.builder_view(request, segment)

    def builder_view(self, request: HttpRequest, segment: Segment | None) -> HttpResponse:
        actor = console_actor(request)
        may_save = (
            self.has_add_permission(request)
            if segment is None
            else self.has_change_permission(request, segment)
        )
        posted: dict[str, Any] = {}
        error: ServiceError | None = None
        if request.method == "POST":
            if not may_save:
                raise PermissionDenied
            posted, error = self._save(request, actor, segment)
            if error is None:
                return redirect(reverse("admin:segments_segment_changelist"))
        return TemplateResponse(
            request,
            "segments/builder.html",
            self._builder_context(request, actor, segment, posted, error, may_save),
        )

    def _save(
        self, request: HttpRequest, actor: Any, segment: Segment | None
    ) -> tuple[dict[str, Any], ServiceError | None]:
        posted = {
            "name": request.POST.get("name", ""),
            "description": request.POST.get("description", ""),
            "kind": request.POST.get("kind", Segment.Kind.DYNAMIC),
            "rules_text": request.POST.get("rules", ""),
        }
        try:
            rules = json.loads(posted["rules_text"] or "{}")
        except ValueError:
            return posted, ServiceError(_("The rules could not be read; reload the page."))
        posted["rules"] = rules
        values = {k: posted[k] for k in ("name", "description", "kind")}
        try:
            if segment is None:
                saved = services.create_segment(actor, rules=rules, **values)
                messages.success(request, _("Segment %(name)s created.") % {"name": saved.name})
            else:
                saved = services.update_segment(actor, segment, rules=rules, **values)
                messages.success(request, _("Segment %(name)s saved.") % {"name": saved.name})
        except ServiceError as refused:
            return posted, refused
        return posted, None

    def _builder_context(
        self,
        request: HttpRequest,
        actor: Any,
        segment: Segment | None,
        posted: dict[str, Any],
        error: ServiceError | None,
        may_save: bool,
    ) -> dict[str, Any]:
        rules = posted.get("rules") if posted else None
        if rules is None:
            rules = segment.rules if segment else services.rules_or_empty(None)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": segment.name if segment else _("New segment"),
            "segment": segment,
            "may_save": may_save,
            "may_delete": segment is not None and self.has_delete_permission(request, segment),
            "form_values": {
                "name": posted.get("name", segment.name if segment else ""),
                "description": posted.get("description", segment.description if segment else ""),
                "kind": posted.get("kind", segment.kind if segment else Segment.Kind.DYNAMIC),
            },
            "kinds": Segment.Kind.choices,
            "error": error,
            "error_details": json.dumps(error.details if error else {}, ensure_ascii=False),
            "builder": {
                "fields": field_catalogue(actor),
                "pickers": picker_options(actor),
                "rules": services.rules_or_empty(rules),
                "event_types": KNOWN_EVENT_TYPES,
                "preview_url": reverse("admin:segments_segment_preview"),
                "customer_url": reverse("admin:customers_customer_change", args=[0]),
                "errors": (error.details or {}).get("errors", []) if error else [],
                "labels": builder_labels(),
            },
        }
        if segment is not None:
            context.update(self._saved_segment_context(actor, segment))
        return context

    def _saved_segment_context(self, actor: Any, segment: Segment) -> dict[str, Any]:
        try:
            count = services.segment_count(actor, segment)
            members = services.resolve_audience(actor, segment=segment)
            sample = services.sample(members, 10)
            problem = None
        except ServiceError as refused:
            count, sample, problem = None, [], refused.message
        sizes = services.size_history(segment) if services.tenant_wide(actor) else None
        return {
            "count": count,
            "sample": sample,
            "problem": problem,
            "sizes": (
                {
                    "days": [row.day.isoformat() for row in sizes],
                    "sizes": [row.size for row in sizes],
                }
                if sizes is not None
                else None
            ),
            "members_url": reverse("admin:segments_segment_members", args=[segment.pk]),
            "rebuild_url": reverse("admin:segments_segment_rebuild", args=[segment.pk]),
            "delete_url": reverse("admin:segments_segment_delete", args=[segment.pk]),
        }

    # -- JSON: the live preview -----------------------------------------------------------------
    def preview_view(self, request: HttpRequest) -> JsonResponse:
        """POST {"rules": ...} → {"count", "sample", "rules"} or 400 {"error": ...}."""
        if request.method != "POST":
            return JsonResponse({"error": {"message": _("Use POST")}}, status=405)
        if not self.has_view_permission(request):
            raise PermissionDenied
        actor = console_actor(request)
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return JsonResponse({"error": {"message": _('Send JSON: {"rules": ...}')}}, status=400)
        may_see_customers = actor.has_perm("customers.view_customer")
        try:
            result = services.preview(
                actor, body.get("rules"), sample_size=10 if may_see_customers else 0
            )
        except ServiceError as refused:
            return JsonResponse(
                {
                    "error": {
                        "code": refused.code,
                        "message": refused.message,
                        "details": refused.details,
                    }
                },
                status=refused.status,
            )
        return JsonResponse(
            {
                "count": result.count,
                "rules": result.rules,
                "sample": [_customer_row(customer) for customer in result.sample],
            }
        )

    # -- members and rebuild ----------------------------------------------------------------------
    def members_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        segment = self.get_object(request, str(object_id))
        actor = console_actor(request)
        if not actor.has_perm("customers.view_customer"):
            raise PermissionDenied
        before = request.GET.get("before")
        before_id = int(before) if before and before.isdigit() else None
        try:
            customers = services.resolve_audience(actor, segment=segment)
            rows, next_before = services.page(customers, before=before_id, limit=50)
            count, problem = services.segment_count(actor, segment), None
        except ServiceError as refused:
            rows, next_before, count, problem = [], None, None, refused.message
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Customers in %(name)s") % {"name": segment.name},
            "segment": segment,
            "rows": [_customer_row(customer) for customer in rows],
            "count": count,
            "problem": problem,
            "next_url": f"?before={next_before}" if next_before else None,
            "first_url": "?" if before_id else None,
            "builder_url": reverse("admin:segments_segment_change", args=[segment.pk]),
        }
        return TemplateResponse(request, "segments/members.html", context)

    def rebuild_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        segment = self.get_object(request, str(object_id))
        if request.method != "POST" or not self.has_change_permission(request, segment):
            raise PermissionDenied
        try:
            job = services.rebuild_snapshot(console_actor(request), segment)
        except ServiceError as refused:
            messages.error(request, refused.message)
        else:
            if job is None:
                messages.success(request, _("The members were rebuilt."))
            else:
                messages.success(
                    request,
                    _("The members are being rebuilt in the background (job %(id)s).")
                    % {"id": job.pk},
                )
        return redirect(reverse("admin:segments_segment_change", args=[segment.pk]))

    # -- deleting through the service -----------------------------------------------------------
    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("segments.delete_segment")

    def delete_model(self, request: HttpRequest, obj: Segment) -> None:
        services.delete_segment(console_actor(request), obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        actor = console_actor(request)
        for segment in queryset:
            services.delete_segment(actor, segment)


def builder_labels() -> dict[str, str]:
    """The rule builder's words, translated here (its script has no catalogue)."""
    return {
        "match": _("Customers matching"),
        "and": _("all of (AND)"),
        "or": _("any of (OR)"),
        "add_condition": _("condition"),
        "add_group": pgettext("segment rule", "group"),
        "remove": _("Remove"),
        "remove_group": _("Remove group"),
        "empty_group": _("Add a condition to this group."),
        "everyone": _("No conditions: every customer matches."),
        "field": _("Field"),
        "operator": pgettext("segment rule", "operator"),
        "value": _("Value"),
        "from": pgettext("range", "from"),
        "to": pgettext("range", "to"),
        "days": _("days"),
        "times": _("times"),
        "comma_separated": _("values separated by commas"),
        "event_type": _("event type"),
        "window": _("when"),
        "within_days": _("in the last"),
        "since": _("since"),
        "ever": _("ever"),
        "unknown_field": _("Unknown field:"),
        "failed": _("The preview failed; try again."),
        "customers": _("customers"),
    }


def _customer_row(customer: Any) -> dict[str, Any]:
    return {
        "id": customer.pk,
        "name": str(customer),
        "avatar": customer.avatar,
        "owner": str(customer.owner) if customer.owner_id else "",
        "stage": customer.get_lifecycle_stage_display(),
        "source": customer.source_state,
        "added": customer.first_added_at.date().isoformat() if customer.first_added_at else "",
        "url": reverse("admin:customers_customer_change", args=[customer.pk]),
    }


# --- RFM ------------------------------------------------------------------------------------------
@admin.register(CustomerRFM)
class CustomerRFMAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = (
        "customer",
        "layer_label",
        "r_score",
        "f_score",
        "m_score",
        "recency_days",
        "frequency",
        "spend",
        "computed_at",
    )
    list_filter = ("layer", "r_score", "f_score", "m_score")
    search_fields = ("customer__name", "customer__external_userid")
    list_select_related = ("customer",)
    ordering = ("-m_score", "-f_score", "-r_score", "id")
    list_before_template = "segments/rfm_layers.html"
    actions_list = ("recompute",)

    @display(description=gettext_lazy("RFM layer"), ordering="layer")
    def layer_label(self, row: CustomerRFM) -> str:
        return str(rfm.LAYER_LABELS.get(row.layer, row.layer or "-"))

    @display(description=gettext_lazy("spend (yuan)"), ordering="monetary_fen")
    def spend(self, row: CustomerRFM) -> str:
        return f"{row.monetary_fen / 100:,.2f}"

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        actor = console_actor(request)
        extra_context = {
            **(extra_context or {}),
            "rfm_layers": rfm.layer_counts(actor.tenant_id, services.visible_customers(actor)),
            "rfm_policy": rfm.policy_for(actor.tenant_id),
        }
        return super().changelist_view(request, extra_context)

    def has_recompute_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("segments.change_customerrfm")

    @action(
        description=gettext_lazy("Recompute RFM now"), icon="refresh", permissions=["recompute"]
    )
    def recompute(self, request: HttpRequest) -> HttpResponse:
        compute_rfm_for_tenant(console_actor(request).tenant_id)
        messages.success(request, _("The RFM scores are being recomputed."))
        return redirect(reverse("admin:segments_customerrfm_changelist"))


class RFMPolicyForm(ServiceModelForm):
    purchase_event_types = forms.CharField(
        label=gettext_lazy("purchase event types"),
        required=False,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 4}),
        help_text=gettext_lazy("One event type per line; empty means order.paid"),
    )

    class Meta:
        model = RFMPolicy
        fields = ("window_days", "purchase_event_types", "amount_key")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["purchase_event_types"] = "\n".join(self.instance.purchase_event_types)


@admin.register(RFMPolicy)
class RFMPolicyAdmin(TenantScopedAdmin):
    form = RFMPolicyForm
    list_display = ("__str__", "window_days", "amount_key", "last_run_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # one per tenant, created with the defaults on first use

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        """There is one set of settings: open it."""
        if not (self.has_view_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        actor = console_actor(request)
        policy = services.rfm_policy(actor)
        return redirect(reverse("admin:segments_rfmpolicy_change", args=[policy.pk]))

    def save_via_service(self, request: HttpRequest, obj: Any, form: Any, change: bool):
        data = form.cleaned_data
        types = [line.strip() for line in (data.get("purchase_event_types") or "").splitlines()]
        return services.update_rfm_policy(
            console_actor(request),
            window_days=data["window_days"],
            purchase_event_types=[t for t in types if t],
            amount_key=data["amount_key"],
        )


add_model_page("customers", Segment, icon="filter_alt")
add_model_page("customers", CustomerRFM, icon="leaderboard", title=gettext_lazy("RFM layers"))
add_model_page("settings", RFMPolicy, icon="tune", title=gettext_lazy("RFM settings"))
