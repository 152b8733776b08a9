"""One error shape for every API failure: ``{"error": {"code", "message", "details"}}``.

Why two layers: the API's exception handlers (``install_error_handlers``) turn what a handler
raises into the shape with a precise code, and ``ApiErrorShapeMiddleware`` is the catch-all
for what never reaches django-ninja — an unknown URL under ``/api/`` (Django's own 404), a
wrong method (ninja's bare 405), a crash outside a handler — so a client parses one shape
for every 4xx and 5xx, and never sees an HTML page or a traceback.

Error codes (also listed in the OpenAPI description):

=====================  ======  ==========================================================
code                   status  meaning
=====================  ======  ==========================================================
bad_request            400     the request cannot be processed as sent
malformed_body         400     the body is not valid JSON
invalid                400     a service refused the input (see ``message``)
invalid_cursor         400     the pagination cursor was not issued by this API
reserved_event_type    400     POST /events with a type only the platform may record
unauthorized           401     no credentials, or an unknown / revoked / expired API key
forbidden              403     the key or the staff lacks the scope or permission
csrf_failed            403     a console-session write without a valid CSRF token
not_found              404     no such resource *for this caller* (other tenants' rows too)
method_not_allowed     405     the path exists but not with this HTTP method
conflict               409     the change collides with existing data
payload_too_large      413     the body exceeds the upload limit
validation_error       422     parameters or body fields failed validation (``details``)
throttled              429     too many requests
internal_error         500     an unexpected failure; logged with ``details.error_id``
=====================  ======  ==========================================================
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from django.core.exceptions import (
    ObjectDoesNotExist,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from ninja import NinjaAPI, Schema
from ninja.errors import (
    AuthenticationError,
    HttpError,
    Throttled,
    ValidationError,
    ValidationErrorContext,
)
from pydantic import Field

from siyu.core.errors import ServiceError

logger = logging.getLogger(__name__)

API_PATH_PREFIX = "/api/"

# The code a bare HTTP status maps to when nothing more precise is known.
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "throttled",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}

ERROR_CODES: tuple[str, ...] = (
    "bad_request",
    "malformed_body",
    "invalid",
    "invalid_cursor",
    "reserved_event_type",
    "unauthorized",
    "forbidden",
    "csrf_failed",
    "not_found",
    "method_not_allowed",
    "conflict",
    "payload_too_large",
    "validation_error",
    "throttled",
    "service_unavailable",
    "internal_error",
)

# Headers of the original response that still mean something once it is reshaped.
KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate", "Vary")
WWW_AUTHENTICATE = 'Bearer realm="siyu"'


# --- the documented shape ---------------------------------------------------------------
class ErrorDetail(Schema):
    code: str = Field(
        description="Stable machine-readable code: " + ", ".join(ERROR_CODES),
        examples=["not_found"],
    )
    message: str = Field(
        description="Human-readable explanation, in the request's language",
        examples=["Staff not found"],
    )
    details: Any = Field(
        description=(
            "Extra data: for validation_error the list of field errors "
            "(``loc``, ``msg``, ``type``); otherwise an object, often empty"
        ),
        examples=[{}],
    )


class ErrorOut(Schema):
    """The body of every 4xx and 5xx response of the API."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int, type[ErrorOut]]:
    """``response={200: Out, **error_responses(401, 404)}``: document an operation's errors."""
    return dict.fromkeys(statuses, ErrorOut)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": str(message), "details": _details(details)}}


def error_response(
    status: int, code: str, message: str, details: Any = None, *, headers: Any = None
) -> JsonResponse:
    """A response in the error shape, marked so the middleware leaves it alone."""
    response = JsonResponse(
        error_body(code, message, details),
        status=status,
        json_dumps_params={"ensure_ascii": False},
    )
    for name, value in (headers or {}).items():
        response[name] = value
    if status == 401 and "WWW-Authenticate" not in response:
        response["WWW-Authenticate"] = WWW_AUTHENTICATE
    response.siyu_error_shape = True
    return response


