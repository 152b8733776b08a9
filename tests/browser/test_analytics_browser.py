"""The analytics page in a real browser: each chart is drawn by ECharts, with data."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from siyu.analytics.store import ColumnarStore
from siyu.analytics.sync import sync
from siyu.commerce import services as commerce
from siyu.core.events import record_event
from siyu.testing.factories import CustomerFactory, StaffFactory

pytestmark = pytest.mark.browser


@pytest.fixture
def copied(settings, tmp_path, tenant):
    """Three weeks of adds and messages, copied to the columnar store."""
    settings.ANALYTICS_DIR = tmp_path / "analytics"
    now = timezone.now()
    staff = StaffFactory(tenant=tenant, wecom_userid="s1")
    for day in range(21):
        for number in range(1 + day % 3):
            customer = CustomerFactory(
                tenant=tenant,
                staff=staff,
                added_at=now - timedelta(days=day, minutes=number),
                state=("poster", "store", "")[number % 3],
            )
            if number == 0 and day % 4 == 0:
                commerce.ingest_order(
                    tenant,
                    commerce.OrderIn(
                        shop_order_id=f"SO-{day}",
                        status="paid",
                        updated_at=now - timedelta(days=day - 1),
                        paid_at=now - timedelta(days=day - 1),
                        buyer=commerce.BuyerIn(external_userid=customer.external_userid),
                        lines=(commerce.LineIn(sku="TRIAL-1", unit_price_fen=990),),
                    ),
                )
            for later in range(0, day, 3):
                record_event(
                    tenant,
                    "message.received",
                    customer_id=customer.pk,
                    key=f"m:{customer.pk}:{later}",
                    occurred_at=now - timedelta(days=later),
                )
    sync(ColumnarStore())


def test_the_analytics_page_draws_every_chart(
    live_server, copied, admin_staff, page, screenshot, sign_in
):
    sign_in(page, live_server.url, admin_staff.user.username)
    page.goto(f"{live_server.url}/console/analytics/?measure=active")
    for chart in ("funnel", "revenue", "acquisition", "activity", "retention"):
        element = page.locator(f"#chart-{chart}")
        element.locator("canvas").first.wait_for(state="visible")
        assert int(element.get_attribute("data-drawn")) > 0, chart
        series = page.evaluate(
            """(id) => {
                const chart = echarts.getInstanceByDom(document.getElementById(id));
                return chart ? chart.getOption().series.map((s) => s.data.length) : [];
            }""",
            f"chart-{chart}",
        )
        assert series and all(length > 0 for length in series), (chart, series)
    assert page.console_errors == []
    screenshot(page, "console-analytics")
