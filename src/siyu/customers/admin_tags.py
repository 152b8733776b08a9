"""Console pages for tags: the tag library (groups with their tags inline), auto-tag rules,
and the "tag / untag" action on the customer list.

Every write goes through ``siyu.customers.tagging`` / ``siyu.customers.autotag``: a WeCom
group or tag is created, renamed, reordered or deleted in WeCom first, and a refusal comes
back on the form (or, for a row of the inline, as a message naming the row) with nothing
written locally. Deleting is soft (WeCom's ids stay on the row, ``deleted`` is set) and takes
the tag off every customer. Usage counts are correlated sub-queries, evaluated for the rows
of the page only.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from unfold.decorators import action, display
from unfold.widgets import (
    UnfoldAdminSelect2MultipleWidget,
    UnfoldAdminTextareaWidget,
    UnfoldBooleanSwitchWidget,
)

from siyu.core.console import (
    ServiceModelForm,
    TenantScopedAdmin,
    TenantScopedInline,
    add_model_page,
    console_actor,
)
from siyu.core.errors import InvalidInput, ServiceError
from siyu.customers import autotag, tagging
from siyu.customers.models import AutoTagRule, Customer, CustomerTag, Tag, TagGroup

WECOM_COLOURS = {"wecom": "success", "local": "info", "deleted": "danger"}


def _usage(tenant_id: int, **match: Any) -> Coalesce:
    """Customers carrying the tag (or any tag of the group): a per-row sub-query."""
    links = (
        CustomerTag.objects.for_tenant(tenant_id)
        .filter(**match)
        .order_by()
        .values("tenant_id")
        .annotate(n=Count("customer_id", distinct=True))
        .values("n")
    )
    return Coalesce(Subquery(links, output_field=IntegerField()), 0)


def _origin(row: Any, wecom_id: str) -> tuple[str, str]:
    if row.deleted:
        return "deleted", str(_("deleted"))
    if wecom_id:
        return "wecom", "WeCom"
    return "local", str(_("Siyu only"))


# --- tag groups -------------------------------------------------------------------------------
class TagGroupForm(ServiceModelForm):
    local = forms.BooleanField(
        label=_("Siyu only"),
        required=False,
        widget=UnfoldBooleanSwitchWidget,
        help_text=_("Not created in WeCom: its tags stay in Siyu and are never marked in WeCom"),
    )
    first_tags = forms.CharField(
        label=_("tags"),
        required=False,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 4}),
        help_text=_("One per line; a WeCom tag group needs at least one tag"),
    )

    class Meta:
        model = TagGroup
        fields = ("name", "order")


class TagInlineForm(ServiceModelForm):
    class Meta:
        model = Tag
        fields = ("name", "order")


class TagFormSet(BaseInlineFormSet):
    """Rows look their tag up within the group's tenant (Django's formset would use the
    unscoped default manager, which refuses to run)."""

    def add_fields(self, form: Any, index: Any) -> None:
        super().add_fields(form, index)
        field = form.fields.get(self._pk_field.name)
        if field is not None:
            field.queryset = Tag.objects.for_tenant(self.instance.tenant_id).filter(
                group=self.instance
            )


class TagInline(TenantScopedInline):
    """The group's live tags, editable: each row is saved through the tagging services."""

    model = Tag
    form = TagInlineForm
    formset = TagFormSet
    fields = ("name", "order", "wecom_tag_id", "customers")
    readonly_fields = ("wecom_tag_id", "customers")
    extra = 1
    can_delete = True

    def get_queryset(self, request: HttpRequest):
        tenant_id = console_actor(request).tenant_id
        return (
            super()
            .get_queryset(request)
            .filter(deleted=False)
            .annotate(usage=_usage(tenant_id, tag_id=OuterRef("pk")))
        )

    @display(description=_("customers"))
    def customers(self, tag: Tag) -> int:
        return getattr(tag, "usage", 0)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("customers.add_tag") and not getattr(obj, "deleted", True)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("customers.change_tag") and not getattr(obj, "deleted", False)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("customers.delete_tag") and not getattr(obj, "deleted", False)


def _soft_deleted_summary(objs: Any) -> tuple[list[str], dict, set, list]:
    """What the delete page lists: the rows themselves (deleting is soft: no cascade)."""
    return [str(obj) for obj in objs], {}, set(), []


