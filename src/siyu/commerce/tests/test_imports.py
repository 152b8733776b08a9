"""Order imports: one row per order line grouped into orders, yuan read as exact fen, every
bad row reported and nothing half-imported, idempotent re-imports, encodings and Excel, the
API, rights and tenants."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone, translation
from openpyxl import Workbook

from siyu.commerce import services as commerce
from siyu.commerce.imports import import_orders, parse_fen, parse_time, start_import
from siyu.commerce.models import Order, OrderLine, Refund
from siyu.core.errors import Forbidden, InvalidInput
from siyu.core.jobs import execute_job
from siyu.core.models import BackgroundJob, Event
from siyu.customers import imports as customer_imports
from siyu.tenancy import services as tenancy
from siyu.testing.factories import CustomerFactory, StaffFactory

pytestmark = pytest.mark.django_db

HEADER = [
    "订单号",
    "状态",
    "下单时间",
    "付款时间",
    "客户ID",
    "手机号",
    "渠道",
    "商品编码",
    "商品名称",
    "数量",
    "单价",
    "金额",
    "价格带",
    "品类",
    "退款单号",
    "退款金额",
    "退款时间",
]
# Four orders in seven lines: a paid order whose prices add up exactly (9.90 + 0.10 + 0.20),
# a partially refunded order listing its refund on both its lines, a fully refunded order
# and an unpaid one.
GOOD_ROWS = [
    HEADER,
    ["SO-1", "已付款", "2026-11-20 09:58", "2026-11-20 10:00", "wm-alice", "", "小程序",
     "TRIAL-1", "体验装", "1", "9.90", "", "引流款", "面霜", "", "", ""],
    ["SO-1", "已付款", "", "", "wm-alice", "", "", "GIFT-1", "小样", "1", "0.10", "", "", "",
     "", "", ""],
    ["SO-1", "", "", "", "", "", "", "GIFT-2", "小样", "1", "0.20", "", "", "", "", "", ""],
    ["SO-2", "paid", "2026-11-21 08:00", "2026-11-21 08:01", "", "13800000001", "",
     "CORE-1", "精华", "2", "199.00", "358.20", "利润款", "", "R-1", "50.00", "2026-11-22 12:00"],
    ["SO-2", "", "", "", "", "13800000001", "", "PREM-1", "礼盒", "1", "1,299.00", "",
     "premium", "", "R-1", "50", "2026-11-22 12:00"],
    ["SO-3", "已退款", "2026-11-21 09:00", "2026-11-21 09:05", "", "", "", "TRIAL-1", "体验装",
     "1", "19.99", "", "", "", "R-2", "19.99", "2026-11-23 10:00"],
    ["SO-4", "待付款", "2026-11-24 20:00", "", "", "", "", "CORE-1", "精华", "1", "1.13", "",
     "", "", "", "", ""],
]  # fmt: skip


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    """Job files go to a temporary folder, not the developer's var/media."""
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _reasons_in_english():
    """The report's reasons are compared in the source language."""
    with translation.override("en"):
        yield


@pytest.fixture
def system(tenant):
    return tenancy.system_actor(tenant)


@pytest.fixture
def alice(tenant):
    return CustomerFactory(tenant=tenant, external_userid="wm-alice")


def csv_bytes(rows: list[list[Any]], *, encoding: str = "utf-8") -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode(encoding)


