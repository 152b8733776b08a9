"""The WeCom callback endpoint: ``GET|POST /wecom/<tenant-slug>/callback``.

GET answers WeCom's URL verification with the decrypted ``echostr``, bare. POST verifies the
signature, decrypts, stores the envelope in the inbox and answers ``success`` at once;
the tenant's inbox task (``siyu.wecom.tasks.process_tenant_callbacks``) does the work after
commit. A forged, corrupt or
misaddressed request is answered 4xx and logged, never 500.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter

from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.signals import post_delete, post_save
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from siyu.core.db import prompt_transaction
from siyu.tenancy.models import Tenant
from siyu.wecom import xml
from siyu.wecom.crypto import CallbackCryptoError, WeComCrypto
from siyu.wecom.models import CallbackInbox

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
# How long a process reuses a tenant's callback settings. WeCom may post hundreds of
# callbacks a second; without this each one reads the tenant row and decrypts its secrets.
# A change saved in this process applies at once (signals below); one saved in another
# process (the console, the CLI) applies within this many seconds.
CRYPTO_CACHE_SECONDS = 5.0
_crypto_cache: dict[str, tuple[float, tuple[Tenant, WeComCrypto]]] = {}


def _plain(text: str, status: int) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")


def _crypto_for(slug: str) -> tuple[Tenant, WeComCrypto] | None:
    """The active tenant of a callback URL and its crypto, or None (unknown, unconfigured)."""
    cached = _crypto_cache.get(slug)
    if cached is not None and time.monotonic() < cached[0]:
        return cached[1]
    found = _load_crypto(slug)
    if found is None:
        _crypto_cache.pop(slug, None)  # misses are not kept: any slug may be asked for
    else:
        _crypto_cache[slug] = (time.monotonic() + CRYPTO_CACHE_SECONDS, found)
    return found


def _forget_tenant(sender: type[Tenant], instance: Tenant, **kwargs: object) -> None:
    _crypto_cache.clear()  # cheap, and right whatever changed (even the slug)
    # Once more when the change commits: a request meanwhile may have cached the old row.
    transaction.on_commit(_crypto_cache.clear)


post_save.connect(_forget_tenant, sender=Tenant, dispatch_uid="wecom-callback-crypto-cache")
post_delete.connect(_forget_tenant, sender=Tenant, dispatch_uid="wecom-callback-crypto-cache")


def _load_crypto(slug: str) -> tuple[Tenant, WeComCrypto] | None:
    tenant = Tenant.objects.filter(slug=slug, is_active=True).first()
    if tenant is None or not (tenant.wecom_callback_token and tenant.wecom_callback_aes_key):
        return None
    try:
        crypto = WeComCrypto(
            tenant.wecom_callback_token, tenant.wecom_callback_aes_key, tenant.wecom_corp_id
        )
    except ValueError:
        return None
    return tenant, crypto


@csrf_exempt
@require_http_methods(["GET", "POST"])
def callback(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    found = _crypto_for(tenant_slug)
    if found is None:
        logger.warning("WeCom callback for unknown or unconfigured tenant %r", tenant_slug)
        return _plain("unknown tenant", 404)
    tenant, crypto = found
    params = request.GET
    signature, timestamp, nonce = (
        params.get("msg_signature", ""),
        params.get("timestamp", ""),
        params.get("nonce", ""),
    )
    if not (signature and timestamp and nonce):
        return _plain("msg_signature, timestamp and nonce are required", 400)
    try:
        if request.method == "GET":
            echostr = params.get("echostr", "")
            if not echostr:
                return _plain("echostr is required", 400)
            return _plain(crypto.verify_url(signature, timestamp, nonce, echostr), 200)
        return _receive(request, tenant, crypto, signature, timestamp, nonce)
    except CallbackCryptoError as error:
        logger.warning("Rejected WeCom callback for %s: %s (%s)", tenant.slug, error.reason, error)
        status = 401 if error.reason == "bad_signature" else 400
        return _plain(error.reason, status)
    except xml.BadXml as error:
        logger.warning("Rejected WeCom callback for %s: bad XML (%s)", tenant.slug, error)
        return HttpResponseBadRequest("bad xml")


def _receive(
    request: HttpRequest,
    tenant: Tenant,
    crypto: WeComCrypto,
    signature: str,
    timestamp: str,
    nonce: str,
) -> HttpResponse:
    if len(request.body) > MAX_BODY_BYTES:
        return _plain("body too large", 413)
    envelope = xml.parse(request.body)
    encrypted = envelope.get("Encrypt")
    if not isinstance(encrypted, str) or not encrypted:
        raise xml.BadXml("no Encrypt element")
    plaintext = crypto.decrypt_message(signature, timestamp, nonce, encrypted)
    store_callback(tenant, plaintext)
    return _plain("success", 200)


def store_callback(tenant: Tenant, plaintext: str) -> CallbackInbox | None:
    """Put a decrypted callback in the inbox once; return the new row (None: a duplicate).

    Returns once the row is committed and its processing enqueued. Requests arriving
    together are written together (``InboxWriter``); inside a transaction (a test, a
    caller's own atomic block) the row is written in it, alone.
    """
    callback = _Arrival(tenant, plaintext)
    if transaction.get_connection().in_atomic_block:
        _write_one(callback)
        return callback.row
    return inbox_writer.store(callback)


class _Arrival:
    """One callback on its way into the inbox, and what became of it."""

    def __init__(self, tenant: Tenant, plaintext: str) -> None:
        message = xml.parse(plaintext)
        self.tenant = tenant
        self.dedupe_key = hashlib.sha256(plaintext.encode()).hexdigest()
        self.values = {
            "tenant": tenant,
            "dedupe_key": self.dedupe_key,
            "event": str(message.get("Event", message.get("MsgType", "")))[:60],
            "change_type": str(message.get("ChangeType", ""))[:60],
            "create_time": _int_or_none(message.get("CreateTime")),
            "payload": message,
            "raw_xml": plaintext,
        }
        self.row: CallbackInbox | None = None
        self.done = False
        self.error: BaseException | None = None

    @property
    def identity(self) -> tuple[int, str]:
        return self.tenant.pk, self.dedupe_key


class InboxWriter:
    """Group commit: the callbacks that arrive while one batch is being written are written
    next, together — one transaction and one queue write for all of them.

    Why: WeCom posts bursts of callbacks (hundreds a second when a poster goes viral) and
    each must be stored before it is acknowledged. One transaction and one task each made
    the database's write lock the bottleneck (on SQLite, writers wait in line). A thread
    whose callback is not written yet either waits for the batch in flight or, when none
    is, writes everything waiting, its own included; nothing is acknowledged before its
    row is committed.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._waiting: list[_Arrival] = []
        self._writing = False

    def store(self, callback: _Arrival) -> CallbackInbox | None:
        with self._changed:
            self._waiting.append(callback)
            while not callback.done and self._writing:
                self._changed.wait()
            if callback.done:
                return self._outcome(callback)
            self._writing = True
            batch, self._waiting = self._waiting, []
        try:
            _write_batch(batch)
        except BaseException as error:
            for item in batch:
                item.error = item.error or error
        finally:
            with self._changed:
                for item in batch:
                    item.done = True
                self._writing = False
                self._changed.notify_all()
        return self._outcome(callback)

    @staticmethod
    def _outcome(callback: _Arrival) -> CallbackInbox | None:
        if callback.error is not None:
            raise callback.error
        return callback.row


inbox_writer = InboxWriter()


def _write_batch(batch: list[_Arrival]) -> None:
    """Insert the new callbacks of ``batch`` in one transaction, count redeliveries, and
    queue their tenants' processing task unless one is waiting already."""
    from siyu.wecom.processing import schedule_processing

    if len(batch) == 1:
        _write_one(batch[0])
        return
    inbox = CallbackInbox.objects.unscoped("the inbox writer's batch spans tenants")
    first: dict[tuple[int, str], _Arrival] = {}
    for item in batch:
        first.setdefault(item.identity, item)
    try:
        with prompt_transaction():
            known = set(
                inbox.filter(dedupe_key__in={key for _tenant, key in first}).values_list(
                    "tenant_id", "dedupe_key"
                )
            )
            new = [item for identity, item in first.items() if identity not in known]
            rows = inbox.bulk_create([CallbackInbox(**item.values) for item in new])
            for item, row in zip(new, rows, strict=True):
                item.row = row
            repeats = Counter(item.identity for item in batch if item.row is None)
            for (tenant_id, key), times in repeats.items():
                inbox.filter(tenant_id=tenant_id, dedupe_key=key).update(
                    deliveries=F("deliveries") + times
                )
            if new:
                schedule_processing({row.tenant_id for row in rows})
    except IntegrityError:  # another process stored one of them meanwhile: one at a time
        for item in batch:
            item.row = None
            _write_one(item)


def _write_one(callback: _Arrival) -> None:
    from siyu.wecom.processing import schedule_processing

    inbox = CallbackInbox.objects.for_tenant(callback.tenant)
    try:
        with prompt_transaction():
            callback.row = inbox.create(**callback.values)
            schedule_processing({callback.row.tenant_id})
    except IntegrityError:
        callback.row = None
        inbox.filter(dedupe_key=callback.dedupe_key).update(deliveries=F("deliveries") + 1)


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None
