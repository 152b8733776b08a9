"""What every domain's API router shares: authentication, scope checks, cursor pagination.

Authentication (tried in this order, the first credential presented decides):

1. ``Authorization: Bearer <API key>``
2. ``X-API-Key: <API key>``
3. the console's Django session cookie; writes (POST/PATCH/PUT/DELETE) also need the CSRF
   token, as the console's own forms do.

Each sets ``request.actor`` (``siyu.tenancy.actor.Actor``): the tenant, the staff the key acts
as, the data scope and the permissions. Handlers then call ``require(request, scope)`` and
query through ``Model.objects.for_actor(request.actor)``, so a row outside the caller's
tenant or data scope is simply not found (404, never 403: existence is not leaked).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from django.conf import settings
from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Field, Schema
from ninja.errors import AuthenticationError
from ninja.pagination import PaginationBase
from ninja.security import APIKeyCookie, APIKeyHeader, HttpBearer
from ninja.utils import check_csrf

from siyu.core.api_errors import default_message
from siyu.core.errors import Forbidden, InvalidInput
from siyu.tenancy.actor import Actor
from siyu.tenancy.middleware import client_ip
from siyu.tenancy.roles import API_SCOPES
from siyu.tenancy.services import actor_for_api_key, actor_for_user, authenticate_api_key

# Ids fit a signed 64-bit column: larger numbers are a validation error, not a DB crash.
MAX_ID = 2**63 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


# --- authentication ---------------------------------------------------------------------
def _actor_for_raw_key(request: HttpRequest, raw_key: str) -> Actor:
    key = authenticate_api_key(raw_key) if raw_key else None
    if key is None:
        raise AuthenticationError(message=_("The API key is unknown, revoked or expired"))
    actor = actor_for_api_key(key, ip_address=client_ip(request))
    request.actor = actor
    return actor


class ApiKeyBearerAuth(HttpBearer):
    """``Authorization: Bearer siyu_…``: the usual way for scripts and integrations."""

    def __call__(self, request: HttpRequest) -> Actor | None:
        header = request.headers.get(self.header)
        if header is None:
            return None
        scheme, _sep, token = header.strip().partition(" ")
        if scheme.lower() != self.openapi_scheme:
            raise AuthenticationError(
                message=_("Unsupported Authorization scheme: use 'Authorization: Bearer <key>'")
            )
        return self.authenticate(request, token.strip())

    def authenticate(self, request: HttpRequest, token: str) -> Actor:
        return _actor_for_raw_key(request, token)


class ApiKeyHeaderAuth(APIKeyHeader):
    """``X-API-Key: siyu_…``: for clients that cannot set an Authorization header."""

    param_name = "X-API-Key"

    def __call__(self, request: HttpRequest) -> Actor | None:
        raw_key = request.headers.get(self.param_name)
        if raw_key is None:
            return None
        return self.authenticate(request, raw_key.strip())

    def authenticate(self, request: HttpRequest, key: str | None) -> Actor:
        return _actor_for_raw_key(request, key or "")


class ConsoleSessionAuth(APIKeyCookie):
    """The console's login session, so console pages can call the API as their user.

    Last in the chain: when no credential at all was presented it fails with a message that
    says how to authenticate. CSRF is enforced for writes, as for the console's forms.
    """

    param_name = "sessionid"

    def __init__(self) -> None:
        self.param_name = settings.SESSION_COOKIE_NAME
        super().__init__(csrf=True)

    def __call__(self, request: HttpRequest) -> Actor | None:
        return self.authenticate(request, request.COOKIES.get(self.param_name))

    def authenticate(self, request: HttpRequest, key: str | None) -> Actor:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            raise AuthenticationError(message=default_message(401))
        actor = actor_for_user(user, ip_address=client_ip(request))
        if actor is None:
            raise AuthenticationError(
                message=_("This login does not belong to an active staff member")
            )
        csrf_applies = request.method not in SAFE_METHODS and not getattr(
            request, "_ninja_csrf_exempt", False
        )
        if csrf_applies and check_csrf(request) is not None:
            raise Forbidden(
                _("CSRF check failed: send the csrftoken cookie's value as X-CSRFToken"),
                code="csrf_failed",
            )
        request.actor = actor
        return actor


def api_auth() -> list[Any]:
    """The authentication chain of the whole API (see the module docstring)."""
    return [ApiKeyBearerAuth(), ApiKeyHeaderAuth(), ConsoleSessionAuth()]


def require(request: HttpRequest, scope: str) -> Actor:
    """The request's actor, if it holds ``scope`` (an API key scope, see ``API_SCOPES``).

    Checked before any lookup, so a refusal never depends on whether a row exists.
    """
    if scope not in API_SCOPES:
        raise KeyError(f"Unknown API scope {scope!r}")  # a programming error: fail loudly
    actor: Actor = request.actor
    if not actor.can(scope):
        if actor.api_scopes is not None and scope not in actor.api_scopes:
            message = _("This API key lacks the scope '%(scope)s'") % {"scope": scope}
        else:
            message = _("Your role does not allow this (needs '%(scope)s')") % {"scope": scope}
        raise Forbidden(message, details={"required_scope": scope})
    return actor


# --- cursor pagination --------------------------------------------------------------------
CURSOR_VERSION = "v1"
DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def encode_cursor(last_id: int) -> str:
    """Opaque to clients: they pass it back, never build or parse it."""
    raw = f"{CURSOR_VERSION}:{last_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a cursor points after; anything this API did not issue is a 400."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = base64.urlsafe_b64decode(padded.encode()).decode()
    except (ValueError, binascii.Error):  # UnicodeDecodeError is a ValueError
        decoded = ""
    version, _sep, last_id = decoded.partition(":")
    if version != CURSOR_VERSION or not last_id.isascii() or not last_id.isdigit():
        raise _invalid_cursor(cursor)
    value = int(last_id)
    if not 1 <= value <= MAX_ID:
        raise _invalid_cursor(cursor)
    return value


def _invalid_cursor(cursor: str) -> InvalidInput:
    return InvalidInput(
        _("The cursor is invalid: pass back a next_cursor this API returned"),
        code="invalid_cursor",
        details={"cursor": cursor},
    )


class CursorPagination(PaginationBase):
    """Keyset pagination on ``id`` descending: newest first, stable under inserts.

    ninja's own ``CursorPagination`` returns next/previous *URLs* under ``results`` and
    reports a bad cursor as a 422 shaped ``[{"cursor": ...}]``; ours returns
    ``{"items", "next_cursor"}`` and a bad cursor is a 400 ``invalid_cursor``. A page is one
    query of ``limit + 1`` rows (the extra row says whether there is a next page), no count.
    """

    class Input(Schema):
        limit: int = Field(
            DEFAULT_LIMIT,
            ge=1,
            le=MAX_LIMIT,
            description=f"Items per page, 1 to {MAX_LIMIT}",
        )
        cursor: str | None = Field(
            None,
            max_length=100,
            description="The next_cursor of the previous page; omit for the first page",
        )

    class Output(Schema):
        items: list[Any]
        next_cursor: str | None = Field(
            description="Pass as ?cursor= to get the next page; null on the last page"
        )

    items_attribute = "items"

    def paginate_queryset(
        self, queryset: Any, pagination: Input, request: HttpRequest, **params: Any
    ) -> dict[str, Any]:
        if pagination.cursor:
            queryset = queryset.filter(pk__lt=decode_cursor(pagination.cursor))
        rows = list(queryset.order_by("-pk")[: pagination.limit + 1])
        items = rows[: pagination.limit]
        has_more = len(rows) > pagination.limit
        return {
            "items": items,
            "next_cursor": encode_cursor(items[-1].pk) if has_more else None,
        }
