"""The staff task inbox (待办): services, visibility, console page and API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from siyu.core.errors import Conflict, Forbidden, InvalidInput
from siyu.core.models import Event
from siyu.engagement import selectors, services
from siyu.engagement.models import StaffTask
from siyu.tenancy.models import Staff
from siyu.tenancy.services import system_actor
from siyu.testing.factories import CustomerFactory, StaffFactory

INBOX = "/console/engagement/stafftask/"


def task_for(staff, title="回访", *, due_in_hours=None, source_key="", customer=None):
    due = timezone.now() + timedelta(hours=due_in_hours) if due_in_hours is not None else None
    task, _created = services.create_task(
        staff.tenant, staff, title=title, due_at=due, source_key=source_key, customer=customer
    )
    return task


@pytest.fixture
def other_sales(tenant):
    return StaffFactory(tenant=tenant, roles=["sales"], login=True, wecom_userid="sales2")


@pytest.fixture
def leader(tenant, sales_staff):
    """sales_staff's direct leader (a sales role: sees only their own customers)."""
    boss = StaffFactory(tenant=tenant, roles=["sales"], login=True, wecom_userid="lead1")
    Staff.objects.for_tenant(tenant).filter(pk=sales_staff.pk).update(direct_leader=boss)
    return boss


# --- services -------------------------------------------------------------------------------------
def test_a_sourced_task_is_created_once(tenant, sales_staff):
    first, created = services.create_task(tenant, sales_staff, title="x", source_key="note:1")
    again, created_again = services.create_task(tenant, sales_staff, title="y", source_key="note:1")
    assert (created, created_again, again) == (True, False, first)
    assert Event.objects.for_tenant(tenant).filter(type="task.created").count() == 1


@pytest.mark.parametrize(
    ("values", "error"),
    [({"title": " "}, InvalidInput), ({"title": "x", "kind": "y"}, InvalidInput)],
)
def test_bad_tasks_are_refused(values, error, tenant, sales_staff):
    with pytest.raises(error):
        services.create_task(tenant, sales_staff, **values)


def test_a_task_for_another_tenants_staff_is_refused(tenant, other_tenant):
    foreign = StaffFactory(tenant=other_tenant, wecom_userid="b1")
    with pytest.raises(Forbidden):
        services.create_task(tenant, foreign, title="x")


def test_the_assignee_completes_their_task_once(tenant, sales_staff, actor_of):
    task = task_for(sales_staff)
    services.complete_task(actor_of(sales_staff), task)
    assert StaffTask.objects.for_tenant(tenant).get(pk=task.pk).status == "done"
    with pytest.raises(Conflict):
        services.dismiss_task(actor_of(sales_staff), task)


def test_a_colleague_without_the_permission_cannot_close_a_task(tenant, sales_staff):
    content = StaffFactory(tenant=tenant, roles=["content"], wecom_userid="content1")
    from siyu.tenancy.services import actor_for_staff

    with pytest.raises(Forbidden):
        services.complete_task(actor_for_staff(content), task_for(sales_staff))


def test_an_open_task_is_rescheduled_and_a_closed_one_is_not(tenant, sales_staff, actor_of):
    task = task_for(sales_staff, due_in_hours=1)
    later = timezone.now() + timedelta(days=3)
    services.reschedule_task(task, due_at=later)
    assert StaffTask.objects.for_tenant(tenant).get(pk=task.pk).due_at == later
    services.dismiss_task(actor_of(sales_staff), task)
    with pytest.raises(Conflict):
        services.reschedule_task(task, due_at=later)


def test_the_system_closes_a_task_whose_cause_went_away(tenant, sales_staff):
    task = task_for(sales_staff)
    services.close_task_by_system(task, reason="note:9")
    services.close_task_by_system(task, reason="note:9")  # twice: no error, one event
    assert StaffTask.objects.for_tenant(tenant).get(pk=task.pk).status == "dismissed"
    (event,) = Event.objects.for_tenant(tenant).filter(type="task.dismissed")
    assert event.payload["reason"] == "note:9"


