"""The jobs API: list, progress, download, cancel; scopes; other staff and other tenants 404."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import translation
from django.utils.translation import gettext

from siyu.core.jobs import start_job
from siyu.core.models import BackgroundJob
from siyu.core.tests import test_jobs  # noqa: F401  (registers the "test.scripted" runner)
from siyu.customers.exports import start_export
from siyu.customers.models import Customer
from siyu.customers.tests import support_io
from siyu.customers.tests.support_io import read_csv, run, staff_with
from siyu.tenancy import services

io_world = support_io.io_world  # fixtures
_media = support_io._media


@pytest.fixture
def exporter(io_world):
    staff = staff_with(io_world.tenant, ["customers.*", "core.export_data"], userid="exporter")
    Customer.objects.for_tenant(io_world.tenant).filter(pk=io_world.bob.pk).update(owner=staff)
    return staff


@pytest.fixture
def export_job(exporter):
    return run(start_export(services.actor_for_staff(exporter), {"format": "csv"}))


def test_a_staff_key_lists_its_staffs_jobs_only(api_as, io_world, exporter, export_job):
    start_export(services.system_actor(io_world.tenant), {"format": "csv"})
    items = api_as(io_world.tenant, ["jobs:read"], staff=exporter).walk("/jobs")
    assert [item["id"] for item in items] == [export_job.pk]
    item = items[0]
    assert item["status"] == "succeeded"
    assert (item["done"], item["total"], item["percent"]) == (1, 1, 100)
    assert item["result"] == {"rows": 1, "format": "csv", "columns": 25}
    assert item["started_by"] == exporter.pk
    assert item["download_url"] == f"/api/v1/jobs/{export_job.pk}/download"


def test_a_tenant_key_sees_every_job_and_filters_them(api, io_world, export_job):
    queued = start_export(services.system_actor(io_world.tenant), {"format": "csv"})
    assert {item["id"] for item in api.walk("/jobs")} == {export_job.pk, queued.pk}
    assert [item["id"] for item in api.walk("/jobs", status="queued")] == [queued.pk]
    assert api.walk("/jobs", kind="customers.import") == []


def test_polling_a_job_shows_its_progress(api, io_world):
    job = start_export(services.system_actor(io_world.tenant), {"format": "xlsx"})
    before = api.get(f"/jobs/{job.pk}").json()
    assert (before["status"], before["percent"], before["download_url"]) == ("queued", None, None)
    run(job)
    after = api.get(f"/jobs/{job.pk}").json()
    assert (after["status"], after["percent"], after["done"]) == ("succeeded", 100, 3)


def test_the_download_returns_the_file(api_as, io_world, exporter, export_job):
    response = api_as(io_world.tenant, ["jobs:read"], staff=exporter).get(
        f"/jobs/{export_job.pk}/download"
    )
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="customers-')
    assert read_csv(b"".join(response.streaming_content))[1][1] == "wm-bob"


@pytest.mark.parametrize("who", ["another staff", "another tenant"])
def test_another_staff_or_tenant_gets_404(api_as, io_world, other_tenant, export_job, who):
    if who == "another staff":
        client = api_as(io_world.tenant, ["jobs:read", "jobs:write"], staff=io_world.sales)
    else:
        client = api_as(other_tenant, ["jobs:read", "jobs:write"])
    for response in (
        client.get(f"/jobs/{export_job.pk}"),
        client.get(f"/jobs/{export_job.pk}/download"),
        client.post(f"/jobs/{export_job.pk}/cancel"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_the_download_of_a_job_without_a_file_is_404(api, io_world):
    job = start_export(services.system_actor(io_world.tenant), {"format": "xlsx"})
    response = api.get(f"/jobs/{job.pk}/download")
    assert response.status_code == 404


def test_cancelling_through_the_api(api, io_world, export_job):
    job = start_export(services.system_actor(io_world.tenant), {"format": "xlsx"})
    response = api.post(f"/jobs/{job.pk}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    again = api.post(f"/jobs/{job.pk}/cancel")
    assert again.status_code == 409
    assert api.post(f"/jobs/{export_job.pk}/cancel").status_code == 409


@pytest.mark.parametrize(
    ("scopes", "method", "path"),
    [
        (["customers:read"], "GET", "/jobs"),
        (["customers:read"], "GET", "/jobs/{id}"),
        (["customers:read"], "GET", "/jobs/{id}/download"),
        (["jobs:read"], "POST", "/jobs/{id}/cancel"),
    ],
)
def test_keys_need_the_jobs_scopes(api_as, io_world, export_job, scopes, method, path):
    client = api_as(io_world.tenant, scopes)
    response = client.request(method, path.format(id=export_job.pk))
    assert response.status_code == 403
    assert response.json()["error"]["details"]["required_scope"] in ("jobs:read", "jobs:write")


def test_a_bugs_trace_is_not_shown_to_api_clients(api, io_world):
    job = start_job(
        services.system_actor(io_world.tenant), "test.scripted", "bug", params={"script": "bug"}
    )
    run(job)
    body = api.get(f"/jobs/{job.pk}").json()
    assert body["status"] == "failed"
    assert body["result"] == {}
    with translation.override("zh-hans"):  # stored in the worker's (the default) language
        expected = gettext("The job failed unexpectedly; the details are in the worker's log.")
    assert body["error"] == expected


def test_a_console_session_follows_its_jobs(session_api, exporter, export_job):
    exporter_login = staff_with(exporter.tenant, ["core.export_data"], userid="withlogin")
    job = run(start_export(services.actor_for_staff(exporter_login), {"format": "csv"}))
    client = session_api(exporter_login)
    assert [item["id"] for item in client.walk("/jobs")] == [job.pk]
    assert client.get(f"/jobs/{export_job.pk}").status_code == 404


def test_anonymous_callers_are_refused(export_job):
    response = Client().get(f"/api/v1/jobs/{export_job.pk}")
    assert response.status_code == 401
    assert BackgroundJob.objects.for_tenant(export_job.tenant_id).count() == 1
