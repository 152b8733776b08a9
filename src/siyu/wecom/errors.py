"""Typed errors of the WeCom server API (企业微信服务端 API).

Every failure of a call surfaces as one ``WeComError`` subclass carrying Tencent's
``errcode`` and ``errmsg`` and the API path that failed, so that callers branch on the type
(or on ``errcode``) and never on ``errmsg``, which Tencent says may change.

``WeComError`` is a ``ServiceError`` with status 502 and code ``wecom_error``: the REST API,
the CLI and the console show it as "the upstream service refused", with the errcode in
``details``. The one exception is ``WeComInvalidArgument``: a documented limit (``state``
≤ 30 characters, ≤ 100 members per contact way, …) broken by *our* caller, detected before
any HTTP call, which is the caller's input error (status 400, code ``invalid``).

Sources for the table below: Tencent's global errcode page (全局错误码,
developer.work.weixin.qq.com/document/path/90313) as mirrored by the SDKs (wechatpy,
silenceper/wechat, zsmhub/workweixin's generated errcode list).
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from siyu.core.errors import Conflict, InvalidInput, ServiceError

# --- errcodes the client itself reacts to --------------------------------------------------
SYSTEM_BUSY = -1  # 系统繁忙: Tencent recommends retrying (at most 3 times)
INVALID_SECRET = 40001  # 不合法的secret参数
INVALID_CORP_ID = 40013  # 不合法的CorpID
INVALID_ACCESS_TOKEN = 40014  # 不合法的access_token
ACCESS_TOKEN_EXPIRED = 42001  # access_token已过期
API_FREQ_OUT_OF_LIMIT = 45009  # 接口调用超过限制
API_CONCURRENCY_OUT_OF_LIMIT = 45033  # 接口并发调用超过限制

# A token the server no longer accepts: fetch a new one and resend once. (40082 is an invalid
# *suite* token of third-party apps; self-built apps never hold one, so it is not here.)
TOKEN_REJECTED_ERRCODES = frozenset({INVALID_ACCESS_TOKEN, ACCESS_TOKEN_EXPIRED})
RATE_LIMIT_ERRCODES = frozenset({API_FREQ_OUT_OF_LIMIT, API_CONCURRENCY_OUT_OF_LIMIT})

# Errcodes callers of particular endpoints commonly branch on.
WELCOME_CODE_INVALID = 41050  # welcome_code expired (20 s) or already used
CUSTOMER_ALREADY_CHATTING = 41051  # send_welcome_msg after the two already chatted
NOT_EXTERNAL_CONTACT = 84061  # 不存在外部联系人的关系
GROUP_MESSAGE_DISPATCHING = 41063  # 群发消息正在被派发中，请稍后再试


class WeComError(ServiceError):
    """A call to the WeCom server API failed.

    ``errcode``/``errmsg`` are Tencent's (``None`` when WeCom never answered with one, e.g.
    a time-out or a local validation failure); ``api`` is the path below ``/cgi-bin/``.
    """

    status = 502
    code = "wecom_error"
    reason = "error"  # a short machine-readable kind, repeated in ``details["reason"]``

    def __init__(
        self,
        errcode: int | None,
        errmsg: str,
        api: str,
        *,
        message: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        self.api = api
        if message is None:
            message = _default_message(errcode, errmsg, api)
        merged = {"errcode": errcode, "errmsg": errmsg, "api": api, "reason": self.reason}
        merged.update(details or {})
        super().__init__(message, details=merged)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild from the attributes: the constructors' signatures differ from ``args``, and
        # errors travel through pickling (task results, multiprocessing).
        return (_restore, (type(self), dict(self.__dict__)))

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(errcode={self.errcode!r}, errmsg={self.errmsg!r}, api={self.api!r})"


class WeComAuthError(WeComError):
    """The corp id or secret is wrong, or an access token was refused even after a refresh."""

    reason = "auth"


class WeComRateLimited(WeComError):
    """A rate limit was hit: WeCom's (45009 / 45033) or our own per-corp budget (``local``).

    ``retry_after`` is the number of seconds until the budget resets, when known.
    """

    reason = "rate_limited"

    def __init__(
        self,
        errcode: int | None,
        errmsg: str,
        api: str,
        *,
        local: bool = False,
        retry_after: float | None = None,
        message: str | None = None,
    ) -> None:
        self.local = local
        self.retry_after = retry_after
        if message is None and local:
            message = _(
                "Siyu's own limit of calls per minute to WeCom API %(api)s is used up; "
                "retry in %(seconds)d s."
            ) % {"api": api, "seconds": round(retry_after or 0)}
        super().__init__(
            errcode,
            errmsg,
            api,
            message=message,
            details={"local": local, "retry_after": retry_after},
        )


class WeComBusy(WeComError):
    """WeCom answered "system busy" (errcode -1), still after the retries."""

    reason = "busy"


class WeComUnavailable(WeComError):
    """WeCom could not be reached or answered HTTP 5xx / garbage, still after the retries.

    ``maybe_applied`` is true when the request may have reached WeCom and taken effect (a
    read time-out, a 5xx): a create call is then not retried, to never send a mass message
    or create a contact way twice.
    """

    reason = "unavailable"

    def __init__(
        self,
        errmsg: str,
        api: str,
        *,
        http_status: int | None = None,
        maybe_applied: bool = False,
    ) -> None:
        self.http_status = http_status
        self.maybe_applied = maybe_applied
        super().__init__(
            None,
            errmsg,
            api,
            message=_("WeCom API %(api)s is unavailable: %(errmsg)s")
            % {"api": api, "errmsg": errmsg},
            details={"http_status": http_status, "maybe_applied": maybe_applied},
        )


class WeComPermissionDenied(WeComError):
    """The secret's app may not call this API or see this member / department / customer."""

    reason = "permission_denied"


