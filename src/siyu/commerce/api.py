"""API of revenue data: the shop's signed order webhook, orders, products, the webhook secret.

The webhook (``POST /commerce/orders``) is called by the shop, not by a user: it carries no
API key but the tenant's slug (``X-Siyu-Tenant``) and an HMAC-SHA256 of the raw body with
the tenant's webhook secret (``X-Siyu-Signature: sha256=<hex>``). The signature is checked
before the body is even parsed, so nobody without the secret learns anything from the
answers. Everything else uses the API's usual authentication, scopes and data scope (a
sales key sees the orders of its own customers).
"""

import hashlib
import hmac
import json
from datetime import datetime
from typing import Literal

from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema
from ninja.errors import ValidationError
from ninja.pagination import paginate
from pydantic import ValidationError as PydanticValidationError

from siyu.commerce import services
from siyu.commerce.models import Order, Product
from siyu.core.api_errors import error_responses
from siyu.core.api_support import CursorPagination, Id, require
from siyu.core.errors import NotFound, ServiceError
from siyu.tenancy.models import Tenant

router = Router(tags=["commerce"])

READ_ERRORS = error_responses(400, 401, 403, 404, 422)
LIST_ERRORS = error_responses(400, 401, 403, 422)
WRITE_ERRORS = error_responses(400, 401, 403, 409, 422)
SIGNATURE_HEADER = "X-Siyu-Signature"
TENANT_HEADER = "X-Siyu-Tenant"

OrderStatus = Literal["created", "paid", "partially_refunded", "refunded", "cancelled"]
PriceTierName = Literal["trial", "core", "premium", ""]


class BadSignature(ServiceError):
    status = 401
    code = "unauthorized"


# --- the webhook ----------------------------------------------------------------------------
class BuyerIn(Schema):
    external_userid: str = Field("", max_length=64, description="WeCom external_userid")
    unionid: str = Field("", max_length=64, description="WeChat unionid")
    phone: str = Field("", max_length=40, description="Mobile number (delivery phone)")


class LineIn(Schema):
    sku: str = Field(min_length=1, max_length=64)
    name: str = Field("", max_length=200)
    quantity: int = Field(1, ge=1, le=1_000_000)
    unit_price_fen: int = Field(0, ge=0)
    amount_fen: int | None = Field(
        None, ge=0, description="After discounts; quantity × unit price when left out"
    )
    price_tier: PriceTierName = Field("", description="The product's tier when left out")
    category: str = Field("", max_length=100)


class RefundIn(Schema):
    refund_id: str = Field(min_length=1, max_length=64)
    amount_fen: int = Field(gt=0)
    refunded_at: datetime
    reason: str = Field("", max_length=200)


class OrderWebhookIn(Schema):
    """The shop's full view of one order, sent on every change of it."""

    order_id: str = Field(min_length=1, max_length=64, description="The shop's order id")
    status: Literal["created", "paid", "cancelled", "refunded"]
    updated_at: datetime = Field(
        description="The shop's version of the order: an older version arriving later is "
        "ignored. Without a UTC offset, times are in the site's time zone."
    )
    placed_at: datetime | None = None
    paid_at: datetime | None = None
    cancelled_at: datetime | None = None
    total_fen: int | None = Field(None, ge=0, description="The lines' sum when left out")
    paid_fen: int | None = Field(None, ge=0, description="The total when left out")
    buyer: BuyerIn = Field(default_factory=BuyerIn)
    lines: list[LineIn] = Field(min_length=1, max_length=services.MAX_LINES)
    refunds: list[RefundIn] = Field(
        default_factory=list,
        max_length=services.MAX_REFUNDS,
        description="Every refund so far (partial or full), each with its own id",
    )
    channel: str = Field("", max_length=64)

    def to_service(self) -> services.OrderIn:
        return services.OrderIn(
            shop_order_id=self.order_id,
            status=self.status,
            updated_at=self.updated_at,
            placed_at=self.placed_at,
            paid_at=self.paid_at,
            cancelled_at=self.cancelled_at,
            total_fen=self.total_fen,
            paid_fen=self.paid_fen,
            buyer=services.BuyerIn(**self.buyer.model_dump()),
            lines=tuple(services.LineIn(**line.model_dump()) for line in self.lines),
            refunds=tuple(services.RefundIn(**refund.model_dump()) for refund in self.refunds),
            channel=self.channel,
        )


class WebhookOut(Schema):
    outcome: Literal["created", "updated", "unchanged", "stale"] = Field(
        description="stale: an older version than the one stored, ignored"
    )
    order_id: int = Field(description="Siyu's id of the order")
    shop_order_id: str
    status: OrderStatus
    customer_id: int | None = Field(description="The matched customer, if any")


