"""The customer 360 in a real browser: find a customer, open the 360, add a follow-up whose
next contact becomes a task in the staff's inbox."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from siyu.core.events import record_event
from siyu.customers.models import CustomerNote
from siyu.engagement.models import StaffTask
from siyu.testing.factories import TEST_PASSWORD, CustomerFactory, GroupFactory

pytestmark = pytest.mark.browser


def sign_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/console/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", TEST_PASSWORD)
    with page.expect_navigation():
        page.click("#login-form button[type=submit]")


def test_open_a_customer_360_and_add_a_follow_up(
    live_server, tenant, sales_staff, page, screenshot
):
    # given: a customer of the signed-in sales staff, in a group, with some history
    customer = CustomerFactory(tenant=tenant, staff=sales_staff, name="韩梅梅", state="cc_spring")
    GroupFactory(tenant=tenant, owner=sales_staff, members=[customer], name="咖啡同好群")
    for number in range(25):
        record_event(
            tenant, "material.opened", customer_id=customer.pk, payload={"title": f"海报{number}"}
        )
    sign_in(page, live_server.url, sales_staff.user.username)

    # when: the staff searches the list and opens the customer
    page.goto(f"{live_server.url}/console/customers/customer/?q=韩梅")
    with page.expect_navigation():
        page.locator("#result_list a", has_text="韩梅梅").first.click()

    # then: the 360 shows identity, groups, friendships and the timeline
    assert page.locator("#customer-name").inner_text() == "韩梅梅"
    assert page.locator("#customer-groups").get_by_text("咖啡同好群").is_visible()
    assert "cc_spring" in page.locator("#customer-follows").inner_text()
    assert page.locator("#timeline .timeline-entry").count() == 20
    # older entries load in place
    page.locator("#timeline-more button").click()
    page.wait_for_function("document.querySelectorAll('#timeline .timeline-entry').length > 20")

    # when: they add a follow-up with a next contact in two days
    due = timezone.localtime(timezone.now() + timedelta(days=2)).replace(second=0, microsecond=0)
    form = page.locator("#add-note-form")
    form.locator("select[name=kind]").select_option("call")
    form.locator("textarea[name=content]").fill("电话回访：周五到店试新品")
    form.locator("input[name=next_contact_at]").fill(due.strftime("%Y-%m-%dT%H:%M"))
    with page.expect_navigation():
        form.locator("button[name=add_note]").click()

    # then: the note is listed, the task is open on the page and in the inbox
    assert "电话回访：周五到店试新品" in page.locator("#note-list").inner_text()
    assert page.locator("#customer-tasks li").count() == 1
    note = CustomerNote.objects.for_tenant(tenant).get()
    task = StaffTask.objects.for_tenant(tenant).get()
    assert (task.source_key, task.due_at, task.staff_id) == (
        f"note:{note.pk}",
        due,
        sales_staff.pk,
    )
    screenshot(page, "customer-360")
    page.goto(f"{live_server.url}/console/engagement/stafftask/")
    assert page.locator("#result_list").get_by_text("韩梅梅").first.is_visible()

    # when: the task is done from the inbox
    with page.expect_navigation():
        page.locator("#result_list .task-done").first.click()

    # then
    task.refresh_from_db()
    assert task.status == "done"
    assert page.console_errors == []