def xlsx_bytes(rows: list[list[Any]]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def run(job: BackgroundJob) -> BackgroundJob:
    """Run a queued job now, in this process (what the worker does)."""
    finished = execute_job(job.tenant_id, job.pk)
    assert finished is not None, "the job was not queued"
    return finished


def start(actor, content: bytes, filename: str = "orders.csv", **options) -> BackgroundJob:
    return start_import(actor, filename=filename, content=content, **options)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return timezone.make_aware(datetime(2026, 11, day, hour, minute))


def order(tenant, shop_order_id: str) -> Order:
    return Order.objects.for_tenant(tenant).get(shop_order_id=shop_order_id)


def lines_of(order: Order) -> list[tuple]:
    return list(
        OrderLine.objects.for_tenant(order.tenant_id)
        .filter(order=order)
        .values_list("sku", "quantity", "unit_price_fen", "amount_fen", "price_tier")
    )


def commerce_state(tenant) -> list[Any]:
    """Everything an order import may write, to compare before and after."""
    return [
        list(Order.objects.for_tenant(tenant).order_by("pk").values()),
        list(OrderLine.objects.for_tenant(tenant).order_by("pk").values()),
        list(Refund.objects.for_tenant(tenant).order_by("pk").values()),
        Event.objects.for_tenant(tenant).count(),
    ]


# --- a good file ------------------------------------------------------------------------------
def test_a_csv_of_order_lines_becomes_orders_with_exact_fen(tenant, system, alice):
    # when: the file of four orders in seven lines is imported
    job = run(start(system, csv_bytes(GOOD_ROWS)))

    # then: four orders were created, and progress counted each row and each order
    assert job.status == BackgroundJob.Status.SUCCEEDED, job.result
    assert job.result == {
        "rows": 7,
        "orders": 4,
        "created": 4,
        "updated": 0,
        "unchanged": 0,
        "stale": 0,
        "dry_run": False,
    }
    assert (job.done, job.total) == (11, 11)
    # and: SO-1's three lines add up exactly (9.90 + 0.10 + 0.20 yuan is 1020 fen, not 1019)
    first = order(tenant, "SO-1")
    assert (first.status, first.total_fen, first.paid_fen, first.customer) == (
        Order.Status.PAID,
        1020,
        1020,
        alice,
    )
    assert (first.placed_at, first.paid_at, first.shop_updated_at) == (
        at(20, 9, 58),
        at(20, 10),
        at(20, 10),
    )
    assert (first.source, first.channel) == ("import", "小程序")
    assert lines_of(first) == [
        ("TRIAL-1", 1, 990, 990, "trial"),
        ("GIFT-1", 1, 10, 10, ""),
        ("GIFT-2", 1, 20, 20, ""),
    ]
    # and: SO-2's refund, listed on both its lines, counts once
    second = order(tenant, "SO-2")
    assert lines_of(second) == [
        ("CORE-1", 2, 19900, 35820, "core"),
        ("PREM-1", 1, 129900, 129900, "premium"),
    ]
    assert (second.status, second.paid_fen, second.refunded_fen, second.net_fen) == (
        Order.Status.PARTIALLY_REFUNDED,
        165720,
        5000,
        160720,
    )
    assert second.customer is None and second.buyer_phone_hash
    # and: SO-3 was refunded in full, SO-4 awaits payment
    third = order(tenant, "SO-3")
    assert (third.status, third.paid_fen, third.refunded_fen) == (Order.Status.REFUNDED, 1999, 1999)
    fourth = order(tenant, "SO-4")
    assert (fourth.status, fourth.total_fen, fourth.paid_fen) == (Order.Status.CREATED, 113, 0)
    assert sorted(
        Refund.objects.for_tenant(tenant).values_list("shop_refund_id", "amount_fen", "order")
    ) == [("R-1", 5000, second.pk), ("R-2", 1999, third.pk)]
    # and: the matched customer's payment is on their timeline
    (paid,) = Event.objects.for_tenant(tenant).filter(type="order.paid")
    assert (paid.customer_id, paid.payload["amount_fen"], paid.source) == (alice.pk, 1020, "import")


def test_an_xlsx_with_excel_times_and_numbers(tenant, system):
    # given: English headers, date cells, numbers Excel stored (=0.1+0.2 is 0.30000000000000004)
    content = xlsx_bytes(
        [
            ["Order ID", "Status", "Updated at", "Paid at", "SKU", "Quantity", "Unit price",
             "Refund ID", "Refund amount", "Refunded at"],
            [20261120001, "paid", datetime(2026, 11, 20, 12, 0), datetime(2026, 11, 20, 10, 0),
             "TRIAL-1", 1, 9.9, None, None, None],
            [20261120001, None, None, None, "GIFT-1", 3.0, 0.1 + 0.2, None, None, None],
            ["SO-X", "refunded", "2026-11-21T10:00:00+08:00", "2026-11-21 09:00", "CORE-1", 1,
             1.13, "R-X", 0.5, date(2026, 11, 21)],
        ]
    )  # fmt: skip

    job = run(start(system, content, "订单.xlsx"))

    assert job.status == BackgroundJob.Status.SUCCEEDED, job.result
    assert job.result["created"] == 2
    first = order(tenant, "20261120001")
    assert lines_of(first) == [("TRIAL-1", 1, 990, 990, ""), ("GIFT-1", 3, 30, 90, "")]
    assert (first.total_fen, first.shop_updated_at, first.paid_at) == (1080, at(20, 12), at(20, 10))
    refunded = order(tenant, "SO-X")
    assert (refunded.status, refunded.paid_fen, refunded.refunded_fen) == (
        Order.Status.PARTIALLY_REFUNDED,
        113,
        50,
    )
    assert refunded.shop_updated_at == at(21, 10)
    assert Refund.objects.for_tenant(tenant).get().refunded_at == at(21, 0)


def test_a_gbk_csv_as_excel_in_china_saves_it(tenant, system):
    content = csv_bytes(GOOD_ROWS, encoding="gbk")
    job = run(start(system, content))
    assert job.status == BackgroundJob.Status.SUCCEEDED, job.result
    assert order(tenant, "SO-1").channel == "小程序"
    assert order(tenant, "SO-2").lines.first().name == "精华"


def test_a_csv_with_the_bom_excel_writes(tenant, system):
    job = run(start(system, b"\xef\xbb\xbf" + csv_bytes(GOOD_ROWS)))
    assert job.result["created"] == 4, job.result


# --- importing again ----------------------------------------------------------------------------
def test_importing_the_same_file_twice_changes_nothing_the_second_time(tenant, system, alice):
    content = csv_bytes(GOOD_ROWS)
    assert run(start(system, content)).result["created"] == 4
    before = commerce_state(tenant)

    again = run(start(system, content))

    assert again.status == BackgroundJob.Status.SUCCEEDED, again.result
    assert again.result == {
        "rows": 7,
        "orders": 4,
        "created": 0,
        "updated": 0,
        "unchanged": 4,
        "stale": 0,
        "dry_run": False,
    }
    assert commerce_state(tenant) == before


def test_a_file_exported_again_after_a_refund_updates_the_order(tenant, system):
    # given: a paid order imported without updated_at (its version is its payment time)
    header = ["订单号", "状态", "付款时间", "商品编码", "单价", "退款单号", "退款金额", "退款时间"]
    paid = ["SO-1", "已付款", "2026-11-20 10:00", "TRIAL-1", "9.90", "", "", ""]
    run(start(system, csv_bytes([header, paid])))
    # when: the shop's next export lists a refund (still no updated_at)
    refunded = ["SO-1", "已付款", "2026-11-20 10:00", "TRIAL-1", "9.90", "R-1", "4.95",
                "2026-11-21 10:00"]  # fmt: skip
    job = run(start(system, csv_bytes([header, refunded])))
    # then: the refund's time is the newer version, so the order is updated
    assert job.result["updated"] == 1, job.result
    first = order(tenant, "SO-1")
    assert (first.refunded_fen, first.shop_updated_at) == (495, at(21, 10))
    # and: the older file is now stale
    assert run(start(system, csv_bytes([header, paid]))).result["stale"] == 1


def test_a_dry_run_checks_everything_and_writes_nothing(tenant, system):
    before = commerce_state(tenant)
    job = run(start(system, csv_bytes(GOOD_ROWS), dry_run=True))
    assert job.status == BackgroundJob.Status.SUCCEEDED, job.result
    assert (job.result["created"], job.result["dry_run"]) == (4, True)
    assert "dry run" in job.label
    assert commerce_state(tenant) == before


# --- bad rows: nothing is imported, every problem is reported ------------------------------------
BAD_HEADER = ["订单号", "状态", "下单时间", "付款时间", "客户ID", "商品编码", "数量", "单价"]


def test_a_file_with_bad_rows_imports_nothing_and_reports_every_bad_row(tenant, system, alice):
    # given: good orders mixed with rows that are each wrong in one way
    content = csv_bytes(
        [
            BAD_HEADER,
            ["", "已付款", "", "2026-11-20 10:00", "", "SKU-1", "1", "9.90"],
            ["SO-B", "已发货", "", "2026-11-20 10:00", "", "SKU-1", "1", "9.90"],
            ["SO-C", "已付款", "", "2026-11-20 10:00", "", "SKU-1", "1", "9.999"],
            ["SO-D", "已付款", "", "2026-11-20 10:00", "", "SKU-1", "1", "-5"],
            ["SO-E", "已付款", "", "2026-11-31 10:00", "", "SKU-1", "1", "9.90"],
            ["SO-F", "已付款", "", "2026-11-20 10:00", "wm-alice", "SKU-1", "1", "9.90"],
            ["SO-F", "", "", "", "wm-bob", "SKU-2", "1", "1.00"],
            ["SO-G", "已付款", "2026-11-20 09:00", "", "", "SKU-1", "1", "9.90"],
            ["SO-H", "已付款", "", "2026-11-20 10:00", "wm-alice", "SKU-1", "2", "9.90"],
        ]
    )
    before = commerce_state(tenant)

    # when
    job = run(start(system, content))

    # then: nothing was written, not even the good order SO-H
    assert job.status == BackgroundJob.Status.FAILED
    assert commerce_state(tenant) == before
    assert job.error == "7 problems in 7 rows: nothing was imported"
    # and: each bad row is named with its column, the reason and the value, in file order
    assert [(e["row"], e["column"], e["reason"], e["value"]) for e in job.result["errors"]] == [
        (2, "订单号", "The order id is required", ""),
        (
            3,
            "状态",
            "The status is one of created, paid, cancelled, refunded "
            "(待付款, 已付款, 已取消, 已退款)",
            "已发货",
        ),
        (4, "单价", "Amounts are in yuan with at most 2 decimals (fen)", "9.999"),
        (5, "单价", "An amount cannot be negative", "-5"),
        (6, "付款时间", "Not a time: write it like 2026-11-20 10:00", "2026-11-31 10:00"),
        (8, "客户ID", "Differs from row 7 of the same order (wm-alice)", "wm-bob"),
        (9, "付款时间", "A paid order needs paid_at", ""),  # refused by ingest_order
    ]
    assert (job.result["error_count"], job.result["rows"]) == (7, 9)
    # and: the same report is the job's file, as a CSV Excel opens
    job.output_file.open("rb")
    report = list(csv.reader(io.StringIO(job.output_file.read().decode("utf-8-sig"))))
    assert report[0] == ["row", "column", "reason", "value"]
    assert report[1] == ["2", "订单号", "The order id is required", ""]
    assert len(report) == 8


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param(
            [["SO-1", "已付款", "2026-11-20 10:00", "TRIAL-1", "9.90", "R-1", "20.00",
              "2026-11-21 10:00"]],
            [(2, "退款金额", "Refunds (2000 fen) exceed what was paid (990 fen)", "20.00")],
            id="refund beyond the amount paid",
        ),
        pytest.param(
            [["SO-1", "已付款", "2026-11-20 10:00", "TRIAL-1", "9.90", "R-1", "1.00",
              "2026-11-21 10:00"],
             ["SO-1", "", "", "GIFT-1", "0", "R-1", "2.00", "2026-11-21 10:00"],
             ["SO-2", "已付款", "2026-11-20 10:00", "TRIAL-1", "9.90", "R-1", "1.00",
              "2026-11-21 10:00"]],
            [(3, "退款金额", "Differs from row 2 of the same refund (1.00)", "2.00"),
             (4, "退款单号", "The refund is already listed for order SO-1 (row 2)", "R-1")],
            id="a refund differing on two lines, and one refund in two orders",
        ),
        pytest.param(
            [["SO-1", "已付款", "2026-11-20 10:00", "TRIAL-1", "9.90", "", "1.00", ""],
             ["SO-2", "已付款", "2026-11-20 10:00", "TRIAL-1", "9.90", "R-2", "", ""]],
            [(2, "退款单号", "A refund needs its refund id", ""),
             (3, "退款金额", "A refund needs its amount", ""),
             (3, "退款时间", "A refund needs its time", "")],
            id="incomplete refunds",
        ),
        pytest.param(
            [["SO-1", "", "2026-11-20 10:00", "TRIAL-1", "9.90", "", "", ""],
             ["SO-2", "paid", "", "TRIAL-1", "9.90", "", "", ""]],
            [(2, "状态", "The order's status is missing (give it on one of its rows)", ""),
             (3, "updated_at", "The order needs a time: updated_at, paid_at or placed_at", "")],
            id="an order without status or time",
        ),
    ],
)  # fmt: skip
def test_orders_that_cannot_be_right_are_reported_at_their_rows(tenant, system, rows, expected):
    header = ["订单号", "状态", "付款时间", "商品编码", "单价", "退款单号", "退款金额", "退款时间"]
    job = run(start(system, csv_bytes([header, *rows])))
    assert job.status == BackgroundJob.Status.FAILED
    assert [(e["row"], e["column"], e["reason"], e["value"]) for e in job.result["errors"]] == (
        expected
    )
    assert not Order.objects.for_tenant(tenant).exists()


