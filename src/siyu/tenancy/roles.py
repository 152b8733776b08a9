"""The built-in roles every tenant starts with.

Permission entries are Django permission names or glob patterns over them, so a role keeps
its meaning as later capabilities add their models (``customers.*`` covers tables that do
not exist yet). Admins may edit a tenant's copies; ``siyu.tenancy.services.create_tenant``
seeds them.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _

from siyu.core.scoping import DataScope


@dataclass(frozen=True)
class RoleTemplate:
    code: str
    name: str
    permissions: tuple[str, ...]
    data_scope: DataScope


BUILTIN_ROLES: tuple[RoleTemplate, ...] = (
    RoleTemplate("admin", _("Administrator"), ("*",), DataScope.TENANT),
    RoleTemplate(
        "operator",
        _("Operator"),
        (
            "*.view_*",
            "customers.*",
            "acquisition.*",
            "engagement.*",
            "community.*",
            "campaigns.*",
            "loyalty.*",
            "distribution.*",
            "analytics.*",
            "core.add_event",
            "core.export_data",
        ),
        DataScope.TENANT,
    ),
    RoleTemplate(
        "sales",
        _("Sales / shopping guide"),
        (
            "customers.*",
            "engagement.view_*",
            "engagement.send_*",
            "community.view_*",
            "tenancy.view_staff",
            "core.view_event",
        ),
        DataScope.OWN,
    ),
    RoleTemplate(
        "content",
        _("Content"),
        ("engagement.*material*", "engagement.view_*", "acquisition.*poster*", "core.view_event"),
        DataScope.TENANT,
    ),
    RoleTemplate(
        "service",
        _("Customer service"),
        (
            "customers.view_*",
            "customers.change_*",
            "community.view_*",
            "tenancy.view_staff",
            "core.view_event",
        ),
        DataScope.DEPARTMENT,
    ),
    RoleTemplate(
        "analyst",
        _("Analyst"),
        ("*.view_*", "analytics.*", "core.export_data"),
        DataScope.TENANT,
    ),
)

BUILTIN_ROLE_CODES = tuple(role.code for role in BUILTIN_ROLES)

# API key scopes and the console permission each corresponds to. A key acting as a staff
# member needs both the scope and the staff's permission.
API_SCOPES: dict[str, str] = {
    "tenant:read": "tenancy.view_tenant",
    "staff:read": "tenancy.view_staff",
    "staff:write": "tenancy.change_staff",
    "events:read": "core.view_event",
    "events:write": "core.add_event",
    "customers:read": "customers.view_customer",
    "groups:read": "community.view_group",
}
