"""Callbacks as WeCom sends them: the event XML, encrypted, signed and POSTed with retries.

WeCom POSTs ``?msg_signature=&timestamp=&nonce=`` with an XML envelope (``ToUserName``,
``Encrypt``, ``AgentID``) whose ``Encrypt`` holds the event XML, encrypted with the corp's
EncodingAESKey (``siyu.wecom.crypto``). It waits 5 s for a reply and retries a delivery
that timed out (or, here, that was answered with a non-2xx status) up to 3 times, re-sending
the same envelope. Deliveries run on a background scheduler and a small worker pool so that
API and control calls are never slowed down by a slow receiver.

The control API can inject delivery faults into the next callbacks: ``duplicate`` (the
same envelope several times, as WeCom's retries look), ``delay`` (seconds), ``reorder``
(hold a window of callbacks and deliver it in reverse order) and ``drop``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import secrets
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from siyu.wecom.crypto import WeComCrypto, envelope_xml, sign
from siyu.wecom.emulator.state import Corp, World

logger = logging.getLogger(__name__)


# --- the event XML -----------------------------------------------------------------------------
def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def event_xml(corp_id: str, create_time: int, event: str, fields: list[tuple[str, Any]]) -> str:
    """``<xml>`` with WeCom's common head and ``fields`` in order (``None`` values skipped).

    Strings are CDATA, integers bare, lists become ``<Name><Item>…</Item></Name>``.
    """
    parts = [
        f"<ToUserName>{_cdata(corp_id)}</ToUserName>",
        f"<FromUserName>{_cdata('sys')}</FromUserName>",
        f"<CreateTime>{int(create_time)}</CreateTime>",
        f"<MsgType>{_cdata('event')}</MsgType>",
        f"<Event>{_cdata(event)}</Event>",
    ]
    for name, value in fields:
        if value is None:
            continue
        if isinstance(value, bool):
            parts.append(f"<{name}>{int(value)}</{name}>")
        elif isinstance(value, int):
            parts.append(f"<{name}>{value}</{name}>")
        elif isinstance(value, list):
            items = "".join(f"<Item>{_cdata(str(item))}</Item>" for item in value)
            parts.append(f"<{name}>{items}</{name}>")
        else:
            parts.append(f"<{name}>{_cdata(str(value))}</{name}>")
    return "<xml>" + "".join(parts) + "</xml>"


def external_contact_xml(
    corp_id: str,
    create_time: int,
    change_type: str,
    userid: str,
    external_userid: str,
    *,
    state: str | None = None,
    welcome_code: str | None = None,
    source: str | None = None,
    fail_reason: str | None = None,
) -> str:
    """``change_external_contact``: add_external_contact, add_half_external_contact,
    edit_external_contact, del_external_contact, del_follow_user, transfer_fail."""
    fields: list[tuple[str, Any]] = [("ChangeType", change_type)]
    if fail_reason is not None:
        fields.append(("FailReason", fail_reason))
    fields += [("UserID", userid), ("ExternalUserID", external_userid)]
    if change_type in ("add_external_contact", "add_half_external_contact"):
        fields += [("State", state or None), ("WelcomeCode", welcome_code or None)]
    if change_type == "del_external_contact":
        fields.append(("Source", source or None))
    return event_xml(corp_id, create_time, "change_external_contact", fields)


def external_chat_xml(
    corp_id: str,
    create_time: int,
    chat_id: str,
    change_type: str,
    *,
    update_detail: str | None = None,
    join_scene: int | None = None,
    quit_scene: int | None = None,
    members: list[str] | None = None,
    last_mem_ver: str | None = None,
    cur_mem_ver: str | None = None,
) -> str:
    """``change_external_chat``: create, update (UpdateDetail add_member, del_member,
    change_owner, change_name, change_notice) and dismiss."""
    fields: list[tuple[str, Any]] = [("ChatId", chat_id), ("ChangeType", change_type)]
    if change_type == "update":
        fields.append(("UpdateDetail", update_detail))
        if update_detail in ("add_member", "del_member"):
            fields += [
                ("JoinScene", join_scene),
                ("QuitScene", quit_scene),
                ("MemChangeCnt", len(members or [])),
                ("MemChangeList", list(members or [])),
                ("LastMemVer", last_mem_ver),
                ("CurMemVer", cur_mem_ver),
            ]
    return event_xml(corp_id, create_time, "change_external_chat", fields)


def external_tag_xml(
    corp_id: str,
    create_time: int,
    change_type: str,
    tag_or_group_id: str,
    *,
    tag_type: str | None = None,
    strategy_id: int | None = None,
) -> str:
    """``change_external_tag``: create, update, delete (TagType tag | tag_group), shuffle."""
    fields: list[tuple[str, Any]] = [("Id", tag_or_group_id)]
    if change_type != "shuffle":
        fields.append(("TagType", tag_type))
    fields += [("ChangeType", change_type), ("StrategyId", strategy_id)]
    return event_xml(corp_id, create_time, "change_external_tag", fields)


def change_contact_xml(
    corp_id: str, create_time: int, change_type: str, fields: list[tuple[str, Any]]
) -> str:
    """``change_contact``: create_user, update_user, delete_user, create_party, ..."""
    return event_xml(corp_id, create_time, "change_contact", [("ChangeType", change_type), *fields])


def emit(world: World, corp: Corp, xml: str, event: str, change_type: str, **extra: Any) -> None:
    world.emit(corp, xml, {"event": event, "change_type": change_type, **extra})


# --- delivery ----------------------------------------------------------------------------------
@dataclass
class Delivery:
    id: int
    corp_id: str
    url: str
    event: str
    change_type: str
    plaintext: str
    body: str
    query: dict[str, str]
    created_at: float
    status: str = "pending"  # pending | delivered | failed | dropped | skipped
    attempts: list[dict[str, Any]] = field(default_factory=list)
    due: float = 0.0
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "corp_id": self.corp_id,
            "url": self.url,
            "event": self.event,
            "change_type": self.change_type,
            "xml": self.plaintext,
            "status": self.status,
            "attempts": list(self.attempts),
            "created_at": self.created_at,
            "note": self.note,
        }


class CallbackDispatcher:
    """Encrypts, signs and delivers a world's callbacks to each corp's callback URL."""

    def __init__(
        self,
        world: World,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        retry_delay: float = 1.0,
        workers: int = 4,
        reorder_hold: float = 2.0,
    ) -> None:
        self.world = world
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self.workers = workers
        self.reorder_hold = reorder_hold
        self.log: deque[Delivery] = deque(maxlen=5000)
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self._heap: list[tuple[float, int, Delivery]] = []
        self._held: list[Delivery] = []
        self._held_until = 0.0
        self._unfinished: set[int] = set()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._client: httpx.Client | None = None
        self._closed = False
        world.add_listener(self.enqueue)

    # --- configuration ---------------------------------------------------------------------
    def configure(self, **options: Any) -> dict[str, Any]:
        for name in ("timeout", "retries", "retry_delay", "reorder_hold"):
            if options.get(name) is not None:
                setattr(self, name, type(getattr(self, name))(options[name]))
        return {
            "timeout": self.timeout,
            "retries": self.retries,
            "retry_delay": self.retry_delay,
            "reorder_hold": self.reorder_hold,
        }

    # --- intake ----------------------------------------------------------------------------
    def enqueue(self, corp: Corp, xml: str, meta: dict[str, Any]) -> None:
        config = corp.callback
        delivery = Delivery(
            id=next(self._ids),
            corp_id=corp.corp_id,
            url=config.url,
            event=meta.get("event", ""),
            change_type=meta.get("change_type", ""),
            plaintext=xml,
            body="",
            query={},
            created_at=time.time(),
        )
        self.log.append(delivery)
        if not (config.url and config.token and config.encoding_aes_key):
            delivery.status, delivery.note = "skipped", "the corp has no callback URL/token/key"
            return
        try:
            crypto = WeComCrypto(config.token, config.encoding_aes_key, corp.corp_id)
        except ValueError as error:
            delivery.status, delivery.note = "skipped", str(error)
            return
        # The signature's timestamp is real time (receivers check freshness), even when the
        # world's clock has been advanced.
        message = crypto.encrypt_message(
            xml, timestamp=str(int(time.time())), nonce=str(secrets.randbelow(10**10))
        )
        delivery.body = envelope_xml(corp.corp_id, message, config.agent_id)
        delivery.query = {
            "msg_signature": message.msg_signature,
            "timestamp": message.timestamp,
            "nonce": message.nonce,
        }
        copies, delay, reorder, dropped = self._take_faults()
        if dropped:
            delivery.status, delivery.note = "dropped", "fault: drop"
            return
        batch = [delivery]
        for _ in range(copies - 1):
            twin = Delivery(**{**delivery.__dict__, "id": next(self._ids), "attempts": []})
            twin.note = f"fault: duplicate of #{delivery.id}"
            self.log.append(twin)
            batch.append(twin)
        due = time.monotonic() + delay
        with self._cond:
            for item in batch:
                item.due = due
                self._unfinished.add(item.id)
                if reorder:
                    item.note = (item.note + "; " if item.note else "") + "fault: reorder"
                    self._held.append(item)
                    if len(self._held) == 1:
                        self._held_until = time.monotonic() + self.reorder_hold
                    if len(self._held) >= reorder:
                        self._release_held()
                else:
                    self._push(item)
            self._cond.notify_all()
        self._ensure_started()

    def _take_faults(self) -> tuple[int, float, int, bool]:
        copies, delay, reorder, dropped = 1, 0.0, 0, False
        with self.world.lock:
            for fault in self.world.callback_faults:
                if fault["remaining"] <= 0:
                    continue
                fault["remaining"] -= 1
                kind = fault["kind"]
                if kind == "duplicate":
                    copies = max(copies, int(fault.get("copies") or 2))
                elif kind == "delay":
                    delay = max(delay, float(fault.get("seconds") or 1.0))
                elif kind == "reorder":
                    reorder = int(fault.get("window") or fault["count"])
                elif kind == "drop":
                    dropped = True
            self.world.callback_faults[:] = [
                f for f in self.world.callback_faults if f["remaining"] > 0
            ]
        return copies, delay, reorder, dropped

    def _push(self, delivery: Delivery) -> None:
        heapq.heappush(self._heap, (delivery.due, next(self._seq), delivery))

    def _release_held(self) -> None:
        held, self._held = self._held, []
        now = time.monotonic()
        for item in reversed(held):
            item.due = max(item.due, now)
            self._push(item)
        # reversed order must survive equal due times: later pushes get later seqs

    # --- the scheduler ---------------------------------------------------------------------
    def _ensure_started(self) -> None:
        with self._cond:
            if self._thread is not None or self._closed:
                return
            self._client = httpx.Client(timeout=self.timeout, follow_redirects=False)
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="wecom-cb")
            self._thread = threading.Thread(
                target=self._run, name="wecom-callback-scheduler", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                now = time.monotonic()
                if self._held and now >= self._held_until:
                    self._release_held()
                ready = []
                while self._heap and self._heap[0][0] <= now:
                    ready.append(heapq.heappop(self._heap)[2])
                if not ready:
                    wait = 0.5
                    if self._heap:
                        wait = min(wait, self._heap[0][0] - now)
                    if self._held:
                        wait = min(wait, self._held_until - now)
                    self._cond.wait(max(wait, 0.001))
                    continue
            assert self._executor is not None
            for delivery in ready:
                try:
                    self._executor.submit(self._attempt, delivery)
                except RuntimeError:  # shut down
                    return

    def _attempt(self, delivery: Delivery) -> None:
        assert self._client is not None
        started = time.monotonic()
        record: dict[str, Any] = {"at": time.time()}
        ok = False
        try:
            response = self._client.post(
                delivery.url,
                params=delivery.query,
                content=delivery.body.encode(),
                headers={"Content-Type": "text/xml; charset=utf-8", "User-Agent": "Mozilla/4.0"},
                timeout=self.timeout,
            )
            record["status_code"] = response.status_code
            record["reply"] = response.text[:200]
            ok = 200 <= response.status_code < 300
        except httpx.TimeoutException:
            record["error"] = "timeout"
        except httpx.HTTPError as error:
            record["error"] = f"{type(error).__name__}: {error}"
        except Exception as error:  # a delivery must never kill a worker
            logger.exception("callback delivery #%s crashed", delivery.id)
            record["error"] = f"{type(error).__name__}: {error}"
        record["elapsed"] = round(time.monotonic() - started, 3)
        with self._cond:
            delivery.attempts.append(record)
            if ok:
                delivery.status = "delivered"
            elif len(delivery.attempts) <= self.retries and not self._closed:
                delivery.due = time.monotonic() + self.retry_delay
                self._push(delivery)
                self._cond.notify_all()
                return
            else:
                delivery.status = "failed"
                logger.warning(
                    "callback #%s (%s/%s) to %s failed after %d attempts",
                    delivery.id,
                    delivery.event,
                    delivery.change_type,
                    delivery.url,
                    len(delivery.attempts),
                )
            self._unfinished.discard(delivery.id)
            self._cond.notify_all()

    # --- inspection ------------------------------------------------------------------------
    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued callback is delivered or has failed; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._unfinished:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
            return True

    def deliveries(self, corp_id: str | None = None) -> list[dict[str, Any]]:
        with self._cond:
            return [d.as_dict() for d in self.log if corp_id in (None, d.corp_id)]

    def verify_url(self, corp: Corp, url: str | None = None) -> dict[str, Any]:
        return verify_url(corp, url, timeout=self.timeout)

    # --- shutdown --------------------------------------------------------------------------
    def close(self) -> None:
        self.world.remove_listener(self.enqueue)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._client is not None:
            self._client.close()


def verify_url(corp: Corp, url: str | None = None, *, timeout: float = 5.0) -> dict[str, Any]:
    """WeCom's URL check: GET ``url?msg_signature&timestamp&nonce&echostr``; the reply must
    be the decrypted echostr, bare."""
    config = corp.callback
    target = url or config.url
    if not (target and config.token and config.encoding_aes_key):
        return {"ok": False, "error": "the corp has no callback URL/token/key"}
    crypto = WeComCrypto(config.token, config.encoding_aes_key, corp.corp_id)
    plaintext = str(secrets.randbelow(10**19))
    echostr = crypto.encrypt_ciphertext(plaintext)
    timestamp, nonce = str(int(time.time())), str(secrets.randbelow(10**10))
    params = {
        "msg_signature": sign(config.token, timestamp, nonce, echostr),
        "timestamp": timestamp,
        "nonce": nonce,
        "echostr": echostr,
    }
    try:
        response = httpx.get(target, params=params, timeout=timeout)
    except httpx.HTTPError as error:
        return {"ok": False, "url": target, "error": f"{type(error).__name__}: {error}"}
    return {
        "ok": response.status_code == 200 and response.text == plaintext,
        "url": target,
        "status_code": response.status_code,
        "reply": response.text[:200],
        "expected": plaintext,
    }
