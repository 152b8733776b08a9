"""Order imports: a CSV or Excel file of the shop's orders, as a background job
(``orders.import``) with a validation report — the customers' importer's rules
(``siyu.customers.imports``) applied to orders.

The file has one row per order LINE, as shops export them; the rows of one ``order_id`` are
one order (its lines in file order). Order columns (status, times, buyer, channel) may be
given on every row of the order or on one of them; where two rows of one order both give
one, they must agree. A refund may be listed on several rows of its order: it counts once,
by its ``refund_id``. Amounts are in yuan in the file (``9.90``) and become integer fen
exactly (``Decimal``, never a float): an amount that is not a whole number of fen, or is
negative, is an error, never rounded.

All or nothing. The first pass reads and checks every cell and every order, and collects
every problem (row as the spreadsheet shows it, column as written in the file, reason,
value). Then every order the first pass found sound goes through
``services.ingest_order(…, source="import")`` — the one writer of orders — inside ONE
transaction; what it refuses (a paid order without ``paid_at``, refunds beyond the amount
paid, a refund id of another order, a paid order turned cancelled …) is added to the report
at the rows of that order. If there is any problem, or the import is a dry run, the
transaction is rolled back: nothing is written, and a failed job's result is the whole
report (its output file is the report as CSV). The limits of the customers' importer apply
(``MAX_FILE_BYTES``, and its rows and columns per file).

``updated_at`` is the shop's version of the order (``ingest_order`` ignores an older version
and answers ``unchanged`` for the same one, so importing a file twice changes nothing). When
the file has no ``updated_at``, the version is the latest time the row gives (placed, paid,
cancelled, refunded), so a file exported again after a refund updates the order.

Importing orders needs ``commerce.add_order`` and ``commerce.change_order`` and a whole-
tenant data scope: an order import writes the shop's orders of every customer, as the
shop's webhook does.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from datetime import timezone as fixed_offset
from decimal import Decimal, InvalidOperation
from typing import Any, get_args

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from siyu.commerce import services
from siyu.core.errors import Forbidden, InvalidInput, ServiceError
from siyu.core.jobs import Progress, job_actor, job_runner, start_job
from siyu.core.models import BackgroundJob
from siyu.core.scoping import DataScope
from siyu.customers import imports as customer_imports
from siyu.customers import profiles
from siyu.customers.imports import Problem, Table, checked_upload, read_table, report_csv
from siyu.customers.io_columns import normalise_header, unguard_formula
from siyu.tenancy.actor import Actor

KIND = "orders.import"
SOURCE = "import"
IMPORT_PERMISSION = "commerce.add_order"
CHANGE_PERMISSION = "commerce.change_order"
# The customers' importer's limits (one transaction writes the whole file); its rows and
# columns per file are checked by its ``read_table``.
MAX_FILE_BYTES = customer_imports.MAX_FILE_BYTES
VALUE_IN_REPORT = customer_imports.VALUE_IN_REPORT
MAX_QUANTITY = 1_000_000
ID_MAX = 64


# --- the columns ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """A column of the file: its key (also its English header: ``Order ID``, ``order-id``
    and ``ORDER_ID`` all match ``order_id``), other accepted headers, what it describes."""

    key: str
    aliases: tuple[str, ...]
    level: str  # "order", "line" or "refund"
    required: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("order_id", ("订单号", "订单编号", "shop_order_id"), "order", required=True),
    Column("status", ("状态", "订单状态"), "order", required=True),
    Column("updated_at", ("更新时间",), "order"),
    Column("placed_at", ("下单时间",), "order"),
    Column("paid_at", ("付款时间", "支付时间"), "order"),
    Column("cancelled_at", ("取消时间",), "order"),
    Column("buyer_external_userid", ("客户ID", "外部联系人ID", "external_userid"), "order"),
    Column("buyer_unionid", ("unionid",), "order"),
    Column("buyer_phone", ("手机号", "phone"), "order"),
    Column("channel", ("渠道", "销售渠道"), "order"),
    Column("sku", ("商品编码",), "line", required=True),
    Column("name", ("商品名称", "product_name"), "line"),
    Column("quantity", ("数量",), "line"),
    Column("unit_price", ("单价",), "line"),
    Column("amount", ("金额",), "line"),
    Column("price_tier", ("价格带",), "line"),
    Column("category", ("品类",), "line"),
    Column("refund_id", ("退款单号",), "refund"),
    Column("refund_amount", ("退款金额",), "refund"),
    Column("refunded_at", ("退款时间",), "refund"),
)
ORDER_KEYS = tuple(column.key for column in COLUMNS if column.level == "order")
TIME_KEYS = ("updated_at", "placed_at", "paid_at", "cancelled_at", "refunded_at")
MONEY_KEYS = ("unit_price", "amount", "refund_amount")
TEXT_LIMITS = {
    "order_id": ID_MAX,
    "buyer_unionid": ID_MAX,
    "channel": 64,
    "sku": ID_MAX,
    "name": 200,
    "category": 100,
    "refund_id": ID_MAX,
}

# The shop's statuses, as ``ingest_order`` takes them, and how files spell them. A
# partially refunded order is "refunded" with refunds short of the amount paid.
STATUSES = {
    "created": ("待付款", "待支付", "未付款"),
    "paid": ("已付款", "已支付"),
    "cancelled": ("已取消", "canceled"),
    "refunded": ("已退款", "partially_refunded", "部分退款"),
}
PRICE_TIERS = {"trial": ("引流款",), "core": ("利润款",), "premium": ("形象款",)}

TIME_PATTERN = re.compile(
    r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})"
    r"(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$"
)
MONEY_PATTERN = re.compile(r"^(\d+(\.\d*)?|\.\d+)$")
THOUSANDS_PATTERN = re.compile(r"^\d{1,3}(,\d{3})+(\.\d*)?$")
EXCEL_SERIALS = (1, 2_958_465)  # 1900-01-01 … 9999-12-31 as Excel numbers its days


def header_keys() -> dict[str, str]:
    """Normalised header → column key (every accepted spelling)."""
    headers: dict[str, str] = {}
    for column in COLUMNS:
        for name in (column.key, *column.aliases):
            headers.setdefault(normalise_header(name), column.key)
    return headers


# --- starting an import ------------------------------------------------------------------------
def start_import(
    actor: Actor,
    *,
    filename: str,
    content: bytes,
    dry_run: bool = False,
    enqueue: bool = True,
) -> BackgroundJob:
    """Queue the import of ``content`` (a CSV or .xlsx file of order lines) for ``actor``.

    The file's size and kind are checked here, so that an obviously wrong upload is refused
    at once; the rows are checked by the job.
    """
    require_import_rights(actor)
    filename, file_format = checked_upload(filename, content, "orders.csv")
    label = _("Import orders from %(file)s") % {"file": filename}
    if dry_run:
        label = _("Check orders in %(file)s (dry run)") % {"file": filename}
    return start_job(
        actor,
        KIND,
        label,
        params={"filename": filename, "format": file_format, "dry_run": bool(dry_run)},
        input_name=filename,
        input_content=content,
        enqueue=enqueue,
    )


def require_import_rights(actor: Actor) -> None:
    for permission in (IMPORT_PERMISSION, CHANGE_PERMISSION):
        if not actor.has_perm(permission):
            raise Forbidden(
                _("Your role does not allow this (needs '%(permission)s')")
                % {"permission": permission},
                details={"required_permission": permission},
            )
    if actor.data_scope != DataScope.TENANT:
        raise Forbidden(
            _("Only staff who see the whole tenant's customers may import orders"),
            details={"required_data_scope": str(DataScope.TENANT)},
        )


# --- the job ---------------------------------------------------------------------------------
@job_runner(KIND)
def run_import(job: BackgroundJob, progress: Progress) -> dict[str, Any]:
    actor = job_actor(job)
    job.input_file.open("rb")
    try:
        content = job.input_file.read()
    finally:
        job.input_file.close()
    return import_orders(
        actor,
        content,
        filename=job.params.get("filename", ""),
        dry_run=bool(job.params.get("dry_run")),
        progress=progress,
    )


def import_orders(
    actor: Actor,
    content: bytes,
    *,
    filename: str = "",
    dry_run: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Check every row and order, then apply every order in one transaction (or nothing:
    ``InvalidInput`` whose details hold the report). Returns the counts for the job."""
    require_import_rights(actor)
    table = read_table(filename, content)
    columns = map_columns(table.headers)
    check = Check(columns)
    orders = read_orders(table, check)
    if progress:
        progress.set_total(len(table.rows) + len(orders))
        progress.advance(len(table.rows))
    outcomes = apply_orders(actor, orders, check, progress, dry_run=dry_run)
    if check.problems:
        report = sorted(check.problems, key=lambda problem: problem.row)  # stable: file order
        if progress:
            progress.save_output("import-errors.csv", report_csv(report))
        raise InvalidInput(
            _("%(count)d problems in %(rows)d rows: nothing was imported")
            % {"count": len(report), "rows": len({problem.row for problem in report})},
            code="import_invalid",
            details={
                "errors": [problem.as_dict() for problem in report],
                "error_count": len(report),
                "rows": len(table.rows),
            },
        )
    return {
        "rows": len(table.rows),
        "orders": len(orders),
        **{outcome: outcomes.count(outcome) for outcome in get_args(services.Outcome)},
        "dry_run": dry_run,
    }


