"""The WeCom callback endpoint: ``GET|POST /wecom/<tenant-slug>/callback``.

GET answers WeCom's URL verification with the decrypted ``echostr``, bare. POST verifies the
signature, decrypts, stores the envelope in the inbox and answers ``success`` at once;
``siyu.wecom.tasks.process_callback`` does the work after commit. A forged, corrupt or
misaddressed request is answered 4xx and logged, never 500.
"""

from __future__ import annotations

import hashlib
import logging
import time

from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.signals import post_delete, post_save
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

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
    """Put a decrypted callback in the inbox once; return the new row (None: a duplicate)."""
    from siyu.core.tasks import on_commit_task
    from siyu.wecom.tasks import process_callback

    message = xml.parse(plaintext)
    dedupe_key = hashlib.sha256(plaintext.encode()).hexdigest()
    inbox = CallbackInbox.objects.for_tenant(tenant)
    try:
        with transaction.atomic():
            row = inbox.create(
                tenant=tenant,
                dedupe_key=dedupe_key,
                event=str(message.get("Event", message.get("MsgType", "")))[:60],
                change_type=str(message.get("ChangeType", ""))[:60],
                create_time=_int_or_none(message.get("CreateTime")),
                payload=message,
                raw_xml=plaintext,
            )
            on_commit_task(process_callback, row.pk)
    except IntegrityError:
        inbox.filter(dedupe_key=dedupe_key).update(deliveries=F("deliveries") + 1)
        return None
    return row


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None
