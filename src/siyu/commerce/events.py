"""The event types the commerce domain records (``siyu.core.events.record_event``).

They are recorded only for orders matched to a customer, on that customer's timeline; an
order matched later (the buyer added a staff after buying) records them then. Keys are the
shop's ids, so a redelivered webhook or a re-imported file never records a fact twice.
"""

from __future__ import annotations

# The order was paid. occurred_at: paid_at. key "order.paid:{shop_order_id}"
# payload {"order_id", "shop_order_id", "amount_fen", "tiers": [...], "skus": [...],
#          "categories": [...], "channel"}
ORDER_PAID = "order.paid"
# Money went back to the customer. occurred_at: refunded_at. key "order.refunded:{shop_refund_id}"
# payload {"order_id", "shop_order_id", "refund_id", "amount_fen", "refunded_fen", "full"}
ORDER_REFUNDED = "order.refunded"
# An unpaid order was cancelled. key "order.cancelled:{shop_order_id}"
ORDER_CANCELLED = "order.cancelled"