# --- columns and problems ---------------------------------------------------------------------
@dataclass
class Check:
    """The file's columns and the problems found so far."""

    targets: dict[str, tuple[int, str]]  # column key → (index, header as written)
    problems: list[Problem] = field(default_factory=list)

    def header(self, key: str) -> str:
        """The column as the file names it (its key when the file lacks it)."""
        return self.targets[key][1] if key in self.targets else key

    def report(self, row: int, key: str, reason: Any, value: Any = "") -> None:
        shown = "" if value is None else str(value)
        column = self.header(key) if key else ""
        self.problems.append(Problem(row, column, str(reason), shown[:VALUE_IN_REPORT]))


def map_columns(headers: list[str]) -> dict[str, tuple[int, str]]:
    """Recognise each header; unknown or repeated headers and missing required columns are
    problems of row 1, reported at once (no row can be read without its columns)."""
    known = header_keys()
    targets: dict[str, tuple[int, str]] = {}
    problems: list[Problem] = []
    for index, header in enumerate(headers):
        if not header:
            continue  # an unnamed column (often an empty one Excel kept): ignored
        key = known.get(normalise_header(header))
        if key is None:
            problems.append(Problem(1, header, _("Unknown column: not an order column")))
        elif key in targets:
            problems.append(
                Problem(1, header, _("Repeats the column %(other)s") % {"other": targets[key][1]})
            )
        else:
            targets[key] = (index, header)
    for column in COLUMNS:
        if column.required and column.key not in targets:
            problems.append(Problem(1, column.key, _("This column is required")))
    if problems:
        raise InvalidInput(
            _("The columns of the file are not right: nothing was imported"),
            code="import_invalid",
            details={
                "errors": [problem.as_dict() for problem in problems],
                "error_count": len(problems),
                "accepted_columns": [column.key for column in COLUMNS],
            },
        )
    return targets


