"""The console's commerce pages: orders (read-only, tenant- and data-scoped, filters, lines
and refunds), products (edited in yuan, stored in fen) and the shop's webhook secret."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from siyu.commerce import services
from siyu.commerce.api import signature_of
from siyu.commerce.models import Order, Product, ShopConnection
from siyu.commerce.services import BuyerIn, LineIn, OrderIn, RefundIn
from siyu.testing.console import change_url, changelist_url
from siyu.testing.factories import TEST_PASSWORD, CustomerFactory, StaffFactory

pytestmark = pytest.mark.django_db

T0 = timezone.make_aware(datetime(2026, 11, 20, 10, 0))
WEBHOOK_PAGE = "/console/commerce/shopconnection/"
ROTATE = "/console/commerce/shopconnection/rotate/"
PRODUCT_ADD = "/console/commerce/product/add/"


def ingest(
    tenant,
    order_id: str,
    *,
    customer=None,
    status: str = "paid",
    paid_at: datetime = T0,
    lines: tuple[LineIn, ...] = (LineIn(sku="TRIAL-1", name="体验装", unit_price_fen=990),),
    refunds: tuple[RefundIn, ...] = (),
    channel: str = "mini-program",
) -> Order:
    paid = status in ("paid", "refunded")
    data = OrderIn(
        shop_order_id=order_id,
        status=status,
        updated_at=paid_at + timedelta(minutes=5),
        placed_at=paid_at - timedelta(minutes=1),
        paid_at=paid_at if paid else None,
        buyer=BuyerIn(external_userid=customer.external_userid if customer else ""),
        lines=lines,
        refunds=refunds,
        channel=channel,
    )
    return services.ingest_order(tenant, data).order


def listed(response) -> list[str]:
    assert response.status_code == 200, response.content[:500]
    return sorted(order.shop_order_id for order in response.context["cl"].result_list)


# --- orders ------------------------------------------------------------------------------------
def test_the_order_list_shows_the_own_tenants_orders_in_yuan(
    tenant, other_tenant, admin_staff, sales_staff, login
):
    # given
    customer = CustomerFactory(tenant=tenant, name="王五", staff=sales_staff)
    ingest(
        tenant,
        "SO-A",
        customer=customer,
        lines=(LineIn(sku="CORE-1", quantity=2, unit_price_fen=64_000),),
        refunds=(RefundIn(refund_id="R-1", amount_fen=990, refunded_at=T0 + timedelta(hours=1)),),
    )
    theirs = ingest(other_tenant, "SO-ZETA")
    client = login(admin_staff)
    # when
    response = client.get(changelist_url(Order))
    # then
    assert listed(response) == ["SO-A"]
    page = response.content.decode()
    assert "1,280.00" in page  # amount and paid
    assert "9.90" in page  # refunded
    assert "1,270.10" in page  # net
    assert "王五" in page and change_url(customer) in page  # the customer's 360 page
    assert "mini-program" in page and "SO-ZETA" not in page
    assert client.get(change_url(theirs)).status_code == 404


def test_sales_see_only_the_orders_of_customers_they_own(tenant, sales_staff, other_sales, login):
    # given
    mine = ingest(tenant, "SO-MINE", customer=CustomerFactory(tenant=tenant, staff=sales_staff))
    theirs = ingest(tenant, "SO-THEIRS", customer=CustomerFactory(tenant=tenant, staff=other_sales))
    nobodys = ingest(tenant, "SO-UNMATCHED")
    client = login(sales_staff)
    # when
    response = client.get(changelist_url(Order))
    # then
    assert listed(response) == ["SO-MINE"]
    assert client.get(change_url(mine)).status_code == 200
    assert client.get(change_url(theirs)).status_code == 404
    assert client.get(change_url(nobodys)).status_code == 404


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status__exact": "refunded"}, ["SO-REFUNDED"]),
        ({"status__exact": "created"}, ["SO-OPEN"]),
        ({"price_tier": "premium"}, ["SO-MIXED"]),
        ({"price_tier": "trial"}, ["SO-MIXED", "SO-REFUNDED"]),
        ({"price_tier": "not-a-tier"}, ["SO-MIXED", "SO-OPEN", "SO-REFUNDED"]),
        ({"paid_at_from": "2026-11-18", "paid_at_to": "2026-11-20"}, ["SO-REFUNDED"]),
        ({"paid_at_from": "2026-11-21"}, ["SO-MIXED"]),
        ({"paid_at_to": "2026-02-31"}, ["SO-MIXED", "SO-OPEN", "SO-REFUNDED"]),  # no date
        ({"channel": "live"}, ["SO-MIXED"]),
        ({"q": "SO-OPEN"}, ["SO-OPEN"]),
        ({"q": "SO-"}, []),  # the exact id, not a part of it
    ],
)
def test_the_order_list_filters(query, expected, tenant, admin_staff, login):
    # given
    Product.objects.create(tenant=tenant, sku="PREMIUM-1", name="礼盒", price_tier="premium")
    trial = LineIn(sku="TRIAL-1", unit_price_fen=990, price_tier="trial")
    ingest(
        tenant,
        "SO-REFUNDED",
        status="refunded",
        paid_at=T0,  # 2026-11-20 10:00
        lines=(trial,),
        refunds=(RefundIn(refund_id="R-1", amount_fen=990, refunded_at=T0 + timedelta(days=1)),),
    )
    ingest(
        tenant,
        "SO-MIXED",
        paid_at=T0 + timedelta(days=1),
        lines=(trial, LineIn(sku="PREMIUM-1", unit_price_fen=99_900)),  # tier from the product
        channel="live",
    )
    ingest(tenant, "SO-OPEN", status="created", lines=(LineIn(sku="CORE-1"),))
    # when
    response = login(admin_staff).get(changelist_url(Order), query)
    # then
    assert listed(response) == expected
    assert response.context["cl"].date_hierarchy is None


def test_an_orders_page_shows_its_lines_and_refunds_read_only(
    tenant, admin_staff, sales_staff, login
):
    # given
    customer = CustomerFactory(tenant=tenant, name="赵六", staff=sales_staff)
    order = ingest(
        tenant,
        "SO-1",
        customer=customer,
        lines=(
            LineIn(sku="TRIAL-1", name="体验装", unit_price_fen=990, price_tier="trial"),
            LineIn(sku="CORE-7", name="精华液", quantity=3, unit_price_fen=12_800),
        ),
        refunds=(
            RefundIn(
                refund_id="R-77",
                amount_fen=12_800,
                refunded_at=T0 + timedelta(days=2),
                reason="破损",
            ),
        ),
    )
    client = login(admin_staff)
    # when
    response = client.get(change_url(order))
    # then
    assert response.status_code == 200
    page = response.content.decode()
    for text in ("体验装", "精华液", "CORE-7", "128.00", "384.00", "R-77", "破损", "赵六"):
        assert text in page, text
    assert "393.90" in page and "265.90" in page  # paid, net
    assert 'name="_save"' not in page
    assert client.post(change_url(order), {"shop_order_id": "SO-X"}).status_code == 403
    assert Order.objects.for_tenant(tenant).get().shop_order_id == "SO-1"


def test_orders_cannot_be_added_or_deleted_in_the_console(tenant, admin_staff, login):
    order = ingest(tenant, "SO-1")
    client = login(admin_staff)
    assert client.get("/console/commerce/order/add/").status_code == 403
    delete = f"/console/commerce/order/{order.pk}/delete/"
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert Order.objects.for_tenant(tenant).count() == 1


# --- products ----------------------------------------------------------------------------------
def product_form(**values) -> dict[str, str]:
    return {
        "sku": "TRIAL-1",
        "name": "体验装",
        "category": "skincare",
        "price_tier": "trial",
        "price_yuan": "9.90",
        "active": "on",
        **values,
    }


def test_a_product_is_created_with_its_price_in_yuan_stored_in_fen(tenant, admin_staff, login):
    # when
    response = login(admin_staff).post(PRODUCT_ADD, product_form())
    # then
    assert response.status_code == 302, response.content[:800]
    product = Product.objects.for_tenant(tenant).get()
    assert (product.sku, product.name, product.price_fen, product.price_tier, product.active) == (
        "TRIAL-1",
        "体验装",
        990,
        "trial",
        True,
    )


@pytest.mark.parametrize(
    ("typed", "fen"),
    [("0", 0), ("0.01", 1), ("19.9", 1990), ("1280", 128_000), ("99999999.99", 9_999_999_999)],
)
def test_prices_in_yuan_become_exact_fen(typed, fen, tenant, admin_staff, login):
    response = login(admin_staff).post(PRODUCT_ADD, product_form(price_yuan=typed))
    assert response.status_code == 302
    assert Product.objects.for_tenant(tenant).get().price_fen == fen


@pytest.mark.parametrize("typed", ["-1", "9.999", "abc", "", "NaN", "Infinity", "1e30"])
def test_a_bad_price_is_a_form_error(typed, tenant, admin_staff, login):
    response = login(admin_staff).post(PRODUCT_ADD, product_form(price_yuan=typed))
    assert response.status_code == 200
    assert "price_yuan" in response.context["adminform"].form.errors
    assert not Product.objects.for_tenant(tenant).exists()


def test_adding_a_sku_that_exists_is_a_form_error_not_an_update(tenant, admin_staff, login):
    services.upsert_product(tenant, sku="TRIAL-1", name="旧名字", price_fen=500)
    response = login(admin_staff).post(PRODUCT_ADD, product_form(name="新名字"))
    assert response.status_code == 200
    assert "sku" in response.context["adminform"].form.errors
    assert Product.objects.for_tenant(tenant).get().name == "旧名字"


def test_a_product_is_edited_in_yuan_and_its_sku_stays(tenant, admin_staff, login):
    # given
    product, _created = services.upsert_product(tenant, sku="CORE-1", name="精华", price_fen=990)
    client = login(admin_staff)
    # when
    form = client.get(change_url(product))
    # then: the stored fen are shown as yuan; the SKU is not an input
    assert form.status_code == 200
    fields = form.context["adminform"].form.fields
    assert "sku" not in fields
    assert form.context["adminform"].form.initial["price_yuan"] == Decimal("9.90")
    assert 'value="9.90"' in form.content.decode()
    # when
    response = client.post(
        change_url(product), product_form(sku="HIJACK", name="精华 升级", price_yuan="129.00")
    )
    # then
    assert response.status_code == 302, response.content[:800]
    product.refresh_from_db()
    assert (product.sku, product.name, product.price_fen) == ("CORE-1", "精华 升级", 12_900)
    assert not Product.objects.for_tenant(tenant).filter(sku="HIJACK").exists()


def test_products_are_taken_off_sale_never_deleted(tenant, admin_staff, login):
    product, _created = services.upsert_product(tenant, sku="CORE-1", name="精华", price_fen=990)
    client = login(admin_staff)
    response = client.post(
        changelist_url(Product), {"action": "take_off_sale", "_selected_action": [product.pk]}
    )
    assert response.status_code == 302
    product.refresh_from_db()
    assert (product.active, product.price_fen, product.name) == (False, 990, "精华")
    delete = f"/console/commerce/product/{product.pk}/delete/"
    assert client.post(delete, {"post": "yes"}).status_code == 403


def test_the_product_list_filters_and_searches(tenant, other_tenant, admin_staff, login):
    services.upsert_product(tenant, sku="TRIAL-1", name="体验装", price_tier="trial", price_fen=990)
    services.upsert_product(tenant, sku="PREM-1", name="礼盒", price_tier="premium", active=False)
    services.upsert_product(other_tenant, sku="ZETA-1", name="Zeta-Product")
    client = login(admin_staff)

    def skus(query):
        response = client.get(changelist_url(Product), query)
        assert response.status_code == 200
        return sorted(product.sku for product in response.context["cl"].result_list)

    assert skus({}) == ["PREM-1", "TRIAL-1"]
    assert skus({"price_tier__exact": "premium"}) == ["PREM-1"]
    assert skus({"active__exact": "1"}) == ["TRIAL-1"]
    assert skus({"q": "体验"}) == ["TRIAL-1"]
    assert "Zeta" not in client.get(changelist_url(Product)).content.decode()


def test_sales_see_products_but_cannot_change_them(tenant, sales_staff, login):
    product, _created = services.upsert_product(tenant, sku="CORE-1", name="精华", price_fen=990)
    client = login(sales_staff)
    assert client.get(changelist_url(Product)).status_code == 200
    page = client.get(change_url(product))
    assert page.status_code == 200 and "9.90" in page.content.decode()
    assert client.post(change_url(product), product_form(price_yuan="0")).status_code == 403
    assert client.get(PRODUCT_ADD).status_code == 403
    assert Product.objects.for_tenant(tenant).get().price_fen == 990


# --- the shop's webhook ------------------------------------------------------------------------
def deliver(tenant, secret: str) -> int:
    """The status the webhook answers an order signed with ``secret``."""
    body = json.dumps(
        {
            "order_id": "SO-HOOK",
            "status": "created",
            "updated_at": "2026-11-20T10:00:00+08:00",
            "lines": [{"sku": "TRIAL-1", "unit_price_fen": 990}],
        }
    ).encode()
    return (
        Client()
        .post(
            "/api/v1/commerce/orders",
            data=body,
            content_type="application/json",
            headers={"X-Siyu-Tenant": tenant.slug, "X-Siyu-Signature": signature_of(secret, body)},
        )
        .status_code
    )


def test_the_webhook_page_shows_the_url_and_headers_but_never_the_secret(
    tenant, admin_staff, login
):
    # given: no secret yet
    client = login(admin_staff)
    page = client.get(WEBHOOK_PAGE)
    assert page.status_code == 200
    text = page.content.decode()
    assert 'data-set="0"' in text
    assert "http://testserver/api/v1/commerce/orders" in text
    assert "X-Siyu-Tenant: brand-a" in text and "X-Siyu-Signature: sha256=" in text
    assert 'action="/console/commerce/shopconnection/rotate/"' in text
    # when a secret is set
    secret = services.rotate_webhook_secret(tenant)
    text = client.get(WEBHOOK_PAGE).content.decode()
    # then
    assert 'data-set="1"' in text and secret not in text


def test_generating_a_secret_shows_it_once_and_retires_the_old_one(tenant, admin_staff, login):
    # given
    old = services.rotate_webhook_secret(tenant)
    assert deliver(tenant, old) == 200
    client = login(admin_staff)
    # when
    response = client.post(ROTATE)
    # then: shown on this answer, which no cache keeps
    assert response.status_code == 200
    new = services.webhook_secret(tenant)
    assert new and new != old
    page = response.content.decode()
    assert new in page and old not in page
    assert signature_of(new, b"{}") in page
    assert "no-store" in response["Cache-Control"]
    # never again
    assert new not in client.get(WEBHOOK_PAGE).content.decode()
    # stored encrypted
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT webhook_secret FROM {ShopConnection._meta.db_table}")
        (stored,) = cursor.fetchone()
    assert new not in stored
    # and only the new secret signs orders now
    assert signature_of(old, b"{}") != signature_of(services.webhook_secret(tenant), b"{}")
    assert deliver(tenant, old) == 401
    assert deliver(tenant, new) == 200


def test_the_rotate_button_is_a_csrf_protected_post(tenant, admin_staff):
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=admin_staff.user.username, password=TEST_PASSWORD)
    assert client.get(ROTATE).status_code == 405
    assert client.post(ROTATE).status_code == 403  # no CSRF token
    assert services.webhook_secret(tenant) is None


def test_staff_without_the_right_cannot_rotate_the_secret(tenant, sales_staff, login):
    old = services.rotate_webhook_secret(tenant)
    analyst = StaffFactory(tenant=tenant, roles=["analyst"], login=True, wecom_userid="analyst")
    # a sales member does not see the page at all
    client = login(sales_staff)
    assert client.get(WEBHOOK_PAGE).status_code == 403
    assert client.post(ROTATE).status_code == 403
    client.logout()
    # an analyst reads it, without the button, and cannot rotate either
    client = login(analyst)
    page = client.get(WEBHOOK_PAGE)
    assert page.status_code == 200 and "rotate-secret" not in page.content.decode()
    assert client.post(ROTATE).status_code == 403
    assert services.webhook_secret(tenant) == old


def test_the_webhook_page_has_no_form_that_could_show_the_secret(tenant, admin_staff, login):
    services.rotate_webhook_secret(tenant)
    connection_row = ShopConnection.objects.for_tenant(tenant).get()
    client = login(admin_staff)
    for url in (
        f"{WEBHOOK_PAGE}{connection_row.pk}/change/",
        f"{WEBHOOK_PAGE}add/",
        f"{WEBHOOK_PAGE}{connection_row.pk}/delete/",
    ):
        assert client.get(url).status_code == 404, url
