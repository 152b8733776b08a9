"""Fixtures of the emulator's tests: a world on a frozen clock, the app, a WeCom API caller,
the control client, and a real HTTP receiver for callbacks."""

from __future__ import annotations

import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from siyu.wecom.crypto import WeComCrypto
from siyu.wecom.emulator import EmulatorControl, FakeClock, World, create_app
from siyu.wecom.emulator.tests.support import (
    AES_KEY,
    AGENT_ID,
    AGENT_SECRET,
    CONTACT_SECRET,
    CORP_ID,
    STAFF,
    TOKEN,
    Received,
    Receiver,
    TestClient,
    WeComApi,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def world(clock: FakeClock) -> World:
    return World(seed="test", clock=clock)


@pytest.fixture
def client(world: World):
    with TestClient(create_app(world, callback_delivery=False)) as test_client:
        yield test_client


@pytest.fixture
def control(client: TestClient) -> EmulatorControl:
    return EmulatorControl("http://testserver", client=client)


@pytest.fixture
def corp(control: EmulatorControl) -> dict[str, Any]:
    return control.setup_corp(
        CORP_ID,
        contact_secret=CONTACT_SECRET,
        agent_secret=AGENT_SECRET,
        agent_id=AGENT_ID,
        token=TOKEN,
        encoding_aes_key=AES_KEY,
        staff=STAFF,
    )


@pytest.fixture
def api(client: TestClient, corp: dict[str, Any]) -> WeComApi:
    return WeComApi(client)


@pytest.fixture
def contact_way(api: WeComApi) -> dict[str, Any]:
    return api.ok(
        "externalcontact/add_contact_way",
        {"type": 2, "scene": 2, "user": ["zhangsan", "lisi"], "state": "cc_spring"},
    )


@pytest.fixture
def crypto() -> WeComCrypto:
    return WeComCrypto(TOKEN, AES_KEY, CORP_ID)


@pytest.fixture
def receiver(crypto: WeComCrypto):
    state = Receiver(crypto)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _record(self, body: str) -> Received:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            item = Received(self.command, parts.path, query, body, time.monotonic())
            with state.lock:
                state.requests.append(item)
            return item

        def do_GET(self) -> None:
            item = self._record("")
            reply = state.verify_reply
            if reply is None:
                reply = state.crypto.verify_url(
                    item.query["msg_signature"],
                    item.query["timestamp"],
                    item.query["nonce"],
                    item.query["echostr"],
                )
            self._answer(200, reply)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._record(self.rfile.read(length).decode())
            with state.lock:
                step = state.plan.popleft() if state.plan else None
            if step and step[0] == "sleep":
                time.sleep(step[1])
            status = int(step[1]) if step and step[0] == "status" else 200
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._answer(status, "success")

        def _answer(self, status: int, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/wecom/brand-a/callback"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def live(world: World, receiver: Receiver):
    """The app delivering callbacks for real (short time-out and retry delay), one worker."""
    app = create_app(world, callback_timeout=0.5, callback_retry_delay=0.05, callback_workers=1)
    with TestClient(app) as test_client:
        control = EmulatorControl("http://testserver", client=test_client)
        control.setup_corp(
            CORP_ID,
            contact_secret=CONTACT_SECRET,
            token=TOKEN,
            encoding_aes_key=AES_KEY,
            callback_url=receiver.url,
            staff=STAFF,
        )
        yield test_client, control, WeComApi(test_client)
