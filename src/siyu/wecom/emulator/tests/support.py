"""Helpers of the emulator's tests: constants, a WeCom API caller, a callback receiver."""

from __future__ import annotations

import re
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.exceptions import StarletteDeprecationWarning

from siyu.wecom.crypto import WeComCrypto

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 for its test client
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

CORP_ID = "wwtestcorp0000001"
CONTACT_SECRET = "contact-secret-0001"
AGENT_SECRET = "agent-secret-0001"
AGENT_ID = 1000002
TOKEN = "callbackToken123"
AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
STAFF = [
    {"userid": "zhangsan", "name": "张三"},
    {"userid": "lisi", "name": "李四"},
    {"userid": "wangwu", "name": "王五"},
]


class WeComApi:
    """Calls ``/cgi-bin`` like a client would: gets a token, then GETs or POSTs with it."""

    def __init__(self, client: TestClient, secret: str = CONTACT_SECRET) -> None:
        self.client = client
        self.secret = secret
        self._token: str | None = None

    @property
    def token(self) -> str:
        if self._token is None:
            answer = self.client.get(
                "/cgi-bin/gettoken", params={"corpid": CORP_ID, "corpsecret": self.secret}
            ).json()
            assert answer["errcode"] == 0, answer
            self._token = answer["access_token"]
        return self._token

    def _send(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        for _ in range(2):  # like a client: on 42001 get a new token and retry once
            params = {"access_token": self.token, **options.pop("params", {})}
            response = self.client.request(method, f"/cgi-bin/{path}", params=params, **options)
            assert response.status_code == 200, response.text
            answer = response.json()
            if answer["errcode"] != 42001:
                return answer
            self._token = None
            options["params"] = {k: v for k, v in params.items() if k != "access_token"}
        return answer

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return self._send("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
        return self._send("POST", path, params=params, json=body or {})

    def ok(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = self.post(path, body)
        assert answer["errcode"] == 0, answer
        return answer


# --- a real callback receiver ------------------------------------------------------------------
@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    body: str
    at: float


@dataclass
class Receiver:
    """An HTTP server recording requests. ``plan`` holds what to do with the next POSTs:
    ``("sleep", seconds)`` or ``("status", code)``; when empty it answers 200 "success"."""

    crypto: WeComCrypto
    requests: list[Received] = field(default_factory=list)
    plan: deque[tuple[str, float]] = field(default_factory=deque)
    verify_reply: str | None = None  # None: the decrypted echostr
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def posts(self) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.method == "POST"]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            posts = self.posts()
            if len(posts) >= count:
                return posts
            time.sleep(0.01)
        raise AssertionError(f"expected {count} callbacks, got {len(self.posts())}")

    def decrypt(self, request: Received) -> str:
        encrypt = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>", request.body).group(1)
        return self.crypto.decrypt_message(
            request.query["msg_signature"],
            request.query["timestamp"],
            request.query["nonce"],
            encrypt,
        )