# --- reading cells ------------------------------------------------------------------------------
def cell_text(cell: Any) -> str:
    """A cell as text: Excel's whole numbers without ".0", times as ISO text."""
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return "1" if cell else "0"
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    if isinstance(cell, (datetime, date)):
        return cell.isoformat(sep=" ") if isinstance(cell, datetime) else cell.isoformat()
    return unguard_formula(str(cell).strip())


def _folded(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip()


def parse_status(text: str) -> str:
    folded = _folded(text).lower()
    for status, spellings in STATUSES.items():
        if folded == status or folded in spellings:
            return status
    raise InvalidInput(
        _(
            "The status is one of created, paid, cancelled, refunded "
            "(待付款, 已付款, 已取消, 已退款)"
        )
    )


def parse_price_tier(text: str) -> str:
    folded = _folded(text).lower()
    for tier, spellings in PRICE_TIERS.items():
        if folded == tier or folded in spellings:
            return tier
    raise InvalidInput(_("The price tier is one of trial, core, premium (引流款, 利润款, 形象款)"))


def parse_time(raw: Any, text: str) -> datetime:
    """A moment from an Excel date cell or text: ``2026-11-20 10:00``, ``2026/11/20 10:00``,
    ``2026-11-20T10:00:00+08:00``, ``2026-11-20``; without an offset, the site's time."""
    if isinstance(raw, datetime):
        moment = raw
    elif isinstance(raw, date):
        moment = datetime.combine(raw, time())
    elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
        moment = _excel_serial(raw)
    else:
        moment = _time_from_text(_folded(text).replace("年", "-").replace("月", "-"))
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _excel_serial(number: float) -> datetime:
    """An Excel date number (a date cell saved without its format)."""
    if not math.isfinite(number) or not EXCEL_SERIALS[0] <= number <= EXCEL_SERIALS[1]:
        raise InvalidInput(_("Not a time: write it like 2026-11-20 10:00"))
    from openpyxl.utils.datetime import from_excel

    moment = from_excel(number)
    return moment if isinstance(moment, datetime) else datetime.combine(moment, time())


def _time_from_text(text: str) -> datetime:
    match = TIME_PATTERN.match(text.replace("日", " ").strip())
    if not match:
        raise InvalidInput(_("Not a time: write it like 2026-11-20 10:00"))
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")),
        )
    except ValueError:
        raise InvalidInput(_("Not a time: write it like 2026-11-20 10:00")) from None
    if offset:
        if offset == "Z":
            return moment.replace(tzinfo=UTC)
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:])
        if hours > 14 or minutes > 59:
            raise InvalidInput(_("Not a time: write it like 2026-11-20 10:00"))
        span = timedelta(hours=hours, minutes=minutes)
        moment = moment.replace(tzinfo=fixed_offset(sign * span))
    return moment


