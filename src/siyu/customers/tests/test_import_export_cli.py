"""``siyu customers import|export`` and ``siyu jobs``: progress, the report on failure, exit
codes, and a staff's scope with ``--as``."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from siyu.cli import main
from siyu.core.models import BackgroundJob
from siyu.customers.models import Customer
from siyu.customers.tests import support_io
from siyu.customers.tests.support_io import csv_bytes, customer_state, read_csv, staff_with

io_world = support_io.io_world  # fixtures
_media = support_io._media


@pytest.fixture
def siyu(db):
    runner = CliRunner(env={"LC_ALL": "", "LC_MESSAGES": "", "LANG": "en_US.UTF-8"})

    def run(*args):
        return runner.invoke(main, [str(arg) for arg in args], catch_exceptions=False)

    return run


def test_import_a_good_file(siyu, io_world, tmp_path):
    path = tmp_path / "customers.csv"
    path.write_bytes(
        csv_bytes([["外部联系人ID", "城市", "标签"], ["wm-bob", "青岛", "茶"]], encoding="gbk")
    )

    result = siyu("customers", "import", path, "--tenant", "brand-a")

    assert result.exit_code == 0, result.output
    assert "Imported 1 rows: 0 new, 1 changed, 0 unchanged" in result.output
    bob = io_world.refresh(io_world.bob)
    assert bob.city == "青岛" and io_world.tags_of(bob) == {"茶"}
    job = BackgroundJob.objects.for_tenant(io_world.tenant).get()
    assert (job.status, job.params["_actor"]["channel"]) == ("succeeded", "cli")


def test_a_bad_file_prints_every_problem_and_exits_non_zero(siyu, io_world, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(
        csv_bytes([["外部联系人ID", "生日", "手机号"], ["wm-bob", "soon", ""], ["wm-zz", "", "1"]])
    )
    before = customer_state(io_world.tenant)

    result = siyu("customers", "import", path, "--tenant", "brand-a")

    assert result.exit_code == 1
    assert "3 problems in 2 rows: nothing was imported" in result.output
    assert "row 2, 生日: Not a date: write it like 2026-01-31 (soon)" in result.output
    assert "row 3, 手机号: 1 is not a mobile phone number (1)" in result.output
    assert "row 3, 外部联系人ID: No customer with this external_userid" in result.output
    assert customer_state(io_world.tenant) == before


def test_a_dry_run_writes_nothing(siyu, io_world, tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes(csv_bytes([["external_userid", "city"], ["wm-bob", "大连"]]))
    result = siyu("customers", "import", path, "--tenant", "brand-a", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Checked 1 rows" in result.output and "dry run" in result.output
    assert io_world.refresh(io_world.bob).city == ""


def test_import_as_a_staff_without_the_right_is_refused(siyu, io_world, tmp_path):
    staff_with(io_world.tenant, ["customers.view_customer"], userid="viewer", login=False)
    path = tmp_path / "c.csv"
    path.write_bytes(csv_bytes([["external_userid", "city"], ["wm-bob", "x"]]))
    result = siyu("customers", "import", path, "--tenant", "brand-a", "--as", "viewer")
    assert result.exit_code == 1
    assert "customers.import_customer" in result.output


def test_unknown_tenant_and_missing_file(siyu, io_world, tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes(b"external_userid\nwm-bob\n")
    assert siyu("customers", "import", path, "--tenant", "nope").exit_code == 1
    assert (
        siyu("customers", "import", tmp_path / "missing.csv", "--tenant", "brand-a").exit_code == 2
    )


@pytest.mark.parametrize("name", ["out.xlsx", "out.csv"])
def test_export_writes_the_file(siyu, io_world, tmp_path, name):
    output = tmp_path / name
    result = siyu(
        "customers",
        "export",
        "--tenant",
        "brand-a",
        "-o",
        output,
        "--columns",
        "external_userid,city",
    )
    assert result.exit_code == 0, result.output
    assert f"Wrote 3 customers to {output}" in result.output
    if name.endswith(".csv"):
        rows = read_csv(output.read_bytes())
        assert sorted(row[0] for row in rows[1:]) == ["wm-alice", "wm-bob", "wm-carol"]
    else:
        sheet = load_workbook(output, read_only=True).worksheets[0]
        assert len(list(sheet.iter_rows())) == 4


def test_export_as_a_staff_holds_their_customers(siyu, io_world, tmp_path):
    exporter = staff_with(
        io_world.tenant, ["customers.*", "core.export_data"], userid="exp", login=False
    )
    Customer.objects.for_tenant(io_world.tenant).filter(pk=io_world.bob.pk).update(owner=exporter)
    output = tmp_path / "mine.csv"
    result = siyu(
        "customers",
        "export",
        "--tenant",
        "brand-a",
        "--as",
        "exp",
        "-o",
        output,
        "--columns",
        "external_userid",
    )
    assert result.exit_code == 0, result.output
    assert read_csv(output.read_bytes())[1:] == [["wm-bob"]]


def test_export_with_a_bad_column_fails_clearly(siyu, io_world, tmp_path):
    result = siyu(
        "customers", "export", "--tenant", "brand-a", "-o", tmp_path / "x.csv", "--columns", "shoe"
    )
    assert result.exit_code == 1
    assert "Unknown columns: shoe" in result.output


def test_jobs_list_and_cancel(siyu, io_world, tmp_path):
    from siyu.customers.exports import start_export
    from siyu.tenancy import services

    queued = start_export(services.system_actor(io_world.tenant), {"format": "csv"})
    listed = siyu("jobs", "list", "--tenant", "brand-a")
    assert listed.exit_code == 0
    assert f"{queued.pk}\tqueued\t-\tcustomers.export\t" in listed.output

    cancelled = siyu("jobs", "cancel", "--tenant", "brand-a", queued.pk)
    assert cancelled.exit_code == 0, cancelled.output
    again = siyu("jobs", "cancel", "--tenant", "brand-a", queued.pk)
    assert again.exit_code == 1 and "already finished" in again.output