class WeComNotFound(WeComError):
    """An id WeCom does not know: userid, external_userid, config_id, msgid, tag id, …"""

    reason = "not_found"


class WeComConflict(WeComError):
    """The call collides with WeCom's current state (already chatting, transfer pending, …)."""

    reason = "conflict"


class WeComLimitExceeded(WeComError):
    """A quota WeCom enforces is used up (contact ways, corp tags, members per way, …)."""

    reason = "limit_exceeded"


class WeComInvalidArgument(WeComError, InvalidInput):
    """A documented limit was broken; raised before any HTTP call (so ``errcode`` is None).

    Status 400 (code ``invalid``): it is the caller's input, not WeCom, that is wrong.
    ``field`` names Tencent's field; ``limit`` is the documented figure, when there is one.
    """

    status = 400
    code = "invalid"
    reason = "invalid_argument"

    def __init__(self, api: str, field: str, message: str, *, limit: Any = None) -> None:
        self.field = field
        self.limit = limit
        super().__init__(
            None,
            message,
            api,
            message=message,
            details={"field": field, "limit": limit},
        )


class WeComNotConfigured(Conflict):
    """The tenant has no WeCom corp id or secret yet, so no client can be built."""

    code = "wecom_not_configured"


# --- errcode -> class ---------------------------------------------------------------------
# (class, short English description). Errcodes not listed raise a plain WeComError.
ERRCODES: dict[int, tuple[type[WeComError], str]] = {
    SYSTEM_BUSY: (WeComBusy, "system busy"),
    # credentials and tokens
    INVALID_SECRET: (WeComAuthError, "invalid secret"),
    INVALID_CORP_ID: (WeComAuthError, "invalid corp id"),
    INVALID_ACCESS_TOKEN: (WeComAuthError, "invalid access_token"),
    40091: (WeComAuthError, "invalid secret (of another corp?)"),
    41001: (WeComAuthError, "missing access_token"),
    41002: (WeComAuthError, "missing corpid"),
    41004: (WeComAuthError, "missing secret"),
    ACCESS_TOKEN_EXPIRED: (WeComAuthError, "access_token expired"),
    # rate limits
    API_FREQ_OUT_OF_LIMIT: (WeComRateLimited, "API call frequency out of limit"),
    API_CONCURRENCY_OUT_OF_LIMIT: (WeComRateLimited, "API concurrency out of limit"),
    # permissions
    48002: (WeComPermissionDenied, "API forbidden for this secret's app"),
    48006: (WeComPermissionDenied, "API permission revoked"),
    50002: (WeComPermissionDenied, "member outside the app's scope"),
    60011: (WeComPermissionDenied, "no privilege on this member / department / tag"),
    60020: (WeComPermissionDenied, "IP address not in the allow list"),
    60021: (WeComPermissionDenied, "userid outside the app's visible range"),
    84074: (WeComPermissionDenied, "no external-contact permission"),
    90206: (WeComPermissionDenied, "mini program not associated with the corp"),
    # unknown ids
    40003: (WeComNotFound, "invalid userid"),
    40007: (WeComNotFound, "invalid media_id"),
    40068: (WeComNotFound, "invalid tag id"),
    40088: (WeComNotFound, "jobid does not exist"),
    40096: (WeComNotFound, "invalid external_userid"),
    41044: (WeComNotFound, "invalid contact way config_id"),
    41047: (WeComNotFound, "invalid mass message msgid"),
    41060: (WeComNotFound, "invalid moment_id"),
    60003: (WeComNotFound, "department does not exist"),
    60111: (WeComNotFound, "userid does not exist"),
    60123: (WeComNotFound, "invalid department id"),
    86003: (WeComNotFound, "chat id does not exist"),
    NOT_EXTERNAL_CONTACT: (WeComNotFound, "no external-contact relationship"),
    # state conflicts
    40071: (WeComConflict, "tag name already exists"),
    40097: (WeComConflict, "member has not resigned"),
    40100: (WeComConflict, "customers already being transferred"),
    40128: (WeComConflict, "customer transferred too often"),
    40129: (WeComConflict, "customer transfer in progress"),
    40130: (WeComConflict, "handover and takeover are the same member"),
    40131: (WeComConflict, "handover member does not follow this customer"),
    WELCOME_CODE_INVALID: (WeComConflict, "welcome code invalid or expired (valid 20 s)"),
    CUSTOMER_ALREADY_CHATTING: (WeComConflict, "customer and member already started chatting"),
    GROUP_MESSAGE_DISPATCHING: (WeComConflict, "mass message still being dispatched"),
    49008: (WeComConflict, "group already dissolved"),
    # quotas
    40099: (WeComLimitExceeded, "external contacts limit reached"),
    40126: (WeComLimitExceeded, "corp tag limit (3 000) reached"),
    41041: (WeComLimitExceeded, "too many members on the contact way (max 100)"),
    41045: (WeComLimitExceeded, "contact ways created by API reached the limit"),
    41048: (WeComLimitExceeded, "no customer can receive this mass message"),
    45001: (WeComError, "media file too large"),
    45002: (WeComError, "message content too long"),
}


