"""The one door for writes of revenue data: orders (with their lines and refunds), products,
the shop's webhook secret.

``ingest_order`` takes the shop's full view of one order, whoever delivers it (the signed
webhook, a file import, the simulator), and applies it once:

* idempotent on the shop's order id: the same version delivered again changes nothing;
* ordered by the shop's version (``updated_at``): an older version arriving after a newer
  one is ignored (answered ``stale``), so a retry that overtakes nothing rolls nothing back;
* refunds are facts with their own ids (partial or full, any number of them); the order's
  ``refunded_fen`` is their sum and its status follows (paid → partially refunded →
  refunded);
* the buyer is matched to a customer by WeCom external_userid, then unionid, then phone; an
  order nobody matches is kept and linked when the buyer becomes a customer
  (``link_orders``), and its events are recorded then.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from siyu.commerce import events, matching
from siyu.commerce.models import Order, OrderLine, PriceTier, Product, Refund, ShopConnection
from siyu.core.errors import Conflict, InvalidInput
from siyu.core.events import EventSpec, record_events
from siyu.customers import profiles

MAX_LINES = 200
MAX_REFUNDS = 100
MAX_FEN = 10**12  # ten billion yuan: anything larger is a unit mistake (yuan sent as fen ×100?)
ShopStatus = Literal["created", "paid", "cancelled", "refunded"]
Outcome = Literal["created", "updated", "unchanged", "stale"]


@dataclass(frozen=True)
class BuyerIn:
    external_userid: str = ""
    unionid: str = ""
    phone: str = ""


@dataclass(frozen=True)
class LineIn:
    sku: str
    name: str = ""
    quantity: int = 1
    unit_price_fen: int = 0
    amount_fen: int | None = None  # after discounts; quantity × unit price when left out
    price_tier: str = ""  # the product's tier when left out
    category: str = ""


@dataclass(frozen=True)
class RefundIn:
    refund_id: str
    amount_fen: int
    refunded_at: datetime
    reason: str = ""


@dataclass(frozen=True)
class OrderIn:
    """The shop's view of one order at one version."""

    shop_order_id: str
    status: ShopStatus
    updated_at: datetime
    placed_at: datetime | None = None
    paid_at: datetime | None = None
    cancelled_at: datetime | None = None
    total_fen: int | None = None  # the lines' sum when left out
    paid_fen: int | None = None  # the total when left out (paid orders)
    buyer: BuyerIn = field(default_factory=BuyerIn)
    lines: tuple[LineIn, ...] = ()
    refunds: tuple[RefundIn, ...] = ()
    channel: str = ""


@dataclass(frozen=True)
class IngestResult:
    order: Order
    outcome: Outcome


# --- orders ---------------------------------------------------------------------------------
def ingest_order(tenant: Any, data: OrderIn, *, source: str = "webhook") -> IngestResult:
    """Apply the shop's view of one order (see the module docstring); raise ``InvalidInput``
    or ``Conflict`` with the offending field for data that cannot be right."""
    data = _normalised(data)
    _validate(data)
    try:
        return _ingest(tenant, data, source)
    except IntegrityError:
        # A concurrent delivery of the same new order (or refund) won the insert: apply this
        # one against the stored row.
        return _ingest(tenant, data, source)


def _ingest(tenant: Any, data: OrderIn, source: str) -> IngestResult:
    with transaction.atomic():
        order = (
            Order.objects.for_tenant(tenant)
            .select_for_update()
            .filter(shop_order_id=data.shop_order_id)
            .first()
        )
        if order is not None:
            if data.updated_at < order.shop_updated_at:
                return IngestResult(order, "stale")
            if data.updated_at == order.shop_updated_at:
                return IngestResult(order, "unchanged")
            _check_transition(order, data)
        created = order is None
        order = order or Order(tenant_id=getattr(tenant, "pk", tenant), source=source)
        paid_before = order.paid_at is not None and order.status != Order.Status.CREATED
        _apply(order, data)
        if order.customer_id is None:
            order.customer = matching.customer_for(tenant, order)
        order.save()
        _replace_lines(tenant, order, data.lines)
        new_refunds = _add_refunds(tenant, order, data.refunds)
        refunds = Refund.objects.for_tenant(tenant).filter(order=order)
        order.refunded_fen = refunds.aggregate(total=Sum("amount_fen"))["total"] or 0
        order.status = _status(order, data)
        order.save(update_fields=["refunded_fen", "status", "updated_at"])
        _record(tenant, order, newly_paid=not paid_before, refunds=new_refunds)
    return IngestResult(order, "created" if created else "updated")


