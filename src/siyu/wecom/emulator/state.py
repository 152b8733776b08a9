"""The emulator's world: everything Tencent's servers would know about our corps, in memory.

One ``World`` holds corps (their apps and secrets, callback settings, departments, staff,
customers and their follows, corp tags, contact ways, group chats and join ways, mass
messages, Moments tasks, welcome codes, transfers, uploaded media, app messages) and the
access tokens issued. Every read and write happens under ``World.lock``; a change marks
the world dirty and a debounced writer saves it to a JSON file, which is loaded again at
start so that ``make demo`` restarts keep the same private domain.

Ids look like WeCom's (``wm…`` customers, ``wr…`` chats, ``et…`` tags, 32-hex config ids)
and come from a deterministic generator: a seed plus a persisted counter, so that tests
are reproducible and a restarted emulator never reissues an id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import secrets
import threading
import time
import types
import typing
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHINA_OFFSET = 8 * 3600  # WeCom's statistics count days in Beijing time
DAY = 86400
URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
HEX = "0123456789abcdef"


def day_start(timestamp: float) -> int:
    """Midnight (Beijing time) of the day holding ``timestamp``, as a Unix timestamp."""
    return int((int(timestamp) + CHINA_OFFSET) // DAY * DAY - CHINA_OFFSET)


def day_key(timestamp: float) -> str:
    return time.strftime("%Y%m%d", time.gmtime(int(timestamp) + CHINA_OFFSET))


# --- clock and ids -----------------------------------------------------------------------------
class Clock:
    """Wall-clock time plus an offset the control API can advance ("time travel")."""

    def __init__(self, base: Callable[[], float] = time.time, offset: float = 0.0) -> None:
        self._base = base
        self.offset = offset

    def __call__(self) -> float:
        return self._base() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def set(self, timestamp: float) -> None:
        self.offset = timestamp - self._base()


class FakeClock(Clock):
    """A frozen clock for tests: time moves only when told to."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01 08:00 Beijing
        self.now = start
        super().__init__(base=lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def set(self, timestamp: float) -> None:
        self.now = timestamp


class IdGenerator:
    """Ids from SHAKE-256(seed, counter): reproducible with a seed, unique across restarts."""

    def __init__(self, seed: str | None = None, counter: int = 0) -> None:
        self.seed = seed if seed is not None else secrets.token_hex(16)
        self.counter = counter
        self._lock = threading.Lock()

    def _bytes(self, n: int) -> bytes:
        with self._lock:
            self.counter += 1
            counter = self.counter
        return hashlib.shake_256(f"{self.seed}:{counter}".encode()).digest(n)

    def chars(self, n: int, alphabet: str = URLSAFE) -> str:
        return "".join(alphabet[b % len(alphabet)] for b in self._bytes(n))

    def external_userid(self) -> str:
        return "wm" + self.chars(30)

    def chat_id(self) -> str:
        return "wr" + self.chars(30)

    def tag_id(self) -> str:
        return "et" + self.chars(30)

    def config_id(self) -> str:
        return self.chars(32, HEX)

    def unionid(self) -> str:
        return "o" + self.chars(27)

    def access_token(self) -> str:
        return self.chars(86)

    def welcome_code(self) -> str:
        return self.chars(43, ALNUM)

    def msgid(self) -> str:
        return "msg" + self.chars(27)

    def jobid(self) -> str:
        return self.chars(40, ALNUM)

    def moment_id(self) -> str:
        return "mom" + self.chars(27)

    def media_id(self) -> str:
        return "3" + self.chars(63, ALNUM)

    def number(self, upper: int) -> int:
        return int.from_bytes(self._bytes(8), "big") % upper


# --- the world's records -----------------------------------------------------------------------
@dataclass
class App:
    """A secret of the corp: the customer-contact ("contact") secret, or a self-built app."""

    secret: str
    kind: str = "contact"  # "contact" | "agent"
    agentid: int | None = None
    name: str = ""
    contact_access: bool = True  # an agent app configured as "可调用应用" of customer contact


@dataclass
class CallbackConfig:
    url: str = ""
    token: str = ""
    encoding_aes_key: str = ""
    agent_id: str = ""  # AgentID in the envelope


@dataclass
class Settings:
    token_ttl: int = 7200
    rate_limit_per_minute: int = 10_000
    welcome_code_ttl: int = 20
    group_max_members: int = 500
    qr_join_limit: int = 500  # some report 200 for scanning a group's QR: configurable
    transfer_delay_seconds: int = DAY
    moment_job_ttl: int = DAY
    moment_job_seconds: int = 0  # how long add_moment_task's job stays "creating"
    moment_tasks_per_minute: int = 10
    mass_per_customer_per_day: int = 0  # 0: no limit; otherwise status 3 beyond it
    contact_way_max_users: int = 100
    contact_way_max_total: int = 500_000
    max_corp_tags: int = 3_000
    # WeCom sends no callback for a change made through the API. 1: the emulator sends one
    # anyway for tag edits and mark_tag (an "echo"), to test that echoes apply harmlessly.
    echo_api_changes: int = 0
    media_ttl: int = 3 * DAY


@dataclass
class AccessToken:
    token: str
    corp_id: str
    secret: str
    expires_at: float


@dataclass
class Department:
    id: int
    name: str
    parentid: int = 0
    order: int = 0
    name_en: str = ""


@dataclass
class Staff:
    userid: str
    name: str
    department: list[int] = field(default_factory=lambda: [1])
    main_department: int = 1
    is_leader_in_dept: list[int] = field(default_factory=list)
    position: str = ""
    gender: str = "0"
    mobile: str = ""
    email: str = ""
    alias: str = ""
    avatar: str = ""
    status: int = 1  # 1 active, 2 disabled, 4 not activated, 5 left the corp
    created_at: int = 0
    resigned_at: int = 0
    direct_leader: list[str] = field(default_factory=list)  # userids; WeCom allows one

    @property
    def active(self) -> bool:
        return self.status == 1 and not self.resigned_at


@dataclass
class Follow:
    userid: str
    createtime: int
    add_way: int = 0
    state: str = ""
    oper_userid: str = ""
    remark: str = ""
    description: str = ""
    remark_corp_name: str = ""
    remark_mobiles: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    seq: int = 0


@dataclass
class Customer:
    external_userid: str
    name: str
    type: int = 1  # 1 WeChat user, 2 WeCom user
    gender: int = 0
    avatar: str = ""
    unionid: str = ""
    position: str = ""
    corp_name: str = ""
    corp_full_name: str = ""
    created_at: int = 0
    follows: dict[str, Follow] = field(default_factory=dict)  # userid -> follow


@dataclass
class Tag:
    id: str
    name: str
    create_time: int
    order: int = 0


@dataclass
class TagGroup:
    group_id: str
    group_name: str
    create_time: int
    order: int = 0
    tags: dict[str, Tag] = field(default_factory=dict)


@dataclass
class ContactWay:
    config_id: str
    type: int
    scene: int
    qr_code: str = ""
    style: int = 0
    remark: str = ""
    skip_verify: bool = True
    state: str = ""
    user: list[str] = field(default_factory=list)
    party: list[int] = field(default_factory=list)
    is_temp: bool = False
    expires_in: int = 0
    chat_expires_in: int = 0
    unionid: str = ""
    is_exclusive: bool = False
    mark_source: bool = False
    conclusions: dict[str, Any] = field(default_factory=dict)
    created_at: int = 0
    next_index: int = 0  # round-robin over the staff pool
    scans: int = 0


@dataclass
class GroupMember:
    userid: str
    type: int  # 1 staff, 2 customer
    join_time: int
    join_scene: int  # 1 invited directly, 2 invited by link, 3 scanned the group QR
    invitor: str = ""
    group_nickname: str = ""
    name: str = ""
    unionid: str = ""
    state: str = ""


@dataclass
class GroupChat:
    chat_id: str
    name: str
    owner: str
    create_time: int
    notice: str = ""
    admin_list: list[str] = field(default_factory=list)
    members: dict[str, GroupMember] = field(default_factory=dict)
    dismissed: bool = False
    dismissed_at: int = 0
    member_version: str = ""


@dataclass
class JoinWay:
    config_id: str
    scene: int
    chat_id_list: list[str]
    qr_code: str = ""
    remark: str = ""
    auto_create_room: int = 1
    room_base_name: str = ""
    room_base_id: int = 0
    state: str = ""
    mark_source: bool = False
    created_at: int = 0


@dataclass
class MassRecipient:
    userid: str
    external_userid: str = ""
    chat_id: str = ""
    status: int = 0  # 0 unsent, 1 sent, 2 not a friend / group gone, 3 already received
    send_time: int = 0


@dataclass
class MassSender:
    status: int = 0  # 0 unsent, 2 sent
    send_time: int = 0


@dataclass
class MassMessage:
    msgid: str
    chat_type: str
    create_time: int
    create_type: int = 0  # 0 by the corp (API), 1 by a member
    creator: str = ""
    text: dict[str, Any] = field(default_factory=dict)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    allow_select: bool = False
    senders: dict[str, MassSender] = field(default_factory=dict)
    recipients: list[MassRecipient] = field(default_factory=list)
    cancelled: bool = False


@dataclass
class MomentJob:
    jobid: str
    created_at: int
    moment_id: str
    text: dict[str, Any] = field(default_factory=dict)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    senders: list[str] = field(default_factory=list)
    visible_tags: list[str] = field(default_factory=list)
    invalid_users: list[str] = field(default_factory=list)
    invalid_departments: list[int] = field(default_factory=list)
    invalid_tags: list[str] = field(default_factory=list)
    published: dict[str, int] = field(default_factory=dict)  # userid -> publish time


@dataclass
class WelcomeCode:
    code: str
    userid: str
    external_userid: str
    created_at: int
    used: bool = False


@dataclass
class Transfer:
    kind: str  # "onjob" | "resigned"
    handover_userid: str
    takeover_userid: str
    external_userid: str
    requested_at: int
    status: int = 2  # 1 done, 2 waiting, 3 refused, 4 takeover full
    takeover_time: int = 0
    success_msg: str = ""


@dataclass
class Media:
    media_id: str
    type: str
    created_at: int
    filename: str = ""
    size: int = 0


@dataclass
class Corp:
    corp_id: str
    name: str = ""
    apps: dict[str, App] = field(default_factory=dict)  # secret -> app
    callback: CallbackConfig = field(default_factory=CallbackConfig)
    settings: Settings = field(default_factory=Settings)
    departments: dict[int, Department] = field(default_factory=dict)
    staff: dict[str, Staff] = field(default_factory=dict)
    customers: dict[str, Customer] = field(default_factory=dict)
    tag_groups: dict[str, TagGroup] = field(default_factory=dict)
    contact_ways: dict[str, ContactWay] = field(default_factory=dict)
    groups: dict[str, GroupChat] = field(default_factory=dict)
    join_ways: dict[str, JoinWay] = field(default_factory=dict)
    mass_messages: dict[str, MassMessage] = field(default_factory=dict)
    moment_jobs: dict[str, MomentJob] = field(default_factory=dict)
    welcome_codes: dict[str, WelcomeCode] = field(default_factory=dict)
    transfers: list[Transfer] = field(default_factory=list)
    media: dict[str, Media] = field(default_factory=dict)
    app_messages: list[dict[str, Any]] = field(default_factory=list)
    welcome_messages: list[dict[str, Any]] = field(default_factory=list)
    chatted: set[str] = field(default_factory=set)  # "userid|external_userid" pairs
    # statistics by Beijing day: "YYYYMMDD" -> userid -> counters
    behavior: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # group activity by day: "YYYYMMDD" -> chat_id -> {"msg_total": n, "senders": [...]}
    group_activity: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    pending_replies: dict[str, int] = field(default_factory=dict)  # pair -> customer msg time
    mass_received: dict[str, list[int]] = field(default_factory=dict)  # euid -> send times
    moment_task_times: list[int] = field(default_factory=list)
    follow_seq: int = 0

    def __post_init__(self) -> None:
        # Transient indexes (not dataclass fields: never saved), rebuilt after loading.
        self.by_user: dict[str, dict[str, Follow]] = {}
        self.tag_index: dict[str, str] = {}  # tag id -> group id
        self._user_lists: dict[str, tuple[list[int], list[str]]] = {}
        self.rebuild_indexes()

    # --- indexes -----------------------------------------------------------------------------
    def rebuild_indexes(self) -> None:
        pairs: dict[str, list[tuple[int, str, Follow]]] = {}
        for customer in self.customers.values():
            for userid, follow in customer.follows.items():
                pairs.setdefault(userid, []).append((follow.seq, customer.external_userid, follow))
        self.by_user = {
            userid: {euid: follow for _, euid, follow in sorted(items, key=lambda i: i[0])}
            for userid, items in pairs.items()
        }
        self.tag_index = {
            tag_id: group.group_id for group in self.tag_groups.values() for tag_id in group.tags
        }
        self._user_lists = {}

    def user_list(self, userid: str) -> tuple[list[int], list[str]]:
        """The seqs and external_userids a member follows, in follow order (cached)."""
        cached = self._user_lists.get(userid)
        if cached is None:
            follows = self.by_user.get(userid, {})
            cached = ([f.seq for f in follows.values()], list(follows))
            self._user_lists[userid] = cached
        return cached

    # --- follows -----------------------------------------------------------------------------
    def follow(self, userid: str, external_userid: str) -> Follow | None:
        return self.by_user.get(userid, {}).get(external_userid)

    def add_follow(self, customer: Customer, follow: Follow) -> Follow:
        self.follow_seq += 1
        follow.seq = self.follow_seq
        customer.follows[follow.userid] = follow
        self.by_user.setdefault(follow.userid, {})[customer.external_userid] = follow
        self._user_lists.pop(follow.userid, None)
        return follow

    def remove_follow(self, customer: Customer, userid: str) -> Follow | None:
        follow = customer.follows.pop(userid, None)
        self.by_user.get(userid, {}).pop(customer.external_userid, None)
        self._user_lists.pop(userid, None)
        return follow

    # --- tags --------------------------------------------------------------------------------
    def tag(self, tag_id: str) -> tuple[TagGroup, Tag] | None:
        group_id = self.tag_index.get(tag_id)
        if group_id is None:
            return None
        group = self.tag_groups[group_id]
        return group, group.tags[tag_id]

    def tag_count(self) -> int:
        return len(self.tag_index)

    def forget_tags(self, tag_ids: set[str]) -> None:
        for tag_id in tag_ids:
            self.tag_index.pop(tag_id, None)
        if not tag_ids:
            return
        for follows in self.by_user.values():
            for follow in follows.values():
                if any(t in tag_ids for t in follow.tags):
                    follow.tags = [t for t in follow.tags if t not in tag_ids]

    # --- staff -------------------------------------------------------------------------------
    def active_staff(self, userid: str) -> Staff | None:
        member = self.staff.get(userid)
        return member if member is not None and member.active else None

    def department_and_children(self, department_id: int) -> list[int]:
        found = [department_id]
        queue = [department_id]
        while queue:
            parent = queue.pop()
            for dept in self.departments.values():
                if dept.parentid == parent and dept.id not in found and dept.id != parent:
                    found.append(dept.id)
                    queue.append(dept.id)
        return found

    def staff_in_departments(self, department_ids: list[int]) -> list[str]:
        wanted: set[int] = set()
        for dept in department_ids:
            wanted.update(self.department_and_children(dept))
        return [
            s.userid for s in self.staff.values() if s.active and wanted.intersection(s.department)
        ]

    # --- statistics --------------------------------------------------------------------------
    def behavior_for(self, userid: str, timestamp: float) -> dict[str, Any]:
        day = self.behavior.setdefault(day_key(timestamp), {})
        return day.setdefault(
            userid,
            {
                "new_apply_cnt": 0,
                "new_contact_cnt": 0,
                "negative_feedback_cnt": 0,
                "message_cnt": 0,
                "chat_customers": {},  # external_userid -> 1 (a JSON-friendly set)
                "initiated": 0,
                "replied": 0,
                "reply_seconds": 0,
            },
        )

    def record_staff_message(self, userid: str, external_userid: str, timestamp: float) -> None:
        stats = self.behavior_for(userid, timestamp)
        stats["message_cnt"] += 1
        stats["chat_customers"][external_userid] = 1
        pair = f"{userid}|{external_userid}"
        self.chatted.add(pair)
        asked = self.pending_replies.pop(pair, None)
        if asked is not None:
            stats["replied"] += 1
            stats["reply_seconds"] += max(0, int(timestamp) - asked)

    def record_customer_message(self, userid: str, external_userid: str, timestamp: float) -> None:
        pair = f"{userid}|{external_userid}"
        self.chatted.add(pair)
        if pair not in self.pending_replies:
            self.pending_replies[pair] = int(timestamp)
            self.behavior_for(userid, timestamp)["initiated"] += 1

    def record_group_message(self, chat_id: str, sender: str, timestamp: float, count: int) -> None:
        day = self.group_activity.setdefault(day_key(timestamp), {})
        activity = day.setdefault(chat_id, {"msg_total": 0, "senders": {}})
        activity["msg_total"] += count
        activity["senders"][sender] = activity["senders"].get(sender, 0) + count


# --- serialisation -----------------------------------------------------------------------------
_SCALARS = frozenset({str, int, float, bool, type(None)})
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def dump(value: Any) -> Any:
    """Dataclasses, dicts, lists and sets → JSON-ready values."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    names = _FIELD_NAMES.get(kind)
    if names is None and dataclasses.is_dataclass(kind):
        names = _FIELD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(kind))
    if names is not None:
        return {name: dump(getattr(value, name)) for name in names}
    if kind is dict:
        return {str(k): dump(v) for k, v in value.items()}
    if kind in (list, tuple):
        return [dump(v) for v in value]
    if kind is set:
        return sorted(dump(v) for v in value)
    return value


_LOADERS: dict[Any, Callable[[Any], Any]] = {}


def _identity(value: Any) -> Any:
    return value


def _loader(tp: Any) -> Callable[[Any], Any]:
    """A function turning JSON data back into ``tp`` (built once per type)."""
    cached = _LOADERS.get(tp)
    if cached is not None:
        return cached
    loader: Callable[[Any], Any]
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        field_loaders = {f.name: _loader(hints[f.name]) for f in dataclasses.fields(tp)}

        def loader(value: Any, cls: Any = tp, fields: Any = field_loaders) -> Any:
            return cls(**{k: fields[k](v) for k, v in value.items() if k in fields})

    else:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            inner = _loader(next(a for a in args if a is not type(None)))

            def loader(value: Any, inner: Any = inner) -> Any:
                return None if value is None else inner(value)

        elif origin in (list, set):
            inner = _loader(args[0])
            build = origin
            if inner is _identity:
                loader = build
            else:

                def loader(value: Any, inner: Any = inner, build: Any = build) -> Any:
                    return build(inner(v) for v in value)

        elif origin is dict:  # JSON keys are strings: int keys need converting back
            load_key = int if args[0] is int else _loader(args[0])
            load_value = _loader(args[1])

            def loader(value: Any, lk: Any = load_key, lv: Any = load_value) -> Any:
                return {lk(k): lv(v) for k, v in value.items()}

        else:  # JSON values keep their scalar types
            loader = _identity
    _LOADERS[tp] = loader
    return loader


def load(tp: Any, value: Any) -> Any:
    """The inverse of ``dump`` for the annotated types used in this module."""
    return _loader(tp)(value)


# --- the world ---------------------------------------------------------------------------------
class EmulatorError(Exception):
    """A control-API request the world cannot honour (unknown id, full group, ...)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class World:
    """All corps and tokens, one lock, persisted to ``path`` (JSON) when given."""

    def __init__(
        self,
        *,
        path: Path | str | None = None,
        seed: int | str | None = None,
        clock: Clock | None = None,
        save_delay: float = 1.0,
    ) -> None:
        self.lock = threading.RLock()
        self.clock = clock or Clock()
        self.path = Path(path) if path else None
        self.save_delay = save_delay
        self.corps: dict[str, Corp] = {}
        self.tokens: dict[str, AccessToken] = {}
        self.ids = IdGenerator(None if seed is None else str(seed))
        self.outbox: deque[dict[str, Any]] = deque(maxlen=5000)  # every callback emitted
        self._listeners: list[Callable[[Corp, str, dict[str, Any]], None]] = []
        self._save_timer: threading.Timer | None = None
        self._save_lock = threading.Lock()
        # Fault injection and rate limiting, shared by the API app and the control API.
        self.faults: list[dict[str, Any]] = []
        self.callback_faults: list[dict[str, Any]] = []
        self.rate_counters: dict[tuple[str, str], tuple[int, int]] = {}
        if self.path is not None and self.path.exists():
            self._load()

    # --- time --------------------------------------------------------------------------------
    def now(self) -> int:
        return int(self.clock())

    # --- corps -------------------------------------------------------------------------------
    def corp(self, corp_id: str) -> Corp:
        corp = self.corps.get(corp_id)
        if corp is None:
            raise EmulatorError(f"no corp {corp_id!r}", 404)
        return corp

    def find_corp(self, predicate: Callable[[Corp], bool]) -> Corp | None:
        for corp in self.corps.values():
            if predicate(corp):
                return corp
        return None

    # --- callbacks ---------------------------------------------------------------------------
    def add_listener(self, listener: Callable[[Corp, str, dict[str, Any]], None]) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Corp, str, dict[str, Any]], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def emit(self, corp: Corp, xml: str, meta: dict[str, Any]) -> None:
        """Record a callback event and hand it to the delivery listeners."""
        self.outbox.append({"corp_id": corp.corp_id, "xml": xml, **meta})
        for listener in list(self._listeners):
            listener(corp, xml, meta)

    # --- persistence -------------------------------------------------------------------------
    def changed(self) -> None:
        """Mark the world dirty: it is saved ``save_delay`` seconds later (debounced)."""
        if self.path is None:
            return
        with self._save_lock:
            if self._save_timer is None:
                self._save_timer = threading.Timer(self.save_delay, self._timer_fired)
                self._save_timer.daemon = True
                self._save_timer.start()

    def _timer_fired(self) -> None:
        with self._save_lock:
            self._save_timer = None
        self.save()

    def to_json(self) -> dict[str, Any]:
        with self.lock:
            return {
                "version": FORMAT_VERSION,
                "seed": self.ids.seed,
                "counter": self.ids.counter,
                "clock_offset": self.clock.offset,
                "corps": dump(self.corps),
                "tokens": dump(self.tokens),
            }

    def save(self) -> None:
        if self.path is None:
            return
        data = json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":"))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(data, encoding="utf-8")
        os.replace(temporary, self.path)

    def flush(self) -> None:
        """Save now if a save is pending (shutdown, tests)."""
        with self._save_lock:
            timer, self._save_timer = self._save_timer, None
        if timer is not None:
            timer.cancel()
            self.save()

    def _load(self) -> None:
        assert self.path is not None
        data = json.loads(self.path.read_text(encoding="utf-8"))
        if data.get("version") != FORMAT_VERSION:
            logger.warning("ignoring emulator state %s of another format version", self.path)
            return
        self.ids = IdGenerator(data["seed"], data["counter"])
        if not isinstance(self.clock, FakeClock):
            self.clock.offset = float(data.get("clock_offset", 0.0))
        self.corps = load(dict[str, Corp], data["corps"])
        self.tokens = load(dict[str, AccessToken], data["tokens"])
        for corp in self.corps.values():
            corp.rebuild_indexes()

    def reset(self) -> None:
        with self.lock:
            self.corps.clear()
            self.tokens.clear()
            self.outbox.clear()
            self.faults.clear()
            self.callback_faults.clear()
            self.rate_counters.clear()
        self.changed()

    # --- assertions --------------------------------------------------------------------------
    def snapshot(self, corp_id: str | None = None) -> dict[str, Any]:
        with self.lock:
            corps = {k: v for k, v in self.corps.items() if corp_id in (None, k)}
            return {
                "now": self.now(),
                "corps": dump(corps),
                "tokens": [
                    {"corp_id": t.corp_id, "expires_at": t.expires_at} for t in self.tokens.values()
                ],
            }
