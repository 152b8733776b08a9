"""The segment rule builder in a real browser: build a rule, preview its count, save, and see
the count on the list and on the segment's page (with its size chart)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from siyu.segments.tests.support_segments import make_tag, put_tags, set_profile
from siyu.testing.factories import TEST_PASSWORD, CustomerFactory

pytestmark = pytest.mark.browser


def sign_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/console/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", TEST_PASSWORD)
    with page.expect_navigation():
        page.click("#login-form button[type=submit]")


@pytest.fixture
def shanghai_vips(tenant, admin_staff):
    """Two VIPs in Shanghai (the segment), one Shanghai non-VIP, one VIP in Beijing."""
    vip = make_tag(tenant, "VIP")
    for name, city, tagged in (
        ("沪一", "上海", True),
        ("沪二", "上海", True),
        ("沪三", "上海", False),
        ("京一", "北京", True),
    ):
        customer = set_profile(
            CustomerFactory(tenant=tenant, name=name, staff=admin_staff), city=city
        )
        if tagged:
            put_tags(customer, vip)
    return vip


def condition(page, index: int):
    return page.locator("#rule-builder .sb-condition").nth(index)


def test_build_a_segment_preview_save_and_see_its_count(
    live_server, admin_staff, shanghai_vips, page, screenshot
):
    # given a signed-in administrator on the new-segment page
    sign_in(page, live_server.url, admin_staff.user.username)
    page.goto(f"{live_server.url}/console/segments/segment/add/")
    page.fill("#id_name", "上海VIP")

    # when they build "city is 上海 AND tags has any of VIP"
    page.click("#rule-builder [data-role=add-condition]")
    condition(page, 0).locator("[data-role=field]").select_option("city")
    condition(page, 0).locator("[data-role=operator]").select_option("eq")
    condition(page, 0).locator("[data-role=value] input").fill("上海")
    page.click("#rule-builder > .sb-group > .sb-group-foot [data-role=add-condition]")
    condition(page, 1).locator("[data-role=field]").select_option("tags")
    condition(page, 1).locator("[data-role=operator]").select_option("has_any")
    condition(page, 1).locator("[data-role=value] select").select_option([str(shanghai_vips.pk)])

    # and preview it
    page.click("#preview-button")

    # then the count and a sample of the two Shanghai VIPs show, without saving
    expect(page.locator("#preview-count")).to_have_text("2")
    expect(page.locator("#preview-sample tbody tr")).to_have_count(2)
    screenshot(page, "segment-builder-preview")

    # when a bad value is previewed, the error shows next to its condition
    condition(page, 0).locator("[data-role=value] input").fill("")
    page.click("#preview-button")
    expect(condition(page, 0)).to_have_class("sb-condition sb-invalid")
    condition(page, 0).locator("[data-role=value] input").fill("上海")

    # when it is saved
    with page.expect_navigation():
        page.click("#save-segment")

    # then the list shows it with its count
    row = page.locator("#result_list tbody tr", has_text="上海VIP")
    expect(row.locator("td.field-customers")).to_have_text("2")

    # and its page shows the count, a sample and the size chart
    with page.expect_navigation():
        row.locator("a", has_text="上海VIP").first.click()
    expect(page.locator("#segment-count")).to_have_text("2")
    expect(page.locator("#segment-sample tbody tr")).to_have_count(2)
    page.locator("#segment-size-chart canvas").first.wait_for(state="visible")
    assert page.console_errors == []
    screenshot(page, "segment-page")