def test_what_ingest_order_refuses_against_stored_orders_is_reported(tenant, system):
    # given: a paid order SO-1 with refund R-1, stored earlier
    header = ["订单号", "状态", "更新时间", "付款时间", "商品编码", "单价", "退款单号", "退款金额",
              "退款时间"]  # fmt: skip
    stored = ["SO-1", "已付款", "", "2026-11-20 10:00", "TRIAL-1", "9.90", "R-1", "1.00",
              "2026-11-21 10:00"]  # fmt: skip
    assert run(start(system, csv_bytes([header, stored]))).result["created"] == 1
    before = commerce_state(tenant)
    # when: a file cancels the paid order, and lists R-1 under another order
    content = csv_bytes(
        [
            header,
            ["SO-1", "已取消", "2026-11-22 10:00", "", "TRIAL-1", "9.90", "", "", ""],
            ["SO-2", "已付款", "", "2026-11-20 10:00", "TRIAL-1", "9.90", "", "", ""],
            ["SO-2", "", "", "", "GIFT-1", "0", "R-1", "1.00", "2026-11-21 10:00"],
        ]
    )
    job = run(start(system, content))
    # then: both are reported at the rows they came from, and nothing changed
    assert [(e["row"], e["column"], e["reason"], e["value"]) for e in job.result["errors"]] == [
        (
            2,
            "状态",
            "Order SO-1 was paid; it cannot become unpaid or cancelled. Send its refunds instead.",
            "已取消",
        ),
        (4, "退款单号", "Refund R-1 belongs to another order", "R-1"),
    ]
    assert commerce_state(tenant) == before


