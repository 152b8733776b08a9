"""Churn alerts: raised from friendship deletions, with context and win-back tasks."""

from __future__ import annotations

import pytest

from siyu.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from siyu.core.events import record_event
from siyu.core.models import Event
from siyu.customers import churn, services
from siyu.customers.models import ChurnAlert, Customer
from siyu.engagement.models import StaffTask
from siyu.tenancy import services as tenancy
from siyu.testing.factories import CustomerFactory, StaffFactory


@pytest.fixture
def leader(tenant):
    return StaffFactory(tenant=tenant, roles=["sales"], wecom_userid="leader", name="Leader")


@pytest.fixture
def seller(tenant, leader):
    staff = StaffFactory(tenant=tenant, roles=["sales"], login=True, wecom_userid="seller")
    tenancy.set_direct_leaders(tenant, {"seller": ["leader"]}, by=tenancy.system_actor(tenant))
    staff.refresh_from_db()
    return staff


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    """Run what a block enqueues on commit (the handlers), as production does."""

    def block():
        return django_capture_on_commit_callbacks(execute=True)

    return block


def delete(tenant, customer, staff, by, at, *, source="callback"):
    return services.remove_follow(
        tenant, customer=customer, staff=staff, by=by, at=at, source=source
    )


def tasks_of(tenant):
    return StaffTask.objects.for_tenant(tenant).order_by("staff__wecom_userid")


def test_a_customer_deleting_a_staff_raises_an_alert_with_context_and_two_tasks(
    tenant, seller, other_sales, at, on_commit
):
    # given a customer from the "live-01" channel, friends with two staff for 30 days,
    # who paid 99.00 and got 10.00 back
    customer = CustomerFactory(
        tenant=tenant, staff=seller, followed_by=[other_sales], added_at=at(0), state="live-01"
    )
    Customer.objects.for_tenant(tenant).filter(pk=customer.pk).update(last_interaction_at=at(60))
    record_event(tenant, "order.paid", customer_id=customer.pk, payload={"amount_fen": 9900})
    record_event(tenant, "order.refunded", customer_id=customer.pk, payload={"amount_fen": 1000})
    # when the customer deletes the seller
    with on_commit():
        delete(tenant, customer, seller, "customer", at(30 * 24 * 60 + 5))
    # then
    alert = ChurnAlert.objects.for_tenant(tenant).get()
    assert (alert.customer, alert.staff, alert.kind, alert.status) == (
        customer,
        seller,
        "by_customer",
        "open",
    )
    assert alert.occurred_at == at(30 * 24 * 60 + 5)
    assert (alert.source_state, alert.tenure_days, alert.value_fen, alert.other_follows) == (
        "live-01",
        30,
        8900,
        1,
    )
    assert alert.last_interaction_at == at(60)
    tasks = list(tasks_of(tenant))
    assert [(t.staff.wecom_userid, t.kind, t.source_key) for t in tasks] == [
        ("leader", "churn", f"churn_alert:{alert.pk}"),
        ("seller", "churn", f"churn_alert:{alert.pk}"),
    ]
    assert tasks[0].customer == customer
    assert tasks[0].due_at == alert.occurred_at + churn.WIN_BACK_WITHIN
    assert Event.objects.for_tenant(tenant).filter(type=churn.CHURN_ALERT_RAISED).count() == 1


def test_redelivery_raises_one_alert_and_one_task_each(tenant, seller, at, on_commit):
    customer = CustomerFactory(tenant=tenant, staff=seller, added_at=at(0))
    with on_commit():
        delete(tenant, customer, seller, "customer", at(10))
    event = Event.objects.for_tenant(tenant).get(type="follow.deleted_by_customer")
    # when the handler's work is done again (a redelivered event, a second worker)
    again = churn.alert_for_deletion(event)
    # then
    assert again == ChurnAlert.objects.for_tenant(tenant).get()
    assert tasks_of(tenant).count() == 2


def test_a_staff_deleting_a_customer_is_recorded_without_tasks(tenant, seller, at, on_commit):
    customer = CustomerFactory(tenant=tenant, staff=seller, added_at=at(0))
    with on_commit():
        delete(tenant, customer, seller, "staff", at(10))
    alert = ChurnAlert.objects.for_tenant(tenant).get()
    assert (alert.kind, alert.other_follows, alert.status) == ("by_staff", 0, "open")
    assert tasks_of(tenant).count() == 0


@pytest.mark.parametrize(
    ("by", "source"),
    [("staff", "handover"), ("staff", "transfer"), ("customer", "handover"), ("staff", "sync")],
)
def test_hand_overs_and_sync_removals_are_no_churn(tenant, seller, at, on_commit, by, source):
    customer = CustomerFactory(tenant=tenant, staff=seller, added_at=at(0))
    with on_commit():
        delete(tenant, customer, seller, by, at(10), source=source)
    assert ChurnAlert.objects.for_tenant(tenant).count() == 0
    assert tasks_of(tenant).count() == 0


def test_a_departed_staffs_lost_customer_goes_to_the_leader_only(tenant, seller, at, on_commit):
    customer = CustomerFactory(tenant=tenant, staff=seller, added_at=at(0))
    tenancy.mark_staff_departed(seller, by=tenancy.system_actor(tenant))
    with on_commit():
        delete(tenant, customer, seller, "customer", at(10))
    assert [t.staff.wecom_userid for t in tasks_of(tenant)] == ["leader"]


