"""Who may call the API: tenant API keys (hashed, revocable, scoped) and console sessions."""

import hashlib
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from siyu.tenancy import services
from siyu.tenancy.models import ApiKey
from siyu.testing.api import ApiClient
from siyu.testing.factories import TEST_PASSWORD, StaffFactory, TenantFactory


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    return body["error"]


# --- keys: shown once, stored hashed -----------------------------------------------------
def test_a_key_is_stored_only_as_its_sha256_hash(tenant):
    # when
    key, raw_key = services.create_api_key(
        tenant, name="shop sync", scopes=["events:write"], by=services.system_actor(tenant)
    )
    # then: the plaintext is returned once and no column holds it or its secret part
    secret_part = raw_key.rsplit("_", 1)[1]
    row = ApiKey.objects.for_tenant(tenant).values().get(pk=key.pk)
    assert row["key_hash"] == hashlib.sha256(raw_key.encode()).hexdigest()
    assert raw_key.startswith(f"siyu_{row['prefix']}_")
    for column, value in row.items():
        assert raw_key not in str(value), column
        assert secret_part not in str(value), column
    assert secret_part not in str(key)


def test_the_key_authenticates_as_bearer_and_as_x_api_key(tenant, api_key_for):
    raw_key = api_key_for(tenant, ["tenant:read"])
    for headers in ({"Authorization": f"Bearer {raw_key}"}, {"X-API-Key": raw_key}):
        response = ApiClient(Client(), headers).get("/tenant")
        assert response.status_code == 200
        assert response.json()["slug"] == "brand-a"


def test_the_tenant_comes_from_the_key(tenant, other_tenant, api_as):
    assert api_as(other_tenant, ["tenant:read"]).get("/tenant").json()["slug"] == "brand-b"
    assert api_as(tenant, ["tenant:read"]).get("/tenant").json()["slug"] == "brand-a"


def test_tenant_secrets_are_only_shown_masked(db, api_as):
    # given
    tenant = TenantFactory(
        slug="masked",
        name="Masked",
        wecom_corp_id="ww1234",
        wecom_contact_secret="contact-secret-0123456789",
        wecom_callback_token="token12345",
        wecom_callback_aes_key="A" * 43,
        wecom_agent_id="1000002",
        wecom_agent_secret="agent-secret-9876543210",
    )
    # when
    response = api_as(tenant, ["tenant:read"]).get("/tenant")
    # then
    body = response.json()
    assert body == {
        "id": tenant.pk,
        "slug": "masked",
        "name": "Masked",
        "wecom_corp_id": "ww1234",
        "wecom_agent_id": "1000002",
        "is_active": True,
        "created_at": body["created_at"],
        "secrets": {
            "wecom_contact_secret": "con******789",
            "wecom_callback_token": "tok******345",
            "wecom_callback_aes_key": "AAA******AAA",
            "wecom_agent_secret": "age******210",
        },
    }
    assert "contact-secret-0123456789" not in response.content.decode()
    assert "agent-secret-9876543210" not in response.content.decode()


# --- keys that do not work ---------------------------------------------------------------
def test_a_revoked_key_is_401(tenant, api_key_for):
    # given
    raw_key = api_key_for(tenant, ["tenant:read"])
    client = ApiClient(Client(), {"Authorization": f"Bearer {raw_key}"})
    assert client.get("/tenant").status_code == 200
    key = ApiKey.objects.for_tenant(tenant).get()
    # when
    services.revoke_api_key(key, by=services.system_actor(tenant))
    # then
    error = assert_error(client.get("/tenant"), 401, "unauthorized")
    assert error["message"] == "The API key is unknown, revoked or expired"


def test_an_expired_key_is_401(tenant, api_key_for):
    raw_key = api_key_for(tenant, ["tenant:read"])
    # Test set-up, not a business change: move the expiry into the past.
    ApiKey.objects.for_tenant(tenant).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = ApiClient(Client(), {"X-API-Key": raw_key}).get("/tenant")
    assert_error(response, 401, "unauthorized")


