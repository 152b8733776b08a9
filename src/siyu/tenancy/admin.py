"""Console pages for tenants, departments, staff, roles and API keys (the 设置 section).

Every write goes through ``siyu.tenancy.services``; the base classes in
``siyu.core.console`` scope rows to the signed-in staff's tenant and data scope.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext, pgettext_lazy
from unfold.decorators import display
from unfold.widgets import (
    UnfoldAdminCheckboxSelectMultipleWidget,
    UnfoldAdminIntegerFieldWidget,
    UnfoldAdminPasswordWidget,
    UnfoldAdminSelectWidget,
    UnfoldAdminTextareaWidget,
    UnfoldAdminTextInputWidget,
)

from siyu.core.console import (
    ServiceAdmin,
    ServiceModelForm,
    TenantScopedAdmin,
    add_model_page,
    console_actor,
)
from siyu.core.scoping import DataScope
from siyu.tenancy import services
from siyu.tenancy.models import ApiKey, Department, Role, Staff, Tenant
from siyu.tenancy.roles import API_SCOPES

# DataScope's own labels are plain English; these are the translated ones the console shows.
DATA_SCOPE_LABELS = {
    DataScope.OWN: _("own customers"),
    DataScope.DEPARTMENT: _("department"),
    DataScope.TENANT: _("whole tenant"),
}
SCOPE_DESCRIPTIONS = {
    "tenant:read": _("read the tenant's settings"),
    "staff:read": _("read staff"),
    "staff:write": _("add and change staff"),
    "events:read": _("read events"),
    "events:write": _("record events"),
    "customers:read": _("read customers, their friendships and tags"),
    "customers:write": _("change customers: profiles, tags, notes, merges, hand-overs"),
    "customers:import": _("import customers from CSV or Excel"),
    "customers:export": _("export customers"),
    "jobs:read": _("follow background jobs and download their files"),
    "jobs:write": _("cancel background jobs"),
    "groups:read": _("read customer groups and their members"),
    "segments:read": _("read segments and their members"),
    "segments:write": _("create and change segments"),
    "tasks:read": _("read staff tasks"),
    "tasks:write": _("create, complete and dismiss staff tasks"),
}
SECRET_LABELS = {
    "wecom_contact_secret": _("customer-contact secret"),
    "wecom_callback_token": _("callback token"),
    "wecom_callback_aes_key": _("callback EncodingAESKey"),
    "wecom_agent_secret": _("app secret"),
}
WRITE_ONLY_HELP = _("Write-only: the stored value is never shown. Leave blank to keep it.")


def _secret_input(field: str) -> forms.CharField:
    return forms.CharField(
        label=capfirst(SECRET_LABELS[field]),
        required=False,
        strip=True,
        help_text=WRITE_ONLY_HELP,
        widget=UnfoldAdminPasswordWidget(
            attrs={"autocomplete": "new-password"}, render_value=False
        ),
    )


# --- tenants ----------------------------------------------------------------------------
class TenantForm(ServiceModelForm):
    """The secret inputs replace the model's columns, so their values never reach the page."""

    wecom_contact_secret = _secret_input("wecom_contact_secret")
    wecom_callback_token = _secret_input("wecom_callback_token")
    wecom_callback_aes_key = _secret_input("wecom_callback_aes_key")
    wecom_agent_secret = _secret_input("wecom_agent_secret")

    class Meta:
        model = Tenant
        exclude = (*services.SECRET_FIELDS, "settings")
        labels = {"is_active": pgettext_lazy("tenant", "active")}


def _tenant_link(request: HttpRequest) -> str:
    """Platform operators get the list of tenants; a tenant's staff their own tenant's page."""
    actor = console_actor(request)
    if request.user.is_superuser:
        return reverse("admin:tenancy_tenant_changelist")
    return reverse("admin:tenancy_tenant_change", args=[actor.tenant_id])


