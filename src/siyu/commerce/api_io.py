"""API of order imports: an upload starts a background job and answers 202 with it; follow it
with ``GET /jobs/{id}`` and fetch a failed import's report with ``GET /jobs/{id}/download``.

Imports need the scope ``orders:import`` (and the staff's ``commerce.add_order`` and
``commerce.change_order``, with a whole-tenant data scope). Mounted before
``siyu.commerce.api``, whose ``/commerce/orders/{order_id}`` would otherwise take
``/commerce/orders/import``.
"""

from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import File, Form, Router, UploadedFile
from ninja.responses import Status

from siyu.commerce import imports
from siyu.core.api_errors import error_responses
from siyu.core.api_jobs import JobOut
from siyu.core.api_support import require
from siyu.core.errors import InvalidInput

router = Router(tags=["commerce"])

START_ERRORS = error_responses(400, 401, 403, 404, 422)


@router.post(
    "/commerce/orders/import",
    response={202: JobOut, **START_ERRORS},
    summary="Import orders from a CSV or Excel file",
)
def import_orders(
    request: HttpRequest, file: File[UploadedFile], dry_run: Form[bool] = False
) -> Status:
    """Upload a CSV (UTF-8, GBK) or .xlsx file as multipart ``file``, one row per order
    line; the rows of one order_id are one order. Columns by header: order_id / 订单号 and
    sku / 商品编码 (required on every row), status / 状态 (created, paid, cancelled,
    refunded or 待付款, 已付款, 已取消, 已退款), updated_at / 更新时间, placed_at / 下单时间,
    paid_at / 付款时间, cancelled_at / 取消时间, buyer_external_userid / 客户ID,
    buyer_unionid / unionid, buyer_phone / 手机号, channel / 渠道, name / 商品名称,
    quantity / 数量, unit_price / 单价 and amount / 金额 (yuan, at most 2 decimals),
    price_tier / 价格带 (trial, core, premium or 引流款, 利润款, 形象款), category / 品类,
    refund_id / 退款单号, refund_amount / 退款金额 (yuan), refunded_at / 退款时间.

    Every row is checked and every order tried first; if anything is wrong nothing is
    imported, the job fails and its ``result.errors`` (and its download, as CSV) list every
    problem: row, column, reason, value. Otherwise ``result`` counts the orders created,
    updated, unchanged and stale (older than the stored version). ``dry_run`` only
    checks."""
    actor = require(request, "orders:import")
    if file.size is not None and file.size > imports.MAX_FILE_BYTES:
        raise InvalidInput(
            _("The file is larger than %(limit)d MB: split it into several imports")
            % {"limit": imports.MAX_FILE_BYTES // (1024 * 1024)},
            code="file_too_large",
            details={"file": file.name, "bytes": file.size},
        )
    job = imports.start_import(
        actor, filename=file.name or "orders.csv", content=file.read(), dry_run=dry_run
    )
    return Status(202, job)
