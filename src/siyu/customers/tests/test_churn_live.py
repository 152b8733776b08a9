"""Churn alerts from REAL callbacks: the emulator posts an encrypted ``del_follow_user`` to
the callback endpoint of a live Siyu server, which processes it like WeCom's."""

from __future__ import annotations

import pytest

from siyu.customers.models import ChurnAlert, Customer
from siyu.customers.tests import support_retention_live as live
from siyu.engagement.models import StaffTask
from siyu.tenancy.models import Staff

pytestmark = pytest.mark.django_db(transaction=True)

emulator = live.emulator  # the fixtures of the live world
world = live.world
settle = live.settle


def test_the_directory_sync_mirrors_direct_leaders(world):
    tenant, _control = world
    leaders = dict(
        Staff.objects.for_tenant(tenant).values_list("wecom_userid", "direct_leader__wecom_userid")
    )
    assert leaders == {"wang": None, "lili": "wang", "zhao": None}


def test_a_customer_deleting_a_staff_in_wecom_raises_an_alert_and_tasks(world):
    tenant, control = world
    added = control.add_contact("lili", customer={"name": "小红"}, state="live-0918")
    control.add_contact("zhao", external_userid=added["external_userid"])
    settle(control)
    # when the customer deletes Lili in WeChat (WeCom retries the callback: delivered twice)
    control.callback_fault("duplicate", count=1, copies=2)
    control.customer_deletes_staff(added["external_userid"], "lili")
    settle(control)
    # then one alert with its context, and win-back tasks for Lili and her leader Wang
    alert = ChurnAlert.objects.for_tenant(tenant).get()
    customer = Customer.objects.for_tenant(tenant).get(external_userid=added["external_userid"])
    assert (alert.customer, alert.staff.wecom_userid, alert.kind, alert.status) == (
        customer,
        "lili",
        "by_customer",
        "open",
    )
    assert (alert.source_state, alert.other_follows, alert.tenure_days) == ("live-0918", 1, 0)
    tasks = StaffTask.objects.for_tenant(tenant).order_by("staff__wecom_userid")
    assert [(t.staff.wecom_userid, t.kind, t.source_key) for t in tasks] == [
        ("lili", "churn", f"churn_alert:{alert.pk}"),
        ("wang", "churn", f"churn_alert:{alert.pk}"),
    ]


def test_a_staff_deleting_a_customer_in_wecom_is_an_alert_without_tasks(world):
    tenant, control = world
    added = control.add_contact("zhao", customer={"name": "老王"})
    settle(control)
    control.staff_deletes_customer("zhao", added["external_userid"])
    settle(control)
    alert = ChurnAlert.objects.for_tenant(tenant).get()
    assert (alert.kind, alert.staff.wecom_userid, alert.other_follows) == ("by_staff", "zhao", 0)
    assert StaffTask.objects.for_tenant(tenant).count() == 0


def test_the_customer_adding_the_staff_again_recovers_the_alert(world):
    tenant, control = world
    added = control.add_contact("lili", customer={"name": "回头客"})
    settle(control)
    control.customer_deletes_staff(added["external_userid"], "lili")
    settle(control)
    control.advance_clock(60)
    control.add_contact("lili", external_userid=added["external_userid"])
    settle(control)
    assert ChurnAlert.objects.for_tenant(tenant).get().status == "recovered"
    statuses = set(StaffTask.objects.for_tenant(tenant).values_list("status", flat=True))
    assert statuses == {"done"}


def test_a_new_direct_leader_arrives_by_callback(world):
    tenant, control = world
    control.update_staff("lili", direct_leader=["zhao"])
    settle(control)
    lili = Staff.objects.for_tenant(tenant).select_related("direct_leader").get(wecom_userid="lili")
    assert lili.direct_leader.wecom_userid == "zhao"