@admin.register(Tenant)
class TenantAdmin(ServiceAdmin):
    form = TenantForm
    # Never the secret columns: not even read-only (that would show the plaintext).
    exclude = (*services.SECRET_FIELDS, "settings")
    list_display = ("name", "slug", "active_label", "wecom_corp_id", "configured", "created_at")
    search_fields = ("name", "slug")

    def get_queryset(self, request: HttpRequest):
        """All tenants for platform superusers, only their own for everybody else."""
        queryset = Tenant.objects.all()
        if not request.user.is_superuser:
            queryset = queryset.filter(pk=console_actor(request).tenant_id)
        return queryset.order_by(*(self.get_ordering(request) or ("name",)))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def get_list_filter(self, request: HttpRequest):
        return ("is_active",) if request.user.is_superuser else ()

    def get_fieldsets(self, request: HttpRequest, obj: Tenant | None = None):
        wecom = ["wecom_corp_id"]
        if obj is not None:
            wecom.append("stored_secrets")
        if obj is None or self.has_change_permission(request, obj):
            wecom += list(SECRET_LABELS)
        general = ["name", "slug"] if obj is None else ["name", "slug", "is_active", "created_at"]
        return ((None, {"fields": general}), (_("WeCom"), {"fields": wecom}))

    def get_readonly_fields(self, request: HttpRequest, obj: Tenant | None = None):
        if obj is None:
            return ()
        readonly = ["slug", "created_at", "stored_secrets"]
        if not request.user.is_superuser:
            readonly.append("is_active")  # deactivating a tenant locks its staff out
        return readonly

    @display(
        description=pgettext_lazy("tenant", "active"), label={True: "success", False: "danger"}
    )
    def active_label(self, tenant: Tenant) -> tuple[bool, Any]:
        if tenant.is_active:
            return True, pgettext_lazy("tenant", "active")
        return False, _("inactive")

    @display(description=_("WeCom secrets set"))
    def configured(self, tenant: Tenant) -> str:
        masked = tenant.masked_secrets()
        return f"{sum(1 for value in masked.values() if value)} / {len(masked)}"

    @display(description=_("stored secrets"))
    def stored_secrets(self, tenant: Tenant) -> str:
        masked = tenant.masked_secrets()
        return format_html_join(
            mark_safe("<br>"),
            "{}: <code>{}</code>",
            ((SECRET_LABELS[field], masked[field] or _("not set")) for field in SECRET_LABELS),
        )

    def save_via_service(
        self, request: HttpRequest, obj: Tenant, form: Any, change: bool
    ) -> Tenant:
        actor = console_actor(request)
        data = form.cleaned_data
        secrets = {field: data.get(field) or "" for field in services.SECRET_FIELDS}
        if not change:
            return services.create_tenant(
                slug=data["slug"],
                name=data["name"],
                wecom_corp_id=data.get("wecom_corp_id") or "",
                by=actor,
                **secrets,
            )
        values = {"name": data["name"], "wecom_corp_id": data.get("wecom_corp_id") or "", **secrets}
        if "is_active" in data:
            values["is_active"] = data["is_active"]
        return services.update_tenant(self.fresh_copy(request, obj), by=actor, **values)


# --- departments ------------------------------------------------------------------------
@admin.register(Department)
class DepartmentAdmin(TenantScopedAdmin):
    list_display = ("name", "parent", "wecom_id", "active_staff")
    search_fields = ("name",)
    fields = ("name", "parent", "wecom_id")
    list_select_related = ("parent",)

    def get_queryset(self, request: HttpRequest):
        return (
            super()
            .get_queryset(request)
            .annotate(
                active_staff_count=Count(
                    "staff_members", filter=Q(staff_members__status=Staff.Status.ACTIVE)
                )
            )
        )

    @display(description=_("active staff"), ordering="active_staff_count")
    def active_staff(self, department: Department) -> int:
        return department.active_staff_count

    def save_via_service(
        self, request: HttpRequest, obj: Department, form: Any, change: bool
    ) -> Department:
        actor = console_actor(request)
        data = form.cleaned_data
        if change:
            return services.update_department(
                self.fresh_copy(request, obj),
                by=actor,
                name=data["name"],
                parent=data.get("parent"),
                wecom_id=data.get("wecom_id"),
            )
        return services.create_department(
            actor.tenant,
            name=data["name"],
            parent=data.get("parent"),
            wecom_id=data.get("wecom_id"),
            by=actor,
        )


# --- staff ------------------------------------------------------------------------------
class StaffForm(ServiceModelForm):
    """Staff fields plus an optional console login created in the same step."""

    login_username = forms.CharField(
        label=capfirst(_("console username")),
        required=False,
        max_length=150,
        widget=UnfoldAdminTextInputWidget(attrs={"autocomplete": "off"}),
        help_text=_("Optional: lets this member sign in to the console."),
    )
    login_password = forms.CharField(
        label=capfirst(_("console password")),
        required=False,
        strip=False,
        widget=UnfoldAdminPasswordWidget(attrs={"autocomplete": "new-password"}),
    )

    class Meta:
        model = Staff
        fields = ("wecom_userid", "name", "department", "roles")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        username, password = cleaned.get("login_username"), cleaned.get("login_password")
        if username and not password:
            self.add_error("login_password", _("Give a password for the console login."))
        if password and not username:
            self.add_error("login_username", _("Give a username for the console login."))
        return cleaned