def test_columns_the_import_does_not_know_fail_it_before_any_row(system):
    content = csv_bytes([["订单号", "状态", "鞋码", "order_id"], ["SO-1", "paid", "42", "SO-1"]])
    job = run(start(system, content))
    assert job.status == BackgroundJob.Status.FAILED
    assert job.error == "The columns of the file are not right: nothing was imported"
    assert [(e["row"], e["column"], e["reason"]) for e in job.result["errors"]] == [
        (1, "鞋码", "Unknown column: not an order column"),
        (1, "order_id", "Repeats the column 订单号"),
        (1, "sku", "This column is required"),
    ]
    assert "refund_id" in job.result["accepted_columns"]


@pytest.mark.parametrize(
    ("cell", "fen"),
    [
        ("9.90", 990),
        ("0.29", 29),  # float: 0.29 * 100 = 28.999999999999996
        ("19.99", 1999),
        ("1.13", 113),
        ("9.900", 990),  # three decimals written, still whole fen
        ("¥1,299.00", 129900),
        ("12元", 1200),
        ("0", 0),
        (9.9, 990),
        (0.1 + 0.2, 30),  # as Excel stores =0.1+0.2
        (5, 500),
    ],
)
def test_yuan_become_exact_fen(cell, fen):
    assert parse_fen(cell, str(cell)) == fen


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("9.999", "Amounts are in yuan with at most 2 decimals (fen)"),
        (0.005, "Amounts are in yuan with at most 2 decimals (fen)"),
        ("-0.01", "An amount cannot be negative"),
        (-1.5, "An amount cannot be negative"),
        ("abc", "Not an amount: write yuan like 9.90"),
        ("1e3", "Not an amount: write yuan like 9.90"),
        ("99999999999", "The amount is too large: is it in yuan?"),
    ],
)
def test_amounts_that_are_not_whole_fen_are_refused(cell, reason):
    with pytest.raises(InvalidInput) as refused:
        parse_fen(cell, str(cell))
    assert refused.value.message == reason