def _normalised(data: OrderIn) -> OrderIn:
    """Naive times are the site's time zone (China for most shops); strings are trimmed."""

    def aware(moment: datetime | None) -> datetime | None:
        if moment is None or timezone.is_aware(moment):
            return moment
        return timezone.make_aware(moment)

    refunds = tuple(
        RefundIn(
            refund_id=refund.refund_id.strip(),
            amount_fen=refund.amount_fen,
            refunded_at=aware(refund.refunded_at),
            reason=refund.reason.strip(),
        )
        for refund in data.refunds
    )
    return OrderIn(
        shop_order_id=data.shop_order_id.strip(),
        status=data.status,
        updated_at=aware(data.updated_at),
        placed_at=aware(data.placed_at),
        paid_at=aware(data.paid_at),
        cancelled_at=aware(data.cancelled_at),
        total_fen=data.total_fen,
        paid_fen=data.paid_fen,
        buyer=BuyerIn(
            external_userid=data.buyer.external_userid.strip(),
            unionid=data.buyer.unionid.strip(),
            phone=data.buyer.phone.strip(),
        ),
        lines=data.lines,
        refunds=refunds,
        channel=data.channel.strip(),
    )


def _invalid(message: str, field_name: str, value: Any = None) -> InvalidInput:
    return InvalidInput(
        message, code="invalid_order", details={"field": field_name, "value": value}
    )


def _validate(data: OrderIn) -> None:
    if not data.shop_order_id or len(data.shop_order_id) > 64:
        raise _invalid(_("order_id must be 1 to 64 characters"), "order_id", data.shop_order_id)
    if not data.lines:
        raise _invalid(_("An order needs at least one line"), "lines")
    if len(data.lines) > MAX_LINES or len(data.refunds) > MAX_REFUNDS:
        raise _invalid(
            _("At most %(lines)d lines and %(refunds)d refunds per order")
            % {"lines": MAX_LINES, "refunds": MAX_REFUNDS},
            "lines",
        )
    for index, line in enumerate(data.lines):
        _validate_line(index, line)
    total = _total(data)
    for name, amount in (("total_fen", total), ("paid_fen", data.paid_fen)):
        if amount is not None and not 0 <= amount <= MAX_FEN:
            raise _invalid(_("%(field)s must be 0 to 10^12 fen") % {"field": name}, name, amount)
    if data.buyer.phone:
        profiles.normalise_phone(data.buyer.phone)  # a malformed number is a 400 now
    paid = data.status in ("paid", "refunded")
    if paid and data.paid_at is None:
        raise _invalid(_("A paid order needs paid_at"), "paid_at")
    if data.refunds and not paid:
        raise _invalid(_("Only a paid order can have refunds"), "refunds")
    if data.status == "refunded" and not data.refunds:
        raise _invalid(_("A refunded order lists its refunds"), "refunds")
    _validate_refunds(data, total)


def _validate_line(index: int, line: LineIn) -> None:
    where = f"lines[{index}]"
    if not line.sku.strip() or len(line.sku) > 64:
        raise _invalid(_("Each line needs a sku of 1 to 64 characters"), f"{where}.sku", line.sku)
    if not 1 <= line.quantity <= 1_000_000:
        raise _invalid(_("quantity must be 1 to 1 000 000"), f"{where}.quantity", line.quantity)
    for name in ("unit_price_fen", "amount_fen"):
        amount = getattr(line, name)
        if amount is not None and not 0 <= amount <= MAX_FEN:
            raise _invalid(
                _("%(field)s must be 0 to 10^12 fen") % {"field": name}, f"{where}.{name}", amount
            )
    if line.price_tier and line.price_tier not in PriceTier.values:
        raise _invalid(
            _("price_tier must be one of %(tiers)s") % {"tiers": ", ".join(PriceTier.values)},
            f"{where}.price_tier",
            line.price_tier,
        )