@admin.register(Staff)
class StaffAdmin(TenantScopedAdmin):
    form = StaffForm
    list_display = (
        "name",
        "wecom_userid",
        "department",
        "role_names",
        "status_label",
        "console_login",
        "created_at",
    )
    list_filter = ("status", "department", "roles")
    search_fields = ("name", "wecom_userid")
    list_select_related = ("department", "user")
    actions = ("mark_departed",)

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).prefetch_related("roles")

    def get_fieldsets(self, request: HttpRequest, obj: Staff | None = None):
        main = ["wecom_userid", "name", "department", "roles"]
        if obj is not None:
            main += ["status", "departed_at", "created_at"]
        fieldsets = [(None, {"fields": main})]
        if obj is not None and obj.user_id:
            fieldsets.append((_("Console login"), {"fields": ["console_login"]}))
        elif self._may_create_login(request, obj):
            fieldsets.append((_("Console login"), {"fields": ["login_username", "login_password"]}))
        return fieldsets

    def _may_create_login(self, request: HttpRequest, obj: Staff | None) -> bool:
        return (
            (obj is None or self.has_change_permission(request, obj))
            and request.user.has_perm("auth.add_user")
            and (obj is None or obj.is_active)
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Staff | None = None):
        if obj is None:
            return ()
        return ("wecom_userid", "status", "departed_at", "created_at", "console_login")

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any):
        if db_field.name == "roles":
            kwargs["widget"] = UnfoldAdminCheckboxSelectMultipleWidget()
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    @display(description=_("roles"))
    def role_names(self, staff: Staff) -> str:
        return ", ".join(role.name for role in staff.roles.all())

    @display(
        description=_("status"),
        ordering="status",
        label={Staff.Status.ACTIVE: "success", Staff.Status.DEPARTED: "danger"},
    )
    def status_label(self, staff: Staff) -> tuple[str, Any]:
        return staff.status, staff.get_status_display()

    @display(description=_("console login"))
    def console_login(self, staff: Staff) -> str:
        return staff.user.get_username() if staff.user else "-"

    def save_via_service(self, request: HttpRequest, obj: Staff, form: Any, change: bool) -> Staff:
        actor = console_actor(request)
        data = form.cleaned_data
        role_codes = [role.code for role in data["roles"]] if "roles" in data else None
        if change:
            staff = services.update_staff(
                self.fresh_copy(request, obj),
                by=actor,
                name=data["name"],
                department=data.get("department"),
                role_codes=role_codes,
            )
        else:
            staff = services.add_staff(
                actor.tenant,
                wecom_userid=data["wecom_userid"],
                name=data["name"],
                department=data.get("department"),
                role_codes=role_codes or (),
                by=actor,
            )
        if data.get("login_username"):
            services.create_console_user(
                staff, username=data["login_username"], password=data["login_password"], by=actor
            )
        return staff

    @admin.action(description=_("Mark selected staff as departed"), permissions=["change"])
    def mark_departed(self, request: HttpRequest, queryset: Any) -> None:
        actor = console_actor(request)
        self.apply_service(
            request,
            queryset,
            lambda staff: services.mark_staff_departed(staff, by=actor),
            lambda count: (
                ngettext(
                    "%(count)d staff member marked as departed.",
                    "%(count)d staff members marked as departed.",
                    count,
                )
                % {"count": count}
            ),
        )


# --- roles ------------------------------------------------------------------------------
class RoleForm(ServiceModelForm):
    permissions = forms.CharField(
        label=capfirst(_("permissions")),
        required=False,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 8, "spellcheck": "false"}),
        help_text=_(
            "One per line: app_label.codename (tenancy.view_staff), a glob over them "
            "(customers.*, *.view_*), or * for everything."
        ),
    )
    data_scope = forms.ChoiceField(
        label=capfirst(_("data scope")),
        choices=list(DATA_SCOPE_LABELS.items()),
        widget=UnfoldAdminSelectWidget(),
        help_text=_("Which customers and staff the role's members see."),
    )

    class Meta:
        model = Role
        fields = ("code", "name", "permissions", "data_scope")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["permissions"] = "\n".join(self.instance.permissions)

    def clean_permissions(self) -> list[str]:
        text = self.cleaned_data.get("permissions") or ""
        return [line.strip() for line in text.splitlines() if line.strip()]


