"""Order facts on the customer timeline, one readable line each (see siyu.customers.timeline).

The commerce domain owns these event types, so it owns their sentences. An event without
the shop's order id (recorded by an older version, or by hand through the events API) still
reads well.
"""

from __future__ import annotations

from django.utils.translation import gettext as _

from siyu.commerce import events
from siyu.core.models import Event
from siyu.customers.timeline import DescribeContext, describes


def yuan(fen: int) -> str:
    """Fen as yuan for people: 9.90, 1,299.00 (the sentence puts the ¥)."""
    return f"{int(fen) / 100:,.2f}"


@describes(events.ORDER_PAID, icon="shopping_cart")
def _order_paid(event: Event, context: DescribeContext) -> str:
    payload = event.payload
    amount = yuan(payload["amount_fen"])
    if payload.get("shop_order_id"):
        return _("Paid order %(order)s: ¥%(amount)s") % {
            "order": payload["shop_order_id"],
            "amount": amount,
        }
    return _("Paid an order of ¥%(amount)s") % {"amount": amount}


@describes(events.ORDER_REFUNDED, icon="currency_exchange")
def _order_refunded(event: Event, context: DescribeContext) -> str:
    payload = event.payload
    amount = yuan(payload["amount_fen"])
    if not payload.get("shop_order_id"):
        return _("Refunded ¥%(amount)s") % {"amount": amount}
    template = (
        _("Order %(order)s refunded in full: ¥%(amount)s")
        if payload.get("full")
        else _("Order %(order)s partly refunded: ¥%(amount)s")
    )
    return template % {"order": payload["shop_order_id"], "amount": amount}


@describes(events.ORDER_CANCELLED, icon="remove_shopping_cart")
def _order_cancelled(event: Event, context: DescribeContext) -> str:
    return _("Cancelled order %(order)s before paying") % {
        "order": event.payload.get("shop_order_id", "")
    }