def _validate_refunds(data: OrderIn, total: int) -> None:
    paid = data.paid_fen if data.paid_fen is not None else total
    seen: set[str] = set()
    for index, refund in enumerate(data.refunds):
        where = f"refunds[{index}]"
        if not refund.refund_id or len(refund.refund_id) > 64:
            raise _invalid(_("refund_id must be 1 to 64 characters"), f"{where}.refund_id")
        if refund.refund_id in seen:
            raise _invalid(_("A refund is listed twice"), f"{where}.refund_id", refund.refund_id)
        seen.add(refund.refund_id)
        if not 0 < refund.amount_fen <= MAX_FEN:
            raise _invalid(
                _("A refund's amount_fen must be more than 0"),
                f"{where}.amount_fen",
                refund.amount_fen,
            )
    refunded = sum(refund.amount_fen for refund in data.refunds)
    if refunded > paid:
        raise _invalid(
            _("Refunds (%(refunded)d fen) exceed what was paid (%(paid)d fen)")
            % {"refunded": refunded, "paid": paid},
            "refunds",
            refunded,
        )


def _line_amount(line: LineIn) -> int:
    return line.amount_fen if line.amount_fen is not None else line.quantity * line.unit_price_fen


def _total(data: OrderIn) -> int:
    if data.total_fen is not None:
        return data.total_fen
    return sum(_line_amount(line) for line in data.lines)


def _check_transition(order: Order, data: OrderIn) -> None:
    """A newer version may not undo a payment: money that came back is a refund."""
    was_paid = order.status not in (Order.Status.CREATED, Order.Status.CANCELLED)
    if was_paid and data.status in ("created", "cancelled"):
        raise Conflict(
            _(
                "Order %(order)s was paid; it cannot become unpaid or cancelled. "
                "Send its refunds instead."
            )
            % {"order": order.shop_order_id},
            code="order_already_paid",
            details={"order_id": order.shop_order_id, "status": data.status},
        )


def _apply(order: Order, data: OrderIn) -> None:
    order.shop_order_id = data.shop_order_id
    order.shop_updated_at = data.updated_at
    order.placed_at = data.placed_at or order.placed_at or data.paid_at or data.updated_at
    order.total_fen = _total(data)
    paid = data.status in ("paid", "refunded")
    order.paid_fen = (
        (data.paid_fen if data.paid_fen is not None else order.total_fen) if paid else 0
    )
    order.paid_at = data.paid_at if paid else None
    order.cancelled_at = (
        (data.cancelled_at or data.updated_at) if data.status == "cancelled" else None
    )
    order.channel = data.channel[:64]
    order.buyer_external_userid = data.buyer.external_userid[:64]
    order.buyer_unionid = data.buyer.unionid[:64]
    order.buyer_phone_hash = profiles.phone_hash_of(data.buyer.phone) if data.buyer.phone else ""
    order.status = (
        Order.Status.PAID if paid else Order.Status(data.status)  # refunds settle it below
    )


def _status(order: Order, data: OrderIn) -> str:
    if data.status == "cancelled":
        return Order.Status.CANCELLED
    if data.status == "created":
        return Order.Status.CREATED
    if order.refunded_fen and order.refunded_fen >= order.paid_fen:
        return Order.Status.REFUNDED
    if order.refunded_fen:
        return Order.Status.PARTIALLY_REFUNDED
    return Order.Status.PAID