def parse_fen(raw: Any, text: str) -> int:
    """An amount in yuan, as exact integer fen: ``9.90`` → 990, ``¥1,299`` → 129900.

    A number Excel stored is read as Excel shows it (15 significant digits), so a cell
    computed as ``=0.1+0.2`` is 0.3 yuan, not 0.30000000000000004.
    """
    value: Decimal
    if isinstance(raw, bool):
        raise InvalidInput(_("Not an amount: write yuan like 9.90"))
    if isinstance(raw, int):
        value = Decimal(raw)
    elif isinstance(raw, float):
        if not math.isfinite(raw):
            raise InvalidInput(_("Not an amount: write yuan like 9.90"))
        value = Decimal(format(raw, ".15g"))
    else:
        folded = _folded(text).lstrip("¥").removesuffix("元").strip()
        if THOUSANDS_PATTERN.match(folded):
            folded = folded.replace(",", "")
        if folded.startswith("-") and MONEY_PATTERN.match(folded[1:]):
            raise InvalidInput(_("An amount cannot be negative"))
        if not MONEY_PATTERN.match(folded):
            raise InvalidInput(_("Not an amount: write yuan like 9.90"))
        try:
            value = Decimal(folded)
        except InvalidOperation:
            raise InvalidInput(_("Not an amount: write yuan like 9.90")) from None
    if value < 0:
        raise InvalidInput(_("An amount cannot be negative"))
    fen = value * 100
    if fen != fen.to_integral_value():
        raise InvalidInput(_("Amounts are in yuan with at most 2 decimals (fen)"))
    if fen > services.MAX_FEN:
        raise InvalidInput(_("The amount is too large: is it in yuan?"))
    return int(fen)


