"""Hand-overs settled by WeCom's REAL callbacks (live server), before any results poll: the
transfer's ``del_external_contact`` (DELETE_BY_TRANSFER) + ``add_external_contact`` pair, and
``transfer_fail``; the poll that follows finds nothing left to apply."""

from __future__ import annotations

import pytest

from siyu.core.models import Event
from siyu.customers import handover as handovers
from siyu.customers.models import ChurnAlert, Follow, Handover, HandoverItem
from siyu.customers.tests import support_retention_live as live
from siyu.tenancy.models import Staff
from siyu.tenancy.services import system_actor

pytestmark = pytest.mark.django_db(transaction=True)

emulator = live.emulator  # the fixtures of the live world
world = live.world
settle = live.settle


def start(tenant, customer_external_userid: str) -> Handover:
    from siyu.customers.models import Customer

    staff = {s.wecom_userid: s for s in Staff.objects.for_tenant(tenant)}
    customer = Customer.objects.for_tenant(tenant).get(external_userid=customer_external_userid)
    return handovers.start_handover(
        system_actor(tenant),
        from_staff=staff["lili"],
        to_staff=staff["zhao"],
        customers=[customer],
        message="赵六将继续为您服务",
    )


def test_the_transfer_callbacks_settle_the_hand_over_once(world):
    tenant, control = world
    added = control.add_contact("lili", customer={"name": "转接客户"})["external_userid"]
    settle(control)
    handover = start(tenant, added)
    assert HandoverItem.objects.for_tenant(tenant).get().status == "waiting"
    # when the 24 hours pass in WeCom: it sends the callbacks of the transfer
    control.complete_transfers()
    settle(control)
    # then the hand-over is settled without polling, the friendship moved, and no churn
    item = HandoverItem.objects.for_tenant(tenant).get()
    assert item.status == "succeeded"
    statuses = dict(Follow.objects.for_tenant(tenant).values_list("staff__wecom_userid", "status"))
    assert statuses == {"lili": "deleted_by_staff", "zhao": "active"}
    assert ChurnAlert.objects.for_tenant(tenant).count() == 0
    handover.refresh_from_db()
    assert handover.status == "finished"
    # and the poll applies nothing twice
    assert handovers.refresh_handover(handover) == {}
    types = list(Event.objects.for_tenant(tenant).values_list("type", flat=True))
    assert types.count("customer.handed_over") == 1
    assert types.count("follow.deleted_by_staff") == 1
    assert types.count("follow.added") == 2


def test_a_refusal_arrives_as_transfer_fail(world):
    tenant, control = world
    added = control.add_contact("lili", customer={"name": "不想换人"})["external_userid"]
    settle(control)
    handover = start(tenant, added)
    control.refuse_transfer(external_userid=added, reason="customer_refused")
    settle(control)
    item = HandoverItem.objects.for_tenant(tenant).get()
    assert (item.status, item.detail) == ("refused", "customer_refused")
    statuses = dict(Follow.objects.for_tenant(tenant).values_list("staff__wecom_userid", "status"))
    assert statuses == {"lili": "active"}
    handover.refresh_from_db()
    assert handover.status == "failed"
