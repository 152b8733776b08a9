"""The console in a real browser: sign in, switch the language, see the dashboard chart."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from siyu.core.events import record_event
from siyu.testing.factories import TEST_PASSWORD, StaffFactory

pytestmark = pytest.mark.browser


@pytest.fixture
def busy_tenant(tenant):
    """A tenant with two weeks of events, so the chart has bars to draw."""
    now = timezone.now()
    for day in range(14):
        for family, count in (("customer.added", 3), ("group.joined", 2), ("order.paid", 1)):
            for number in range(count + day % 3):
                record_event(
                    tenant,
                    family,
                    key=f"{family}:{day}:{number}",
                    occurred_at=now - timedelta(days=day, minutes=number),
                )
    return tenant


def sign_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/console/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", TEST_PASSWORD)
    with page.expect_navigation():
        page.click("#login-form button[type=submit]")


def test_sign_in_switch_language_and_see_the_dashboard_chart(
    live_server, busy_tenant, admin_staff, page, screenshot
):
    # given: a signed-in administrator; the console speaks Chinese
    sign_in(page, live_server.url, admin_staff.user.username)
    assert page.locator("html").get_attribute("lang") == "zh-hans"
    sidebar = page.locator("#nav-sidebar-apps")
    assert sidebar.get_by_text("设置", exact=True).is_visible()
    assert sidebar.get_by_text("仪表盘", exact=True).is_visible()
    screenshot(page, "console-dashboard-zh")

    # when: the language switcher in the user menu picks English
    page.get_by_text(admin_staff.user.username, exact=True).click()
    switch = page.locator("form[action='/i18n/setlang/'] button", has_text="English")
    with page.expect_navigation():
        switch.click()

    # then: the console speaks English
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("#nav-sidebar-apps").get_by_text("Settings", exact=True).is_visible()

    # when: the dashboard opens
    page.goto(f"{live_server.url}/console/")

    # then: the KPI cards show live counts and ECharts has drawn the events chart
    events_today = page.locator("[data-kpi=events_today] .kpi-value").inner_text()
    assert int(events_today) >= 6
    canvas = page.locator("#events-chart canvas").first
    canvas.wait_for(state="visible")
    box = canvas.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 200
    series_count = page.evaluate(
        """() => {
            const chart = echarts.getInstanceByDom(document.getElementById("events-chart"));
            return chart ? chart.getOption().series.length : 0;
        }"""
    )
    assert series_count >= 3  # customer, group, order (and staff, tenant)
    assert page.console_errors == []
    screenshot(page, "console-dashboard-en")


def test_the_language_can_be_switched_back_to_chinese(live_server, admin_staff, page):
    sign_in(page, live_server.url, admin_staff.user.username)
    for label, lang in (("English", "en"), ("简体中文", "zh-hans")):
        page.get_by_text(admin_staff.user.username, exact=True).click()
        with page.expect_navigation():
            page.locator("form[action='/i18n/setlang/'] button", has_text=label).click()
        assert page.locator("html").get_attribute("lang") == lang


def test_a_staff_page_lists_the_tenants_staff(live_server, admin_staff, tenant, page, screenshot):
    StaffFactory(tenant=tenant, name="Lily Chen", wecom_userid="lily")
    sign_in(page, live_server.url, admin_staff.user.username)
    page.goto(f"{live_server.url}/console/tenancy/staff/")
    assert page.get_by_text("Lily Chen").is_visible()
    screenshot(page, "console-staff")
