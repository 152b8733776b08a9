"""Every API failure has one shape, a 4xx for bad input, and never a traceback.

Also: the OpenAPI document and the docs page are served and describe the endpoints.
"""

import base64
import json
import logging

import pytest
from django.http import HttpResponse, HttpResponseNotAllowed, HttpResponseServerError
from django.test import Client, RequestFactory

from siyu.core.api_errors import ApiErrorShapeMiddleware, error_response
from siyu.testing.api import ApiClient


def assert_error_shape(response):
    """The body is exactly {"error": {"code": str, "message": str, "details": ...}}."""
    assert response["Content-Type"].startswith("application/json"), response.content
    body = json.loads(response.content)
    assert list(body) == ["error"]
    assert sorted(body["error"]) == ["code", "details", "message"]
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in response.content.decode()
    return body["error"]


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


KEYED = "key"  # sent with tenant A's full-scope key
NO_AUTH = "none"

BAD_REQUESTS = [
    # (id, credentials, method, path, query, raw body, status, code)
    ("malformed-json", KEYED, "POST", "/events", None, '{"type": "a.b", ', 400, "malformed_body"),
    (
        "not-json-at-all",
        KEYED,
        "POST",
        "/staff",
        None,
        "name=x&wecom_userid=y",
        400,
        "malformed_body",
    ),
    ("json-array-body", KEYED, "POST", "/events", None, "[1, 2]", 422, "validation_error"),
    (
        "wrong-types",
        KEYED,
        "POST",
        "/staff",
        None,
        '{"wecom_userid": 5, "name": ["x"]}',
        422,
        "validation_error",
    ),
    ("missing-fields", KEYED, "POST", "/staff", None, "{}", 422, "validation_error"),
    ("empty-body", KEYED, "POST", "/events", None, "", 422, "validation_error"),
    (
        "roles-not-a-list",
        KEYED,
        "POST",
        "/staff",
        None,
        '{"wecom_userid": "a", "name": "A", "roles": "admin"}',
        422,
        "validation_error",
    ),
    ("id-not-a-number", KEYED, "GET", "/staff/abc", None, None, 422, "validation_error"),
    (
        "id-too-large",
        KEYED,
        "GET",
        "/events/99999999999999999999",
        None,
        None,
        422,
        "validation_error",
    ),
    ("id-zero", KEYED, "GET", "/staff/0", None, None, 422, "validation_error"),
    ("limit-not-a-number", KEYED, "GET", "/staff", {"limit": "ten"}, None, 422, "validation_error"),
    (
        "bad-status-filter",
        KEYED,
        "GET",
        "/staff",
        {"status": "gone"},
        None,
        422,
        "validation_error",
    ),
    (
        "bad-datetime",
        KEYED,
        "GET",
        "/events",
        {"since": "yesterday"},
        None,
        422,
        "validation_error",
    ),
    ("unknown-url", KEYED, "GET", "/nope", None, None, 404, "not_found"),
    ("unknown-version", NO_AUTH, "GET", "/api/v2/staff", None, None, 404, "not_found"),
    ("trailing-slash", KEYED, "GET", "/staff/", None, None, 404, "not_found"),
    ("api-root", NO_AUTH, "GET", "/api/v1/", None, None, 404, "not_found"),
    ("wrong-method", KEYED, "DELETE", "/staff", None, None, 405, "method_not_allowed"),
    ("wrong-method-detail", NO_AUTH, "PUT", "/events/1", None, None, 405, "method_not_allowed"),
    (
        "garbage-cursor",
        KEYED,
        "GET",
        "/events",
        {"cursor": "garbage!"},
        None,
        400,
        "invalid_cursor",
    ),
    (
        "forged-cursor",
        KEYED,
        "GET",
        "/staff",
        {"cursor": b64("v1:abc")},
        None,
        400,
        "invalid_cursor",
    ),
    ("zero-cursor", KEYED, "GET", "/staff", {"cursor": b64("v1:0")}, None, 400, "invalid_cursor"),
    (
        "huge-cursor",
        KEYED,
        "GET",
        "/staff",
        {"cursor": b64("v1:" + "9" * 30)},
        None,
        400,
        "invalid_cursor",
    ),
    ("no-auth", NO_AUTH, "GET", "/staff", None, None, 401, "unauthorized"),
    ("no-auth-write", NO_AUTH, "POST", "/events", None, '{"type": "a.b"}', 401, "unauthorized"),
    ("bad-auth", "Bearer siyu_deadbeef_wrong", "GET", "/events", None, None, 401, "unauthorized"),
    ("bad-scheme", "Token abc", "GET", "/tenant", None, None, 401, "unauthorized"),
]