def parse_quantity(raw: Any, text: str) -> int:
    number: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        number = raw
    elif isinstance(raw, float) and raw.is_integer():
        number = int(raw)
    elif re.fullmatch(r"\d+(\.0*)?", _folded(text)):
        number = int(_folded(text).split(".")[0])
    if number is None or not 1 <= number <= MAX_QUANTITY:
        raise InvalidInput(_("The quantity is a whole number from 1 to 1 000 000"))
    return number


def parse_cell(key: str, raw: Any, text: str) -> Any:
    """The value of one non-empty cell, or ``InvalidInput`` saying what is wrong with it."""
    if key in TIME_KEYS:
        return parse_time(raw, text)
    if key in MONEY_KEYS:
        return parse_fen(raw, text)
    if key == "quantity":
        return parse_quantity(raw, text)
    if key == "status":
        return parse_status(text)
    if key == "price_tier":
        return parse_price_tier(text)
    if key == "buyer_phone":
        return profiles.normalise_phone(text)
    if key == "buyer_external_userid":
        if len(text) > ID_MAX or any(character.isspace() for character in text):
            raise InvalidInput(_("An external_userid is 1 to 64 characters without spaces"))
        return text
    limit = TEXT_LIMITS[key]
    if len(text) > limit:
        raise InvalidInput(_("At most %(limit)d characters") % {"limit": limit})
    return text


# --- grouping rows into orders ------------------------------------------------------------------
@dataclass
class Merged:
    """Values given on several rows, which must agree: key → (value, first row, its text)."""

    values: dict[str, tuple[Any, int, str]] = field(default_factory=dict)

    def add(self, check: Check, reason: str, row: int, key: str, value: Any, text: str) -> bool:
        """Keep the value, or report it (``reason`` names the earlier row and its value) if
        an earlier row gave another; False if reported."""
        earlier = self.values.get(key)
        if earlier is None:
            self.values[key] = (value, row, text)
            return True
        if earlier[0] == value:
            return True
        check.report(row, key, reason % {"row": earlier[1], "value": earlier[2]}, text)
        return False

    def get(self, key: str, default: Any = None) -> Any:
        return self.values[key][0] if key in self.values else default


@dataclass
class RefundRows:
    refund_id: str
    rows: list[int]
    merged: Merged = field(default_factory=Merged)


@dataclass
class OrderRows:
    """The rows of one order id, read."""

    order_id: str
    rows: list[int]
    texts: dict[int, dict[str, str]] = field(default_factory=dict)  # row → key → cell text
    merged: Merged = field(default_factory=Merged)
    lines: list[tuple[int, services.LineIn]] = field(default_factory=list)
    refunds: dict[str, RefundRows] = field(default_factory=dict)
    sound: bool = True  # no problem in any of its rows

    @property
    def first_row(self) -> int:
        return self.rows[0]

    def row_with(self, key: str) -> int:
        """The first row giving ``key`` (the order's first row if none does)."""
        for row in self.rows:
            if self.texts[row].get(key):
                return row
        return self.first_row


def read_orders(table: Table, check: Check) -> list[OrderRows]:
    """Read every row (all of them, whatever the number of problems) into its order."""
    orders: dict[str, OrderRows] = {}
    refund_orders: dict[str, tuple[str, int]] = {}  # refund id → (order id, first row)
    for row, cells in table.rows:
        texts: dict[str, str] = {}
        values: dict[str, Any] = {}
        sound = True
        for key, (index, _header) in check.targets.items():
            raw = cells[index] if index < len(cells) else None
            text = cell_text(raw)
            if not text:
                continue
            texts[key] = text
            try:
                values[key] = parse_cell(key, raw, text)
            except InvalidInput as error:
                check.report(row, key, error.message, text)
                sound = False
        for key, reason in (
            ("order_id", _("The order id is required")),
            ("sku", _("The SKU is required")),
        ):
            if key not in texts:
                check.report(row, key, reason)
                sound = False
        order_id = values.get("order_id")
        if order_id is None:
            continue  # a row without its order id belongs to no order (already reported)
        order = orders.get(order_id)
        if order is None:
            order = orders[order_id] = OrderRows(order_id, [])
        order.rows.append(row)
        order.texts[row] = texts
        sound &= _add_row(check, order, row, values, texts, refund_orders)
        order.sound &= sound
    for order in orders.values():
        order.sound &= _check_order(check, order)
    return list(orders.values())


