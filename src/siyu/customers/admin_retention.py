"""Console pages of retention work (客户 section): churn alerts, hand-overs, duplicates.

* 流失提醒 — ended friendships with their context (channel, tenure, last interaction, value,
  other staff), filtered by kind, status, staff and day; actions mark them contacted,
  recovered or closed through ``siyu.customers.churn``.
* 客户转接 — start a hand-over (from / to staff, chosen customers or all, message, reason) and
  follow each customer's WeCom result; "check results now" polls WeCom at once.
* 重复客户 — customers sharing a unionid or a verified phone, each group with a merge button
  (choose the record to keep), a manual merge of any two customers, and the merge history.

All rows come through ``TenantScopedAdmin`` (the signed-in staff's tenant and data scope);
every write is a service call, whose refusal is shown as a message or a form error.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AutocompleteSelect, AutocompleteSelectMultiple
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _t
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from unfold.decorators import action, display

from siyu.core.console import (
    DayRangeFilter,
    ServiceModelForm,
    TenantScopedAdmin,
    TenantScopedInline,
    add_page,
    console_actor,
)
from siyu.core.errors import ServiceError
from siyu.customers import churn, handover, merge
from siyu.customers.models import (
    ChurnAlert,
    Customer,
    CustomerMerge,
    Handover,
    HandoverItem,
)
from siyu.tenancy.models import Staff

ALERT_KIND_COLOURS = {
    ChurnAlert.Kind.DELETED_BY_CUSTOMER: "danger",
    ChurnAlert.Kind.DELETED_BY_STAFF: "warning",
}
ALERT_STATUS_COLOURS = {
    ChurnAlert.Status.OPEN: "danger",
    ChurnAlert.Status.CONTACTED: "warning",
    ChurnAlert.Status.RECOVERED: "success",
    ChurnAlert.Status.CLOSED: "info",
}
HANDOVER_STATUS_COLOURS = {
    Handover.Status.PENDING: "info",
    Handover.Status.SUBMITTED: "warning",
    Handover.Status.FINISHED: "success",
    Handover.Status.FAILED: "danger",
}


def customer_link(customer: Customer) -> str:
    url = reverse("admin:customers_customer_change", args=[customer.pk])
    return format_html('<a href="{}" class="text-primary-600">{}</a>', url, customer)


# --- churn alerts ---------------------------------------------------------------------------
@admin.register(ChurnAlert)
class ChurnAlertAdmin(TenantScopedAdmin):
    list_display = (
        "customer_name",
        "staff",
        "kind_label",
        "status_label",
        "occurred_at",
        "source_state",
        "tenure_days",
        "last_interaction_at",
        "value",
        "other_follows",
    )
    list_filter = ("kind", "status", "staff", ("occurred_at", DayRangeFilter))
    list_filter_submit = True
    search_fields = ("customer__name", "customer__external_userid", "staff__name")
    list_select_related = ("customer", "staff")
    actions = ("mark_contacted", "mark_recovered", "mark_closed")
    fields = (
        "customer",
        "staff",
        "kind",
        "status",
        "occurred_at",
        "source_state",
        "tenure_days",
        "last_interaction_at",
        "value_fen",
        "other_follows",
        "resolved_at",
        "created_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The list's actions change alerts; the page of one alert is for reading.
        return obj is None and super().has_change_permission(request)

    @display(description=_("customer"), ordering="customer__name")
    def customer_name(self, alert: ChurnAlert) -> str:
        return customer_link(alert.customer)

    @display(description=_("kind"), ordering="kind", label=ALERT_KIND_COLOURS)
    def kind_label(self, alert: ChurnAlert):
        return alert.kind, alert.get_kind_display()

    @display(description=_("status"), ordering="status", label=ALERT_STATUS_COLOURS)
    def status_label(self, alert: ChurnAlert):
        return alert.status, alert.get_status_display()

    @display(description=_("value (yuan)"), ordering="value_fen")
    def value(self, alert: ChurnAlert) -> str:
        return f"{alert.value_fen / 100:.2f}"

    def _set_status(self, request: HttpRequest, queryset: Any, status: str) -> None:
        actor = console_actor(request)
        self.apply_service(
            request,
            queryset,
            lambda alert: churn.set_alert_status(actor, alert, status),
            lambda count: (
                ngettext("%(count)d churn alert updated.", "%(count)d churn alerts updated.", count)
                % {"count": count}
            ),
        )

    @action(description=_("Mark contacted"), permissions=["change"])
    def mark_contacted(self, request: HttpRequest, queryset: Any) -> None:
        self._set_status(request, queryset, ChurnAlert.Status.CONTACTED)

    @action(description=_("Mark recovered (won back)"), permissions=["change"])
    def mark_recovered(self, request: HttpRequest, queryset: Any) -> None:
        self._set_status(request, queryset, ChurnAlert.Status.RECOVERED)

    @action(description=_("Close (give up)"), permissions=["change"])
    def mark_closed(self, request: HttpRequest, queryset: Any) -> None:
        self._set_status(request, queryset, ChurnAlert.Status.CLOSED)


# --- hand-overs -----------------------------------------------------------------------------
class HandoverForm(ServiceModelForm):
    """Start a hand-over: the model's fields plus the customers (or all of them)."""

    customers = forms.ModelMultipleChoiceField(
        queryset=Customer.objects.none(),
        required=False,
        label=_("customers"),
        help_text=_("Search by name or external userid; or tick “all customers” below"),
    )
    all_customers = forms.BooleanField(
        required=False,
        label=_("all customers"),
        help_text=_("Every customer the handing-over staff is friends with"),
    )

    class Meta:
        model = Handover
        fields = ("from_staff", "to_staff", "customers", "all_customers", "message", "reason")


