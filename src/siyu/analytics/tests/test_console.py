"""The console's analytics page: the tenant's own numbers, as chart data; staff without the
analytics right get 403."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from siyu.analytics.store import ColumnarStore
from siyu.analytics.sync import sync
from siyu.testing.factories import CustomerFactory, StaffFactory

pytestmark = pytest.mark.django_db
PAGE = "/console/analytics/"


@pytest.fixture
def copied(settings, tmp_path, tenant, other_tenant):
    settings.ANALYTICS_DIR = tmp_path / "analytics"
    yesterday = timezone.now() - timedelta(days=1)
    staff = StaffFactory(tenant=tenant, wecom_userid="s1")
    CustomerFactory.create_batch(2, tenant=tenant, staff=staff, added_at=yesterday, state="poster")
    elsewhere = StaffFactory(tenant=other_tenant, wecom_userid="s2")
    CustomerFactory.create_batch(5, tenant=other_tenant, staff=elsewhere, added_at=yesterday)
    sync(ColumnarStore())


def chart_data(response) -> dict:
    page = response.content.decode()
    start = page.index('<script id="analytics-data" type="application/json">') + len(
        '<script id="analytics-data" type="application/json">'
    )
    return json.loads(page[start : page.index("</script>", start)])


def test_the_page_shows_the_own_tenants_numbers(admin_staff, login, copied):
    response = login(admin_staff).get(PAGE)
    assert response.status_code == 200
    charts = chart_data(response)
    assert charts["acquisition"]["total"] == 2  # not the other tenant's 5
    assert [series["name"] for series in charts["acquisition"]["series"]] == ["poster"]
    assert charts["retention"]["total"] == 2


def test_filters_are_forgiving(admin_staff, login, copied):
    client = login(admin_staff)
    for params in ({"start": "2026-13-40"}, {"period": "year"}, {"start": "2020-01-01"}):
        assert client.get(PAGE, params).status_code == 200


def test_sales_staff_may_not_open_it(sales_staff, login, copied):
    assert login(sales_staff).get(PAGE).status_code == 403


def test_the_sidebar_links_it_for_those_who_may(admin_staff, sales_staff, login, copied):
    assert PAGE in login(admin_staff).get("/console/").content.decode()
    assert PAGE not in login(sales_staff).get("/console/").content.decode()


@pytest.mark.parametrize(
    ("metric", "header", "rows"),
    [
        ("new-customers", "day,channel,customers", 1),
        ("activity", "day,dau,wau,mau,stickiness", 30),
        ("retention", "cohort,size", 1),
        ("revenue", "day,orders,customers,paid_fen,net_fen", 0),  # no orders
        ("aarrr", "stage,customers,rate", 5),
    ],
)
def test_each_chart_downloads_as_csv(admin_staff, login, copied, metric, header, rows):
    response = login(admin_staff).get(f"/console/analytics/{metric}.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    lines = response.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith(header) and len(lines) - 1 >= rows


def test_csv_of_an_unknown_metric_is_404_and_sales_are_refused(admin_staff, sales_staff, login):
    assert login(admin_staff).get("/console/analytics/nonsense.csv").status_code == 404
    assert login(sales_staff).get("/console/analytics/activity.csv").status_code == 403
