"""POST /customers/imports: a multipart upload that starts an import job (202)."""

from __future__ import annotations

import pytest
from django.test import Client

from siyu.core.models import BackgroundJob
from siyu.customers import imports
from siyu.customers.tests import support_io
from siyu.customers.tests.support_io import csv_bytes, run, staff_with

io_world = support_io.io_world  # fixtures
_media = support_io._media

GOOD = csv_bytes([["外部联系人ID", "城市"], ["wm-bob", "昆明"]])


def upload(raw_key: str, content: bytes, name: str = "c.csv", **fields) -> object:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return Client().post(
        "/api/v1/customers/imports",
        {"file": SimpleUploadedFile(name, content), **fields},
        headers={"Authorization": f"Bearer {raw_key}", "Accept-Language": "en"},
    )


def test_an_upload_starts_an_import_and_the_job_reports_it(api_key_for, api, io_world):
    response = upload(api_key_for(io_world.tenant, ["customers:import", "jobs:read"]), GOOD)

    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["kind"], body["status"]) == ("customers.import", "queued")
    run(BackgroundJob.objects.for_tenant(io_world.tenant).get(pk=body["id"]))
    assert api.get(f"/jobs/{body['id']}").json()["result"]["updated"] == 1
    assert io_world.refresh(io_world.bob).city == "昆明"


def test_a_dry_run_and_creating_missing_customers_are_form_fields(api_key_for, io_world):
    key = api_key_for(io_world.tenant, ["customers:import"])
    response = upload(key, GOOD, dry_run="true", create_missing="true")
    job = BackgroundJob.objects.for_tenant(io_world.tenant).get(pk=response.json()["id"])
    assert (job.params["dry_run"], job.params["create_missing"]) == (True, True)


def test_a_bad_file_reports_its_rows_through_the_job(api_key_for, api, io_world):
    content = csv_bytes([["外部联系人ID", "生日"], ["wm-bob", "昨天"], ["wm-x", ""]])
    job_id = upload(api_key_for(io_world.tenant, ["customers:import"]), content).json()["id"]
    run(BackgroundJob.objects.for_tenant(io_world.tenant).get(pk=job_id))

    body = api.get(f"/jobs/{job_id}").json()

    assert body["status"] == "failed"
    assert [(e["row"], e["column"]) for e in body["result"]["errors"]] == [
        (2, "生日"),
        (3, "外部联系人ID"),
    ]
    report = api.get(body["download_url"])
    assert report.status_code == 200


@pytest.mark.parametrize(
    ("content", "name", "status", "code"),
    [
        (b"", "c.csv", 400, "invalid"),
        (b"not a workbook", "c.xlsx", 400, "unreadable_file"),
    ],
)
def test_unreadable_uploads_are_a_clear_4xx(api_key_for, io_world, content, name, status, code):
    response = upload(api_key_for(io_world.tenant, ["customers:import"]), content, name)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_a_too_large_upload_is_refused_before_reading_it(api_key_for, io_world, monkeypatch):
    monkeypatch.setattr(imports, "MAX_FILE_BYTES", 10)
    response = upload(api_key_for(io_world.tenant, ["customers:import"]), GOOD)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "file_too_large"


def test_the_file_is_required(api_key_for, io_world):
    response = Client().post(
        "/api/v1/customers/imports",
        {},
        headers={"Authorization": f"Bearer {api_key_for(io_world.tenant, ['customers:import'])}"},
    )
    assert response.status_code == 422


def test_the_import_scope_and_the_staffs_right_are_needed(api_key_for, io_world):
    without_scope = upload(api_key_for(io_world.tenant, ["customers:read"]), GOOD)
    assert without_scope.status_code == 403
    viewer = staff_with(io_world.tenant, ["customers.view_customer"], userid="viewer")
    without_right = upload(api_key_for(io_world.tenant, ["customers:import"], staff=viewer), GOOD)
    assert without_right.status_code == 403
    assert not BackgroundJob.objects.for_tenant(io_world.tenant).exists()
