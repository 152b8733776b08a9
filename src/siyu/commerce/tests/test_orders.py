"""Orders from the shop: idempotent, ordered by the shop's version, refunds as facts, buyers
matched to customers (now or when they arrive), events on the customer's timeline."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from siyu.commerce import services
from siyu.commerce.models import Order, OrderLine, Product, Refund
from siyu.commerce.services import BuyerIn, LineIn, OrderIn, RefundIn
from siyu.core.errors import Conflict, InvalidInput
from siyu.core.models import Event
from siyu.customers import profiles
from siyu.testing.factories import CustomerFactory

pytestmark = pytest.mark.django_db

T0 = timezone.make_aware(datetime(2026, 11, 20, 10, 0))


def order_in(
    order_id: str = "SO-1",
    *,
    status: str = "paid",
    version: int = 1,
    buyer: BuyerIn | None = None,
    lines: tuple[LineIn, ...] | None = None,
    refunds: tuple[RefundIn, ...] = (),
    **extra,
) -> OrderIn:
    paid = status in ("paid", "refunded")
    return OrderIn(
        shop_order_id=order_id,
        status=status,
        updated_at=T0 + timedelta(minutes=version),
        placed_at=T0,
        paid_at=T0 + timedelta(minutes=1) if paid else None,
        buyer=buyer or BuyerIn(),
        lines=(LineIn(sku="TRIAL-1", name="体验装", quantity=1, unit_price_fen=990),)
        if lines is None
        else lines,
        refunds=refunds,
        **extra,
    )


def events_of(tenant, kind: str) -> list[Event]:
    return list(Event.objects.for_tenant(tenant).filter(type=kind).order_by("id"))


def test_a_paid_order_of_a_known_customer_goes_on_their_timeline(tenant):
    # given
    customer = CustomerFactory(tenant=tenant)
    Product.objects.create(tenant=tenant, sku="TRIAL-1", name="体验装", price_tier="trial")
    # when
    result = services.ingest_order(
        tenant, order_in(buyer=BuyerIn(external_userid=customer.external_userid))
    )
    # then
    order = result.order
    assert result.outcome == "created"
    assert (order.customer, order.status, order.total_fen, order.paid_fen) == (
        customer,
        Order.Status.PAID,
        990,
        990,
    )
    (line,) = OrderLine.objects.for_tenant(tenant).filter(order=order)
    assert (line.price_tier, line.amount_fen, line.product.sku) == ("trial", 990, "TRIAL-1")
    (paid,) = events_of(tenant, "order.paid")
    assert paid.customer_id == customer.pk
    assert paid.occurred_at == T0 + timedelta(minutes=1)
    assert paid.payload["amount_fen"] == 990 and paid.payload["tiers"] == ["trial"]


def test_the_same_version_twice_changes_nothing(tenant):
    customer = CustomerFactory(tenant=tenant)
    data = order_in(buyer=BuyerIn(external_userid=customer.external_userid))
    services.ingest_order(tenant, data)
    again = services.ingest_order(tenant, data)
    assert again.outcome == "unchanged"
    assert Order.objects.for_tenant(tenant).count() == 1
    assert len(events_of(tenant, "order.paid")) == 1


def test_an_older_version_arriving_late_is_ignored(tenant):
    # given the shop refunded the order (version 3) ...
    customer = CustomerFactory(tenant=tenant)
    buyer = BuyerIn(external_userid=customer.external_userid)
    refund = RefundIn(refund_id="R-1", amount_fen=990, refunded_at=T0 + timedelta(hours=1))
    services.ingest_order(
        tenant, order_in(status="refunded", version=3, buyer=buyer, refunds=(refund,))
    )
    # when the "paid" version 2 arrives after it
    late = services.ingest_order(tenant, order_in(status="paid", version=2, buyer=buyer))
    # then nothing is rolled back
    order = Order.objects.for_tenant(tenant).get()
    assert late.outcome == "stale"
    assert (order.status, order.refunded_fen) == (Order.Status.REFUNDED, 990)


def test_partial_refunds_add_up_and_count_once(tenant):
    customer = CustomerFactory(tenant=tenant)
    buyer = BuyerIn(external_userid=customer.external_userid)
    lines = (LineIn(sku="CORE-1", quantity=2, unit_price_fen=5000),)
    first = RefundIn(refund_id="R-1", amount_fen=3000, refunded_at=T0 + timedelta(days=1))
    second = RefundIn(refund_id="R-2", amount_fen=7000, refunded_at=T0 + timedelta(days=2))
    # when the shop sends the first refund, then both (its full view), then both again
    services.ingest_order(tenant, order_in(lines=lines, buyer=buyer, version=1))
    services.ingest_order(tenant, order_in(lines=lines, buyer=buyer, version=2, refunds=(first,)))
    order = Order.objects.for_tenant(tenant).get()
    assert (order.status, order.refunded_fen, order.net_fen) == (
        Order.Status.PARTIALLY_REFUNDED,
        3000,
        7000,
    )
    both = (first, second)
    services.ingest_order(
        tenant, order_in(status="refunded", lines=lines, buyer=buyer, version=3, refunds=both)
    )
    services.ingest_order(
        tenant, order_in(status="refunded", lines=lines, buyer=buyer, version=4, refunds=both)
    )
    # then
    order.refresh_from_db()
    assert (order.status, order.refunded_fen, order.net_fen) == (Order.Status.REFUNDED, 10000, 0)
    assert Refund.objects.for_tenant(tenant).count() == 2
    refunded = events_of(tenant, "order.refunded")
    assert [(e.payload["amount_fen"], e.payload["full"]) for e in refunded] == [
        (3000, False),
        (7000, True),
    ]


def test_refunds_beyond_what_was_paid_are_refused(tenant):
    too_much = RefundIn(refund_id="R-9", amount_fen=991, refunded_at=T0)
    with pytest.raises(InvalidInput) as refused:
        services.ingest_order(tenant, order_in(refunds=(too_much,)))
    assert refused.value.details["field"] == "refunds"
    assert not Order.objects.for_tenant(tenant).exists()


def test_a_paid_order_cannot_become_unpaid(tenant):
    services.ingest_order(tenant, order_in(status="paid", version=1))
    with pytest.raises(Conflict):
        services.ingest_order(tenant, order_in(status="cancelled", version=2))
    assert Order.objects.for_tenant(tenant).get().status == Order.Status.PAID


def test_a_cancelled_unpaid_order_is_recorded_as_such(tenant):
    customer = CustomerFactory(tenant=tenant)
    buyer = BuyerIn(external_userid=customer.external_userid)
    services.ingest_order(tenant, order_in(status="created", version=1, buyer=buyer))
    services.ingest_order(tenant, order_in(status="cancelled", version=2, buyer=buyer))
    order = Order.objects.for_tenant(tenant).get()
    assert (order.status, order.paid_fen, order.paid_at) == (Order.Status.CANCELLED, 0, None)
    assert len(events_of(tenant, "order.cancelled")) == 1
    assert not events_of(tenant, "order.paid")


@pytest.mark.parametrize(
    ("field", "data"),
    [
        ("lines", order_in(lines=())),
        ("lines[0].quantity", order_in(lines=(LineIn(sku="A", quantity=0),))),
        ("lines[0].price_tier", order_in(lines=(LineIn(sku="A", price_tier="gold"),))),
        ("paid_at", OrderIn(shop_order_id="X", status="paid", updated_at=T0, lines=(LineIn("A"),))),
        ("refunds", order_in(status="created", refunds=(RefundIn("R", 1, T0),))),
        ("total_fen", order_in(total_fen=-1)),
    ],
)
def test_bad_orders_are_refused_naming_the_field(tenant, field, data):
    with pytest.raises(InvalidInput) as refused:
        services.ingest_order(tenant, data)
    assert refused.value.details["field"] == field
    assert not Order.objects.for_tenant(tenant).exists()


def test_a_malformed_phone_is_refused(tenant):
    with pytest.raises(InvalidInput) as refused:
        services.ingest_order(tenant, order_in(buyer=BuyerIn(phone="12345")))
    assert refused.value.code == "invalid_phone"


def test_buyers_are_matched_by_unionid_then_phone(tenant):
    by_unionid = CustomerFactory(tenant=tenant, unionid="o-union-1")
    by_phone = CustomerFactory(tenant=tenant)
    profiles_set_phone(by_phone, "13812345678")
    one = services.ingest_order(tenant, order_in("SO-1", buyer=BuyerIn(unionid="o-union-1")))
    two = services.ingest_order(tenant, order_in("SO-2", buyer=BuyerIn(phone="+86 138-1234-5678")))
    assert (one.order.customer, two.order.customer) == (by_unionid, by_phone)


def test_a_phone_shared_by_two_customers_matches_nobody(tenant):
    for customer in CustomerFactory.create_batch(2, tenant=tenant):
        profiles_set_phone(customer, "13812345678")
    result = services.ingest_order(tenant, order_in(buyer=BuyerIn(phone="13812345678")))
    assert result.order.customer is None
    assert not events_of(tenant, "order.paid")


def test_an_order_placed_before_the_buyer_added_a_staff_is_linked_when_they_do(
    tenant, sales_staff, django_capture_on_commit_callbacks
):
    # given an order nobody matches yet
    result = services.ingest_order(tenant, order_in(buyer=BuyerIn(external_userid="wm-later")))
    assert result.order.customer is None
    # when the buyer adds a staff (the customer.added handler links their orders)
    with django_capture_on_commit_callbacks(execute=True):
        customer = CustomerFactory(tenant=tenant, external_userid="wm-later", staff=sales_staff)
    # then
    result.order.refresh_from_db()
    assert result.order.customer == customer
    (paid,) = events_of(tenant, "order.paid")
    assert paid.customer_id == customer.pk


def test_orders_of_another_tenant_are_not_matched(tenant, other_tenant):
    CustomerFactory(tenant=other_tenant, external_userid="wm-elsewhere")
    result = services.ingest_order(tenant, order_in(buyer=BuyerIn(external_userid="wm-elsewhere")))
    assert result.order.customer is None
    assert not Event.objects.for_tenant(other_tenant).filter(type="order.paid").exists()


def test_a_refund_id_of_another_order_is_a_conflict(tenant):
    refund = RefundIn(refund_id="R-1", amount_fen=100, refunded_at=T0)
    services.ingest_order(tenant, order_in("SO-1", refunds=(refund,)))
    with pytest.raises(Conflict):
        services.ingest_order(tenant, order_in("SO-2", refunds=(refund,)))


def profiles_set_phone(customer, phone: str) -> None:
    from siyu.customers.models import Customer

    Customer.objects.for_tenant(customer.tenant_id).filter(pk=customer.pk).update(
        phone=phone, phone_hash=profiles.phone_hash_of(phone), phone_verified=True
    )


def test_a_merge_moves_the_duplicates_orders_to_the_survivor(
    tenant, admin_staff, actor_of, django_capture_on_commit_callbacks
):
    from siyu.customers import merge

    survivor, duplicate = CustomerFactory.create_batch(2, tenant=tenant)
    services.ingest_order(
        tenant, order_in(buyer=BuyerIn(external_userid=duplicate.external_userid))
    )
    with django_capture_on_commit_callbacks(execute=True):
        merge.merge_customers(actor_of(admin_staff), survivor=survivor, duplicate=duplicate)
    assert Order.objects.for_tenant(tenant).get().customer == survivor


def test_order_facts_read_well_on_the_timeline(tenant):
    from django.utils import translation

    from siyu.customers import timeline

    customer = CustomerFactory(tenant=tenant)
    buyer = BuyerIn(external_userid=customer.external_userid)
    lines = (LineIn(sku="CORE-1", quantity=1, unit_price_fen=129900),)
    part = RefundIn(refund_id="R-1", amount_fen=30000, refunded_at=T0 + timedelta(days=1))
    services.ingest_order(tenant, order_in("SO-7", lines=lines, buyer=buyer, refunds=(part,)))
    with translation.override("en"):
        texts = [entry.text for entry in timeline.timeline(customer).entries]
    assert "Paid order SO-7: ¥1,299.00" in texts
    assert "Order SO-7 partly refunded: ¥300.00" in texts
    with translation.override("zh-hans"):
        texts = [entry.text for entry in timeline.timeline(customer).entries]
    assert "支付了订单 SO-7：¥1,299.00" in texts