def _replace_lines(tenant: Any, order: Order, lines: tuple[LineIn, ...]) -> None:
    """The lines as the shop sent them, with each product's tier and category filled in."""
    products = {
        product.sku: product
        for product in Product.objects.for_tenant(tenant).filter(
            sku__in={line.sku.strip() for line in lines}
        )
    }
    OrderLine.objects.for_tenant(tenant).filter(order=order).delete()
    rows = []
    for position, line in enumerate(lines):
        sku = line.sku.strip()
        product = products.get(sku)
        rows.append(
            OrderLine(
                tenant_id=order.tenant_id,
                order=order,
                product=product,
                sku=sku,
                name=(line.name.strip() or (product.name if product else sku))[:200],
                price_tier=line.price_tier or (product.price_tier if product else ""),
                category=(line.category.strip() or (product.category if product else ""))[:100],
                quantity=line.quantity,
                unit_price_fen=line.unit_price_fen,
                amount_fen=_line_amount(line),
                position=position,
            )
        )
    OrderLine.objects.bulk_create(rows)


def _add_refunds(tenant: Any, order: Order, refunds: tuple[RefundIn, ...]) -> list[Refund]:
    """Store the refunds not seen before; a refund id of another order is a conflict."""
    if not refunds:
        return []
    known = {
        refund.shop_refund_id: refund
        for refund in Refund.objects.for_tenant(tenant).filter(
            shop_refund_id__in=[refund.refund_id for refund in refunds]
        )
    }
    for refund in known.values():
        if refund.order_id != order.pk:
            raise Conflict(
                _("Refund %(refund)s belongs to another order") % {"refund": refund.shop_refund_id},
                code="refund_of_another_order",
                details={"refund_id": refund.shop_refund_id},
            )
    new = [
        Refund(
            tenant_id=order.tenant_id,
            order=order,
            shop_refund_id=refund.refund_id,
            amount_fen=refund.amount_fen,
            refunded_at=refund.refunded_at,
            reason=refund.reason[:200],
        )
        for refund in refunds
        if refund.refund_id not in known
    ]
    return Refund.objects.bulk_create(new)


# --- events ---------------------------------------------------------------------------------
def _record(tenant: Any, order: Order, *, newly_paid: bool, refunds: list[Refund]) -> None:
    """The order's facts on its customer's timeline (nothing while nobody is matched)."""
    if order.customer_id is None:
        return
    specs = []
    if newly_paid and order.paid_at is not None:
        specs.append(_paid_spec(order))
    specs += [_refund_spec(order, refund) for refund in refunds]
    if order.status == Order.Status.CANCELLED:
        specs.append(_cancelled_spec(order))
    if specs:
        record_events(tenant, specs)


def record_order_events(tenant: Any, order: Order) -> None:
    """Every fact of an order just linked to a customer (keys make repeats no-ops)."""
    specs = []
    if order.paid_at is not None:
        specs.append(_paid_spec(order))
    specs += [
        _refund_spec(order, refund)
        for refund in Refund.objects.for_tenant(tenant).filter(order=order).order_by("id")
    ]
    if order.status == Order.Status.CANCELLED:
        specs.append(_cancelled_spec(order))
    if specs:
        record_events(tenant, specs)


def _paid_spec(order: Order) -> EventSpec:
    lines = list(OrderLine.objects.for_tenant(order.tenant_id).filter(order=order))
    return EventSpec(
        type=events.ORDER_PAID,
        key=f"{events.ORDER_PAID}:{order.shop_order_id}",
        customer_id=order.customer_id,
        occurred_at=order.paid_at,
        source=order.source,
        payload={
            "order_id": order.pk,
            "shop_order_id": order.shop_order_id,
            "amount_fen": order.paid_fen,
            "tiers": sorted({line.price_tier for line in lines if line.price_tier}),
            "skus": sorted({line.sku for line in lines}),
            "categories": sorted({line.category for line in lines if line.category}),
            "channel": order.channel,
        },
    )