def test_re_adding_the_staff_recovers_the_alert_and_completes_its_tasks(
    tenant, seller, at, on_commit
):
    customer = CustomerFactory(tenant=tenant, staff=seller, added_at=at(0))
    with on_commit():
        delete(tenant, customer, seller, "customer", at(10))
    # when the customer adds the seller again
    with on_commit():
        services.upsert_follow(tenant, customer=customer, staff=seller, added_at=at(20))
    # then
    alert = ChurnAlert.objects.for_tenant(tenant).get()
    assert (alert.status, alert.resolved_at) == ("recovered", at(20))
    assert sorted(tasks_of(tenant).values_list("status", flat=True)) == ["done", "done"]


def test_a_lost_customer_returning_to_another_staff_recovers_every_alert(
    tenant, seller, other_sales, at, on_commit
):
    customer = CustomerFactory(tenant=tenant, staff=seller, added_at=at(0))
    with on_commit():
        delete(tenant, customer, seller, "customer", at(10))
    with on_commit():
        services.upsert_follow(tenant, customer=customer, staff=other_sales, added_at=at(20))
    assert ChurnAlert.objects.for_tenant(tenant).get().status == "recovered"


def test_an_alert_handled_after_the_re_add_is_already_recovered(tenant, seller, at):
    # given the deletion and the re-add committed before any handler ran
    customer = CustomerFactory(tenant=tenant, staff=seller, added_at=at(0))
    delete(tenant, customer, seller, "customer", at(10))
    services.upsert_follow(tenant, customer=customer, staff=seller, added_at=at(20))
    event = Event.objects.for_tenant(tenant).get(type="follow.deleted_by_customer")
    # when the deletion's handler runs late
    alert = churn.alert_for_deletion(event)
    # then the alert is history, without tasks
    assert (alert.status, alert.resolved_at) == ("recovered", at(20))
    assert tasks_of(tenant).count() == 0


@pytest.fixture
def alert(tenant, seller, at, on_commit):
    customer = CustomerFactory(tenant=tenant, staff=seller, added_at=at(0))
    with on_commit():
        delete(tenant, customer, seller, "customer", at(10))
    return ChurnAlert.objects.for_tenant(tenant).get()


@pytest.mark.parametrize(
    ("steps", "final", "task_status"),
    [
        (["contacted"], "contacted", "done"),
        (["contacted", "recovered"], "recovered", "done"),
        (["recovered"], "recovered", "done"),
        (["closed"], "closed", "dismissed"),
        (["contacted", "closed"], "closed", "done"),  # contacting did the task
    ],
)
def test_status_changes_move_the_alert_and_its_tasks(
    tenant, seller, actor_of, alert, steps, final, task_status
):
    for step in steps:
        churn.set_alert_status(actor_of(seller), alert, step)
    alert.refresh_from_db()
    assert alert.status == final
    assert (alert.resolved_at is not None) == (final in ("recovered", "closed"))
    assert set(tasks_of(tenant).values_list("status", flat=True)) == {task_status}
    assert Event.objects.for_tenant(tenant).filter(
        type=churn.CHURN_ALERT_STATUS_CHANGED
    ).count() == len(steps)


@pytest.mark.parametrize(
    ("first", "then", "error"),
    [
        ("recovered", "contacted", Conflict),
        ("closed", "recovered", Conflict),
        ("contacted", "open", Conflict),
        ("contacted", "lost", InvalidInput),
    ],
)
def test_impossible_status_changes_are_refused(seller, actor_of, alert, first, then, error):
    churn.set_alert_status(actor_of(seller), alert, first)
    with pytest.raises(error):
        churn.set_alert_status(actor_of(seller), alert, then)


def test_a_sales_staff_sees_and_changes_only_their_own_alerts(
    tenant, seller, other_sales, actor_of, alert
):
    assert list(churn.visible_alerts(actor_of(seller))) == [alert]
    assert list(churn.visible_alerts(actor_of(other_sales))) == []
    with pytest.raises(NotFound):
        churn.set_alert_status(actor_of(other_sales), alert, "closed")


def test_a_role_without_the_right_cannot_change_alerts(tenant, alert, actor_of):
    analyst = StaffFactory(tenant=tenant, roles=["analyst"], wecom_userid="analyst")
    with pytest.raises(Forbidden):
        churn.set_alert_status(actor_of(analyst), alert, "closed")


def test_the_directory_sets_and_clears_direct_leaders(tenant, seller, leader):
    actor = tenancy.system_actor(tenant)
    assert seller.direct_leader == leader
    # unknown leaders and self-leadership leave no leader
    assert tenancy.set_direct_leaders(tenant, {"seller": ["ghost"]}, by=actor) == 1
    seller.refresh_from_db()
    assert seller.direct_leader is None
    assert tenancy.set_direct_leaders(tenant, {"seller": "seller"}, by=actor) == 0
    assert tenancy.set_direct_leaders(tenant, {"seller": "leader,other"}, by=actor) == 1
    seller.refresh_from_db()
    assert seller.direct_leader == leader


@pytest.mark.parametrize(
    ("fields", "expected"),
    [({}, "leader"), ({"DirectLeader": ""}, None), ({"DirectLeader": "seller2"}, "seller2")],
)
def test_directory_callbacks_carry_the_direct_leader_when_wecom_sends_it(
    tenant, seller, fields, expected
):
    from siyu.wecom import processors

    StaffFactory(tenant=tenant, wecom_userid="seller2")
    message = {"ChangeType": "update_user", "UserID": "seller", "Department": "", **fields}
    processors.staff_changed(tenant, message)
    seller.refresh_from_db()
    assert (seller.direct_leader.wecom_userid if seller.direct_leader else None) == expected
