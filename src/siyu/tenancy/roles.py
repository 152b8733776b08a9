"""The built-in roles every tenant starts with.

Permission entries are Django permission names or glob patterns over them, so a role keeps
its meaning as later capabilities add their models (``customers.*`` covers tables that do
not exist yet). Admins may edit a tenant's copies; ``siyu.tenancy.services.create_tenant``
seeds them.

The CRM's sensitive rights are granted explicitly: seeing phone numbers unmasked
(``customers.view_customer_phone``), merging, importing and handing customers over. Globs
cannot subtract, so roles that must not hold them (sales, customer service) list the
customer permissions they do hold instead of ``customers.*`` (``SALES_CUSTOMER_RIGHTS``).
Roles with ``*.view_*`` (operator, analyst) see phones: they are tenant-wide back-office
roles; an admin removes that by editing the role.
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


# What a front-line role does with customers: read everything about the customers it sees
# except phones in full, edit profiles and custom-field values, write notes and follow-ups,
# tag and untag, work its churn alerts. Not: phones, merge, import, hand-over, deletes, or the
# tenant's settings (custom field definitions, lifecycle rules, auto-tag rules).
CUSTOMER_VIEWS = (
    "customers.view_customer",
    "customers.view_customertag",
    "customers.view_customernote",
    "customers.view_customermerge",
    "customers.view_customfield",
    "customers.view_follow*",
    "customers.view_tag*",
    "customers.view_lifecyclepolicy",
    "customers.view_autotagrule",
    "customers.view_churnalert",
    "customers.view_handover*",
)
SALES_CUSTOMER_RIGHTS = (
    *CUSTOMER_VIEWS,
    "customers.change_customer",
    "customers.*_customernote",
    "customers.add_customertag",
    "customers.delete_customertag",
    "customers.change_customertag",
    "customers.add_followtag",
    "customers.delete_followtag",
    "customers.change_follow",
    "customers.change_churnalert",
)
# The staff task inbox: see, create and close tasks (the rows one sees are one's own, one's
# reports' and one's data scope's).
TASK_RIGHTS = (
    "engagement.view_stafftask",
    "engagement.add_stafftask",
    "engagement.change_stafftask",
)
# Front-line roles see what their customers bought (the orders of the customers in their
# data scope) and the product list; they change neither.
COMMERCE_VIEWS = (
    "commerce.view_order",
    "commerce.view_orderline",
    "commerce.view_refund",
    "commerce.view_product",
)

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
            "segments.*",
            "commerce.*",
            "core.add_event",
            "core.export_data",
        ),
        DataScope.TENANT,
    ),
    RoleTemplate(
        "sales",
        _("Sales / shopping guide"),
        (
            *SALES_CUSTOMER_RIGHTS,
            "segments.view_*",
            "engagement.view_*",
            "engagement.send_*",
            *TASK_RIGHTS,
            *COMMERCE_VIEWS,
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
            *SALES_CUSTOMER_RIGHTS,
            "segments.view_*",
            *TASK_RIGHTS,
            *COMMERCE_VIEWS,
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
    "customers:write": "customers.change_customer",
    "customers:import": "customers.import_customer",
    "customers:export": "core.export_data",
    # Jobs: a key sees its staff's own jobs (all of them with core.change_backgroundjob).
    "jobs:read": "core.view_backgroundjob",
    "jobs:write": "core.change_backgroundjob",
    "groups:read": "community.view_group",
    "segments:read": "segments.view_segment",
    "segments:write": "segments.change_segment",
    "tasks:read": "engagement.view_stafftask",
    "tasks:write": "engagement.change_stafftask",
    "orders:read": "commerce.view_order",
    "orders:import": "commerce.add_order",
    "products:read": "commerce.view_product",
    "products:write": "commerce.change_product",
    "shop:write": "commerce.change_shopconnection",
    # Metrics are tenant-wide figures: operators, analysts and admins (``analytics.*``).
    "analytics:read": "analytics.view_metrics",
}