@pytest.mark.parametrize(
    ("cell", "moment"),
    [
        ("2026-11-20 10:00", datetime(2026, 11, 20, 2, 0, tzinfo=UTC)),
        ("2026/11/20 10:00:30", datetime(2026, 11, 20, 2, 0, 30, tzinfo=UTC)),
        ("2026-11-20T10:00:00+08:00", datetime(2026, 11, 20, 2, 0, tzinfo=UTC)),
        ("2026-11-20T02:00:00Z", datetime(2026, 11, 20, 2, 0, tzinfo=UTC)),
        ("2026年11月20日 10:00", datetime(2026, 11, 20, 2, 0, tzinfo=UTC)),
        ("2026-11-20", datetime(2026, 11, 19, 16, 0, tzinfo=UTC)),
        (datetime(2026, 11, 20, 10, 0), datetime(2026, 11, 20, 2, 0, tzinfo=UTC)),
        (46346.5, datetime(2026, 11, 20, 4, 0, tzinfo=UTC)),  # an Excel date number
    ],
)
def test_times_in_the_spellings_shops_and_excel_use(cell, moment, settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    with timezone.override("Asia/Shanghai"):
        assert parse_time(cell, str(cell)) == moment


@pytest.mark.parametrize("cell", ["yesterday", "2026-13-01 10:00", "2026-11-20 25:00", "10:00"])
def test_text_that_is_not_a_time_is_refused(cell):
    with pytest.raises(InvalidInput, match="Not a time"):
        parse_time(cell, cell)


def test_a_too_large_or_empty_upload_is_refused_at_once(tenant, system, monkeypatch):
    monkeypatch.setattr(customer_imports, "MAX_FILE_BYTES", 10)  # the shared upload limit
    with pytest.raises(InvalidInput, match="larger than 0 MB"):
        start(system, csv_bytes(GOOD_ROWS))
    with pytest.raises(InvalidInput, match="empty"):
        start(system, b"")
    assert not BackgroundJob.objects.for_tenant(tenant).exists()


def test_a_file_without_rows_is_refused(system):
    with pytest.raises(InvalidInput, match="no rows"):
        import_orders(system, csv_bytes([HEADER]), filename="x.csv")


# --- rights and tenants -------------------------------------------------------------------------
def test_importing_needs_the_order_rights_and_the_whole_tenant(tenant):
    sales = StaffFactory(tenant=tenant, roles=["sales"], wecom_userid="sales-x")
    with pytest.raises(Forbidden, match=r"commerce\.add_order"):
        start(tenancy.actor_for_staff(sales), csv_bytes(GOOD_ROWS))
    system = tenancy.system_actor(tenant)
    tenancy.create_role(
        tenant, code="shop-own", name="shop-own", permissions=["commerce.*"], data_scope="own",
        by=system,
    )  # fmt: skip
    narrow = StaffFactory(tenant=tenant, roles=["shop-own"], wecom_userid="shop-own")
    with pytest.raises(Forbidden, match="whole tenant"):
        start(tenancy.actor_for_staff(narrow), csv_bytes(GOOD_ROWS))
    operator = StaffFactory(tenant=tenant, roles=["operator"], wecom_userid="op")
    job = run(start(tenancy.actor_for_staff(operator), csv_bytes(GOOD_ROWS)))
    assert job.result["created"] == 4, job.result


def test_an_import_into_one_tenant_never_touches_another(tenant, other_tenant, system):
    # given: tenant B has its own SO-2 with refund R-1, and a customer wm-alice
    CustomerFactory(tenant=other_tenant, external_userid="wm-alice")
    commerce.ingest_order(
        other_tenant,
        commerce.OrderIn(
            shop_order_id="SO-2",
            status="paid",
            updated_at=at(1, 10),
            paid_at=at(1, 10),
            lines=(commerce.LineIn(sku="B-1", unit_price_fen=100_00),),
            refunds=(commerce.RefundIn(refund_id="R-1", amount_fen=10_00, refunded_at=at(2, 10)),),
        ),
    )
    before = commerce_state(other_tenant)

    # when: tenant A imports orders with the same ids, refund ids and buyer
    job = run(start(system, csv_bytes(GOOD_ROWS)))

    # then: A has its own orders, none matched to B's customer, and B is untouched
    assert job.result["created"] == 4, job.result
    assert commerce_state(other_tenant) == before
    assert order(tenant, "SO-1").customer is None
    assert order(tenant, "SO-2").refunded_fen == 5000
    assert Order.objects.for_tenant(other_tenant).count() == 1


# --- the API ------------------------------------------------------------------------------------
def upload(raw_key: str, content: bytes, name: str = "orders.csv", **fields):
    return Client().post(
        "/api/v1/commerce/orders/import",
        {"file": SimpleUploadedFile(name, content), **fields},
        headers={"Authorization": f"Bearer {raw_key}", "Accept-Language": "en"},
    )


def test_an_upload_starts_an_import_that_runs_to_the_end(
    tenant, api_key_for, api, django_capture_on_commit_callbacks
):
    # when: a file is uploaded (the job is queued on commit and runs inline in tests)
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(api_key_for(tenant, ["orders:import"]), csv_bytes(GOOD_ROWS))

    # then: 202 with the queued job, which has since succeeded
    assert response.status_code == 202, response.content
    started = response.json()
    assert (started["kind"], started["status"]) == ("orders.import", "queued")
    job = api.get(f"/jobs/{started['id']}").json()
    assert (job["status"], job["percent"]) == ("succeeded", 100)
    assert job["result"]["created"] == 4
    assert Order.objects.for_tenant(tenant).count() == 4


def test_a_bad_upload_reports_its_rows_through_the_job(
    tenant, api_key_for, api, django_capture_on_commit_callbacks
):
    content = csv_bytes([BAD_HEADER, ["SO-1", "已付款", "", "2026-11-20 10:00", "", "S", "1", "x"]])
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(api_key_for(tenant, ["orders:import"]), content, dry_run="true")
    job_id = response.json()["id"]

    body = api.get(f"/jobs/{job_id}").json()

    assert body["status"] == "failed"
    assert [(e["row"], e["column"], e["value"]) for e in body["result"]["errors"]] == [
        (2, "单价", "x")
    ]
    assert api.get(body["download_url"]).status_code == 200


def test_an_xlsx_upload_that_is_no_workbook_is_a_clear_400(tenant, api_key_for):
    response = upload(api_key_for(tenant, ["orders:import"]), b"not a workbook", "o.xlsx")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unreadable_file"


def test_the_import_scope_and_the_staffs_right_are_needed(tenant, api_key_for, sales_staff):
    without_scope = upload(api_key_for(tenant, ["orders:read"]), csv_bytes(GOOD_ROWS))
    assert without_scope.status_code == 403
    assert without_scope.json()["error"]["details"] == {"required_scope": "orders:import"}
    sales_key = api_key_for(tenant, ["orders:import"], staff=sales_staff)
    without_right = upload(sales_key, csv_bytes(GOOD_ROWS))
    assert without_right.status_code == 403
    assert not BackgroundJob.objects.for_tenant(tenant).exists()


def test_a_key_imports_into_its_own_tenant(
    tenant, other_tenant, api_key_for, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(api_key_for(other_tenant, ["orders:import"]), csv_bytes(GOOD_ROWS))
    assert response.status_code == 202
    assert Order.objects.for_tenant(other_tenant).count() == 4
    assert not Order.objects.for_tenant(tenant).exists()
    assert not BackgroundJob.objects.for_tenant(tenant).exists()


def test_the_report_speaks_the_console_language(system):
    content = csv_bytes([["订单号", "状态", "付款时间", "手机号", "商品编码"],
                         ["SO-1", "已付款", "2026-11-20 10:00", "12345", "S"]])  # fmt: skip
    with translation.override("zh-hans"):
        job = run(start(system, content))
        expected = translation.gettext("%(value)s is not a mobile phone number") % {
            "value": "12345"
        }
    assert expected != "12345 is not a mobile phone number"
    assert [e["reason"] for e in job.result["errors"]] == [expected]


def test_the_order_rows_are_numbered_as_the_spreadsheet_shows_them(tenant, system):
    # a blank line and a quoted cell over two lines keep the spreadsheet's numbering
    late = ["SO-9", "paid", "", "2026-11-20 10:00", "", "", "", "S", "a\nb", "1", "x"]
    content = csv_bytes(GOOD_ROWS[:2]) + b"\n" + csv_bytes([late + [""] * 6])
    job = run(start(system, content))
    assert [(e["row"], e["column"]) for e in job.result["errors"]] == [(4, "单价")]


def test_the_worker_knows_the_order_import_job():
    """The worker imports each domain's tasks module: the runner must be registered there,
    not only by the API module that starts the job."""
    import subprocess
    import sys

    code = (
        "import django; django.setup(); from siyu.core import jobs; "
        "print('orders.import' in jobs._runners)"
    )
    answer = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert answer.stdout.strip() == "True"
