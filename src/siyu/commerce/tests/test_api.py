"""The shop's signed order webhook and the orders / products API."""

from __future__ import annotations

import json

import pytest

from siyu.commerce import services
from siyu.commerce.api import signature_of
from siyu.commerce.models import Order, Product
from siyu.testing.factories import CustomerFactory

pytestmark = pytest.mark.django_db

WEBHOOK = "/commerce/orders"


def paid_order(order_id: str = "SO-1", *, external_userid: str = "", version: str = "10:00"):
    return {
        "order_id": order_id,
        "status": "paid",
        "updated_at": f"2026-11-20T{version}:00+08:00",
        "placed_at": "2026-11-20T09:58:00+08:00",
        "paid_at": "2026-11-20T09:59:00+08:00",
        "buyer": {"external_userid": external_userid},
        "lines": [{"sku": "TRIAL-1", "name": "体验装", "quantity": 1, "unit_price_fen": 990}],
        "channel": "mini-program",
    }


@pytest.fixture
def secret(tenant) -> str:
    return services.rotate_webhook_secret(tenant)


def send(anonymous, tenant, body: dict | bytes, secret: str, *, signature: str | None = None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return anonymous.post(
        WEBHOOK,
        raw=raw,
        headers={
            "X-Siyu-Tenant": tenant.slug,
            "X-Siyu-Signature": signature or signature_of(secret, raw),
        },
    )


def test_a_signed_order_is_stored_and_matched(anonymous, tenant, secret):
    customer = CustomerFactory(tenant=tenant)
    response = send(anonymous, tenant, paid_order(external_userid=customer.external_userid), secret)
    assert response.status_code == 200, response.content
    answer = response.json()
    order = Order.objects.for_tenant(tenant).get()
    assert answer == {
        "outcome": "created",
        "order_id": order.pk,
        "shop_order_id": "SO-1",
        "status": "paid",
        "customer_id": customer.pk,
    }
    assert order.source == "webhook" and order.paid_fen == 990


def test_a_redelivery_is_unchanged_and_an_older_version_is_stale(anonymous, tenant, secret):
    assert send(anonymous, tenant, paid_order(version="10:05"), secret).json()["outcome"] == (
        "created"
    )
    again = send(anonymous, tenant, paid_order(version="10:05"), secret).json()
    older = send(anonymous, tenant, paid_order(version="10:01"), secret).json()
    assert (again["outcome"], older["outcome"]) == ("unchanged", "stale")
    assert Order.objects.for_tenant(tenant).count() == 1


@pytest.mark.parametrize(
    "how",
    ["no signature", "wrong secret", "tampered body", "unknown tenant", "no secret set"],
)
def test_unsigned_or_forged_orders_are_refused_before_anything_is_read(
    anonymous, tenant, other_tenant, secret, how
):
    body = json.dumps(paid_order()).encode()
    headers = {"X-Siyu-Tenant": tenant.slug, "X-Siyu-Signature": signature_of(secret, body)}
    if how == "no signature":
        del headers["X-Siyu-Signature"]
    elif how == "wrong secret":
        headers["X-Siyu-Signature"] = signature_of("not-the-secret", body)
    elif how == "tampered body":
        body = body.replace(b"990", b"1")
    elif how == "unknown tenant":
        headers["X-Siyu-Tenant"] = "nobody"
    elif how == "no secret set":
        headers["X-Siyu-Tenant"] = other_tenant.slug  # has no webhook secret
    response = anonymous.post(WEBHOOK, raw=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert not Order.objects.unscoped("test: nothing stored anywhere").exists()


def test_a_signed_order_for_one_tenant_never_lands_in_another(
    anonymous, tenant, other_tenant, secret
):
    other_secret = services.rotate_webhook_secret(other_tenant)
    body = json.dumps(paid_order()).encode()
    # signed with tenant A's secret but addressed to tenant B
    response = anonymous.post(
        WEBHOOK,
        raw=body,
        headers={
            "X-Siyu-Tenant": other_tenant.slug,
            "X-Siyu-Signature": signature_of(secret, body),
        },
    )
    assert response.status_code == 401
    assert send(anonymous, other_tenant, paid_order(), other_secret).status_code == 200
    assert not Order.objects.for_tenant(tenant).exists()
    assert Order.objects.for_tenant(other_tenant).count() == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 422, "validation_error"),
        ({**paid_order(), "status": "shipped"}, 422, "validation_error"),
        ({**paid_order(), "lines": []}, 422, "validation_error"),
        ({**paid_order(), "paid_at": None}, 400, "invalid_order"),
        (
            {
                **paid_order(),
                "refunds": [{"refund_id": "R", "amount_fen": 5000, "refunded_at": "2026-11-21"}],
            },
            400,
            "invalid_order",
        ),
        ({**paid_order(), "buyer": {"phone": "12"}}, 400, "invalid_phone"),
    ],
)
def test_bad_orders_get_a_clear_4xx(anonymous, tenant, secret, body, status, code):
    response = send(anonymous, tenant, body, secret)
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert not Order.objects.for_tenant(tenant).exists()