def _add_row(
    check: Check,
    order: OrderRows,
    row: int,
    values: dict[str, Any],
    texts: dict[str, str],
    refund_orders: dict[str, tuple[str, int]],
) -> bool:
    """Merge one row's order values, line and refund into its order; False on a problem."""
    sound = True
    differs = _("Differs from row %(row)d of the same order (%(value)s)")
    for key in ORDER_KEYS:
        if key in values and key != "order_id":
            sound &= order.merged.add(check, differs, row, key, values[key], texts[key])
    if "sku" in values:
        order.lines.append(
            (
                row,
                services.LineIn(
                    sku=values["sku"],
                    name=values.get("name", ""),
                    quantity=values.get("quantity", 1),
                    unit_price_fen=values.get("unit_price", 0),
                    amount_fen=values.get("amount"),
                    price_tier=values.get("price_tier", ""),
                    category=values.get("category", ""),
                ),
            )
        )
    refund_id = values.get("refund_id")
    if refund_id is None:
        if "refund_id" not in texts and ("refund_amount" in texts or "refunded_at" in texts):
            check.report(row, "refund_id", _("A refund needs its refund id"))
            sound = False
        return sound
    owner = refund_orders.setdefault(refund_id, (order.order_id, row))
    if owner[0] != order.order_id:
        check.report(
            row,
            "refund_id",
            _("The refund is already listed for order %(order)s (row %(row)d)")
            % {"order": owner[0], "row": owner[1]},
            refund_id,
        )
        return False
    refund = order.refunds.setdefault(refund_id, RefundRows(refund_id, []))
    refund.rows.append(row)
    differs = _("Differs from row %(row)d of the same refund (%(value)s)")
    for key in ("refund_amount", "refunded_at"):
        if key in values:
            sound &= refund.merged.add(check, differs, row, key, values[key], texts[key])
    return sound


def _check_order(check: Check, order: OrderRows) -> bool:
    """What the order needs beyond its cells: a status, a time, each refund's amount and time."""
    sound = True
    if order.merged.get("status") is None and not any(
        "status" in order.texts[row] for row in order.rows
    ):
        check.report(
            order.first_row,
            "status",
            _("The order's status is missing (give it on one of its rows)"),
        )
        sound = False
    for refund in order.refunds.values():
        for key, reason in (
            ("refund_amount", _("A refund needs its amount")),
            ("refunded_at", _("A refund needs its time")),
        ):
            if refund.merged.get(key) is None and not any(
                key in order.texts[row] for row in refund.rows
            ):
                check.report(refund.rows[0], key, reason)
                sound = False
    times_given = any(key in order.texts[row] for row in order.rows for key in TIME_KEYS)
    if sound and not times_given:  # (a time given but unreadable is reported already)
        check.report(
            order.first_row,
            "updated_at",
            _("The order needs a time: updated_at, paid_at or placed_at"),
        )
        sound = False
    return sound


def _version(order: OrderRows) -> datetime | None:
    """The order's version: its updated_at, else the latest time the file gives for it."""
    updated_at = order.merged.get("updated_at")
    if updated_at is not None:
        return updated_at
    moments = [order.merged.get(key) for key in ("placed_at", "paid_at", "cancelled_at")] + [
        refund.merged.get("refunded_at") for refund in order.refunds.values()
    ]
    known = [moment for moment in moments if moment is not None]
    return max(known) if known else None


