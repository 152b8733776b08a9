"""The customer timeline: newest first, paged, readable lines, merged records included."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import translation

from siyu.core.errors import InvalidInput
from siyu.core.events import record_event
from siyu.customers import services, timeline
from siyu.customers.models import Customer, Follow
from siyu.testing.factories import CustomerFactory, GroupFactory

TAGS = [{"group_id": "g1", "group_name": "等级", "tag": [{"id": "t1", "name": "高意向"}]}]


@pytest.fixture(autouse=True)
def english():
    with translation.override("en"):
        yield


@pytest.fixture
def customer(tenant, sales_staff, at):
    return CustomerFactory(tenant=tenant, staff=sales_staff, added_at=at(0), state="cc_spring")


def texts(page) -> list[str]:
    return [entry.text for entry in page.entries]


def test_the_timeline_tells_each_event_in_a_line_newest_first(tenant, sales_staff, customer, at):
    # given: tagged, joined a group, deleted the staff
    services.sync_corp_tags(tenant, TAGS)
    follow = Follow.objects.for_tenant(tenant).get(customer=customer)
    services.set_follow_tags(tenant, follow, ["t1"], seen_at=at(10))
    GroupFactory(tenant=tenant, owner=sales_staff, members=[customer], name="咖啡同好群")
    services.remove_follow(tenant, customer=customer, staff=sales_staff, by="customer", at=at(60))
    # when
    page = timeline.timeline(Customer.objects.for_tenant(tenant).get(pk=customer.pk))
    # then
    types = [entry.type for entry in page.entries]
    # the loss and the deletion happened together: the later recorded comes first
    assert types.index("customer.lost") + 1 == types.index("follow.deleted_by_customer")
    assert set(types) >= {"follow.tags_changed", "group.member_joined", "customer.added"}
    lines = dict(zip(types, texts(page), strict=True))
    assert lines["customer.added"] == (
        f"Added {sales_staff.name} for the first time (unknown source, channel cc_spring)"
    )
    assert lines["follow.tags_changed"] == f"{sales_staff.name} tagged 高意向"
    assert lines["group.member_joined"] == "Joined the group 咖啡同好群"
    assert lines["follow.deleted_by_customer"] == f"Deleted {sales_staff.name} from their contacts"
    assert [e.occurred_at for e in page.entries] == sorted(
        (e.occurred_at for e in page.entries), reverse=True
    )


def test_an_unknown_event_type_still_gets_a_line(tenant, customer):
    record_event(tenant, "quiz.answered", customer_id=customer.pk)
    (entry, *_rest) = timeline.timeline(customer).entries
    assert (entry.type, entry.text, entry.icon) == (
        "quiz.answered",
        "Event: quiz.answered",
        "history",
    )


def test_an_odd_payload_falls_back_instead_of_failing(tenant, customer):
    record_event(tenant, "order.paid", customer_id=customer.pk, payload={"amount_fen": "lots"})
    record_event(tenant, "order.paid", customer_id=customer.pk, payload={"amount_fen": 990})
    entries = timeline.timeline(customer).entries
    assert [entry.text for entry in entries[:2]] == ["Paid an order of ¥9.90", "Event: order.paid"]


def test_the_timeline_is_paged_with_a_stable_cursor(tenant, customer, at):
    # given: 25 events, two of them at the same moment
    for minute in range(25):
        record_event(
            tenant, "material.opened", customer_id=customer.pk, occurred_at=at(100 + minute // 2)
        )
    expected = timeline.timeline(customer, limit=100).entries
    # when
    seen, cursor = [], None
    while True:
        page = timeline.timeline(customer, limit=7, cursor=cursor)
        seen += page.entries
        cursor = page.next_cursor
        if cursor is None:
            break
    # then
    assert [entry.id for entry in seen] == [entry.id for entry in expected]
    assert len(seen) == 27  # 25 + customer.added + follow.added


@pytest.mark.parametrize("cursor", ["nonsense", "dDE6eDox", "", "t1"])
def test_a_bad_cursor_is_refused(cursor, customer):
    if not cursor:
        assert timeline.timeline(customer, cursor=cursor).entries  # empty = first page
        return
    with pytest.raises(InvalidInput) as refused:
        timeline.timeline(customer, cursor=cursor)
    assert refused.value.code == "invalid_cursor"


def test_the_timeline_includes_records_merged_into_the_customer(tenant, sales_staff, at):
    # given: B merged into A, then C merged into B (a merge of a merge)
    a = CustomerFactory(tenant=tenant, staff=sales_staff, added_at=at(0))
    b = CustomerFactory(tenant=tenant, staff=sales_staff, added_at=at(1))
    c = CustomerFactory(tenant=tenant, staff=sales_staff, added_at=at(2))
    customers = Customer.objects.for_tenant(tenant)
    customers.filter(pk=b.pk).update(merged_into=a)
    customers.filter(pk=c.pk).update(merged_into=b)
    record_event(tenant, "order.paid", customer_id=c.pk, payload={"amount_fen": 100})
    # when
    page = timeline.timeline(customers.get(pk=a.pk), limit=50)
    # then
    assert timeline.timeline_customer_ids(a) == [a.pk, b.pk, c.pk]
    by_customer = {entry.customer_id for entry in page.entries}
    assert by_customer == {a.pk, b.pk, c.pk}
    paid = next(entry for entry in page.entries if entry.type == "order.paid")
    assert paid.merged is True
    assert all(not e.merged for e in page.entries if e.customer_id == a.pk)


def test_other_customers_events_stay_out(tenant, sales_staff, customer):
    other = CustomerFactory(tenant=tenant, staff=sales_staff)
    record_event(tenant, "order.paid", customer_id=other.pk, payload={"amount_fen": 1})
    assert all(e.customer_id == customer.pk for e in timeline.timeline(customer).entries)


def test_the_page_reads_names_once_not_per_event(
    tenant, sales_staff, customer, at, django_assert_max_num_queries
):
    services.sync_corp_tags(tenant, TAGS)
    follow = Follow.objects.for_tenant(tenant).get(customer=customer)
    for minute in range(10):
        services.set_follow_tags(tenant, follow, ["t1"] if minute % 2 else [], seen_at=at(minute))
    GroupFactory(tenant=tenant, owner=sales_staff, members=[customer])
    with django_assert_max_num_queries(4):  # merged ids, events, tags, groups
        page = timeline.timeline(customer, limit=20)
    assert len(page.entries) >= 10


def test_types_can_be_filtered(tenant, customer, at):
    record_event(tenant, "order.paid", customer_id=customer.pk, payload={"amount_fen": 5})
    page = timeline.timeline(customer, types=["order.paid"])
    assert [entry.type for entry in page.entries] == ["order.paid"]
    assert page.entries[0].occurred_at > at(0) - timedelta(days=1)