def test_rotating_the_secret_retires_the_old_one(anonymous, api, tenant, secret):
    response = api.post("/commerce/webhook-secret")
    assert response.status_code == 200
    new = response.json()
    assert new["tenant_header"] == tenant.slug and new["webhook_secret"] != secret
    assert send(anonymous, tenant, paid_order(), secret).status_code == 401
    assert send(anonymous, tenant, paid_order(), new["webhook_secret"]).status_code == 200


def test_orders_are_listed_within_the_callers_data_scope(
    api_as, tenant, other_tenant, sales_staff, other_sales, secret, anonymous
):
    mine = CustomerFactory(tenant=tenant, staff=sales_staff)
    theirs = CustomerFactory(tenant=tenant, staff=other_sales)
    send(anonymous, tenant, paid_order("SO-MINE", external_userid=mine.external_userid), secret)
    send(anonymous, tenant, paid_order("SO-THEIRS", external_userid=theirs.external_userid), secret)
    other_secret = services.rotate_webhook_secret(other_tenant)
    send(anonymous, other_tenant, paid_order("SO-ELSEWHERE"), other_secret)

    whole = api_as(tenant).walk("/commerce/orders")
    assert {order["shop_order_id"] for order in whole} == {"SO-MINE", "SO-THEIRS"}
    sales = api_as(tenant, staff=sales_staff)
    assert [order["shop_order_id"] for order in sales.walk("/commerce/orders")] == ["SO-MINE"]
    theirs_id = Order.objects.for_tenant(tenant).get(shop_order_id="SO-THEIRS").pk
    assert sales.get(f"/commerce/orders/{theirs_id}").status_code == 404
    elsewhere = Order.objects.for_tenant(other_tenant).get().pk
    assert api_as(tenant).get(f"/commerce/orders/{elsewhere}").status_code == 404
    mine_id = Order.objects.for_tenant(tenant).get(shop_order_id="SO-MINE").pk
    assert sales.get(f"/commerce/orders/{mine_id}").json()["customer_id"] == mine.pk


def test_an_order_detail_has_its_lines_and_refunds(api, anonymous, tenant, secret):
    body = {
        **paid_order(version="11:00"),
        "status": "paid",
        "refunds": [
            {"refund_id": "R-1", "amount_fen": 490, "refunded_at": "2026-11-21T10:00:00+08:00"}
        ],
    }
    send(anonymous, tenant, body, secret)
    order = Order.objects.for_tenant(tenant).get()
    detail = api.get(f"/commerce/orders/{order.pk}").json()
    assert detail["status"] == "partially_refunded"
    assert (detail["paid_fen"], detail["refunded_fen"], detail["net_fen"]) == (990, 490, 500)
    assert [line["sku"] for line in detail["lines"]] == ["TRIAL-1"]
    assert [refund["refund_id"] for refund in detail["refunds"]] == ["R-1"]


def test_products_are_upserted_by_sku(api, tenant):
    first = api.request(
        "PUT",
        "/commerce/products",
        {"sku": "TRIAL-1", "name": "体验装", "price_tier": "trial", "price_fen": 990},
    )
    second = api.request(
        "PUT", "/commerce/products", {"sku": "TRIAL-1", "name": "体验装 v2", "price_fen": 1290}
    )
    assert first.status_code == second.status_code == 200
    product = Product.objects.for_tenant(tenant).get()
    assert (product.name, product.price_fen, product.price_tier) == ("体验装 v2", 1290, "")
    bad = api.request("PUT", "/commerce/products", {"sku": "X", "name": "n", "price_tier": "gold"})
    assert bad.status_code == 422


def test_keys_without_the_scope_are_refused(api_as, tenant):
    reader = api_as(tenant, ["products:read"])
    assert reader.get("/commerce/orders").status_code == 403
    assert reader.post("/commerce/webhook-secret").status_code == 403
    assert reader.get("/commerce/products").status_code == 200


def test_a_busy_database_is_a_503_to_retry_not_a_500(anonymous, tenant, secret, monkeypatch):
    from django.db import OperationalError

    def locked(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(services, "ingest_order", locked)
    response = send(anonymous, tenant, paid_order(), secret)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "service_unavailable"