def _refund_spec(order: Order, refund: Refund) -> EventSpec:
    return EventSpec(
        type=events.ORDER_REFUNDED,
        key=f"{events.ORDER_REFUNDED}:{refund.shop_refund_id}",
        customer_id=order.customer_id,
        occurred_at=refund.refunded_at,
        source=order.source,
        payload={
            "order_id": order.pk,
            "shop_order_id": order.shop_order_id,
            "refund_id": refund.shop_refund_id,
            "amount_fen": refund.amount_fen,
            "refunded_fen": order.refunded_fen,
            "full": order.refunded_fen >= order.paid_fen,
            "reason": refund.reason,
        },
    )


def _cancelled_spec(order: Order) -> EventSpec:
    return EventSpec(
        type=events.ORDER_CANCELLED,
        key=f"{events.ORDER_CANCELLED}:{order.shop_order_id}",
        customer_id=order.customer_id,
        occurred_at=order.cancelled_at or order.shop_updated_at,
        source=order.source,
        payload={"order_id": order.pk, "shop_order_id": order.shop_order_id},
    )


# --- linking orders to customers who arrive later -------------------------------------------
def link_orders(tenant: Any, customer_ids: list[int]) -> int:
    """Link the unmatched orders of these customers' WeCom ids, unionids and phones to them,
    and record those orders' events; return how many were linked."""
    linked = 0
    if not Order.objects.for_tenant(tenant).filter(customer__isnull=True).exists():
        return 0  # the usual case: every order has its customer, nothing to look up
    for customer, orders in matching.unmatched_orders_of(tenant, customer_ids):
        with transaction.atomic():
            for order in orders:
                updated = (
                    Order.objects.for_tenant(tenant)
                    .filter(pk=order.pk, customer__isnull=True)
                    .update(customer=customer, updated_at=timezone.now())
                )
                if updated:
                    order.customer = customer
                    record_order_events(tenant, order)
                    linked += 1
    return linked


def move_orders(tenant: Any, *, from_customer_id: int, to_customer_id: int) -> int:
    """A merge folded one customer into another: their orders follow."""
    return (
        Order.objects.for_tenant(tenant)
        .filter(customer_id=from_customer_id)
        .update(customer_id=to_customer_id, updated_at=timezone.now())
    )


# --- products and the webhook secret --------------------------------------------------------
def upsert_product(
    tenant: Any,
    *,
    sku: str,
    name: str,
    price_fen: int = 0,
    price_tier: str = "",
    category: str = "",
    active: bool = True,
) -> tuple[Product, bool]:
    """Create or update the product with this SKU; return it and whether it was created."""
    sku, name = sku.strip(), name.strip()
    if not sku or len(sku) > 64:
        raise InvalidInput(_("sku must be 1 to 64 characters"), details={"field": "sku"})
    if not name or len(name) > 200:
        raise InvalidInput(_("name must be 1 to 200 characters"), details={"field": "name"})
    if price_tier and price_tier not in PriceTier.values:
        raise InvalidInput(
            _("price_tier must be one of %(tiers)s") % {"tiers": ", ".join(PriceTier.values)},
            details={"field": "price_tier", "value": price_tier},
        )
    if not 0 <= price_fen <= MAX_FEN:
        raise InvalidInput(_("price_fen must be 0 to 10^12 fen"), details={"field": "price_fen"})
    values = {
        "name": name,
        "price_fen": price_fen,
        "price_tier": price_tier,
        "category": category.strip()[:100],
        "active": active,
    }
    with transaction.atomic():
        product, created = Product.objects.for_tenant(tenant).update_or_create(
            tenant_id=getattr(tenant, "pk", tenant), sku=sku, defaults=values
        )
    return product, created


def rotate_webhook_secret(tenant: Any) -> str:
    """A new signing secret for the shop's webhook (the old one stops working at once);
    returned once, stored encrypted."""
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        ShopConnection.objects.for_tenant(tenant).update_or_create(
            tenant_id=getattr(tenant, "pk", tenant), defaults={"webhook_secret": secret}
        )
    return secret


def webhook_secret(tenant: Any) -> str | None:
    connection = ShopConnection.objects.for_tenant(tenant).first()
    return connection.webhook_secret if connection else None
