"""The REST API at /api/v1/: one NinjaAPI, each domain adds its router.

A domain exposes ``router`` in its ``api.py``; adding the domain to ``DOMAIN_ROUTERS`` below
is the one place that mounts it. Authentication, the error shape and pagination are shared
(``siyu.core.api_support``, ``siyu.core.api_errors``), so a router only declares endpoints.
"""

from __future__ import annotations

from importlib import import_module

from siyu.core.api_errors import ERROR_CODES, ShapedNinjaAPI, install_error_handlers
from siyu.core.api_support import api_auth
from siyu.tenancy.roles import API_SCOPES

# (module holding ``router``, URL prefix under /api/v1/) — add new domains here.
DOMAIN_ROUTERS: tuple[tuple[str, str], ...] = (
    ("siyu.tenancy.api", "/"),
    ("siyu.core.api", "/"),
    # Before customers.api: its /customers/{customer_id} would swallow /customers/bulk-tag.
    ("siyu.customers.api_tags", "/"),
    ("siyu.customers.api_io", "/"),
    ("siyu.core.api_jobs", "/"),
    ("siyu.customers.api", "/"),
    ("siyu.community.api", "/"),
    ("siyu.customers.api_profile", "/"),
    ("siyu.customers.api_retention", "/"),
    ("siyu.engagement.api", "/"),
    ("siyu.segments.api", "/"),
    ("siyu.commerce.api_io", "/"),
    ("siyu.commerce.api", "/"),
    ("siyu.analytics.api", "/"),
)

DESCRIPTION = f"""
The REST API of Siyu, for scripts, integrations and the console's own pages.

**Authentication.** Send a tenant API key as `Authorization: Bearer <key>` (or
`X-API-Key: <key>`). A key is shown once when it is created, is stored only as a hash, can be
revoked, and carries scopes ({", ".join(f"`{scope}`" for scope in API_SCOPES)}).
A key may act as a staff member: then that staff's permissions and data scope (own /
department / whole tenant) also apply. Console users are authenticated by their session
cookie; their writes need the `X-CSRFToken` header.

**Tenancy.** Every request acts within one tenant, taken from the key or the logged-in staff.
Rows of other tenants, or outside the caller's data scope, are answered with 404.

**Pagination.** Lists return `{{"items": [...], "next_cursor": "..."}}`, newest first; pass
`?cursor=<next_cursor>` for the next page until `next_cursor` is null. `limit` is 1-200
(default 50).

**Errors.** Every 4xx and 5xx response has the body
`{{"error": {{"code": "...", "message": "...", "details": ...}}}}`. Codes:
{", ".join(f"`{code}`" for code in ERROR_CODES)}.
"""


def build_api() -> ShapedNinjaAPI:
    api = ShapedNinjaAPI(
        title="Siyu API",
        version="1",
        description=DESCRIPTION,
        urls_namespace="api",
        openapi_url="/openapi.json",
        docs_url="/docs",
        auth=api_auth(),
    )
    install_error_handlers(api)
    for module_name, prefix in DOMAIN_ROUTERS:
        api.add_router(prefix, import_module(module_name).router)
    return api


api = build_api()