def _details(details: Any) -> Any:
    """Details must be JSON: anything else becomes its text rather than a crash."""
    if details is None:
        return {}
    try:
        json.dumps(details)
    except (TypeError, ValueError):
        return {"info": str(details)}
    return details


def default_message(status: int) -> str:
    messages = {
        400: _("The request could not be processed"),
        401: _(
            "Authentication required: send an API key as 'Authorization: Bearer <key>' "
            "or log in to the console"
        ),
        403: _("You are not allowed to do this"),
        404: _("Not found"),
        405: _("This method is not allowed on this path"),
        406: _("The requested representation is not available"),
        409: _("The request conflicts with existing data"),
        413: _("The request body is too large"),
        415: _("Unsupported media type: send JSON"),
        422: _("Some fields are invalid"),
        429: _("Too many requests: slow down and retry later"),
    }
    if status in messages:
        return messages[status]
    if status >= 500:
        return _("An internal error occurred; it has been logged")
    return _("The request failed")


def code_for_status(status: int) -> str:
    if status in STATUS_CODES:
        return STATUS_CODES[status]
    return "internal_error" if status >= 500 else "bad_request"


# --- exception handlers of the NinjaAPI -------------------------------------------------
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = [
        {
            "loc": list(error.get("loc", ())),
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in exc.errors
    ]
    return error_response(422, "validation_error", _validation_message(errors), errors)


def _validation_message(errors: list[dict[str, Any]], shown: int = 3) -> str:
    """Name the first few fields in the message, so a human reading a log sees the fix."""
    parts = [
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
        for error in errors[:shown]
    ]
    if len(errors) > shown:
        parts.append("…")
    if not parts:
        return default_message(422)
    return _("Some fields are invalid: %(fields)s") % {"fields": "; ".join(parts)}


def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    status = exc.status_code
    if status == 400 and isinstance(exc.__cause__, ValueError):
        # ninja's "Cannot parse request body": say what was wrong with the JSON.
        return error_response(
            400,
            "malformed_body",
            _("The request body is not valid JSON"),
            {"reason": str(exc.__cause__)},
        )
    headers = {}
    if isinstance(exc, Throttled) and exc.wait is not None:
        headers["Retry-After"] = str(int(exc.wait) + 1)
    message = exc.message
    if isinstance(exc, AuthenticationError) and message == "Unauthorized":
        message = default_message(401)  # ninja's "nothing matched" default
    elif message in {"Forbidden", "Too many requests."}:
        message = default_message(status)
    return error_response(status, code_for_status(status), message, headers=headers)


def _service_error(request: HttpRequest, exc: ServiceError) -> HttpResponse:
    return error_response(exc.status, exc.code, exc.message, exc.details)


def _not_found(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error_response(404, "not_found", default_message(404))


def _permission_denied(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error_response(403, "forbidden", str(exc) or default_message(403))


def _django_validation_error(request: HttpRequest, exc: DjangoValidationError) -> HttpResponse:
    details = exc.message_dict if hasattr(exc, "error_dict") else {"errors": exc.messages}
    return error_response(400, "invalid", " ".join(exc.messages), details)


def _suspicious(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
    if isinstance(exc, RequestDataTooBig):
        return error_response(413, "payload_too_large", default_message(413))
    return error_response(400, "bad_request", default_message(400))


def _database_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    """SQLite's write lock still held after the busy timeout (a burst on the embedded
    database): a 503 the caller may retry, not a 500. Any other database error is one."""
    if "locked" in str(exc).lower():
        logger.warning("database busy on %s %s: %s", request.method, request.path, exc)
        return error_response(
            503,
            "service_unavailable",
            _("The database is busy: retry in a few seconds"),
            headers={"Retry-After": "5"},
        )
    return _unexpected(request, exc)


def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    """Log the traceback under an id the client can quote; never send the traceback."""
    error_id = uuid.uuid4().hex
    logger.error(
        "Unhandled API error %s on %s %s",
        error_id,
        request.method,
        request.path,
        exc_info=exc,
    )
    return error_response(500, "internal_error", default_message(500), {"error_id": error_id})


class ShapedNinjaAPI(NinjaAPI):
    """A NinjaAPI whose validation errors point at the field the client actually sent.

    ninja locates a JSON body field as ``["body", <handler parameter name>, field]``; the
    parameter name is an implementation detail the client never sent, so it is dropped:
    ``["body", "name"]``. Query and path locations (``["query", "limit"]``) are unchanged.
    """

    def validation_error_from_error_contexts(
        self, error_contexts: list[ValidationErrorContext]
    ) -> ValidationError:
        errors: list[dict[str, Any]] = []
        for context in error_contexts:
            found = super().validation_error_from_error_contexts([context]).errors
            parameter = getattr(context.model, "__read_from_single_attr__", None)
            for error in found:
                loc = tuple(error.get("loc", ()))
                if parameter and loc[:2] == ("body", parameter):
                    error["loc"] = ("body", *loc[2:])
                errors.append(error)
        return ValidationError(errors)


EXCEPTION_HANDLERS: tuple[tuple[type[Exception], Callable[..., HttpResponse]], ...] = (
    (ValidationError, _validation_error),
    (HttpError, _http_error),
    (ServiceError, _service_error),
    (Http404, _not_found),
    (ObjectDoesNotExist, _not_found),
    (PermissionDenied, _permission_denied),
    (DjangoValidationError, _django_validation_error),
    (SuspiciousOperation, _suspicious),
    (OperationalError, _database_error),
    (Exception, _unexpected),
)


def install_error_handlers(api: NinjaAPI) -> None:
    """Replace ninja's default handlers (``{"detail": ...}``, tracebacks in DEBUG)."""
    for exception_class, handler in EXCEPTION_HANDLERS:
        api.add_exception_handler(exception_class, handler)


# --- the catch-all ----------------------------------------------------------------------
def conforms(response: HttpResponse) -> bool:
    """Whether a response body already is exactly the error shape."""
    if getattr(response, "siyu_error_shape", False):
        return True
    if getattr(response, "streaming", False):
        return False
    if not response.get("Content-Type", "").startswith("application/json"):
        return False
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    if not isinstance(body, dict) or set(body) != {"error"}:
        return False
    error = body["error"]
    return (
        isinstance(error, dict)
        and set(error) == {"code", "message", "details"}
        and isinstance(error["code"], str)
        and isinstance(error["message"], str)
    )


def _allowed_methods(response: HttpResponse) -> list[str]:
    return sorted(m.strip() for m in response.get("Allow", "").split(",") if m.strip())


def reshape(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Rewrite a non-conforming error response into the shape, keeping status and headers."""
    status = response.status_code
    details: dict[str, Any] = {}
    message = default_message(status)
    if status == 404:
        message = _("No API endpoint at %(method)s %(path)s") % {
            "method": request.method,
            "path": request.path,
        }
        details = {"path": request.path}
    elif status == 405:
        details = {"allowed_methods": _allowed_methods(response)}
        message = _("%(method)s is not allowed here; allowed: %(allowed)s") % {
            "method": request.method,
            "allowed": ", ".join(details["allowed_methods"]) or "-",
        }
    elif status >= 500:
        # Django has already logged the exception with its traceback.
        details = {"error_id": uuid.uuid4().hex}
        logger.error(
            "API %s on %s %s, error id %s",
            status,
            request.method,
            request.path,
            details["error_id"],
        )
    headers = {name: response[name] for name in _present(response, KEPT_HEADERS)}
    if status == 405:
        headers["Allow"] = ", ".join(details["allowed_methods"])  # ninja's order is random
    return error_response(status, code_for_status(status), message, details, headers=headers)


def _present(response: HttpResponse, names: Iterable[str]) -> list[str]:
    return [name for name in names if response.has_header(name)]


class ApiErrorShapeMiddleware:
    """Rewrites any 4xx/5xx under ``/api/`` that is not yet in the error shape.

    Listed last in ``MIDDLEWARE`` so it sees the response of the URL resolver and the view
    (Django has already turned an exception into a 404/500 response by then).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and request.path.startswith(API_PATH_PREFIX)
            and not conforms(response)
        ):
            return reshape(request, response)
        return response
