"""Order facts on the customer timeline, one readable line each (see siyu.customers.timeline)."""

from __future__ import annotations

from django.utils.translation import gettext as _

from siyu.commerce import events
from siyu.core.models import Event
from siyu.customers.timeline import DescribeContext, describes


def yuan(fen: int) -> str:
    """Fen as yuan for people: ¥9.90."""
    return f"¥{fen / 100:,.2f}"


@describes(events.ORDER_PAID, icon="shopping_bag")
def _order_paid(event: Event, context: DescribeContext) -> str:
    payload = event.payload
    return _("Paid order %(order)s: %(amount)s") % {
        "order": payload.get("shop_order_id", ""),
        "amount": yuan(int(payload.get("amount_fen") or 0)),
    }


@describes(events.ORDER_REFUNDED, icon="currency_exchange")
def _order_refunded(event: Event, context: DescribeContext) -> str:
    payload = event.payload
    template = (
        _("Order %(order)s refunded in full: %(amount)s")
        if payload.get("full")
        else _("Order %(order)s partly refunded: %(amount)s")
    )
    return template % {
        "order": payload.get("shop_order_id", ""),
        "amount": yuan(int(payload.get("amount_fen") or 0)),
    }


@describes(events.ORDER_CANCELLED, icon="remove_shopping_cart")
def _order_cancelled(event: Event, context: DescribeContext) -> str:
    return _("Cancelled order %(order)s before paying") % {
        "order": event.payload.get("shop_order_id", "")
    }
