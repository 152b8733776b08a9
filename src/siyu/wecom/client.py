"""A typed client for the WeCom server API (企业微信服务端 API), over httpx.

One ``WeComClient`` talks to one corp with one secret (for Siyu: the customer-contact secret,
客户联系 secret) at ``settings.WECOM_API_BASE`` — Tencent's
``https://qyapi.weixin.qq.com/cgi-bin`` in production, the local emulator's address in the
demo and in tests. ``client_for(tenant)`` builds one from a tenant's stored credentials.

What every call gets, so that callers never deal with it:

* **Access token** — fetched with ``gettoken`` and kept in the shared Django cache (the file
  cache or Redis, so every process of an installation shares it) under a key derived from a
  hash of corp id + secret; refreshed when less than 5 minutes remain. One process refreshes
  at a time (a ``cache.add`` lock); the others keep using the still-valid token or wait for
  the new one instead of stampeding ``gettoken``. When WeCom refuses a token (40014 invalid,
  42001 expired) the client fetches a new one and resends once; a second refusal is a
  ``WeComAuthError``.
* **Retries** — with exponential backoff and full jitter (tenacity) on errcode -1 (system
  busy), 45009 / 45033 (WeCom's rate limits), HTTP 5xx and network failures / time-outs, up
  to ``max_attempts`` attempts. Calls that *create* something (a mass message, a contact way,
  a welcome message, a transfer, an app message, …) are not resent after a failure that may
  have reached WeCom (a read time-out, a 5xx): a duplicated mass message to 10 000 customers
  is worse than an error the task queue retries idempotently.
* **Rate limit** — a per-corp, per-API fixed-window counter in the shared cache (default
  10 000 calls a minute, WeCom's documented budget; 10 a minute for ``add_moment_task``).
  When the budget is spent the client sleeps until the next minute if that is within
  ``rate_limit_max_wait`` seconds, else raises ``WeComRateLimited(local=True)``. (On the
  file cache the counter is approximate across processes; on Redis it is exact.)
* **Errors** — every non-zero errcode is raised as a typed ``WeComError`` (see
  ``siyu.wecom.errors``) carrying ``errcode``, ``errmsg`` and ``api``; documented limits
  (``state`` ≤ 30 characters, ≤ 100 members per contact way, ``chat_id_list`` ≤ 5, ≤ 9
  attachments, ≤ 10 000 recipients per mass message, …) are checked *before* any HTTP call
  and raised as ``WeComInvalidArgument``.
* **Logging** — one DEBUG line per HTTP call (API, errcode, duration); the secret and the
  access token never appear in logs (httpx's own request log line is redacted too).

Results are the decoded JSON objects **without** ``errcode`` and ``errmsg`` (they would always
be ``0`` / ``"ok"``); field names are Tencent's. Keyword arguments are named as Tencent's
request fields, so the official documentation reads directly onto the methods.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, TypedDict, cast

import httpx
from django.conf import settings
from django.core.cache import caches
from django.utils.translation import gettext as _
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from siyu.wecom.errors import (
    TOKEN_REJECTED_ERRCODES,
    WeComBusy,
    WeComError,
    WeComInvalidArgument,
    WeComNotConfigured,
    WeComRateLimited,
    WeComUnavailable,
    error_for,
)

logger = logging.getLogger(__name__)

PRODUCTION_API_BASE = "https://qyapi.weixin.qq.com/cgi-bin"
TOKEN_REFRESH_MARGIN = 300  # seconds: refresh a token when less than this remains
DEFAULT_TOKEN_LIFETIME = 7200  # what WeCom grants; used if a response omits expires_in
DEFAULT_RATE_LIMIT_PER_MINUTE = 10_000  # per corp per API (WeCom: 10 000/min, 150 000/h)
# APIs with a tighter documented budget than the general one (calls per minute per corp).
API_RATE_LIMITS: dict[str, int] = {"externalcontact/add_moment_task": 10}
LOCK_POLL_INTERVAL = 0.1  # seconds between looks at the cache while another process refreshes

# Documented limits (Tencent's figures; see each method's docstring).
MAX_STATE_CHARS = 30
MAX_CONTACT_WAY_USERS = 100
MAX_CONTACT_WAY_REMARK_CHARS = 30
MAX_TEMP_SESSION_SECONDS = 14 * 86400
MAX_JOIN_WAY_CHATS = 5
MAX_ROOM_BASE_NAME_CHARS = 40
MAX_ATTACHMENTS = 9
MAX_MESSAGE_TEXT_BYTES = 4000
MAX_MASS_MESSAGE_CUSTOMERS = 10_000
MAX_TRANSFER_CUSTOMERS = 100
MAX_TRANSFER_MESSAGE_CHARS = 200
MAX_BATCH_USERIDS = 100
MAX_BATCH_LIMIT = 100
MAX_GROUP_CHAT_LIST_LIMIT = 1000
MAX_OWNER_FILTER_USERIDS = 100
MAX_GROUPMSG_LIST_LIMIT = 100
MAX_GROUPMSG_RESULT_LIMIT = 1000
MAX_TAG_NAME_CHARS = 30
MAX_REMARK_CHARS = 20
MAX_DESCRIPTION_CHARS = 150
MAX_BEHAVIOR_SPAN_SECONDS = 30 * 86400
MAX_BEHAVIOR_PARTIES = 100
MAX_APP_MESSAGE_USERS = 1000
MAX_APP_MESSAGE_PARTIES = 100
MAX_APP_MESSAGE_TAGS = 100
MEDIA_TYPES = ("image", "voice", "video", "file")
MEDIA_MAX_BYTES = {"image": 10 << 20, "voice": 2 << 20, "video": 10 << 20, "file": 20 << 20}
MEDIA_MIN_BYTES = 6  # "all files must be larger than 5 bytes"
MESSAGE_ATTACHMENT_TYPES = ("image", "link", "miniprogram", "video", "file")
MOMENT_ATTACHMENT_TYPES = ("image", "video", "link")


# --- responses (the main ones; every method returns the decoded dict) ---------------------
class ExternalContactDetail(TypedDict, total=False):
    external_contact: dict[str, Any]
    follow_user: list[dict[str, Any]]
    next_cursor: str


class CustomersPage(TypedDict, total=False):
    external_contact_list: list[dict[str, Any]]  # [{"external_contact": …, "follow_info": …}]
    next_cursor: str


class GroupChatsPage(TypedDict, total=False):
    group_chat_list: list[dict[str, Any]]  # [{"chat_id": …, "status": …}]
    next_cursor: str


class GroupChatDetail(TypedDict, total=False):
    group_chat: dict[str, Any]


class ContactWayCreated(TypedDict, total=False):
    config_id: str
    qr_code: str  # only for scene 2 (QR code)


class JoinWayCreated(TypedDict, total=False):
    config_id: str


class MsgTemplateCreated(TypedDict, total=False):
    fail_list: list[str]
    msgid: str


class MomentTaskCreated(TypedDict, total=False):
    jobid: str


class TransferOutcome(TypedDict, total=False):
    customer: list[dict[str, Any]]  # [{"external_userid": …, "errcode": 0 = transfer started}]


class TransferResultPage(TypedDict, total=False):
    customer: list[dict[str, Any]]  # [{"external_userid", "status", "takeover_time"}]
    next_cursor: str


class UploadedMedia(TypedDict, total=False):
    type: str
    media_id: str  # valid 3 days
    created_at: str


class AppMessageSent(TypedDict, total=False):
    invaliduser: str
    invalidparty: str
    invalidtag: str
    unlicenseduser: str
    msgid: str
    response_code: str


# --- secrets stay out of logs -----------------------------------------------------------
_SECRET_QUERY = re.compile(r"((?:access_token|corpsecret)=)[^&\s\"'#]*")


def redact(text: str) -> str:
    """``text`` with the values of ``access_token=`` and ``corpsecret=`` masked."""
    return _SECRET_QUERY.sub(r"\1***", text)


class _RedactSecrets(logging.Filter):
    """Masks tokens and secrets in httpx's "HTTP Request: GET https://…?corpsecret=…" line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def _install_log_redaction() -> None:
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(existing, _RedactSecrets) for existing in httpx_logger.filters):
        httpx_logger.addFilter(_RedactSecrets())