@pytest.mark.parametrize(
    ("credentials", "method", "path", "query", "raw", "status", "code"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_requests_get_a_4xx_in_the_error_shape(
    tenant, api_key_for, credentials, method, path, query, raw, status, code
):
    # given
    if credentials == KEYED:
        headers = {"Authorization": f"Bearer {api_key_for(tenant)}"}
    elif credentials == NO_AUTH:
        headers = {}
    else:
        headers = {"Authorization": credentials}
    client = ApiClient(Client(), headers)
    # when
    response = client.request(method, path, raw=raw, params=query)
    # then
    assert response.status_code == status, response.content
    error = assert_error_shape(response)
    assert error["code"] == code


def test_a_validation_error_lists_each_field_with_loc_and_msg(api):
    response = api.post("/staff", {"wecom_userid": 5})
    error = assert_error_shape(response)
    assert response.status_code == 422
    assert error["message"] == (
        "Some fields are invalid: body.wecom_userid: Input should be a valid string; "
        "body.name: Field required"
    )
    assert error["details"] == [
        {
            "loc": ["body", "wecom_userid"],
            "msg": "Input should be a valid string",
            "type": "string_type",
        },
        {"loc": ["body", "name"], "msg": "Field required", "type": "missing"},
    ]


def test_an_empty_body_is_reported_as_missing(api):
    error = assert_error_shape(api.post("/events", raw=""))
    assert error["details"] == [{"loc": ["body"], "msg": "Field required", "type": "missing"}]


def test_malformed_json_says_where(api):
    error = assert_error_shape(api.post("/events", raw='{"type": '))
    assert error["message"] == "The request body is not valid JSON"
    assert error["details"] == {"reason": "Expecting value: line 1 column 10 (char 9)"}


def test_wrong_method_lists_the_allowed_ones(api):
    response = api.request("DELETE", "/staff")
    error = assert_error_shape(response)
    assert error["details"] == {"allowed_methods": ["GET", "POST"]}
    assert error["message"] == "DELETE is not allowed here; allowed: GET, POST"
    assert response["Allow"] == "GET, POST"


def test_an_unknown_url_names_the_path(anonymous):
    error = assert_error_shape(anonymous.get("/api/v1/nowhere"))
    assert error == {
        "code": "not_found",
        "message": "No API endpoint at GET /api/v1/nowhere",
        "details": {"path": "/api/v1/nowhere"},
    }


def test_a_bad_cursor_names_the_cursor(api):
    error = assert_error_shape(api.get("/events", cursor="nope"))
    assert error["message"] == "The cursor is invalid: pass back a next_cursor this API returned"
    assert error["details"] == {"cursor": "nope"}


def test_a_body_over_the_upload_limit_is_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    payload = {"type": "a.b", "idempotency_key": "k", "payload": {"blob": "x" * 2000}}
    response = api.post("/events", payload)
    assert response.status_code == 413
    assert assert_error_shape(response)["code"] == "payload_too_large"


def test_messages_follow_the_request_language(api):
    # No catalogue entry yet: the English source text is the fallback, never a crash.
    response = api.request(
        "GET", "/events", params={"cursor": "x"}, headers={"Accept-Language": "zh-hans"}
    )
    assert response.status_code == 400
    assert assert_error_shape(response)["code"] == "invalid_cursor"


# --- 500s ----------------------------------------------------------------------------------
def test_a_crash_in_a_handler_is_a_500_without_traceback(api, monkeypatch, caplog):
    # given a handler that fails unexpectedly
    def explode(actor):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("siyu.tenancy.api.visible_staff", explode)
    # when
    with caplog.at_level(logging.ERROR, logger="siyu.core.api_errors"):
        response = api.get("/staff")
    # then
    assert response.status_code == 500
    error = assert_error_shape(response)
    assert error["code"] == "internal_error"
    assert error["message"] == "An internal error occurred; it has been logged"
    assert "secret internals" not in response.content.decode()
    error_id = error["details"]["error_id"]
    assert any(error_id in record.getMessage() and record.exc_info for record in caplog.records)


def _through_middleware(path, response, method="GET"):
    request = getattr(RequestFactory(), method.lower())(path)
    return ApiErrorShapeMiddleware(lambda request: response)(request)


def test_the_middleware_reshapes_a_django_500_page():
    page = HttpResponseServerError("<h1>Server Error (500)</h1>", content_type="text/html")
    response = _through_middleware("/api/v1/staff", page)
    assert response.status_code == 500
    error = assert_error_shape(response)
    assert error["code"] == "internal_error"
    assert set(error["details"]) == {"error_id"}


def test_the_middleware_reshapes_ninjas_own_error_bodies():
    ninja_body = HttpResponse(
        json.dumps({"detail": "Not Found"}), status=404, content_type="application/json"
    )
    response = _through_middleware("/api/v1/staff/1", ninja_body)
    assert assert_error_shape(response)["code"] == "not_found"


def test_the_middleware_keeps_the_allow_header():
    response = _through_middleware("/api/v1/staff", HttpResponseNotAllowed(["GET"]), "PUT")
    assert response["Allow"] == "GET"
    assert assert_error_shape(response)["details"] == {"allowed_methods": ["GET"]}


def test_the_middleware_leaves_conforming_errors_alone():
    original = error_response(409, "conflict", "Taken", {"slug": "a"})
    assert _through_middleware("/api/v1/staff", original) is original


@pytest.mark.parametrize(
    ("path", "response"),
    [
        ("/console/", HttpResponse("<h1>Not found</h1>", status=404)),
        ("/api/v1/staff", HttpResponse("{}", status=200, content_type="application/json")),
    ],
    ids=["console-404", "api-200"],
)
def test_the_middleware_leaves_other_responses_alone(path, response):
    assert _through_middleware(path, response) is response


# --- the OpenAPI document and the docs page -------------------------------------------------
FOUNDATION_ROOTS = {"tenant", "staff", "departments", "events"}


def test_the_openapi_document_lists_the_endpoints(anonymous):
    response = anonymous.get("/api/v1/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "Siyu API"
    assert schema["info"]["version"] == "1"
    operations = {
        (method.upper(), path) for path, methods in schema["paths"].items() for method in methods
    }
    # the foundation's endpoints, exactly, and at least one of every later domain's routers
    foundation = {op for op in operations if op[1].split("/")[3] in FOUNDATION_ROOTS}
    assert foundation == {
        ("GET", "/api/v1/tenant"),
        ("GET", "/api/v1/staff"),
        ("POST", "/api/v1/staff"),
        ("GET", "/api/v1/staff/{staff_id}"),
        ("PATCH", "/api/v1/staff/{staff_id}"),
        ("POST", "/api/v1/staff/{staff_id}/depart"),
        ("GET", "/api/v1/departments"),
        ("GET", "/api/v1/events"),
        ("POST", "/api/v1/events"),
        ("GET", "/api/v1/events/{event_id}"),
    }
    assert {
        ("GET", "/api/v1/customers"),
        ("GET", "/api/v1/customers/{customer_id}"),
        ("GET", "/api/v1/groups"),
        ("GET", "/api/v1/groups/{group_id}"),
        ("POST", "/api/v1/segments/preview"),
        ("GET", "/api/v1/tags/groups"),
        ("POST", "/api/v1/customers/bulk-tag"),
        ("GET", "/api/v1/churn-alerts"),
        ("GET", "/api/v1/tasks"),
        ("GET", "/api/v1/jobs"),
        ("POST", "/api/v1/customers/imports"),
        ("POST", "/api/v1/customers/exports"),
    } <= operations
    # every operation answers errors in the one shape
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            assert any(code.startswith("4") for code in operation["responses"]), (method, path)
    assert set(schema["components"]["securitySchemes"]) == {
        "ApiKeyBearerAuth",
        "ApiKeyHeaderAuth",
        "ConsoleSessionAuth",
    }


def test_the_openapi_document_describes_errors_and_pages(anonymous):
    schema = anonymous.get("/api/v1/openapi.json").json()
    components = schema["components"]["schemas"]
    assert components["ErrorOut"]["properties"]["error"] == {
        "$ref": "#/components/schemas/ErrorDetail"
    }
    assert sorted(components["ErrorDetail"]["required"]) == ["code", "details", "message"]
    staff_get = schema["paths"]["/api/v1/staff/{staff_id}"]["get"]["responses"]
    assert staff_get["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorOut"
    }
    page = components["PagedStaffOut"]
    assert sorted(page["properties"]) == ["items", "next_cursor"]
    assert "validation_error" in schema["info"]["description"]


def test_the_docs_page_is_served(anonymous):
    response = anonymous.get("/api/v1/docs")
    assert response.status_code == 200
    assert "/api/v1/openapi.json" in response.content.decode()