def signature_of(secret: str, body: bytes) -> str:
    """The header value a shop sends: ``sha256=`` and the hex HMAC of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _verified_tenant(request: HttpRequest) -> Tenant:
    """The tenant named by the headers, if the body is signed with its secret; else 401."""
    refused = BadSignature(
        _("The order is not signed with this tenant's webhook secret"),
        details={"headers": [TENANT_HEADER, SIGNATURE_HEADER]},
    )
    slug = request.headers.get(TENANT_HEADER, "").strip()
    sent = request.headers.get(SIGNATURE_HEADER, "").strip()
    tenant = Tenant.objects.filter(slug=slug, is_active=True).first() if slug else None
    secret = services.webhook_secret(tenant) if tenant else None
    if not sent or secret is None:
        raise refused
    if not hmac.compare_digest(sent.encode(), signature_of(secret, request.body).encode()):
        raise refused
    return tenant


@router.post(
    "/commerce/orders",
    auth=None,
    response={200: WebhookOut, **WRITE_ERRORS},
    summary="The shop's order webhook (signed)",
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": OrderWebhookIn.model_json_schema()}},
            "required": True,
        }
    },
)
def order_webhook(request: HttpRequest):
    """Create or update one order from the shop. Idempotent on ``order_id``; an older
    ``updated_at`` than the stored one is ignored (``stale``). Sign the raw body:
    ``X-Siyu-Signature: sha256=hex(HMAC-SHA256(secret, body))`` and name the tenant in
    ``X-Siyu-Tenant``."""
    tenant = _verified_tenant(request)
    try:
        payload = OrderWebhookIn.model_validate_json(request.body)
    except PydanticValidationError as error:
        raise ValidationError(
            [{**item, "loc": ("body", *item.get("loc", ()))} for item in error.errors()]
        ) from None
    result = services.ingest_order(tenant, payload.to_service(), source="webhook")
    order = result.order
    return {
        "outcome": result.outcome,
        "order_id": order.pk,
        "shop_order_id": order.shop_order_id,
        "status": order.status,
        "customer_id": order.customer_id,
    }


# --- orders -----------------------------------------------------------------------------------
class LineOut(Schema):
    sku: str
    name: str
    price_tier: str
    category: str
    quantity: int
    unit_price_fen: int
    amount_fen: int


class RefundOut(Schema):
    refund_id: str = Field(alias="shop_refund_id")
    amount_fen: int
    refunded_at: datetime
    reason: str


class OrderOut(Schema):
    id: int
    shop_order_id: str
    status: OrderStatus
    customer_id: int | None
    total_fen: int
    paid_fen: int
    refunded_fen: int
    net_fen: int = Field(description="Paid minus refunded")
    channel: str
    placed_at: datetime
    paid_at: datetime | None
    cancelled_at: datetime | None
    shop_updated_at: datetime
    source: str
    lines: list[LineOut]
    refunds: list[RefundOut]

    @staticmethod
    def resolve_lines(order: Order) -> list:
        return list(order.lines.all())

    @staticmethod
    def resolve_refunds(order: Order) -> list:
        return list(order.refunds.all())


class OrderFilters(Schema):
    customer_id: Id | None = None
    status: OrderStatus | None = None
    paid_from: datetime | None = Field(None, description="Paid at or after")
    paid_before: datetime | None = Field(None, description="Paid before")


def _visible_orders(request: HttpRequest):
    actor = require(request, "orders:read")
    return Order.objects.for_actor(actor).prefetch_related("lines", "refunds")


@router.get("/commerce/orders", response={200: list[OrderOut], **LIST_ERRORS})
@paginate(CursorPagination)
def list_orders(request: HttpRequest, filters: Query[OrderFilters]):
    """Orders of the customers you may see, newest first."""
    orders = _visible_orders(request)
    if filters.customer_id is not None:
        orders = orders.filter(customer_id=filters.customer_id)
    if filters.status is not None:
        orders = orders.filter(status=filters.status)
    if filters.paid_from is not None:
        orders = orders.filter(paid_at__gte=filters.paid_from)
    if filters.paid_before is not None:
        orders = orders.filter(paid_at__lt=filters.paid_before)
    return orders


@router.get("/commerce/orders/{order_id}", response={200: OrderOut, **READ_ERRORS})
def get_order(request: HttpRequest, order_id: Id):
    order = _visible_orders(request).filter(pk=order_id).first()
    if order is None:
        raise NotFound(_("Order not found"), details={"order_id": order_id})
    return order


# --- products ---------------------------------------------------------------------------------
class ProductOut(Schema):
    id: int
    sku: str
    name: str
    category: str
    price_tier: str
    price_fen: int
    active: bool


class ProductIn(Schema):
    sku: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    category: str = Field("", max_length=100)
    price_tier: PriceTierName = ""
    price_fen: int = Field(0, ge=0)
    active: bool = True


@router.get("/commerce/products", response={200: list[ProductOut], **LIST_ERRORS})
@paginate(CursorPagination)
def list_products(request: HttpRequest):
    actor = require(request, "products:read")
    return Product.objects.for_tenant(actor.tenant_id)


@router.put("/commerce/products", response={200: ProductOut, **WRITE_ERRORS})
def put_product(request: HttpRequest, payload: ProductIn):
    """Create or update the product with this SKU."""
    actor = require(request, "products:write")
    product, _created = services.upsert_product(actor.tenant_id, **payload.model_dump())
    return product


# --- the webhook secret -----------------------------------------------------------------------
class SecretOut(Schema):
    webhook_secret: str = Field(description="Shown once: give it to the shop")
    tenant_header: str = Field(description=f"The value of {TENANT_HEADER}")
    example_signature: str = Field(description="The signature of the body '{}' with it")


@router.post("/commerce/webhook-secret", response={200: SecretOut, **WRITE_ERRORS})
def rotate_secret(request: HttpRequest):
    """A new webhook secret; the old one stops working at once."""
    actor = require(request, "shop:write")
    secret = services.rotate_webhook_secret(actor.tenant_id)
    tenant = Tenant.objects.get(pk=actor.tenant_id)
    return {
        "webhook_secret": secret,
        "tenant_header": tenant.slug,
        "example_signature": signature_of(secret, json.dumps({}).encode()),
    }