# --- who sees which tasks ------------------------------------------------------------------------
def test_the_inbox_is_mine_due_soonest_first(tenant, sales_staff, other_sales, actor_of):
    later = task_for(sales_staff, "later", due_in_hours=48)
    undated = task_for(sales_staff, "undated")
    overdue = task_for(sales_staff, "overdue", due_in_hours=-2)
    soon = task_for(sales_staff, "soon", due_in_hours=1)
    task_for(other_sales, "not mine", due_in_hours=1)
    done = task_for(sales_staff, "done", due_in_hours=0)
    services.complete_task(actor_of(sales_staff), done)
    inbox = list(selectors.inbox(actor_of(sales_staff)))
    assert inbox == [overdue, soon, later, undated]


def test_a_leader_sees_their_reports_tasks(tenant, sales_staff, other_sales, leader, actor_of):
    theirs = task_for(sales_staff, "report's")
    task_for(other_sales, "someone else's")
    own = task_for(leader, "own")
    actor = actor_of(leader)
    assert set(selectors.visible_tasks(actor)) == {theirs, own}
    assert list(selectors.inbox(actor, whose="reports")) == [theirs]
    services.complete_task(actor, theirs)  # a leader may close their report's task


def test_a_department_scope_sees_its_department(tenant):
    from siyu.testing.factories import DepartmentFactory

    north = DepartmentFactory(tenant=tenant, name="North")
    south = DepartmentFactory(tenant=tenant, name="South")
    lead = StaffFactory(tenant=tenant, roles=["service"], department=north, wecom_userid="svc")
    member = StaffFactory(tenant=tenant, department=north, wecom_userid="n1")
    outsider = StaffFactory(tenant=tenant, department=south, wecom_userid="s1")
    mine, outside = task_for(member), task_for(outsider)
    from siyu.tenancy.services import actor_for_staff

    visible = set(selectors.visible_tasks(actor_for_staff(lead)))
    assert mine in visible and outside not in visible


# --- the console page
def test_the_inbox_page_lists_my_open_tasks(tenant, sales_staff, other_sales, login):
    customer = CustomerFactory(tenant=tenant, staff=sales_staff, name="韩梅梅")
    mine = task_for(sales_staff, "回访韩梅梅", due_in_hours=-1, customer=customer)
    task_for(other_sales, "Zeta-task")
    response = login(sales_staff).get(INBOX)
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [mine]
    page = response.content.decode()
    assert "回访韩梅梅" in page and "韩梅梅" in page and "Zeta-task" not in page
    assert f"/console/engagement/stafftask/{mine.pk}/done/" in page


def test_done_and_dismiss_buttons_close_tasks(tenant, sales_staff, login):
    first, second = task_for(sales_staff, "a"), task_for(sales_staff, "b")
    client = login(sales_staff)
    assert client.post(f"{INBOX}{first.pk}/done/").status_code == 302
    assert client.post(f"{INBOX}{second.pk}/dismiss/").status_code == 302
    statuses = dict(StaffTask.objects.for_tenant(tenant).values_list("title", "status"))
    assert statuses == {"a": "done", "b": "dismissed"}
    assert client.get(f"{INBOX}{first.pk}/done/").status_code == 405
    assert list(client.get(INBOX).context["cl"].result_list) == []


def test_bulk_actions_close_selected_tasks(tenant, sales_staff, login):
    tasks = [task_for(sales_staff, f"t{number}") for number in range(3)]
    response = login(sales_staff).post(
        INBOX, {"action": "mark_done", "_selected_action": [t.pk for t in tasks[:2]]}
    )
    assert response.status_code == 302
    statuses = sorted(StaffTask.objects.for_tenant(tenant).values_list("status", flat=True))
    assert statuses == ["done", "done", "open"]


def test_another_staffs_task_is_404(tenant, sales_staff, other_sales, login):
    theirs = task_for(other_sales)
    client = login(sales_staff)
    assert client.post(f"{INBOX}{theirs.pk}/done/").status_code == 404
    assert client.get(f"{INBOX}{theirs.pk}/change/").status_code == 404
    assert StaffTask.objects.for_tenant(tenant).get(pk=theirs.pk).status == "open"


def test_another_tenants_task_is_404(other_tenant, admin_staff, login):
    foreign = task_for(StaffFactory(tenant=other_tenant, wecom_userid="b1"), "Zeta-task")
    client = login(admin_staff)
    assert client.post(f"{INBOX}{foreign.pk}/done/").status_code == 404
    assert "Zeta-task" not in client.get(INBOX + "?whose=all").content.decode()


def test_a_leader_switches_to_their_reports_tasks(tenant, sales_staff, leader, login):
    theirs = task_for(sales_staff, "report's")
    client = login(leader)
    assert list(client.get(INBOX).context["cl"].result_list) == []
    assert list(client.get(INBOX, {"whose": "reports"}).context["cl"].result_list) == [theirs]