_install_log_redaction()


# --- one shared connection pool for the clients that are not given one ---------------------
_shared_http: httpx.Client | None = None
_shared_http_lock = threading.Lock()


def _default_http() -> httpx.Client:
    global _shared_http
    with _shared_http_lock:
        if _shared_http is None or _shared_http.is_closed:
            _shared_http = httpx.Client(headers={"User-Agent": "siyu-wecom-client"})
        return _shared_http


@dataclass(frozen=True)
class _Call:
    method: str
    api: str
    params: Mapping[str, Any] = field(default_factory=dict)
    json: Mapping[str, Any] | None = None
    files: Mapping[str, Any] | None = None
    # A call that creates something: not resent after a failure that may have reached WeCom.
    creates: bool = False


def _is_transient(error: BaseException) -> bool:
    """Failures worth another attempt (see the module docstring)."""
    if isinstance(error, WeComRateLimited):
        return not error.local  # our own limiter already waited as long as it may
    if isinstance(error, WeComBusy):
        return True
    if isinstance(error, WeComUnavailable):
        return not error.maybe_applied
    return False


class WeComClient:
    """The WeCom server API for one corp and one secret. Thread-safe; cheap to build.

    ``secret`` is the customer-contact secret (客户联系, for ``externalcontact/*``) or a
    self-built app's secret (``agentid`` given: directory reads, ``message/send``).
    ``backoff_initial`` / ``backoff_max`` bound the retry waits (seconds; 0 in tests);
    ``clock`` (epoch seconds) and ``sleep`` can be injected to test expiry and rate limits.
    ``api_rate_limits`` overrides the per-minute budget of single APIs (path → calls).
    """

    def __init__(
        self,
        corp_id: str,
        secret: str,
        *,
        agentid: int | None = None,
        base_url: str | None = None,
        cache: Any = None,
        http: httpx.Client | None = None,
        rate_limit_per_minute: int | None = DEFAULT_RATE_LIMIT_PER_MINUTE,
        api_rate_limits: Mapping[str, int] | None = None,
        rate_limit_max_wait: float = 5.0,
        max_attempts: int = 4,
        timeout: float = 10.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 8.0,
        token_lock_wait: float | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not corp_id or not secret:
            raise ValueError("WeComClient needs a corp id and a secret")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.corp_id = corp_id
        self._secret = secret
        self.agentid = agentid  # the self-built app's AgentId, when ``secret`` is its secret
        base = base_url or getattr(settings, "WECOM_API_BASE", "") or PRODUCTION_API_BASE
        self.base_url = base.rstrip("/")
        self._cache = cache if cache is not None else caches["default"]
        self._http = http if http is not None else _default_http()
        self.rate_limit_per_minute = rate_limit_per_minute
        self.api_rate_limits = {**API_RATE_LIMITS, **(api_rate_limits or {})}
        self.rate_limit_max_wait = rate_limit_max_wait
        self.max_attempts = max_attempts
        self.timeout = timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._clock = clock
        self._sleep = sleep
        # How long to wait for another process's token refresh before fetching one anyway.
        lock_wait = token_lock_wait if token_lock_wait is not None else timeout + 2
        self._lock_polls = max(1, round(lock_wait / LOCK_POLL_INTERVAL))
        self._lock_ttl = max(1, round(lock_wait + timeout))
        credentials = hashlib.sha256(f"{corp_id}\0{secret}".encode()).hexdigest()[:32]
        corp = hashlib.sha256(corp_id.encode()).hexdigest()[:16]
        self._token_key = f"siyu:wecom:token:{credentials}"
        self._token_lock_key = f"{self._token_key}:lock"
        self._rate_key = f"siyu:wecom:rate:{corp}"

    def __repr__(self) -> str:  # never the secret
        return f"WeComClient(corp_id={self.corp_id!r}, base_url={self.base_url!r})"

    # ======================================================================================
    # Plumbing
    # ======================================================================================
    def request(
        self,
        method: str,
        api: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
        creates: bool = False,
    ) -> dict[str, Any]:
        """Call ``api`` (the path below ``/cgi-bin/``) with token, retries and rate limit.

        The typed methods below use this; it is public for endpoints not wrapped yet.
        """
        call = _Call(
            method.upper(),
            api.strip("/"),
            dict(params or {}),
            json,
            files,
            creates,
        )
        return self._retrying(call.api)(self._attempt, call)

    def access_token(self) -> str:
        """A valid access token for this corp and secret (from the shared cache if fresh)."""
        return self._retrying("gettoken")(self._access_token)

    def invalidate_token(self) -> None:
        """Forget the cached token (e.g. after the secret was rotated)."""
        self._cache.delete(self._token_key)

    def _retrying(self, api: str) -> Retrying:
        def log_retry(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            logger.info(
                "WeCom %s failed (%s); attempt %d of %d, next in %.2f s",
                api,
                getattr(error, "reason", type(error).__name__),
                state.attempt_number,
                self.max_attempts,
                wait,
            )

        return Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_random_exponential(multiplier=self._backoff_initial, max=self._backoff_max),
            retry=retry_if_exception(_is_transient),
            sleep=self._sleep,
            before_sleep=log_retry,
            reraise=True,
        )

    def _attempt(self, call: _Call) -> dict[str, Any]:
        token = self._access_token()
        data = self._send(call, token)
        errcode = _errcode(data)
        if errcode in TOKEN_REJECTED_ERRCODES:
            logger.info(
                "WeCom refused the access token on %s (errcode %s); fetching a new one",
                call.api,
                errcode,
            )
            token = self._access_token(rejected=token)
            data = self._send(call, token)
            errcode = _errcode(data)
        if errcode != 0:
            raise error_for(errcode, str(data.get("errmsg", "")), call.api)
        data.pop("errcode", None)
        data.pop("errmsg", None)
        return data

    def _send(self, call: _Call, token: str | None) -> dict[str, Any]:
        """One HTTP exchange (after taking a rate-limit slot); returns the JSON object."""
        self._take_rate_slot(call.api)
        params = dict(call.params)
        if token is not None:
            params["access_token"] = token
        started = time.monotonic()
        outcome: Any = "-"
        try:
            try:
                response = self._http.request(
                    call.method,
                    f"{self.base_url}/{call.api}",
                    params=params,
                    json=call.json,
                    files=call.files,
                    timeout=self.timeout,
                )
            except httpx.TransportError as error:
                # Failures before the request left us cannot have taken effect.
                reached = not isinstance(
                    error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
                )
                outcome = type(error).__name__
                raise WeComUnavailable(
                    redact(str(error)) or type(error).__name__,
                    call.api,
                    maybe_applied=reached and call.creates,
                ) from error
            status = response.status_code
            if status >= 500:
                outcome = f"HTTP {status}"
                raise WeComUnavailable(
                    f"HTTP {status}", call.api, http_status=status, maybe_applied=call.creates
                )
            if status >= 400:
                outcome = f"HTTP {status}"
                raise WeComError(None, f"HTTP {status}", call.api, details={"http_status": status})
            try:
                data = response.json()
            except ValueError:
                data = None
            if not isinstance(data, dict):
                outcome = "not JSON"
                raise WeComUnavailable(
                    _("the response is not a JSON object"),
                    call.api,
                    http_status=status,
                    maybe_applied=call.creates,
                )
            outcome = _errcode(data)
            return data
        finally:
            logger.debug(
                "WeCom %s %s -> errcode %s in %.0f ms",
                call.method,
                call.api,
                outcome,
                (time.monotonic() - started) * 1000,
            )

    # --- access token -------------------------------------------------------------------
    def _access_token(self, *, rejected: str | None = None) -> str:
        """The cached token, refreshed ahead of expiry; never ``rejected`` (refused by WeCom)."""
        entry = self._cache.get(self._token_key)
        if self._usable(entry, rejected, TOKEN_REFRESH_MARGIN):
            return entry["access_token"]
        owner = uuid.uuid4().hex
        if self._cache.add(self._token_lock_key, owner, timeout=self._lock_ttl):
            try:
                # Another process may have refreshed between our look and the lock.
                entry = self._cache.get(self._token_key)
                if self._usable(entry, rejected, TOKEN_REFRESH_MARGIN):
                    return entry["access_token"]
                return self._fetch_token()
            finally:
                if self._cache.get(self._token_lock_key) == owner:
                    self._cache.delete(self._token_lock_key)
        # Another process is refreshing: a token that is still valid will do meanwhile.
        if self._usable(entry, rejected, 0):
            return entry["access_token"]
        for _poll in range(self._lock_polls):
            self._sleep(LOCK_POLL_INTERVAL)
            entry = self._cache.get(self._token_key)
            if self._usable(entry, rejected, 0):
                return entry["access_token"]
        logger.warning(
            "WeCom token refresh for corp %s by another process is taking long; fetching one",
            self.corp_id,
        )
        return self._fetch_token()

    def _usable(self, entry: Any, rejected: str | None, margin: float) -> bool:
        return (
            isinstance(entry, dict)
            and bool(entry.get("access_token"))
            and entry["access_token"] != rejected
            and float(entry.get("expires_at", 0)) - self._clock() > margin
        )

    def _fetch_token(self) -> str:
        call = _Call("GET", "gettoken", {"corpid": self.corp_id, "corpsecret": self._secret})
        data = self._send(call, None)
        errcode = _errcode(data)
        if errcode != 0:
            raise error_for(errcode, str(data.get("errmsg", "")), "gettoken")
        token = data.get("access_token")
        if not token:
            raise WeComUnavailable(_("gettoken returned no access_token"), "gettoken")
        lifetime = int(data.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        entry = {"access_token": str(token), "expires_at": self._clock() + lifetime}
        self._cache.set(self._token_key, entry, timeout=lifetime)
        logger.info("WeCom access token for corp %s refreshed (valid %d s)", self.corp_id, lifetime)
        return str(token)

    # --- rate limit ---------------------------------------------------------------------
    def _take_rate_slot(self, api: str) -> None:
        """Count one call of ``api`` in this minute's window; wait or raise when it is full."""
        limit = self.api_rate_limits.get(api, self.rate_limit_per_minute)
        if not limit:
            return
        waited = 0.0
        failures = 0
        while True:
            now = self._clock()
            window = int(now // 60)
            key = f"{self._rate_key}:{api}:{window}"
            self._cache.add(key, 0, timeout=120)
            try:
                count = self._cache.incr(key)
            except ValueError:  # the key vanished between add and incr (or no real cache)
                failures += 1
                if failures >= 3:
                    logger.warning("WeCom rate limiter has no working cache; not limiting")
                    return
                continue
            if count <= limit:
                return
            retry_after = (window + 1) * 60 - now
            if waited + retry_after > self.rate_limit_max_wait:
                raise WeComRateLimited(
                    None,
                    f"local limit of {limit} calls per minute reached",
                    api,
                    local=True,
                    retry_after=retry_after,
                )
            logger.info(
                "WeCom %s: %d calls this minute reached the limit; waiting %.1f s",
                api,
                limit,
                retry_after,
            )
            self._sleep(retry_after)
            waited += retry_after

    # --- helpers for the endpoints ------------------------------------------------------
    def _get(self, api: str, **params: Any) -> dict[str, Any]:
        return self.request("GET", api, params=_clean(params))

    def _post(self, api: str, body: Mapping[str, Any], *, creates: bool = False) -> dict:
        return self.request("POST", api, json=_clean(body), creates=creates)

    def _paginate(
        self, api: str, fetch: Callable[[str | None], Mapping[str, Any]], items: str
    ) -> Iterator[dict[str, Any]]:
        """Walk ``next_cursor`` until it is empty, yielding each page's ``items``."""
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            page = fetch(cursor)
            yield from page.get(items) or []
            cursor = page.get("next_cursor") or None
            if not cursor:
                return
            if cursor in seen:
                raise WeComError(None, _("the pagination cursor repeated"), api)
            seen.add(cursor)

    # ======================================================================================
    # Staff and departments (通讯录)
    # ======================================================================================
    def list_departments(self, id: int | None = None) -> dict[str, Any]:
        """``GET department/list`` — the departments the app can see (all, or ``id`` and below).

        Returns ``{"department": [{"id", "name", "parentid", "order", "department_leader"}]}``.
        """
        return self._get("department/list", id=id)

    def list_users(self, department_id: int, *, fetch_child: bool = False) -> dict[str, Any]:
        """``GET user/list`` — the members of a department, with details (``userlist``).

        ``fetch_child`` includes sub-departments. (Since 2022 WeCom returns names and mobile
        numbers only to apps that were granted them.)
        """
        return self._get(
            "user/list", department_id=department_id, fetch_child=1 if fetch_child else None
        )

    # ======================================================================================
    # Customers (客户管理)
    # ======================================================================================
    def get_external_contact(
        self, external_userid: str, *, cursor: str | None = None
    ) -> ExternalContactDetail:
        """``GET externalcontact/get`` — one customer and the members who follow them.

        ``follow_user`` holds at most 500 entries; pass ``next_cursor`` back as ``cursor``
        for the rest.
        """
        api = "externalcontact/get"
        _require(api, "external_userid", external_userid)
        return cast(
            ExternalContactDetail, self._get(api, external_userid=external_userid, cursor=cursor)
        )

    def list_external_contacts(self, userid: str) -> dict[str, Any]:
        """``GET externalcontact/list`` — the external_userids a member has added."""
        _require("externalcontact/list", "userid", userid)
        return self._get("externalcontact/list", userid=userid)

    def batch_get_by_user(
        self, userid_list: Sequence[str], *, cursor: str | None = None, limit: int | None = None
    ) -> CustomersPage:
        """``POST externalcontact/batch/get_by_user`` — one page of the members' customers.

        ``userid_list`` takes 1 to 100 member userids; ``limit`` ≤ 100 per page (default 50).
        """
        api = "externalcontact/batch/get_by_user"
        _check_items(api, "userid_list", userid_list, MAX_BATCH_USERIDS, required=True)
        _check_range(api, "limit", limit, 1, MAX_BATCH_LIMIT)
        body = {"userid_list": list(userid_list), "cursor": cursor, "limit": limit}
        return cast(CustomersPage, self._post(api, body))

    def iter_customers_by_user(
        self, userids: Iterable[str], *, limit: int = MAX_BATCH_LIMIT
    ) -> Iterator[dict[str, Any]]:
        """Every ``{"external_contact", "follow_info"}`` of the members, walking the cursors.

        Any number of userids: they are sent 100 at a time.
        """
        userids = list(userids)
        for start in range(0, len(userids), MAX_BATCH_USERIDS):
            chunk = userids[start : start + MAX_BATCH_USERIDS]

            def fetch(cursor: str | None, chunk: list[str] = chunk) -> Mapping[str, Any]:
                return self.batch_get_by_user(chunk, cursor=cursor, limit=limit)

            yield from self._paginate(
                "externalcontact/batch/get_by_user", fetch, "external_contact_list"
            )

    def remark_external_contact(
        self,
        userid: str,
        external_userid: str,
        *,
        remark: str | None = None,
        description: str | None = None,
        remark_company: str | None = None,
        remark_mobiles: Sequence[str] | None = None,
        remark_pic_mediaid: str | None = None,
    ) -> dict[str, Any]:
        """``POST externalcontact/remark`` — a member's remark on a customer.

        ``remark`` ≤ 20 characters, ``description`` ≤ 150, ``remark_company`` ≤ 20 (only for
        WeChat customers). Pass ``remark_mobiles=[]`` to clear the mobile numbers.
        """
        api = "externalcontact/remark"
        _require(api, "userid", userid)
        _require(api, "external_userid", external_userid)
        _check_chars(api, "remark", remark, MAX_REMARK_CHARS)
        _check_chars(api, "description", description, MAX_DESCRIPTION_CHARS)
        _check_chars(api, "remark_company", remark_company, MAX_REMARK_CHARS)
        body = {
            "userid": userid,
            "external_userid": external_userid,
            "remark": remark,
            "description": description,
            "remark_company": remark_company,
            "remark_mobiles": list(remark_mobiles) if remark_mobiles is not None else None,
            "remark_pic_mediaid": remark_pic_mediaid,
        }
        return self._post(api, body)

    # ======================================================================================
    # Corp tags (客户标签)
    # ======================================================================================
    def get_corp_tag_list(
        self, *, tag_id: Sequence[str] | None = None, group_id: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """``POST externalcontact/get_corp_tag_list`` — the corp's tag groups (``tag_group``).

        Without filters, all of them; ``group_id`` wins over ``tag_id`` when both are given.
        """
        body = {"tag_id": _list(tag_id), "group_id": _list(group_id)}
        return self._post("externalcontact/get_corp_tag_list", body)

    def add_corp_tag(
        self,
        *,
        tag: Sequence[str | Mapping[str, Any]],
        group_id: str | None = None,
        group_name: str | None = None,
        order: int | None = None,
        agentid: int | None = None,
    ) -> dict[str, Any]:
        """``POST externalcontact/add_corp_tag`` — new tags, in a group (``group_id``) or a new
        one (``group_name``). ``tag`` items are names or ``{"name", "order"}``.

        Names ≤ 30 characters; at most 3 000 tags per corp (errcode 40126). Returns
        ``{"tag_group": …}`` with the ids WeCom assigned.
        """
        api = "externalcontact/add_corp_tag"
        tags = [{"name": item} if isinstance(item, str) else dict(item) for item in tag]
        _check_items(api, "tag", tags, None, required=True)
        for item in tags:
            _require(api, "tag.name", item.get("name"))
            _check_chars(api, "tag.name", item["name"], MAX_TAG_NAME_CHARS)
        if group_id is None:
            _require(api, "group_name", group_name)
        _check_chars(api, "group_name", group_name, MAX_TAG_NAME_CHARS)
        body = {
            "group_id": group_id,
            "group_name": group_name,
            "order": order,
            "tag": tags,
            "agentid": agentid,
        }
        return self._post(api, body, creates=True)

    def edit_corp_tag(
        self,
        id: str,
        *,
        name: str | None = None,
        order: int | None = None,
        agentid: int | None = None,
    ) -> dict[str, Any]:
        """``POST externalcontact/edit_corp_tag`` — rename or reorder a tag or tag group."""
        api = "externalcontact/edit_corp_tag"
        _require(api, "id", id)
        _check_chars(api, "name", name, MAX_TAG_NAME_CHARS)
        return self._post(api, {"id": id, "name": name, "order": order, "agentid": agentid})

    def del_corp_tag(
        self,
        *,
        tag_id: Sequence[str] | None = None,
        group_id: Sequence[str] | None = None,
        agentid: int | None = None,
    ) -> dict[str, Any]:
        """``POST externalcontact/del_corp_tag`` — delete tags and/or whole tag groups.

        ``tag_id`` and ``group_id`` may not both be empty; a group whose tags are all deleted
        disappears too.
        """
        api = "externalcontact/del_corp_tag"
        if not tag_id and not group_id:
            raise WeComInvalidArgument(api, "tag_id", _("Give tag_id or group_id (or both)."))
        body = {"tag_id": _list(tag_id), "group_id": _list(group_id), "agentid": agentid}
        return self._post(api, body)

    def mark_tag(
        self,
        userid: str,
        external_userid: str,
        *,
        add_tag: Sequence[str] | None = None,
        remove_tag: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """``POST externalcontact/mark_tag`` — add / remove corp tags on a customer, as seen by
        the member ``userid``. ``add_tag`` and ``remove_tag`` may not both be empty.
        """
        api = "externalcontact/mark_tag"
        _require(api, "userid", userid)
        _require(api, "external_userid", external_userid)
        if not add_tag and not remove_tag:
            raise WeComInvalidArgument(api, "add_tag", _("Give add_tag or remove_tag (or both)."))
        body = {
            "userid": userid,
            "external_userid": external_userid,
            "add_tag": _list(add_tag),
            "remove_tag": _list(remove_tag),
        }
        return self._post(api, body)

    # ======================================================================================
    # Contact ways, i.e. channel live codes (联系我)
    # ======================================================================================
    def add_contact_way(
        self,
        type: int,
        scene: int,
        *,
        style: int | None = None,
        remark: str | None = None,
        skip_verify: bool | None = None,
        state: str | None = None,
        user: Sequence[str] | None = None,
        party: Sequence[int] | None = None,
        is_temp: bool | None = None,
        expires_in: int | None = None,
        chat_expires_in: int | None = None,
        unionid: str | None = None,
        is_exclusive: bool | None = None,
        conclusions: Mapping[str, Any] | None = None,
    ) -> ContactWayCreated:
        """``POST externalcontact/add_contact_way`` — a "contact me" QR code / button.

        ``type`` 1 = one member (exactly one ``user``), 2 = several; ``scene`` 1 = mini
        program button, 2 = QR code (then ``qr_code`` is returned). ``state`` ≤ 30 characters
        (it comes back on the add-customer callback: Siyu routes by its prefix); ``remark`` ≤
        30; at most 100 members after departments are expanded (only ``user`` can be counted
        here; WeCom answers 41041 beyond). Temporary sessions (``is_temp``, one member only):
        ``expires_in`` / ``chat_expires_in`` ≤ 14 days. At most 500 000 ways per corp (41045).
        """
        api = "externalcontact/add_contact_way"
        _check_choice(api, "type", type, (1, 2))
        _check_choice(api, "scene", scene, (1, 2))
        _check_contact_way(api, remark, state, user, expires_in, chat_expires_in)
        if type == 1 and len(user or ()) != 1:
            raise WeComInvalidArgument(
                api, "user", _("A single-member contact way (type 1) needs exactly one user.")
            )
        if is_temp and (type != 1 or party):
            raise WeComInvalidArgument(
                api, "is_temp", _("A temporary-session contact way takes a single member.")
            )
        body = {
            "type": type,
            "scene": scene,
            "style": style,
            "remark": remark,
            "skip_verify": skip_verify,
            "state": state,
            "user": _list(user),
            "party": _list(party),
            "is_temp": is_temp,
            "expires_in": expires_in,
            "chat_expires_in": chat_expires_in,
            "unionid": unionid,
            "is_exclusive": is_exclusive,
            "conclusions": conclusions,
        }
        return cast(ContactWayCreated, self._post(api, body, creates=True))

    def get_contact_way(self, config_id: str) -> dict[str, Any]:
        """``POST externalcontact/get_contact_way`` — one contact way (``contact_way``)."""
        _require("externalcontact/get_contact_way", "config_id", config_id)
        return self._post("externalcontact/get_contact_way", {"config_id": config_id})

    def update_contact_way(
        self,
        config_id: str,
        *,
        remark: str | None = None,
        skip_verify: bool | None = None,
        style: int | None = None,
        state: str | None = None,
        user: Sequence[str] | None = None,
        party: Sequence[int] | None = None,
        expires_in: int | None = None,
        chat_expires_in: int | None = None,
        unionid: str | None = None,
        conclusions: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``POST externalcontact/update_contact_way`` — change a contact way; ``user`` and
        ``party`` replace the previous lists. Same limits as ``add_contact_way``.
        """
        api = "externalcontact/update_contact_way"
        _require(api, "config_id", config_id)
        _check_contact_way(api, remark, state, user, expires_in, chat_expires_in)
        body = {
            "config_id": config_id,
            "remark": remark,
            "skip_verify": skip_verify,
            "style": style,
            "state": state,
            "user": _list(user),
            "party": _list(party),
            "expires_in": expires_in,
            "chat_expires_in": chat_expires_in,
            "unionid": unionid,
            "conclusions": conclusions,
        }
        return self._post(api, body)

    def del_contact_way(self, config_id: str) -> dict[str, Any]:
        """``POST externalcontact/del_contact_way`` — delete a contact way."""
        _require("externalcontact/del_contact_way", "config_id", config_id)
        return self._post("externalcontact/del_contact_way", {"config_id": config_id})

    # ======================================================================================
    # Welcome messages (欢迎语)
    # ======================================================================================
    def send_welcome_msg(
        self,
        welcome_code: str,
        *,
        text: str | Mapping[str, Any] | None = None,
        attachments: Sequence[Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """``POST externalcontact/send_welcome_msg`` — the welcome message of a new customer.

        ``welcome_code`` comes with the add-customer callback and is valid **20 s**, for one
        call (41050 after that; 41051 if the two already chatted; absent if the member has a
        welcome message configured in WeCom). ``text`` ≤ 4 000 bytes; ≤ 9 ``attachments``
        (``{"msgtype": "image"|"link"|"miniprogram"|"video"|"file", <msgtype>: {…}}``); not
        both empty.
        """
        api = "externalcontact/send_welcome_msg"
        _require(api, "welcome_code", welcome_code)
        text_body = _text(api, text)
        attachment_list = _check_attachments(api, attachments, MESSAGE_ATTACHMENT_TYPES)
        if not text_body and not attachment_list:
            raise WeComInvalidArgument(api, "text", _("Give a text or attachments."))
        body = {"welcome_code": welcome_code, "text": text_body, "attachments": attachment_list}
        return self._post(api, body, creates=True)

    # ======================================================================================
    # Mass messages (群发)
    # ======================================================================================
    def add_msg_template(
        self,
        *,
        chat_type: str = "single",
        external_userid: Sequence[str] | None = None,
        chat_id_list: Sequence[str] | None = None,
        tag_filter: Mapping[str, Any] | None = None,
        sender: str | None = None,
        allow_select: bool | None = None,
        text: str | Mapping[str, Any] | None = None,
        attachments: Sequence[Mapping[str, Any]] | None = None,
    ) -> MsgTemplateCreated:
        """``POST externalcontact/add_msg_template`` — a mass message task (企业群发).

        Nothing is sent until each sending member confirms in WeCom. ``chat_type`` "single"
        (to customers: ``external_userid`` ≤ 10 000, or ``tag_filter``) or "group" (to the
        groups of ``sender``, required then, or ``chat_id_list``). ``text`` ≤ 4 000 bytes;
        ≤ 9 ``attachments``; not both empty. How many mass messages a customer may receive
        is the corp's setting in WeCom; over it, customers land in ``fail_list``.
        """
        api = "externalcontact/add_msg_template"
        _check_choice(api, "chat_type", chat_type, ("single", "group"))
        _check_items(api, "external_userid", external_userid, MAX_MASS_MESSAGE_CUSTOMERS)
        if chat_type == "group" and not sender and not chat_id_list:
            raise WeComInvalidArgument(
                api, "sender", _("A mass message to groups needs a sender or chat_id_list.")
            )
        text_body = _text(api, text)
        attachment_list = _check_attachments(api, attachments, MESSAGE_ATTACHMENT_TYPES)
        if not text_body and not attachment_list:
            raise WeComInvalidArgument(api, "text", _("Give a text or attachments."))
        body = {
            "chat_type": chat_type,
            "external_userid": _list(external_userid),
            "chat_id_list": _list(chat_id_list),
            "tag_filter": tag_filter,
            "sender": sender,
            "allow_select": allow_select,
            "text": text_body,
            "attachments": attachment_list,
        }
        return cast(MsgTemplateCreated, self._post(api, body, creates=True))

    def get_groupmsg_list_v2(
        self,
        chat_type: str,
        start_time: int,
        end_time: int,
        *,
        creator: str | None = None,
        filter_type: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """``POST externalcontact/get_groupmsg_list_v2`` — mass messages created in a period
        (``group_msg_list``, ``next_cursor``). ``filter_type`` 0 by the corp, 1 by members,
        2 all; ``limit`` ≤ 100.
        """
        api = "externalcontact/get_groupmsg_list_v2"
        _check_choice(api, "chat_type", chat_type, ("single", "group"))
        _check_range(api, "limit", limit, 1, MAX_GROUPMSG_LIST_LIMIT)
        if end_time < start_time:
            raise WeComInvalidArgument(api, "end_time", _("end_time is before start_time."))
        body = {
            "chat_type": chat_type,
            "start_time": start_time,
            "end_time": end_time,
            "creator": creator,
            "filter_type": filter_type,
            "limit": limit,
            "cursor": cursor,
        }
        return self._post(api, body)

    def iter_groupmsg_list(
        self, chat_type: str, start_time: int, end_time: int, **filters: Any
    ) -> Iterator[dict[str, Any]]:
        """Every mass message of ``get_groupmsg_list_v2``, walking the cursor."""
        return self._paginate(
            "externalcontact/get_groupmsg_list_v2",
            lambda cursor: self.get_groupmsg_list_v2(
                chat_type, start_time, end_time, cursor=cursor, **filters
            ),
            "group_msg_list",
        )

    def get_groupmsg_task(
        self, msgid: str, *, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """``POST externalcontact/get_groupmsg_task`` — which members sent a mass message
        (``task_list``: ``userid``, ``status``, ``send_time``). ``limit`` ≤ 1 000.
        """
        api = "externalcontact/get_groupmsg_task"
        _require(api, "msgid", msgid)
        _check_range(api, "limit", limit, 1, MAX_GROUPMSG_RESULT_LIMIT)
        return self._post(api, {"msgid": msgid, "limit": limit, "cursor": cursor})

    def iter_groupmsg_tasks(self, msgid: str, **options: Any) -> Iterator[dict[str, Any]]:
        """Every member task of a mass message, walking the cursor."""
        return self._paginate(
            "externalcontact/get_groupmsg_task",
            lambda cursor: self.get_groupmsg_task(msgid, cursor=cursor, **options),
            "task_list",
        )

    def get_groupmsg_send_result(
        self, msgid: str, userid: str, *, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """``POST externalcontact/get_groupmsg_send_result`` — per-recipient results of one
        member's share of a mass message (``send_list``). ``limit`` ≤ 1 000.
        """
        api = "externalcontact/get_groupmsg_send_result"
        _require(api, "msgid", msgid)
        _require(api, "userid", userid)
        _check_range(api, "limit", limit, 1, MAX_GROUPMSG_RESULT_LIMIT)
        body = {"msgid": msgid, "userid": userid, "limit": limit, "cursor": cursor}
        return self._post(api, body)

    def iter_groupmsg_send_results(
        self, msgid: str, userid: str, **options: Any
    ) -> Iterator[dict[str, Any]]:
        """Every recipient result of one member's share of a mass message."""
        return self._paginate(
            "externalcontact/get_groupmsg_send_result",
            lambda cursor: self.get_groupmsg_send_result(msgid, userid, cursor=cursor, **options),
            "send_list",
        )

    def cancel_groupmsg_send(self, msgid: str) -> dict[str, Any]:
        """``POST externalcontact/cancel_groupmsg_send`` — stop a mass message members have
        not sent yet."""
        _require("externalcontact/cancel_groupmsg_send", "msgid", msgid)
        return self._post("externalcontact/cancel_groupmsg_send", {"msgid": msgid})

    # ======================================================================================
    # Customer groups (客户群)
    # ======================================================================================
    def list_group_chats(
        self,
        *,
        status_filter: int | None = None,
        owner_filter: Mapping[str, Any] | Sequence[str] | None = None,
        cursor: str | None = None,
        limit: int = MAX_GROUP_CHAT_LIST_LIMIT,
    ) -> GroupChatsPage:
        """``POST externalcontact/groupchat/list`` — one page of group chats.

        ``status_filter`` 0 all, 1 owner resigned, 2 inheriting, 3 inherited; ``owner_filter``
        ``{"userid_list": […]}`` (or just the list) ≤ 100 owners; ``limit`` 1 – 1 000.
        """
        api = "externalcontact/groupchat/list"
        owners = _owner_filter(api, owner_filter)
        _check_range(api, "limit", limit, 1, MAX_GROUP_CHAT_LIST_LIMIT)
        body = {
            "status_filter": status_filter,
            "owner_filter": owners,
            "cursor": cursor,
            "limit": limit,
        }
        return cast(GroupChatsPage, self._post(api, body))

    def iter_group_chats(
        self,
        *,
        status_filter: int | None = None,
        owner_filter: Mapping[str, Any] | Sequence[str] | None = None,
        limit: int = MAX_GROUP_CHAT_LIST_LIMIT,
    ) -> Iterator[dict[str, Any]]:
        """Every ``{"chat_id", "status"}`` of ``list_group_chats``, walking the cursor."""
        return self._paginate(
            "externalcontact/groupchat/list",
            lambda cursor: self.list_group_chats(
                status_filter=status_filter, owner_filter=owner_filter, cursor=cursor, limit=limit
            ),
            "group_chat_list",
        )

    def get_group_chat(self, chat_id: str, *, need_name: bool = False) -> GroupChatDetail:
        """``POST externalcontact/groupchat/get`` — a group with its members and admins
        (``group_chat``); ``need_name`` adds members' names.
        """
        _require("externalcontact/groupchat/get", "chat_id", chat_id)
        body = {"chat_id": chat_id, "need_name": 1 if need_name else 0}
        return cast(GroupChatDetail, self._post("externalcontact/groupchat/get", body))

    def get_group_chat_statistic(
        self,
        day_begin_time: int,
        *,
        day_end_time: int | None = None,
        owner_filter: Mapping[str, Any] | Sequence[str] | None = None,
        order_by: int | None = None,
        order_asc: int | None = None,
        offset: int | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """``POST externalcontact/groupchat/statistic`` — group statistics per owner
        (``total``, ``next_offset``, ``items``). ≤ 100 owners; ``limit`` ≤ 1 000.
        """
        api = "externalcontact/groupchat/statistic"
        owners = _owner_filter(api, owner_filter)
        _check_range(api, "limit", limit, 1, MAX_GROUP_CHAT_LIST_LIMIT)
        body = {
            "day_begin_time": day_begin_time,
            "day_end_time": day_end_time,
            "owner_filter": owners,
            "order_by": order_by,
            "order_asc": order_asc,
            "offset": offset,
            "limit": limit,
        }
        return self._post(api, body)

    # --- group join ways, i.e. group live codes (加入群聊) -------------------------------------
    def add_join_way(
        self,
        scene: int,
        chat_id_list: Sequence[str],
        *,
        remark: str | None = None,
        auto_create_room: int | None = None,
        room_base_name: str | None = None,
        room_base_id: int | None = None,
        state: str | None = None,
    ) -> JoinWayCreated:
        """``POST externalcontact/groupchat/add_join_way`` — a QR code / button that admits
        into the first non-full group of ``chat_id_list`` (1 to 5 groups).

        ``scene`` 1 mini program, 2 QR code; ``auto_create_room`` 1 opens new groups named
        ``room_base_name`` (≤ 40 characters) + a number from ``room_base_id`` when all are
        full; ``state`` ≤ 30 characters; ``remark`` is cut at 30 by WeCom. Fetch the QR code
        with ``get_join_way``.
        """
        api = "externalcontact/groupchat/add_join_way"
        _check_join_way(api, scene, chat_id_list, room_base_name, state)
        body = {
            "scene": scene,
            "remark": remark,
            "auto_create_room": auto_create_room,
            "room_base_name": room_base_name,
            "room_base_id": room_base_id,
            "chat_id_list": list(chat_id_list),
            "state": state,
        }
        return cast(JoinWayCreated, self._post(api, body, creates=True))

    def get_join_way(self, config_id: str) -> dict[str, Any]:
        """``POST externalcontact/groupchat/get_join_way`` — one join way with its ``qr_code``
        (``join_way``)."""
        _require("externalcontact/groupchat/get_join_way", "config_id", config_id)
        return self._post("externalcontact/groupchat/get_join_way", {"config_id": config_id})

    def update_join_way(
        self,
        config_id: str,
        *,
        scene: int,
        chat_id_list: Sequence[str],
        remark: str | None = None,
        auto_create_room: int | None = None,
        room_base_name: str | None = None,
        room_base_id: int | None = None,
        state: str | None = None,
    ) -> dict[str, Any]:
        """``POST externalcontact/groupchat/update_join_way`` — replace a join way's
        configuration (same fields and limits as ``add_join_way``)."""
        api = "externalcontact/groupchat/update_join_way"
        _require(api, "config_id", config_id)
        _check_join_way(api, scene, chat_id_list, room_base_name, state)
        body = {
            "config_id": config_id,
            "scene": scene,
            "remark": remark,
            "auto_create_room": auto_create_room,
            "room_base_name": room_base_name,
            "room_base_id": room_base_id,
            "chat_id_list": list(chat_id_list),
            "state": state,
        }
        return self._post(api, body)

    def del_join_way(self, config_id: str) -> dict[str, Any]:
        """``POST externalcontact/groupchat/del_join_way`` — delete a join way."""
        _require("externalcontact/groupchat/del_join_way", "config_id", config_id)
        return self._post("externalcontact/groupchat/del_join_way", {"config_id": config_id})

    # ======================================================================================
    # Moments (客户朋友圈)
    # ======================================================================================
    def add_moment_task(
        self,
        *,
        text: str | Mapping[str, Any] | None = None,
        attachments: Sequence[Mapping[str, Any]] | None = None,
        visible_range: Mapping[str, Any] | None = None,
    ) -> MomentTaskCreated:
        """``POST externalcontact/add_moment_task`` — ask members to post to their Moments.

        Attachments: up to 9 images, or 1 video, or 1 link (``{"msgtype": …, <msgtype>: {…}}``,
        ``media_id`` from ``upload_media``). ``visible_range``: ``{"sender_list": {"user_list",
        "department_list"}, "external_contact_list": {"tag_list"}}``. Asynchronous: poll
        ``get_moment_task_result(jobid)`` (the jobid is valid 24 h). WeCom allows 10 calls a
        minute per corp, which the rate limiter applies.
        """
        api = "externalcontact/add_moment_task"
        text_body = _text(api, text, max_bytes=None)
        attachment_list = _check_attachments(api, attachments, MOMENT_ATTACHMENT_TYPES)
        if not text_body and not attachment_list:
            raise WeComInvalidArgument(api, "text", _("Give a text or attachments."))
        kinds = {item["msgtype"] for item in attachment_list or ()}
        if len(kinds) > 1 or (kinds & {"video", "link"} and len(attachment_list or ()) > 1):
            raise WeComInvalidArgument(
                api,
                "attachments",
                _("A Moments post takes up to 9 images, or one video, or one link."),
                limit=MAX_ATTACHMENTS,
            )
        body = {"text": text_body, "attachments": attachment_list, "visible_range": visible_range}
        return cast(MomentTaskCreated, self._post(api, body, creates=True))

    def get_moment_task_result(self, jobid: str) -> dict[str, Any]:
        """``GET externalcontact/get_moment_task_result`` — ``status`` (1 started, 2 running,
        3 done), ``type`` and ``result`` (``moment_id``, invalid senders / tags)."""
        _require("externalcontact/get_moment_task_result", "jobid", jobid)
        return self._get("externalcontact/get_moment_task_result", jobid=jobid)

    # ======================================================================================
    # Statistics (统计)
    # ======================================================================================
    def get_user_behavior_data(
        self,
        *,
        start_time: int,
        end_time: int,
        userid: Sequence[str] | None = None,
        partyid: Sequence[int] | None = None,
    ) -> dict[str, Any]:
        """``POST externalcontact/get_user_behavior_data`` — members' contact statistics per
        day (``behavior_data``: new contacts, chats, messages, reply rate, …).

        ``userid`` and ``partyid`` (≤ 100 departments) may not both be empty; at most 30 days
        per query, within the last 180 days; several members are summed.
        """
        api = "externalcontact/get_user_behavior_data"
        if not userid and not partyid:
            raise WeComInvalidArgument(api, "userid", _("Give userid or partyid (or both)."))
        _check_items(api, "partyid", partyid, MAX_BEHAVIOR_PARTIES)
        if end_time < start_time:
            raise WeComInvalidArgument(api, "end_time", _("end_time is before start_time."))
        if end_time - start_time > MAX_BEHAVIOR_SPAN_SECONDS:
            raise WeComInvalidArgument(
                api,
                "end_time",
                _("Statistics can be queried for at most 30 days at a time."),
                limit=MAX_BEHAVIOR_SPAN_SECONDS,
            )
        body = {
            "userid": _list(userid),
            "partyid": _list(partyid),
            "start_time": start_time,
            "end_time": end_time,
        }
        return self._post(api, body)

    # ======================================================================================
    # Customer transfer (在职继承 / 离职继承)
    # ======================================================================================
    def transfer_customer(
        self,
        handover_userid: str,
        takeover_userid: str,
        external_userid: Sequence[str],
        *,
        transfer_success_msg: str | None = None,
    ) -> TransferOutcome:
        """``POST externalcontact/transfer_customer`` — reassign customers of a member still
        employed (在职继承). ≤ 100 customers per call; ``transfer_success_msg`` ≤ 200
        characters. Each ``customer[].errcode`` 0 means the transfer started: the customer
        has 24 h to refuse. A customer can be transferred at most twice in 90 days (40128).
        """
        api = "externalcontact/transfer_customer"
        _check_transfer(api, handover_userid, takeover_userid, external_userid)
        _check_chars(api, "transfer_success_msg", transfer_success_msg, MAX_TRANSFER_MESSAGE_CHARS)
        body = {
            "handover_userid": handover_userid,
            "takeover_userid": takeover_userid,
            "external_userid": list(external_userid),
            "transfer_success_msg": transfer_success_msg,
        }
        return cast(TransferOutcome, self._post(api, body, creates=True))

    def resigned_transfer_customer(
        self, handover_userid: str, takeover_userid: str, external_userid: Sequence[str]
    ) -> TransferOutcome:
        """``POST externalcontact/resigned/transfer_customer`` — reassign customers of a member
        who left (离职继承; 40097 if they have not). ≤ 100 customers per call; takes effect
        after 24 h."""
        api = "externalcontact/resigned/transfer_customer"
        _check_transfer(api, handover_userid, takeover_userid, external_userid)
        body = {
            "handover_userid": handover_userid,
            "takeover_userid": takeover_userid,
            "external_userid": list(external_userid),
        }
        return cast(TransferOutcome, self._post(api, body, creates=True))

    def transfer_result(
        self, handover_userid: str, takeover_userid: str, *, cursor: str | None = None
    ) -> TransferResultPage:
        """``POST externalcontact/transfer_result`` — status of an employed member's transfers
        (``customer[].status``: 1 done, 2 waiting, 3 refused, 4 takeover at capacity)."""
        return cast(
            TransferResultPage,
            self._transfer_result(
                "externalcontact/transfer_result", handover_userid, takeover_userid, cursor
            ),
        )

    def resigned_transfer_result(
        self, handover_userid: str, takeover_userid: str, *, cursor: str | None = None
    ) -> TransferResultPage:
        """``POST externalcontact/resigned/transfer_result`` — status of a departed member's
        transfers (same shape as ``transfer_result``)."""
        return cast(
            TransferResultPage,
            self._transfer_result(
                "externalcontact/resigned/transfer_result", handover_userid, takeover_userid, cursor
            ),
        )

    def iter_transfer_results(
        self, handover_userid: str, takeover_userid: str, *, resigned: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Every ``customer`` entry of ``(resigned_)transfer_result``, walking the cursor."""
        fetch = self.resigned_transfer_result if resigned else self.transfer_result
        return self._paginate(
            "externalcontact/resigned/transfer_result"
            if resigned
            else "externalcontact/transfer_result",
            lambda cursor: fetch(handover_userid, takeover_userid, cursor=cursor),
            "customer",
        )

    def _transfer_result(
        self, api: str, handover_userid: str, takeover_userid: str, cursor: str | None
    ) -> dict[str, Any]:
        _require(api, "handover_userid", handover_userid)
        _require(api, "takeover_userid", takeover_userid)
        body = {
            "handover_userid": handover_userid,
            "takeover_userid": takeover_userid,
            "cursor": cursor,
        }
        return self._post(api, body)

    # ======================================================================================
    # Media and app messages
    # ======================================================================================
    def upload_media(
        self,
        type: str,
        media: bytes | IO[bytes],
        *,
        filename: str,
        content_type: str | None = None,
    ) -> UploadedMedia:
        """``POST media/upload?type=…`` — a temporary file (multipart field ``media``) for
        attachments; the ``media_id`` is valid 3 days.

        ``type`` image (≤ 10 MB, JPG/PNG), voice (≤ 2 MB, AMR), video (≤ 10 MB, MP4) or file
        (≤ 20 MB); every file larger than 5 bytes.
        """
        api = "media/upload"
        _check_choice(api, "type", type, MEDIA_TYPES)
        _require(api, "filename", filename)
        content = media if isinstance(media, bytes | bytearray) else media.read()
        size = len(content)
        if size < MEDIA_MIN_BYTES or size > MEDIA_MAX_BYTES[type]:
            raise WeComInvalidArgument(
                api,
                "media",
                _(
                    "A %(type)s file must be between 6 bytes and %(limit)d MB; "
                    "this one has %(size)d bytes."
                )
                % {"type": type, "limit": MEDIA_MAX_BYTES[type] >> 20, "size": size},
                limit=MEDIA_MAX_BYTES[type],
            )
        part = (filename, bytes(content), content_type or "application/octet-stream")
        return cast(
            UploadedMedia,
            self.request("POST", api, params={"type": type}, files={"media": part}),
        )

    def send_app_message(
        self,
        msgtype: str,
        content: Mapping[str, Any],
        *,
        agentid: int | None = None,
        touser: Sequence[str] | str | None = None,
        toparty: Sequence[int | str] | str | None = None,
        totag: Sequence[int | str] | str | None = None,
        safe: int | None = None,
        enable_id_trans: int | None = None,
        enable_duplicate_check: int | None = None,
        duplicate_check_interval: int | None = None,
    ) -> AppMessageSent:
        """``POST message/send`` — an app message to members (reminders, to-dos).

        ``content`` is the body of ``msgtype``, e.g. ``("text", {"content": "…"})`` (text ≤
        2 048 bytes, cut by WeCom) or ``("textcard", {"title", "description", "url"})``.
        Recipients: ``touser`` ≤ 1 000 userids (or "@all"), ``toparty`` / ``totag`` ≤ 100
        each. Needs the self-built app's secret and ``agentid`` (default: the client's, as
        ``client_for(tenant, secret="app")`` sets it); the customer-contact secret cannot
        send. WeCom allows a member 30 app messages a minute, 1 000 an hour.
        """
        api = "message/send"
        _require(api, "msgtype", msgtype)
        agentid = agentid if agentid is not None else self.agentid
        _require(api, "agentid", agentid)
        users = _pipe_list(api, "touser", touser, MAX_APP_MESSAGE_USERS)
        parties = _pipe_list(api, "toparty", toparty, MAX_APP_MESSAGE_PARTIES)
        tags = _pipe_list(api, "totag", totag, MAX_APP_MESSAGE_TAGS)
        if not (users or parties or tags):
            raise WeComInvalidArgument(
                api, "touser", _("Give at least one recipient (touser, toparty or totag).")
            )
        body = {
            "touser": users,
            "toparty": parties,
            "totag": tags,
            "msgtype": msgtype,
            "agentid": agentid,
            msgtype: dict(content),
            "safe": safe,
            "enable_id_trans": enable_id_trans,
            "enable_duplicate_check": enable_duplicate_check,
            "duplicate_check_interval": duplicate_check_interval,
        }
        return cast(AppMessageSent, self._post(api, body, creates=True))


def client_for(tenant: Any, *, secret: str = "contact", **options: Any) -> WeComClient:
    """The WeCom client of a tenant, from its corp id and a (decrypted) secret.

    ``secret="contact"`` (default) uses the customer-contact secret, for every
    ``externalcontact/*`` call; ``secret="app"`` uses the self-built app's secret and AgentId,
    for ``department/list``, ``user/list`` and ``message/send``. ``options`` are passed to
    ``WeComClient`` (``rate_limit_max_wait=60`` suits tasks). Raises ``WeComNotConfigured``
    when the tenant has not entered those credentials yet.
    """
    if secret not in ("contact", "app"):
        raise ValueError('secret must be "contact" or "app"')
    corp_id = (tenant.wecom_corp_id or "").strip()
    fields: dict[str, str] = {"wecom_corp_id": corp_id}
    if secret == "contact":
        fields["wecom_contact_secret"] = (tenant.wecom_contact_secret or "").strip()
    else:
        fields["wecom_agent_secret"] = (getattr(tenant, "wecom_agent_secret", "") or "").strip()
        fields["wecom_agent_id"] = str(getattr(tenant, "wecom_agent_id", "") or "").strip()
    missing = [name for name, value in fields.items() if not value]
    if missing:
        message = (
            _(
                "%(tenant)s has no WeCom corp id and customer-contact secret yet; "
                "enter them in the tenant's settings first."
            )
            if secret == "contact"
            else _(
                "%(tenant)s has no WeCom corp id, app AgentId and app secret yet; "
                "enter them in the tenant's settings first."
            )
        )
        raise WeComNotConfigured(
            message % {"tenant": tenant.name},
            details={"tenant": tenant.slug, "missing": missing},
        )
    if secret == "contact":
        return WeComClient(corp_id, fields["wecom_contact_secret"], **options)
    try:
        agentid = int(fields["wecom_agent_id"])
    except ValueError:
        raise WeComNotConfigured(
            _("The WeCom app AgentId of %(tenant)s is not a number.") % {"tenant": tenant.name},
            details={"tenant": tenant.slug, "missing": ["wecom_agent_id"]},
        ) from None
    return WeComClient(corp_id, fields["wecom_agent_secret"], agentid=agentid, **options)


# --- validation and body helpers -------------------------------------------------------------
def _errcode(data: Mapping[str, Any]) -> int:
    try:
        return int(data.get("errcode") or 0)
    except (TypeError, ValueError):
        return -1


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    """The fields that were given (None means "leave it to WeCom's default")."""
    return {key: value for key, value in values.items() if value is not None}


def _list(values: Iterable[Any] | None) -> list[Any] | None:
    return None if values is None else list(values)


def _require(api: str, field_name: str, value: Any) -> None:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise WeComInvalidArgument(
            api, field_name, _("%(field)s is required.") % {"field": field_name}
        )


def _check_items(
    api: str,
    field_name: str,
    values: Sequence[Any] | None,
    limit: int | None,
    *,
    required: bool = False,
) -> None:
    if isinstance(values, str):
        raise WeComInvalidArgument(
            api, field_name, _("%(field)s must be a list.") % {"field": field_name}
        )
    count = len(values) if values is not None else 0
    if required and not count:
        raise WeComInvalidArgument(
            api, field_name, _("%(field)s may not be empty.") % {"field": field_name}
        )
    if limit is not None and count > limit:
        raise WeComInvalidArgument(
            api,
            field_name,
            _("%(field)s takes at most %(limit)d items; got %(count)d.")
            % {"field": field_name, "limit": limit, "count": count},
            limit=limit,
        )


def _check_chars(api: str, field_name: str, value: str | None, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise WeComInvalidArgument(
            api,
            field_name,
            _("%(field)s takes at most %(limit)d characters; got %(count)d.")
            % {"field": field_name, "limit": limit, "count": len(value)},
            limit=limit,
        )


def _check_range(api: str, field_name: str, value: int | None, low: int, high: int) -> None:
    if value is not None and not low <= value <= high:
        raise WeComInvalidArgument(
            api,
            field_name,
            _("%(field)s must be between %(low)d and %(high)d; got %(value)s.")
            % {"field": field_name, "low": low, "high": high, "value": value},
            limit=high,
        )


def _check_choice(api: str, field_name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise WeComInvalidArgument(
            api,
            field_name,
            _("%(field)s must be one of %(choices)s; got %(value)r.")
            % {"field": field_name, "choices": ", ".join(map(str, choices)), "value": value},
        )


def _text(
    api: str,
    text: str | Mapping[str, Any] | None,
    *,
    max_bytes: int | None = MAX_MESSAGE_TEXT_BYTES,
) -> dict[str, Any] | None:
    """``{"content": …}`` from a string (or the mapping as given); None when empty."""
    if text is None:
        return None
    body = {"content": text} if isinstance(text, str) else dict(text)
    content = str(body.get("content") or "")
    if not content:
        return None
    if max_bytes is not None and len(content.encode()) > max_bytes:
        raise WeComInvalidArgument(
            api,
            "text",
            _("The text takes at most %(limit)d bytes (UTF-8); this one has %(count)d.")
            % {"limit": max_bytes, "count": len(content.encode())},
            limit=max_bytes,
        )
    return body


def _check_attachments(
    api: str, attachments: Sequence[Mapping[str, Any]] | None, kinds: Sequence[str]
) -> list[dict[str, Any]] | None:
    if attachments is None:
        return None
    items = [dict(item) for item in attachments]
    _check_items(api, "attachments", items, MAX_ATTACHMENTS)
    for item in items:
        msgtype = item.get("msgtype")
        if msgtype not in kinds or not isinstance(item.get(msgtype), Mapping):
            raise WeComInvalidArgument(
                api,
                "attachments",
                _('Each attachment needs a "msgtype" among %(kinds)s and its body.')
                % {"kinds": ", ".join(kinds)},
            )
    return items or None


def _check_contact_way(
    api: str,
    remark: str | None,
    state: str | None,
    user: Sequence[str] | None,
    expires_in: int | None,
    chat_expires_in: int | None,
) -> None:
    _check_chars(api, "state", state, MAX_STATE_CHARS)
    _check_chars(api, "remark", remark, MAX_CONTACT_WAY_REMARK_CHARS)
    _check_items(api, "user", user, MAX_CONTACT_WAY_USERS)
    _check_range(api, "expires_in", expires_in, 1, MAX_TEMP_SESSION_SECONDS)
    _check_range(api, "chat_expires_in", chat_expires_in, 1, MAX_TEMP_SESSION_SECONDS)


def _check_join_way(
    api: str,
    scene: int,
    chat_id_list: Sequence[str],
    room_base_name: str | None,
    state: str | None,
) -> None:
    _check_choice(api, "scene", scene, (1, 2))
    _check_items(api, "chat_id_list", chat_id_list, MAX_JOIN_WAY_CHATS, required=True)
    _check_chars(api, "room_base_name", room_base_name, MAX_ROOM_BASE_NAME_CHARS)
    _check_chars(api, "state", state, MAX_STATE_CHARS)


def _check_transfer(
    api: str, handover_userid: str, takeover_userid: str, external_userid: Sequence[str]
) -> None:
    _require(api, "handover_userid", handover_userid)
    _require(api, "takeover_userid", takeover_userid)
    if handover_userid == takeover_userid:
        raise WeComInvalidArgument(
            api, "takeover_userid", _("The takeover member must differ from the handover one.")
        )
    _check_items(api, "external_userid", external_userid, MAX_TRANSFER_CUSTOMERS, required=True)


def _owner_filter(
    api: str, owner_filter: Mapping[str, Any] | Sequence[str] | None
) -> dict[str, Any] | None:
    if owner_filter is None:
        return None
    if isinstance(owner_filter, Mapping):
        owners = dict(owner_filter)
    else:
        owners = {"userid_list": list(owner_filter)}
    _check_items(
        api, "owner_filter.userid_list", owners.get("userid_list"), MAX_OWNER_FILTER_USERIDS
    )
    return owners


def _pipe_list(
    api: str, field_name: str, values: Sequence[Any] | str | None, limit: int
) -> str | None:
    """WeCom's "a|b|c" recipient lists, from a list or an already joined string."""
    if values is None:
        return None
    items = values.split("|") if isinstance(values, str) else [str(value) for value in values]
    items = [item for item in items if item]
    _check_items(api, field_name, items, limit)
    return "|".join(items) or None


__all__ = [
    "PRODUCTION_API_BASE",
    "WeComClient",
    "client_for",
    "redact",
]
