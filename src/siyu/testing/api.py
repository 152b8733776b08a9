"""Fixtures for API tests: keys, a client that speaks JSON to /api/v1/.

Loaded for every test by ``pytest_plugins`` in the root conftest.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from django.http import HttpResponse
from django.test import Client

from siyu.tenancy import services
from siyu.tenancy.models import Staff, Tenant
from siyu.tenancy.roles import API_SCOPES

__all__ = ["ApiClient", "anonymous", "api", "api_as", "api_key_for", "session_api"]

API = "/api/v1"
ALL_SCOPES = tuple(API_SCOPES)


class ApiClient:
    """JSON requests to the API with one set of credentials, in English."""

    def __init__(self, client: Client, headers: dict[str, str] | None = None) -> None:
        self.client = client
        self.headers = {"Accept-Language": "en", **(headers or {})}

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: str | bytes | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpResponse:
        """``path`` is relative to /api/v1 unless it starts with /api/."""
        url = path if path.startswith("/api/") else f"{API}{path}"
        data = raw if raw is not None else (json.dumps(body) if body is not None else "")
        return self.client.generic(
            method,
            url,
            data=data,
            content_type="application/json",
            headers={**self.headers, **(headers or {})},
            query_params={k: v for k, v in (params or {}).items() if v is not None},
        )

    def get(self, path: str, **params: Any) -> HttpResponse:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> HttpResponse:
        return self.request("POST", path, body, **kwargs)

    def patch(self, path: str, body: Any = None, **kwargs: Any) -> HttpResponse:
        return self.request("PATCH", path, body, **kwargs)

    def walk(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a paginated list, following next_cursor to the end."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page_params = {**params, **({"cursor": cursor} if cursor else {})}
            response = self.get(path, **page_params)
            assert response.status_code == 200, response.content
            page = response.json()
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return items


@pytest.fixture
def api_key_for(db) -> Callable[..., str]:
    """Create a key through the service and return its plaintext (shown only this once)."""

    def create(
        tenant: Tenant,
        scopes: Iterable[str] = ALL_SCOPES,
        *,
        staff: Staff | None = None,
        name: str = "test key",
    ) -> str:
        _key, raw_key = services.create_api_key(
            tenant, name=name, scopes=list(scopes), staff=staff, by=services.system_actor(tenant)
        )
        return raw_key

    return create


@pytest.fixture
def api_as(api_key_for) -> Callable[..., ApiClient]:
    """An API client authenticated by a new key of ``tenant`` (optionally acting as staff)."""

    def build(
        tenant: Tenant, scopes: Iterable[str] = ALL_SCOPES, *, staff: Staff | None = None
    ) -> ApiClient:
        raw_key = api_key_for(tenant, scopes, staff=staff)
        return ApiClient(Client(), {"Authorization": f"Bearer {raw_key}"})

    return build


@pytest.fixture
def api(api_as, tenant) -> ApiClient:
    """Tenant A's full-scope key, acting as no staff (whole tenant)."""
    return api_as(tenant)


@pytest.fixture
def anonymous() -> ApiClient:
    return ApiClient(Client())


@pytest.fixture
def session_api(login) -> Callable[[Staff], ApiClient]:
    """An API client using a staff member's console session (CSRF not enforced)."""

    def build(staff: Staff) -> ApiClient:
        return ApiClient(login(staff))

    return build