def test_the_key_of_a_departed_staff_is_401(tenant, api_key_for):
    sales = StaffFactory(tenant=tenant, roles=["sales"])
    raw_key = api_key_for(tenant, ["staff:read"], staff=sales)
    client = ApiClient(Client(), {"Authorization": f"Bearer {raw_key}"})
    assert client.get("/staff").status_code == 200
    services.mark_staff_departed(sales, by=services.system_actor(tenant))
    assert_error(client.get("/staff"), 401, "unauthorized")


def test_a_key_of_an_inactive_tenant_is_401(tenant, api_key_for):
    raw_key = api_key_for(tenant, ["tenant:read"])
    services.update_tenant(tenant, is_active=False, by=services.system_actor(tenant))
    response = ApiClient(Client(), {"Authorization": f"Bearer {raw_key}"}).get("/tenant")
    assert_error(response, 401, "unauthorized")


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Authentication required"),
        ({"Authorization": "Bearer siyu_00000000_nope"}, "The API key is unknown"),
        ({"Authorization": "Bearer "}, "The API key is unknown"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "Unsupported Authorization scheme"),
        ({"X-API-Key": "not-a-key"}, "The API key is unknown"),
    ],
    ids=["none", "unknown-key", "empty-bearer", "basic", "bad-x-api-key"],
)
def test_missing_or_bad_credentials_are_401(db, headers, message):
    response = ApiClient(Client(), headers).get("/tenant")
    error = assert_error(response, 401, "unauthorized")
    assert error["message"].startswith(message)
    assert response["WWW-Authenticate"] == 'Bearer realm="siyu"'


# --- scopes ------------------------------------------------------------------------------
def test_a_key_without_the_scope_is_403(tenant, api_as):
    api = api_as(tenant, ["events:read"])
    error = assert_error(api.get("/staff"), 403, "forbidden")
    assert error["message"] == "This API key lacks the scope 'staff:read'"
    assert error["details"] == {"required_scope": "staff:read"}
    assert_error(api.get("/tenant"), 403, "forbidden")
    assert_error(api.post("/staff", {"wecom_userid": "x", "name": "X"}), 403, "forbidden")


def test_a_key_acting_as_staff_also_needs_the_staffs_permission(tenant, api_as):
    # given a key with every scope acting as a sales staff (who may not change staff)
    sales = StaffFactory(tenant=tenant, roles=["sales"])
    api = api_as(tenant, ["staff:read", "staff:write"], staff=sales)
    # when / then
    error = assert_error(api.post("/staff", {"wecom_userid": "x", "name": "X"}), 403, "forbidden")
    assert error["message"] == "Your role does not allow this (needs 'staff:write')"
    assert api.get("/staff").status_code == 200


# --- console sessions --------------------------------------------------------------------
def test_a_console_session_acts_as_its_staff(admin_staff, session_api):
    response = session_api(admin_staff).get("/tenant")
    assert response.status_code == 200
    assert response.json()["slug"] == "brand-a"


def test_a_login_that_is_no_active_staff_is_401(db):
    get_user_model().objects.create_user(username="loner", password=TEST_PASSWORD)
    client = Client()
    assert client.login(username="loner", password=TEST_PASSWORD)
    error = assert_error(ApiClient(client).get("/tenant"), 401, "unauthorized")
    assert error["message"] == "This login does not belong to an active staff member"


def test_session_writes_need_the_csrf_token(admin_staff):
    # given a browser-like client that enforces CSRF
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=admin_staff.user.username, password=TEST_PASSWORD)
    api = ApiClient(client)
    body = {"wecom_userid": "new1", "name": "New"}
    # when no token is sent, then
    assert_error(api.post("/staff", body), 403, "csrf_failed")
    # when the cookie's token is sent back in the header, then
    token = "a" * 32
    client.cookies["csrftoken"] = token
    response = api.post("/staff", body, headers={"X-CSRFToken": token})
    assert response.status_code == 201, response.content
    # reads never need it
    assert api.get("/staff").status_code == 200


def test_an_api_key_write_needs_no_csrf_token(tenant, api_key_for):
    client = Client(enforce_csrf_checks=True)
    api = ApiClient(client, {"Authorization": f"Bearer {api_key_for(tenant)}"})
    assert api.post("/staff", {"wecom_userid": "new1", "name": "New"}).status_code == 201