def _restore(error_class: type[WeComError], state: dict[str, Any]) -> WeComError:
    error = error_class.__new__(error_class)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


def error_for(errcode: int, errmsg: str, api: str) -> WeComError:
    """The typed error for a non-zero errcode returned by ``api``."""
    error_class, _description = ERRCODES.get(errcode, (WeComError, ""))
    return error_class(errcode, errmsg, api)


def describe(errcode: int | None) -> str:
    """A short English description of a known errcode ("" for unknown ones)."""
    if errcode is None:
        return ""
    return ERRCODES.get(errcode, (WeComError, ""))[1]


def _default_message(errcode: int | None, errmsg: str, api: str) -> str:
    description = describe(errcode)
    if description and description.lower() not in (errmsg or "").lower():
        errmsg = f"{errmsg} ({description})" if errmsg else description
    return _("WeCom API %(api)s failed with errcode %(errcode)s: %(errmsg)s") % {
        "api": api,
        "errcode": errcode,
        "errmsg": errmsg,
    }


__all__ = [
    "ERRCODES",
    "TOKEN_REJECTED_ERRCODES",
    "WeComAuthError",
    "WeComBusy",
    "WeComConflict",
    "WeComError",
    "WeComInvalidArgument",
    "WeComLimitExceeded",
    "WeComNotConfigured",
    "WeComNotFound",
    "WeComPermissionDenied",
    "WeComRateLimited",
    "WeComUnavailable",
    "describe",
    "error_for",
]
