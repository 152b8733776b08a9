"""The console's jobs page, the download view, and the customers' import and export pages:
each staff sees and downloads their own jobs (administrators all of the tenant's), other
tenants and other staff get 404, progress cells poll while a job runs."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils.translation import gettext

from siyu.core.jobs import start_job
from siyu.core.models import AuditEntry, BackgroundJob
from siyu.core.tests import test_jobs  # noqa: F401  (registers the "test.scripted" runner)
from siyu.customers.exports import start_export
from siyu.customers.models import Customer
from siyu.customers.tests import support_io
from siyu.customers.tests.support_io import csv_bytes, read_csv, run, staff_with
from siyu.tenancy import services
from siyu.testing.console import change_url, changelist_url

io_world = support_io.io_world  # fixtures
_media = support_io._media

JOBS = changelist_url(BackgroundJob)
IMPORT_PAGE = "/console/core/backgroundjob/start/customers-import/"
EXPORT_PAGE = "/console/core/backgroundjob/start/customers-export/"


def download_url(job: BackgroundJob) -> str:
    return f"/console/jobs/{job.pk}/download"


@pytest.fixture
def exporter(io_world):
    """A sales staff who may export (their own customers: alice and bob)."""
    staff = staff_with(io_world.tenant, ["customers.*", "core.export_data"], userid="exporter")
    Customer.objects.for_tenant(io_world.tenant).filter(
        pk__in=[io_world.alice.pk, io_world.bob.pk]
    ).update(owner=staff)
    return staff


@pytest.fixture
def export_job(exporter):
    return run(start_export(services.actor_for_staff(exporter), {"format": "csv"}))


# --- the jobs page --------------------------------------------------------------------------------
def test_a_staff_sees_their_own_jobs_with_progress_and_download(
    login, export_job, exporter, io_world
):
    other = start_export(services.system_actor(io_world.tenant), {"format": "xlsx"})
    client = login(exporter)

    page = client.get(JOBS)

    assert page.status_code == 200
    html = page.content.decode()
    assert f'id="job-{export_job.pk}"' in html
    assert f'id="job-{other.pk}"' not in html
    assert 'data-job-status="succeeded"' in html and 'data-job-percent="100"' in html
    assert download_url(export_job) in html
    assert "hx-get" not in html.split(f'id="job-{export_job.pk}"')[1].split(">")[0]


def test_an_admin_sees_every_job_of_the_tenant_but_not_other_tenants(
    login, export_job, io_world, other_tenant
):
    foreign = start_job(services.system_actor(other_tenant), "test.scripted", "Zeta job")
    html = login(io_world.admin).get(JOBS).content.decode()
    assert f'id="job-{export_job.pk}"' in html
    assert "Zeta job" not in html
    assert login(io_world.admin).get(change_url(foreign)).status_code == 404


def test_an_active_job_polls_for_its_progress_cell(login, io_world, exporter):
    job = start_export(services.actor_for_staff(exporter), {"format": "csv"})
    client = login(exporter)
    html = client.get(JOBS).content.decode()
    poll = f"/console/core/backgroundjob/{job.pk}/progress/"
    assert f'hx-get="{poll}"' in html
    assert 'data-job-status="queued"' in html

    run(job)
    cell = client.get(poll)

    assert cell.status_code == 200
    fragment = cell.content.decode()
    assert 'data-job-status="succeeded"' in fragment and "hx-get" not in fragment
    assert download_url(job) in fragment


def test_the_progress_of_another_staffs_job_is_not_found(login, export_job, io_world):
    client = login(io_world.sales)
    assert client.get(f"/console/core/backgroundjob/{export_job.pk}/progress/").status_code == 404
    assert client.get(change_url(export_job)).status_code == 404


def test_cancelling_from_the_page(login, io_world, exporter):
    job = start_export(services.actor_for_staff(exporter), {"format": "csv"})
    client = login(exporter)
    cancel = f"/console/core/backgroundjob/{job.pk}/cancel/"
    assert client.get(cancel).status_code == 405

    response = client.post(cancel, headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert 'data-job-status="cancelled"' in response.content.decode()
    assert BackgroundJob.objects.for_tenant(io_world.tenant).get(pk=job.pk).status == "cancelled"
    # another staff cannot cancel it
    other = start_export(services.actor_for_staff(exporter), {"format": "csv"})
    assert (
        login(io_world.sales).post(f"/console/core/backgroundjob/{other.pk}/cancel/").status_code
        == 404
    )


def test_a_failed_imports_page_lists_its_problems(login, io_world):
    system = services.system_actor(io_world.tenant)
    from siyu.customers.imports import start_import

    job = run(
        start_import(
            system,
            filename="bad.csv",
            content=csv_bytes([["external_userid", "生日"], ["wm-bob", "someday"]]),
        )
    )
    html = login(io_world.admin).get(change_url(job)).content.decode()
    assert "data-job-problems" in html
    assert gettext("Not a date: write it like 2026-01-31") in html  # the console's language
    assert download_url(job) in html


# --- downloads -----------------------------------------------------------------------------------
def test_the_starter_downloads_the_file_and_the_download_is_audited(login, export_job, exporter):
    response = login(exporter).get(download_url(export_job))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="customers-')
    assert response["Cache-Control"] == "private, no-store"
    rows = read_csv(b"".join(response.streaming_content))
    assert len(rows) == 3  # header + their two customers
    assert (
        AuditEntry.objects.for_tenant(exporter.tenant)
        .filter(action="job.downloaded", object_id=str(export_job.pk), staff=exporter)
        .exists()
    )


def test_an_admin_of_the_tenant_may_download(login, export_job, io_world):
    assert login(io_world.admin).get(download_url(export_job)).status_code == 200


@pytest.mark.parametrize("who", ["other staff", "other tenant's admin"])
def test_the_download_is_refused_to_anyone_else(login, export_job, io_world, other_admin, who):
    staff = io_world.sales if who == "other staff" else other_admin
    assert login(staff).get(download_url(export_job)).status_code == 404


def test_the_download_needs_a_login(client, export_job):
    response = client.get(download_url(export_job))
    assert response.status_code == 302
    assert response["Location"].startswith("/console/login/")


def test_an_expired_file_is_not_found(login, export_job, exporter):
    export_job.output_file.storage.delete(export_job.output_file.name)
    assert login(exporter).get(download_url(export_job)).status_code == 404


# --- the import and export pages ----------------------------------------------------------------
def test_the_import_page_starts_an_import_job(login, io_world, django_capture_on_commit_callbacks):
    client = login(io_world.admin)
    assert client.get(IMPORT_PAGE).status_code == 200
    upload = SimpleUploadedFile("c.csv", csv_bytes([["外部联系人ID", "城市"], ["wm-bob", "南京"]]))

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(IMPORT_PAGE, {"file": upload})

    assert response.status_code == 302 and response["Location"] == JOBS
    job = BackgroundJob.objects.for_tenant(io_world.tenant).get(kind="customers.import")
    assert job.status == "succeeded"
    assert io_world.refresh(io_world.bob).city == "南京"


def test_the_import_page_is_refused_without_the_import_right(login, io_world):
    viewer = staff_with(io_world.tenant, ["customers.view_customer"], userid="viewer")
    response = login(viewer).get(IMPORT_PAGE)
    assert response.status_code == 302 and response["Location"] == JOBS
    nav = login(viewer).get(JOBS).content.decode()
    assert IMPORT_PAGE not in nav


def test_an_unreadable_upload_is_a_form_error(login, io_world):
    upload = SimpleUploadedFile("c.xlsx", b"not a workbook")
    response = login(io_world.admin).post(IMPORT_PAGE, {"file": upload})
    assert response.status_code == 200
    assert gettext("This is not an .xlsx workbook: save it as .xlsx or as CSV") in (
        response.content.decode()
    )
    assert not BackgroundJob.objects.for_tenant(io_world.tenant).exists()


def test_the_export_page_is_prefilled_from_the_list_and_starts_an_export(login, io_world):
    client = login(io_world.admin)
    page = client.get(f"{EXPORT_PAGE}?lifecycle_stage__exact=new&channel=poster&q=Ali")
    assert page.status_code == 200
    form = page.context["form"]
    assert (form.initial["stage"], form.initial["channel"], form.initial["q"]) == (
        ["new"],
        "poster",
        "Ali",
    )

    response = client.post(
        EXPORT_PAGE,
        {"format": "csv", "stage": ["new"], "channel": "poster", "columns": ["external_userid"]},
    )

    assert response.status_code == 302
    job = BackgroundJob.objects.for_tenant(io_world.tenant).get(kind="customers.export")
    assert job.params["selection"]["channel"] == "poster"
    assert read_csv(_output(run(job)))[1:] == [["wm-alice"]]


def test_the_customer_lists_action_exports_the_selection(login, io_world):
    client = login(io_world.admin)
    response = client.post(
        changelist_url(Customer),
        {"action": "export_selected_customers", "_selected_action": [io_world.carol.pk]},
    )
    assert response.status_code == 302
    job = BackgroundJob.objects.for_tenant(io_world.tenant).get(kind="customers.export")
    assert job.params["selection"]["customer_ids"] == [io_world.carol.pk]
    assert run(job).result["rows"] == 1


def _output(job: BackgroundJob) -> bytes:
    job.output_file.open("rb")
    try:
        return job.output_file.read()
    finally:
        job.output_file.close()