class HandoverItemInline(TenantScopedInline):
    model = HandoverItem
    fk_name = "handover"
    verbose_name_plural = _("customers and WeCom's answers")
    fields = ("customer", "status", "errcode", "detail", "takeover_at", "updated_at")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).select_related("customer")


@admin.register(Handover)
class HandoverAdmin(TenantScopedAdmin):
    form = HandoverForm
    list_display = (
        "__str__",
        "kind",
        "status_label",
        "progress",
        "reason",
        "created_by",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "kind", "from_staff", "to_staff")
    search_fields = ("from_staff__name", "to_staff__name", "reason")
    list_select_related = ("from_staff", "to_staff", "created_by")
    actions = ("check_results",)
    readonly_fields = (
        "kind",
        "status",
        "from_staff",
        "to_staff",
        "message",
        "reason",
        "created_by",
        "created_at",
        "finished_at",
    )

    def get_queryset(self, request: HttpRequest):
        ordering = self.get_ordering(request)
        rows = handover.visible_handovers(console_actor(request))
        return rows.order_by(*ordering) if ordering else rows

    # -- who may do what ------------------------------------------------------------------
    def has_handover_permission(self, request: HttpRequest) -> bool:
        return console_actor(request).has_perm(handover.HANDOVER_PERMISSION)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_handover_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a hand-over is history: it is started, then only read

    # -- the pages --------------------------------------------------------------------------
    def get_fields(self, request: HttpRequest, obj: Any = None):
        if obj is None:
            return ["from_staff", "to_staff", "customers", "all_customers", "message", "reason"]
        return list(self.readonly_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        return self.readonly_fields if obj is not None else ()

    def get_inlines(self, request: HttpRequest, obj: Any = None):
        return (HandoverItemInline,) if obj is not None else ()

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        if obj is None and "customers" in form.base_fields:
            field = form.base_fields["customers"]
            field.widget = AutocompleteSelectMultiple(
                HandoverItem._meta.get_field("customer"), self.admin_site
            )
            # Set after the widget: the queryset setter hands the widget its choices.
            field.queryset = merge.live_customers(console_actor(request))
        return form

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any):
        if db_field.name == "to_staff":
            # Customers may go to any active colleague, not only those in one's data scope.
            kwargs["queryset"] = Staff.objects.for_tenant(console_actor(request).tenant).filter(
                status=Staff.Status.ACTIVE
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_via_service(self, request: HttpRequest, obj: Any, form: Any, change: bool):
        data = form.cleaned_data
        return handover.start_handover(
            console_actor(request),
            from_staff=data["from_staff"],
            to_staff=data["to_staff"],
            customers=list(data.get("customers") or ()),
            all_customers=data.get("all_customers", False),
            message=data.get("message", ""),
            reason=data.get("reason", ""),
        )

    # -- columns ----------------------------------------------------------------------------
    @display(description=_("status"), ordering="status", label=HANDOVER_STATUS_COLOURS)
    def status_label(self, row: Handover):
        return row.status, row.get_status_display()

    @display(description=_("customers"))
    def progress(self, row: Handover) -> str:
        return _t("%(total)d: %(succeeded)d taken over, %(waiting)d waiting, %(failed)d not") % {
            "total": row.count_total,
            "succeeded": row.count_succeeded,
            "waiting": row.count_waiting + row.count_queued,
            "failed": row.count_refused + row.count_limit + row.count_failed,
        }

    @action(description=_("Check WeCom's results now"), permissions=["handover"])
    def check_results(self, request: HttpRequest, queryset: Any) -> None:
        self.apply_service(
            request,
            queryset.filter(status=Handover.Status.SUBMITTED),
            handover.refresh_handover,
            lambda count: (
                ngettext(
                    "Results of %(count)d hand-over checked.",
                    "Results of %(count)d hand-overs checked.",
                    count,
                )
                % {"count": count}
            ),
        )


# --- duplicates and merges ------------------------------------------------------------------
class ManualMergeForm(forms.Form):
    survivor = forms.ModelChoiceField(
        queryset=Customer.objects.none(), label=_("keep this customer")
    )
    duplicate = forms.ModelChoiceField(
        queryset=Customer.objects.none(), label=_("merge this customer into it")
    )

    def __init__(self, *args: Any, actor: Any, admin_site: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        rows = merge.live_customers(actor)
        field = CustomerMerge._meta.get_field("survivor")
        for name in ("survivor", "duplicate"):
            self.fields[name].widget = AutocompleteSelect(field, admin_site)
            self.fields[name].queryset = rows  # after the widget: it hands it the choices


@admin.register(CustomerMerge)
class CustomerMergeAdmin(TenantScopedAdmin):
    """The merge history, and the duplicates page (``duplicates/``) where merges happen."""

    list_display = ("merged_external_userid", "survivor_link", "reason", "merged_by", "created_at")
    list_filter = ("reason",)
    search_fields = ("merged_external_userid", "survivor__name", "survivor__external_userid")
    list_select_related = ("survivor", "merged_by")
    fields = (
        "survivor",
        "merged_customer_id",
        "merged_external_userid",
        "reason",
        "merged_by",
        "created_at",
        "snapshot",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @display(description=_("kept customer"), ordering="survivor__name")
    def survivor_link(self, row: CustomerMerge) -> str:
        return customer_link(row.survivor)

    def get_urls(self):
        urls = super().get_urls()
        view = self.admin_site.admin_view(self.duplicates_view)
        return [path("duplicates/", view, name="customers_duplicates"), *urls]

    def duplicates_view(self, request: HttpRequest) -> HttpResponse:
        """GET: the candidate groups and the manual form; POST: merge (a group or two ids)."""
        actor = console_actor(request)
        if not self.has_view_permission(request):
            raise PermissionDenied
        may_merge = actor.has_perm(merge.MERGE_PERMISSION)
        form = ManualMergeForm(actor=actor, admin_site=self.admin_site)
        if request.method == "POST":
            if not may_merge:
                raise PermissionDenied
            if request.POST.get("group"):
                self._merge_group(request, actor)
                return HttpResponseRedirect(request.path)
            form = ManualMergeForm(request.POST, actor=actor, admin_site=self.admin_site)
            if form.is_valid():
                try:
                    merge.merge_customers(
                        actor, form.cleaned_data["survivor"], form.cleaned_data["duplicate"]
                    )
                except ServiceError as error:
                    form.add_error(None, error.message)
                else:
                    self.message_user(request, _t("Customers merged."), messages.SUCCESS)
                    return HttpResponseRedirect(request.path)
        context = {
            **self.admin_site.each_context(request),
            "title": _t("Duplicate customers"),
            "opts": self.model._meta,
            "groups": merge.duplicate_groups(actor),
            "form": form,
            "media": self.media + form.media,
            "may_merge": may_merge,
            "history_url": reverse("admin:customers_customermerge_changelist"),
        }
        return TemplateResponse(request, "customers/duplicates.html", context)

    def _merge_group(self, request: HttpRequest, actor: Any) -> None:
        """One group's form: the chosen survivor and the group's other members."""
        try:
            survivor = int(request.POST.get("survivor") or 0)
            others = [int(pk) for pk in request.POST.getlist("member") if int(pk) != survivor]
        except ValueError:
            self.message_user(request, _t("Choose the customer to keep."), messages.ERROR)
            return
        merged = 0
        for duplicate in others:
            try:
                merge.merge_customers(actor, survivor, duplicate)
            except ServiceError as error:
                self.message_user(request, error.message, messages.ERROR)
            else:
                merged += 1
        if merged:
            self.message_user(
                request,
                ngettext("%(count)d customer merged.", "%(count)d customers merged.", merged)
                % {"count": merged},
                messages.SUCCESS,
            )


def _allowed(permission: str):
    return lambda request: request.user.has_perm(permission)


add_page(
    "customers",
    title=_("churn alerts"),
    icon="person_remove",
    link=lambda request: reverse("admin:customers_churnalert_changelist"),
    allowed=_allowed("customers.view_churnalert"),
)
add_page(
    "customers",
    title=_("hand-overs"),
    icon="swap_horiz",
    link=lambda request: reverse("admin:customers_handover_changelist"),
    allowed=_allowed("customers.view_handover"),
)
add_page(
    "customers",
    title=_("duplicate customers"),
    icon="merge",
    link=lambda request: reverse("admin:customers_duplicates"),
    allowed=_allowed("customers.view_customermerge"),
)
