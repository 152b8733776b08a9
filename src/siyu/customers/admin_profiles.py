"""Console pages for the tenant's customer settings: custom fields and lifecycle rules.

Both save through their services (``siyu.customers.profiles`` / ``siyu.customers.lifecycle``);
a refusal comes back on the form. Lifecycle rules are one row per tenant: its list opens
the tenant's rules directly (created with the defaults on first use).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminTextareaWidget

from siyu.core.console import ServiceModelForm, TenantScopedAdmin, add_model_page, console_actor
from siyu.core.tasks import on_commit_task
from siyu.customers import lifecycle, profiles
from siyu.customers.models import CustomField, LifecyclePolicy


def _lines(value: Any) -> str:
    return "\n".join(str(item) for item in (value or []))


class CustomFieldForm(ServiceModelForm):
    choices = forms.CharField(
        label=_("choices"),
        required=False,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 4}),
        help_text=_("One per line; for single and multiple choice fields"),
    )

    class Meta:
        model = CustomField
        fields = ("key", "label", "type", "choices", "help_text", "order", "is_active")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["choices"] = _lines(self.instance.choices)


@admin.register(CustomField)
class CustomFieldAdmin(TenantScopedAdmin):
    form = CustomFieldForm
    list_display = ("label", "key", "type", "choice_list", "is_active", "order")
    list_filter = ("type", "is_active")
    search_fields = ("label", "key")
    ordering = ("order", "id")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        return ("key",) if obj is not None else ()

    @display(description=_("choices"))
    def choice_list(self, field: CustomField) -> str:
        return "、".join(field.choices) or "-"

    def save_via_service(self, request: HttpRequest, obj: Any, form: Any, change: bool):
        actor = console_actor(request)
        data = form.cleaned_data
        values = {
            "label": data["label"],
            "type": data["type"],
            "choices": data.get("choices") or "",
            "help_text": data.get("help_text") or "",
            "order": data.get("order") or 0,
        }
        if not change:
            field = profiles.create_custom_field(actor, key=data["key"], **values)
            if data.get("is_active") is False:
                field = profiles.deactivate_custom_field(actor, field)
            return field
        return profiles.update_custom_field(
            actor, obj.pk, is_active=bool(data.get("is_active")), **values
        )


class LifecyclePolicyForm(ServiceModelForm):
    interaction_types = forms.CharField(
        label=_("interaction event types"),
        required=False,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 6}),
        help_text=_("One event type per line; empty means the built-in list: %(types)s")
        % {"types": ", ".join(lifecycle.DEFAULT_INTERACTION_TYPES)},
    )

    class Meta:
        model = LifecyclePolicy
        fields = (
            "new_days",
            "silent_after_days",
            "at_risk_after_days",
            "churned_after_days",
            "interaction_types",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["interaction_types"] = _lines(self.instance.interaction_types)


@admin.register(LifecyclePolicy)
class LifecyclePolicyAdmin(TenantScopedAdmin):
    form = LifecyclePolicyForm
    list_display = ("__str__", "new_days", "silent_after_days", "at_risk_after_days")
    actions_detail = ("recompute_now",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # one per tenant, created with the defaults on first use

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None):
        """There is one set of rules: open it."""
        if not (self.has_view_permission(request) or self.has_change_permission(request)):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        policy = lifecycle.policy_for(console_actor(request).tenant)
        return redirect(reverse("admin:customers_lifecyclepolicy_change", args=[policy.pk]))

    def save_via_service(self, request: HttpRequest, obj: Any, form: Any, change: bool):
        data = form.cleaned_data
        return lifecycle.update_policy(
            console_actor(request),
            new_days=data["new_days"],
            silent_after_days=data["silent_after_days"],
            at_risk_after_days=data["at_risk_after_days"],
            churned_after_days=data["churned_after_days"],
            interaction_types=data.get("interaction_types") or "",
        )

    def has_recompute_now_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("customers.change_lifecyclepolicy")

    @action(description=_("Recompute stages now"), icon="refresh", permissions=["recompute_now"])
    def recompute_now(self, request: HttpRequest, object_id: str) -> HttpResponse:
        actor = console_actor(request)
        on_commit_task(lifecycle.recompute_stages_task, actor.tenant_id)
        messages.success(request, _("The stages are being recomputed."))
        return redirect(reverse("admin:customers_lifecyclepolicy_change", args=[object_id]))


add_model_page("customers", CustomField, icon="tune")
add_model_page(
    "customers",
    LifecyclePolicy,
    icon="timeline",
    title=_("lifecycle rules"),
)
