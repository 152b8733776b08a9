"""Exports in a real browser: start one from the console, watch its progress bar fill on the
jobs page (the cell polls while the job runs) and download the file."""

from __future__ import annotations

import csv
import io
import re

import pytest

from siyu.core import jobs
from siyu.core.jobs import execute_job
from siyu.core.models import BackgroundJob
from siyu.tenancy import services
from siyu.testing.factories import TEST_PASSWORD, CustomerFactory

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def queue_held(monkeypatch):
    """Jobs stay queued until the test runs them (as if the worker were busy)."""
    monkeypatch.setattr(jobs, "run_background_job", lambda *args, **kwargs: None)


def sign_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/console/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", TEST_PASSWORD)
    with page.expect_navigation():
        page.click("#login-form button[type=submit]")


def test_an_export_shows_its_progress_and_then_its_download(
    live_server, tenant, admin_staff, sales_staff, page, screenshot, queue_held
):
    # given: customers, and an administrator in the console
    for number in range(12):
        CustomerFactory(tenant=tenant, name=f"顾客{number}", staff=sales_staff)
    sign_in(page, live_server.url, admin_staff.user.username)

    # when: they open the export page from the sidebar and start a CSV export
    page.goto(f"{live_server.url}/console/core/backgroundjob/")
    with page.expect_navigation():
        page.locator("#job-starters a", has_text=re.compile("Export customers|导出客户")).click()
    page.select_option("select[name=format]", "csv")
    screenshot(page, "jobs-export-form")
    with page.expect_navigation():
        page.click("#export-form button[type=submit]")

    # then: the jobs page lists the job, queued, polling for its progress
    job = BackgroundJob.objects.for_tenant(tenant).get(kind="customers.export")
    cell = page.locator(f"#job-{job.pk}")
    assert cell.get_attribute("data-job-status") == "queued"
    assert cell.get_attribute("hx-get")

    # when: the worker runs it
    execute_job(tenant.pk, job.pk)

    # then: the cell swaps itself to 100 % with the result and a download link
    page.wait_for_selector(f"#job-{job.pk}[data-job-percent='100']", timeout=15_000)
    cell = page.locator(f"#job-{job.pk}")
    assert cell.get_attribute("data-job-status") == "succeeded"
    assert cell.locator(".job-percent").inner_text() == "100%"
    assert cell.locator(".job-counts").inner_text() == "12 / 12"
    bar = cell.locator("div[style*='width: 100%']")
    assert bar.count() == 1
    screenshot(page, "jobs-export-done")

    # and: the download link gives the file with every customer
    with page.expect_download() as download_info:
        cell.locator("a[data-job-download]").click()
    download = download_info.value
    assert re.fullmatch(r"customers-\d{8}-\d{4}\.csv", download.suggested_filename)
    with open(download.path(), encoding="utf-8-sig") as handle:
        rows = list(csv.reader(io.StringIO(handle.read())))
    assert len(rows) == 13
    assert page.console_errors == []


def test_a_queued_job_can_be_cancelled_from_its_row(
    live_server, tenant, admin_staff, page, queue_held
):
    from siyu.customers.exports import start_export

    job = start_export(services.system_actor(tenant), {"format": "xlsx"})
    sign_in(page, live_server.url, admin_staff.user.username)
    page.goto(f"{live_server.url}/console/core/backgroundjob/")
    page.once("dialog", lambda dialog: dialog.accept())

    page.locator(f"#job-{job.pk} .job-cancel").click()

    page.wait_for_selector(f"#job-{job.pk}[data-job-status='cancelled']")
    assert BackgroundJob.objects.for_tenant(tenant).get(pk=job.pk).status == "cancelled"
    assert page.console_errors == []