def order_in(order: OrderRows) -> services.OrderIn:
    merged = order.merged
    return services.OrderIn(
        shop_order_id=order.order_id,
        status=merged.get("status"),
        updated_at=_version(order),
        placed_at=merged.get("placed_at"),
        paid_at=merged.get("paid_at"),
        cancelled_at=merged.get("cancelled_at"),
        buyer=services.BuyerIn(
            external_userid=merged.get("buyer_external_userid", ""),
            unionid=merged.get("buyer_unionid", ""),
            phone=merged.get("buyer_phone", ""),
        ),
        lines=tuple(line for _row, line in order.lines),
        refunds=tuple(
            services.RefundIn(
                refund_id=refund.refund_id,
                amount_fen=refund.merged.get("refund_amount"),
                refunded_at=refund.merged.get("refunded_at"),
            )
            for refund in order.refunds.values()
        ),
        channel=merged.get("channel", ""),
    )


# --- applying ----------------------------------------------------------------------------------
class _RollBack(Exception):
    """Leaves the import's transaction without committing anything."""


def apply_orders(
    actor: Actor,
    orders: list[OrderRows],
    check: Check,
    progress: Progress | None,
    *,
    dry_run: bool,
) -> list[str]:
    """Apply every sound order through ``ingest_order`` in one transaction, its refusals
    reported at the order's rows; commit only if the whole file is right and not a dry run.
    Returns each applied order's outcome."""
    outcomes: list[str] = []
    try:
        with transaction.atomic():
            for order in orders:
                if order.sound:
                    try:
                        result = services.ingest_order(actor.tenant, order_in(order), source=SOURCE)
                    except ServiceError as error:
                        _report_refusal(check, order, error)
                    else:
                        outcomes.append(result.outcome)
                if progress:
                    progress.advance()
            if check.problems or dry_run:
                raise _RollBack()
            if progress:
                progress.check_cancelled()
    except _RollBack:
        pass
    return outcomes


# Where ``ingest_order``'s fields are in the file.
SERVICE_FIELDS = {
    "order_id": "order_id",
    "paid_at": "paid_at",
    "status": "status",  # a Conflict's details: a paid order turned unpaid or cancelled
    "phone": "buyer_phone",  # an InvalidInput's details: a malformed phone
    "total_fen": "amount",
    "paid_fen": "amount",
    "refunds": "refund_amount",
    "refund_id": "refund_id",  # a Conflict's details: the refund id of another order
}
LINE_FIELDS = {
    "sku": "sku",
    "quantity": "quantity",
    "unit_price_fen": "unit_price",
    "amount_fen": "amount",
    "price_tier": "price_tier",
}
REFUND_FIELDS = {"refund_id": "refund_id", "amount_fen": "refund_amount"}
CONFLICT_VALUES = ("status", "refund_id", "phone")  # what a refusal without a field names
INDEXED_FIELD = re.compile(r"^(lines|refunds)\[(\d+)\]\.(\w+)$")


def _report_refusal(check: Check, order: OrderRows, error: ServiceError) -> None:
    """Report what ``ingest_order`` refused at the row and column of the file it came from:
    ``details["field"]`` names it (``lines[1].unit_price_fen``, ``paid_at`` …); a conflict
    names the value instead (``status``, ``refund_id``)."""
    details = error.details if isinstance(error.details, dict) else {}
    name = str(details.get("field") or "")
    refunds = list(order.refunds.values())
    row, key = order.first_row, ""
    indexed = INDEXED_FIELD.match(name)
    if indexed:
        kind, index, attribute = indexed.group(1), int(indexed.group(2)), indexed.group(3)
        if kind == "lines" and index < len(order.lines):
            row, key = order.lines[index][0], LINE_FIELDS.get(attribute, "")
        elif kind == "refunds" and index < len(refunds):
            row, key = refunds[index].rows[0], REFUND_FIELDS.get(attribute, "")
    else:
        names = [name] if name else [each for each in CONFLICT_VALUES if each in details]
        key = next((SERVICE_FIELDS[each] for each in names if each in SERVICE_FIELDS), "")
        refund = order.refunds.get(str(details.get("refund_id", "")))
        if key == "refund_id" and refund is not None:
            row = refund.rows[0]
        elif key == "refund_amount" and refunds:
            row = refunds[0].rows[0]
        elif key:
            row = order.row_with(key)
    check.report(row, key, error.message, order.texts[row].get(key, "") if key else "")