@admin.register(Role)
class RoleAdmin(TenantScopedAdmin):
    form = RoleForm
    list_display = ("name", "code", "scope_label", "is_builtin", "permission_summary", "members")
    list_filter = ("data_scope", "is_builtin")
    search_fields = ("name", "code")

    def get_queryset(self, request: HttpRequest):
        active = Q(staff__status=Staff.Status.ACTIVE)
        return super().get_queryset(request).annotate(member_count=Count("staff", filter=active))

    def get_fields(self, request: HttpRequest, obj: Role | None = None):
        if obj is None:
            return ["code", "name", "permissions", "data_scope"]
        return ["code", "is_builtin", "name", "permissions", "data_scope"]

    def get_readonly_fields(self, request: HttpRequest, obj: Role | None = None):
        return () if obj is None else ("code", "is_builtin")

    @display(description=_("data scope"), ordering="data_scope")
    def scope_label(self, role: Role) -> str:
        return DATA_SCOPE_LABELS.get(role.data_scope, role.data_scope)

    @display(description=_("permissions"))
    def permission_summary(self, role: Role) -> str:
        shown = ", ".join(role.permissions[:3])
        return f"{shown}, … (+{len(role.permissions) - 3})" if len(role.permissions) > 3 else shown

    @display(description=_("active members"), ordering="member_count")
    def members(self, role: Role) -> int:
        return role.member_count

    def save_via_service(self, request: HttpRequest, obj: Role, form: Any, change: bool) -> Role:
        actor = console_actor(request)
        data = form.cleaned_data
        if change:
            return services.update_role(
                self.fresh_copy(request, obj),
                by=actor,
                name=data["name"],
                permissions=data["permissions"],
                data_scope=data["data_scope"],
            )
        return services.create_role(
            actor.tenant,
            code=data["code"],
            name=data["name"],
            permissions=data["permissions"],
            data_scope=data["data_scope"],
            by=actor,
        )


# --- API keys ---------------------------------------------------------------------------
class ApiKeyForm(ServiceModelForm):
    scopes = forms.MultipleChoiceField(
        label=capfirst(_("scopes")),
        choices=[(scope, f"{scope} · {SCOPE_DESCRIPTIONS.get(scope, '')}") for scope in API_SCOPES],
        widget=UnfoldAdminCheckboxSelectMultipleWidget(),
    )
    expires_in_days = forms.IntegerField(
        label=capfirst(_("expires in (days)")),
        required=False,
        min_value=1,
        max_value=3650,
        widget=UnfoldAdminIntegerFieldWidget(),
        help_text=_("Leave blank for a key that does not expire."),
    )

    class Meta:
        model = ApiKey
        fields = ("name", "scopes", "staff")


@admin.register(ApiKey)
class ApiKeyAdmin(TenantScopedAdmin):
    """Keys are created here and revoked, never edited; the hash is never shown."""

    form = ApiKeyForm
    list_display = (
        "name",
        "key_hint",
        "scope_list",
        "staff",
        "state",
        "created_at",
        "last_used_at",
        "expires_at",
    )
    list_filter = ("staff", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("name", "prefix")
    list_select_related = ("staff", "created_by")
    actions = ("revoke",)
    readonly_fields = (
        "key_hint",
        "scope_list",
        "created_by",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None):
        if obj is None:
            return ["name", "scopes", "staff", "expires_in_days"]
        return ["name", "key_hint", "scope_list", "staff", *self.readonly_fields[2:]]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None):
        return () if obj is None else ("name", "staff", *self.readonly_fields)

    def has_change_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        """A key's page is read-only; "change" only unlocks the revoke action."""
        return obj is None and super().has_change_permission(request)

    @display(description=_("key"))
    def key_hint(self, key: ApiKey) -> str:
        return format_html("<code>{}{}_…</code>", services.API_KEY_PREFIX, key.prefix)

    @display(description=_("scopes"))
    def scope_list(self, key: ApiKey) -> str:
        return ", ".join(key.scopes)

    @display(
        description=_("state"),
        label={"active": "success", "revoked": "danger", "expired": "warning"},
    )
    def state(self, key: ApiKey) -> tuple[str, Any]:
        if key.revoked_at is not None:
            return "revoked", _("revoked")
        if key.expires_at is not None and key.expires_at <= timezone.now():
            return "expired", _("expired")
        return "active", pgettext_lazy("api key", "active")

    def save_via_service(
        self, request: HttpRequest, obj: ApiKey, form: Any, change: bool
    ) -> ApiKey:
        actor = console_actor(request)
        data = form.cleaned_data
        key, raw_key = services.create_api_key(
            actor.tenant,
            name=data["name"],
            scopes=data["scopes"],
            staff=data.get("staff"),
            expires_in_days=data.get("expires_in_days"),
            by=actor,
        )
        messages.warning(
            request,
            format_html(
                "{} <code class='select-all'>{}</code>",
                _("Copy the API key now, it will not be shown again:"),
                raw_key,
            ),
        )
        return key

    @admin.action(description=_("Revoke selected API keys"), permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        actor = console_actor(request)
        self.apply_service(
            request,
            queryset,
            lambda key: services.revoke_api_key(key, by=actor),
            lambda count: (
                ngettext("%(count)d API key revoked.", "%(count)d API keys revoked.", count)
                % {"count": count}
            ),
        )


# --- the sidebar (设置) -----------------------------------------------------------------
add_model_page("settings", Tenant, icon="domain", link=_tenant_link)
add_model_page("settings", Department, icon="account_tree")
add_model_page("settings", Staff, icon="badge")
add_model_page("settings", Role, icon="admin_panel_settings")
add_model_page("settings", ApiKey, icon="key")