def test_a_task_is_added_in_the_console(tenant, sales_staff, login):
    response = login(sales_staff).post(
        f"{INBOX}add/", {"title": "准备新品资料", "kind": "custom", "staff": sales_staff.pk}
    )
    assert response.status_code == 302
    task = StaffTask.objects.for_tenant(tenant).get()
    assert (task.title, task.staff, task.created_by) == ("准备新品资料", sales_staff, sales_staff)


# --- the API
@pytest.fixture(params=["api_key", "session"])
def as_sales(request, tenant, sales_staff, api_as, session_api):
    if request.param == "api_key":
        return api_as(tenant, staff=sales_staff)
    return session_api(sales_staff)


def test_the_api_lists_my_open_tasks_due_soonest_first(tenant, sales_staff, other_sales, as_sales):
    undated = task_for(sales_staff, "undated")
    soon = task_for(sales_staff, "soon", due_in_hours=1)
    later = task_for(sales_staff, "later", due_in_hours=5)
    task_for(other_sales, "not mine")
    first = as_sales.get("/tasks", limit=2).json()
    assert [item["id"] for item in first["items"]] == [soon.pk, later.pk]
    rest = as_sales.get("/tasks", limit=2, cursor=first["next_cursor"]).json()
    assert ([item["id"] for item in rest["items"]], rest["next_cursor"]) == ([undated.pk], None)


def test_the_api_creates_completes_and_dismisses(tenant, sales_staff, as_sales):
    customer = CustomerFactory(tenant=tenant, staff=sales_staff)
    created = as_sales.post("/tasks", {"title": "发资料", "customer_id": customer.pk})
    assert created.status_code == 201, created.content
    task_id = created.json()["id"]
    assert created.json()["staff_id"] == sales_staff.pk
    done = as_sales.post(f"/tasks/{task_id}/done")
    assert (done.status_code, done.json()["status"]) == (200, "done")
    again = as_sales.post(f"/tasks/{task_id}/dismiss")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "conflict")
    assert as_sales.get("/tasks", status="done").json()["items"][0]["id"] == task_id


def test_the_api_refuses_other_staffs_tasks_and_customers(
    tenant, sales_staff, other_sales, as_sales
):
    theirs = task_for(other_sales)
    assert as_sales.get(f"/tasks/{theirs.pk}").status_code == 404
    assert as_sales.post(f"/tasks/{theirs.pk}/done").status_code == 404
    their_customer = CustomerFactory(tenant=tenant, staff=other_sales)
    response = as_sales.post("/tasks", {"title": "x", "customer_id": their_customer.pk})
    assert response.status_code == 404
    response = as_sales.post("/tasks", {"title": "x", "staff_id": other_sales.pk})
    assert response.status_code == 404
    assert StaffTask.objects.for_tenant(tenant).count() == 1


def test_another_tenants_tasks_are_404(api, other_tenant):
    foreign = task_for(StaffFactory(tenant=other_tenant, wecom_userid="b1"))
    assert api.get(f"/tasks/{foreign.pk}").status_code == 404
    assert api.post(f"/tasks/{foreign.pk}/done").status_code == 404
    assert api.get("/tasks", whose="all").json()["items"] == []


def test_a_key_acting_as_nobody_must_name_the_assignee(api, tenant, sales_staff):
    refused = api.post("/tasks", {"title": "x"})
    assert refused.status_code == 400
    created = api.post("/tasks", {"title": "x", "staff_id": sales_staff.pk})
    assert created.status_code == 201


def test_a_bad_cursor_is_a_400(as_sales):
    response = as_sales.get("/tasks", cursor="nonsense")
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_cursor")


def test_a_leader_assigns_a_task_to_a_report(tenant, sales_staff, leader, api_as):
    client = api_as(tenant, staff=leader)
    created = client.post("/tasks", {"title": "回访", "staff_id": sales_staff.pk})
    assert created.status_code == 201
    listed = client.get("/tasks", whose="reports").json()["items"]
    assert [item["staff_id"] for item in listed] == [sales_staff.pk]


def test_system_actor_is_tenant_wide(tenant, sales_staff):
    task = task_for(sales_staff)
    assert list(selectors.visible_tasks(system_actor(tenant))) == [task]
