"""Fixtures of the simulator's tests: a fake control that records every call, and the real
emulator over HTTP (in a thread, on a frozen clock, delivering no callbacks)."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from siyu.wecom.emulator import EmulatorControl, EmulatorServer, FakeClock, World
from siyu.wecom.emulator.server import EmulatorControlError

CORP_ID = "wwsimulatorcorp01"
CONTACT_SECRET = "sim-contact-secret"
TOKEN = "simToken"
AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
STAFF = [
    {"userid": "wangfang", "name": "王芳"},
    {"userid": "chenjie", "name": "陈杰"},
    {"userid": "zhaolei", "name": "赵磊"},
]
START = 1_767_225_600  # 2026-01-01 08:00 Beijing (FakeClock's default)


class FakeControl:
    """Answers like the emulator's control API and records ``(method, args, kwargs)``.

    ``now`` follows ``advance_clock``; ``times`` holds the clock at each call.
    ``refuse`` maps a method name to the HTTP status it answers with.
    """

    def __init__(
        self,
        staff: list[str] | None = None,
        *,
        corp: dict[str, Any] | None = None,
        refuse: dict[str, int] | None = None,
    ) -> None:
        self.corp_id: str | None = None
        self.now = START
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.times: list[int] = []
        self.refuse = dict(refuse or {})
        self._ids = itertools.count(1)
        self._members: dict[str, int] = {}
        users = ["wangfang", "chenjie"] if staff is None else staff
        self.corp = corp or {
            "settings": {"group_max_members": 500},
            "staff": {u: {"userid": u, "status": 1, "resigned_at": 0} for u in users},
        }

    def _record(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((method, args, kwargs))
        self.times.append(self.now)
        if method in self.refuse:
            raise EmulatorControlError(self.refuse[method], f"{method} refused")

    def action_calls(self) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
        return [c for c in self.calls if c[0] not in ("snapshot", "advance_clock")]

    def snapshot(self, corp_id: str | None = None) -> dict[str, Any]:
        self._record("snapshot", corp_id)
        return {"now": self.now, "corps": {"wwfake": self.corp}}

    def advance_clock(self, seconds: float) -> int:
        self._record("advance_clock", seconds)
        self.now += int(seconds)
        return self.now

    def scan(self, config_id: str | None = None, **fields: Any) -> dict[str, Any]:
        self._record("scan", config_id, **fields)
        return {"external_userid": f"wm{next(self._ids)}", "userid": "wangfang"}

    def add_contact(self, userid: str, **fields: Any) -> dict[str, Any]:
        self._record("add_contact", userid, **fields)
        return {"external_userid": f"wm{next(self._ids)}", "userid": userid}

    def customer_deletes_staff(self, external_userid: str, userid: str) -> dict[str, Any]:
        self._record("customer_deletes_staff", external_userid, userid)
        return {"external_userid": external_userid, "userid": userid}

    def chat(self, userid: str, external_userid: str, **fields: Any) -> dict[str, Any]:
        self._record("chat", userid, external_userid, **fields)
        return {"external_userid": external_userid, "userid": userid}

    def create_group(self, owner: str, name: str, **fields: Any) -> str:
        self._record("create_group", owner, name, **fields)
        chat_id = f"wr{next(self._ids)}"
        self._members[chat_id] = 1
        return chat_id

    def join_group(self, **fields: Any) -> dict[str, Any]:
        self._record("join_group", **fields)
        chat_id = fields.get("chat_id") or "wr-joinway"
        self._members[chat_id] = self._members.get(chat_id, 1) + 1
        return {
            "chat_id": chat_id,
            "added": [fields["member"]],
            "member_count": self._members[chat_id],
        }

    def leave_group(self, chat_id: str, member: str, **fields: Any) -> dict[str, Any]:
        self._record("leave_group", chat_id, member, **fields)
        self._members[chat_id] -= 1
        return {"chat_id": chat_id, "removed": [member], "member_count": self._members[chat_id]}

    def group_message(self, chat_id: str, sender: str, **fields: Any) -> dict[str, Any]:
        self._record("group_message", chat_id, sender, **fields)
        return {"chat_id": chat_id, "sender": sender, "count": fields.get("count", 1)}


@pytest.fixture
def fake_control() -> FakeControl:
    return FakeControl()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def emulator(clock: FakeClock):
    """The emulator over real HTTP, its world on a frozen clock; callbacks only recorded in
    the outbox (the corp has no callback URL)."""
    with EmulatorServer(World(seed="simulator", clock=clock)) as server:
        yield server


@pytest.fixture
def control(emulator: EmulatorServer):
    with EmulatorControl(emulator.base_url) as client:
        yield client


@pytest.fixture
def corp(control: EmulatorControl) -> dict[str, Any]:
    return control.setup_corp(
        CORP_ID,
        contact_secret=CONTACT_SECRET,
        token=TOKEN,
        encoding_aes_key=AES_KEY,
        staff=STAFF,
    )


class WeComApi:
    """The emulator's ``/cgi-bin`` API as the platform calls it (to create contact ways)."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url)
        answer = self.client.get(
            "/cgi-bin/gettoken", params={"corpid": CORP_ID, "corpsecret": CONTACT_SECRET}
        ).json()
        self.token = answer["access_token"]

    def ok(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.client.post(
            f"/cgi-bin/{path}", params={"access_token": self.token}, json=body
        ).json()
        assert answer["errcode"] == 0, answer
        return answer


@pytest.fixture
def wecom_api(emulator: EmulatorServer, corp: dict[str, Any]):
    api = WeComApi(emulator.base_url)
    yield api
    api.client.close()