class TagGroupAdmin(TenantScopedAdmin):
    form = TagGroupForm
    list_display = ("name", "origin_label", "order", "tag_count", "customers", "wecom_group_id")
    list_filter = ("deleted",)
    search_fields = ("name", "wecom_group_id")
    ordering = ("-order", "id")
    inlines = (TagInline,)
    readonly_fields = ("wecom_group_id", "origin_label", "customers")

    def get_queryset(self, request: HttpRequest):
        tenant_id = console_actor(request).tenant_id
        live_tags = (
            Tag.objects.for_tenant(tenant_id)
            .filter(group_id=OuterRef("pk"), deleted=False)
            .order_by()
            .values("group_id")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                live_tags=Coalesce(Subquery(live_tags, output_field=IntegerField()), 0),
                usage=_usage(tenant_id, tag__group_id=OuterRef("pk")),
            )
        )

    def get_fields(self, request: HttpRequest, obj: Any = None):
        if obj is None:
            return ["name", "order", "local", "first_tags"]
        return ["name", "order", "origin_label", "wecom_group_id", "customers"]

    def get_inlines(self, request: HttpRequest, obj: Any = None):
        # A new group's first tags go with it in one WeCom call (WeCom keeps no empty group).
        return self.inlines if obj is not None else ()

    @display(description=_("kind"), label=WECOM_COLOURS)
    def origin_label(self, group: TagGroup):
        return _origin(group, group.wecom_group_id)

    @display(description=_("tags"), ordering="live_tags")
    def tag_count(self, group: TagGroup) -> int:
        return getattr(group, "live_tags", 0)

    @display(description=_("customers"), ordering="usage")
    def customers(self, group: TagGroup) -> int:
        return getattr(group, "usage", 0)

    # -- writes through the services ---------------------------------------------------------
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and not getattr(obj, "deleted", False)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = request.user.has_perm("customers.delete_taggroup")
        return allowed and not getattr(obj, "deleted", False)

    def save_via_service(self, request: HttpRequest, obj: Any, form: Any, change: bool):
        actor = console_actor(request)
        data = form.cleaned_data
        if not change:
            lines = [line.strip() for line in (data.get("first_tags") or "").splitlines()]
            return tagging.create_tag_group(
                actor,
                name=data["name"],
                order=data.get("order") or 0,
                tags=[line for line in lines if line],
                local=bool(data.get("local")),
            )
        return tagging.update_tag_group(
            actor, obj.pk, name=data["name"], order=data.get("order") or 0
        )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        for formset in formsets:
            save_tag_rows(request, form.instance, formset)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        tagging.delete_tag_group(console_actor(request), obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        actor = console_actor(request)
        self.apply_service(
            request,
            queryset.filter(deleted=False),
            lambda group: tagging.delete_tag_group(actor, group.pk),
            lambda n: (
                ngettext("%(n)d tag group deleted.", "%(n)d tag groups deleted.", n) % {"n": n}
            ),
        )

    def get_deleted_objects(self, objs: Any, request: HttpRequest):
        return _soft_deleted_summary(objs)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ServiceError as error:
            self.message_user(request, error.message, messages.ERROR)
            return redirect(reverse("admin:customers_taggroup_change", args=[object_id]))


def save_tag_rows(request: HttpRequest, group: TagGroup, formset: Any) -> None:
    """Create, change or delete the inline's tag rows one by one through the services; a row
    WeCom refuses is reported by name, the others are kept (each was accepted by WeCom)."""
    actor = console_actor(request)
    formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
    for row in formset.forms:
        data = getattr(row, "cleaned_data", None) or {}
        deleting = formset.can_delete and formset._should_delete_form(row)
        name = data.get("name") or getattr(row.instance, "name", "")
        try:
            if row.instance.pk is not None:
                if deleting:
                    tagging.delete_tag(actor, row.instance.pk)
                elif row.has_changed():
                    tagging.update_tag(
                        actor, row.instance.pk, name=data["name"], order=data.get("order") or 0
                    )
            elif row.has_changed() and not deleting and data.get("name"):
                tagging.create_tag(actor, group.pk, name=data["name"], order=data.get("order") or 0)
        except ServiceError as error:
            messages.error(request, f"{name}: {error.message}")


# --- tags -------------------------------------------------------------------------------------
class TagForm(ServiceModelForm):
    class Meta:
        model = Tag
        fields = ("group", "name", "order")


class TagAdmin(TenantScopedAdmin):
    form = TagForm
    list_display = ("name", "group", "origin_label", "order", "customers", "wecom_tag_id")
    list_filter = ("deleted", "group")
    search_fields = ("name", "wecom_tag_id", "group__name")
    list_select_related = ("group",)
    ordering = ("group", "-order", "id")
    readonly_fields = ("origin_label", "wecom_tag_id", "customers")

    def get_queryset(self, request: HttpRequest):
        tenant_id = console_actor(request).tenant_id
        return (
            super().get_queryset(request).annotate(usage=_usage(tenant_id, tag_id=OuterRef("pk")))
        )

    def get_fields(self, request: HttpRequest, obj: Any = None):
        if obj is None:
            return ["group", "name", "order"]
        return ["group", "name", "order", "origin_label", "wecom_tag_id", "customers"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        # A tag never moves to another group (WeCom cannot move one).
        return (*self.readonly_fields, "group") if obj is not None else self.readonly_fields

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any):
        if db_field.name == "group":
            kwargs["queryset"] = TagGroup.objects.for_actor(console_actor(request)).filter(
                deleted=False
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @display(description=_("kind"), label=WECOM_COLOURS)
    def origin_label(self, tag: Tag):
        return _origin(tag, tag.wecom_tag_id)

    @display(description=_("customers"), ordering="usage")
    def customers(self, tag: Tag) -> int:
        return getattr(tag, "usage", 0)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and not getattr(obj, "deleted", False)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("customers.delete_tag") and not getattr(obj, "deleted", False)

    def save_via_service(self, request: HttpRequest, obj: Any, form: Any, change: bool):
        actor = console_actor(request)
        data = form.cleaned_data
        if not change:
            return tagging.create_tag(
                actor, data["group"].pk, name=data["name"], order=data.get("order") or 0
            )
        return tagging.update_tag(actor, obj.pk, name=data["name"], order=data.get("order") or 0)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        tagging.delete_tag(console_actor(request), obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        actor = console_actor(request)
        self.apply_service(
            request,
            queryset.filter(deleted=False),
            lambda tag: tagging.delete_tag(actor, tag.pk),
            lambda n: ngettext("%(n)d tag deleted.", "%(n)d tags deleted.", n) % {"n": n},
        )

    def get_deleted_objects(self, objs: Any, request: HttpRequest):
        return _soft_deleted_summary(objs)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ServiceError as error:
            self.message_user(request, error.message, messages.ERROR)
            return redirect(reverse("admin:customers_tag_change", args=[object_id]))


# --- auto-tag rules ---------------------------------------------------------------------------
class AutoTagRuleForm(ServiceModelForm):
    rules = forms.JSONField(
        label=_("rules"),
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 8, "class": "font-mono"}),
        help_text=_(
            'The segment rule language, e.g. {"op": "and", "conditions": [{"field": "city", '
            '"operator": "eq", "value": "上海"}]}'
        ),
    )

    class Meta:
        model = AutoTagRule
        fields = ("name", "tag", "rules", "remove_when_unmatched", "is_active")


class AutoTagRuleAdmin(TenantScopedAdmin):
    form = AutoTagRuleForm
    list_display = (
        "name",
        "tag",
        "is_active",
        "remove_when_unmatched",
        "last_run_at",
        "last_tagged",
        "last_untagged",
    )
    list_filter = ("is_active", "remove_when_unmatched")
    search_fields = ("name", "tag__name")
    list_select_related = ("tag",)
    readonly_fields = ("last_run_at", "last_tagged", "last_untagged")
    actions = ("run_selected",)
    actions_detail = ("run_now",)

    def get_fields(self, request: HttpRequest, obj: Any = None):
        fields = ["name", "tag", "rules", "remove_when_unmatched", "is_active"]
        return fields if obj is None else [*fields, *self.readonly_fields]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any):
        if db_field.name == "tag":
            kwargs["queryset"] = (
                Tag.objects.for_actor(console_actor(request))
                .filter(deleted=False)
                .select_related("group")
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("customers.delete_autotagrule")

    def save_via_service(self, request: HttpRequest, obj: Any, form: Any, change: bool):
        actor = console_actor(request)
        data = form.cleaned_data
        values = {
            "name": data["name"],
            "tag": data["tag"].pk,
            "rules": data["rules"],
            "remove_when_unmatched": bool(data.get("remove_when_unmatched")),
            "is_active": bool(data.get("is_active")),
        }
        try:
            if not change:
                return autotag.create_rule(actor, **values)
            return autotag.update_rule(actor, obj.pk, **values)
        except InvalidInput as error:
            if isinstance(error.details, dict) and "rules" not in error.details:
                where = error.details.get("path")
                message = f"{error.message} ({where})" if where else error.message
                raise InvalidInput(message, details={"rules": error.details}) from error
            raise

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        autotag.delete_rule(console_actor(request), obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        actor = console_actor(request)
        self.apply_service(
            request,
            queryset,
            lambda rule: autotag.delete_rule(actor, rule.pk),
            lambda n: ngettext("%(n)d rule deleted.", "%(n)d rules deleted.", n) % {"n": n},
        )

    def _run(self, request: HttpRequest, rules: Any) -> None:
        actor = console_actor(request)
        for rule in rules:
            try:
                run = autotag.run_rule(rule.pk, actor=actor)
            except ServiceError as error:
                self.message_user(request, f"{rule}: {error.message}", messages.ERROR)
                continue
            if run.skipped:
                self.message_user(
                    request,
                    _("%(rule)s: not run (inactive, or its tag was deleted).") % {"rule": rule},
                    messages.WARNING,
                )
            else:
                self.message_user(
                    request,
                    _("%(rule)s: %(tagged)d customers tagged, %(untagged)d untagged.")
                    % {"rule": rule, "tagged": run.tagged, "untagged": run.untagged},
                    messages.SUCCESS,
                )

    @action(description=_("Run the selected rules now"), permissions=["change"], icon="play_arrow")
    def run_selected(self, request: HttpRequest, queryset: Any) -> None:
        self._run(request, queryset)

    @action(description=_("Run now"), permissions=["change"], icon="play_arrow")
    def run_now(self, request: HttpRequest, object_id: str) -> HttpResponse:
        rule = self.get_object(request, object_id)
        self._run(request, [rule])
        return redirect(reverse("admin:customers_autotagrule_change", args=[rule.pk]))


# --- the customer list: tag / untag the selection ---------------------------------------------
class BulkTagForm(forms.Form):
    add = forms.ModelMultipleChoiceField(
        label=_("add tags"),
        queryset=Tag.objects.none(),
        required=False,
        widget=UnfoldAdminSelect2MultipleWidget,
    )
    remove = forms.ModelMultipleChoiceField(
        label=_("remove tags"),
        queryset=Tag.objects.none(),
        required=False,
        widget=UnfoldAdminSelect2MultipleWidget,
    )

    def __init__(self, *args: Any, actor: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tags = Tag.objects.for_actor(actor).filter(deleted=False).select_related("group")
        self.fields["add"].queryset = tags
        self.fields["remove"].queryset = tags
        self.fields["add"].label_from_instance = self.fields["remove"].label_from_instance = (
            lambda tag: f"{tag.group.name} / {tag.name}"
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        add, remove = set(data.get("add") or ()), set(data.get("remove") or ())
        if not add and not remove:
            raise forms.ValidationError(_("Choose tags to add or to remove."))
        if add & remove:
            raise forms.ValidationError(_("A tag cannot be added and removed at once."))
        return data


@admin.action(description=_("Tag or untag the selected customers"), permissions=["change"])
def bulk_tag_customers(modeladmin: Any, request: HttpRequest, queryset: Any):
    """An intermediate page to choose the tags, then a background job (progress in jobs)."""
    actor = console_actor(request)
    form = BulkTagForm(request.POST if "apply" in request.POST else None, actor=actor)
    if form.is_valid():
        try:
            job = tagging.bulk_tag_queryset(
                actor,
                queryset,
                add=[tag.pk for tag in form.cleaned_data["add"]],
                remove=[tag.pk for tag in form.cleaned_data["remove"]],
            )
        except ServiceError as error:
            modeladmin.message_user(request, error.message, messages.ERROR)
        else:
            modeladmin.message_user(
                request,
                _("Bulk tagging started in the background (job #%(id)s): %(label)s")
                % {"id": job.pk, "label": job.label},
                messages.SUCCESS,
            )
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": _("Tag or untag customers"),
        "opts": modeladmin.model._meta,
        "form": form,
        "count": queryset.count(),
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
        "action_name": "bulk_tag_customers",
    }
    return TemplateResponse(request, "customers/bulk_tag.html", context)


def _add_customer_action() -> None:
    """Append the action to the registered customer list page (admin.py owns that page)."""
    customer_admin = admin.site._registry.get(Customer)
    if customer_admin is None:
        return
    actions = list(customer_admin.actions or ())
    if bulk_tag_customers not in actions:
        customer_admin.actions = [*actions, bulk_tag_customers]


# --- registration -----------------------------------------------------------------------------
for _model, _admin_class in ((TagGroup, TagGroupAdmin), (Tag, TagAdmin)):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)  # the read-only pages of admin.py give way to these
    admin.site.register(_model, _admin_class)
admin.site.register(AutoTagRule, AutoTagRuleAdmin)
_add_customer_action()

add_model_page("customers", TagGroup, icon="folder")
add_model_page("customers", Tag, icon="sell")
add_model_page("customers", AutoTagRule, icon="auto_fix_high")

__all__ = ["AutoTagRuleAdmin", "TagAdmin", "TagGroupAdmin", "bulk_tag_customers"]
