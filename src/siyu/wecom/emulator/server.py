"""Run the emulator (``siyu wecom-emulator``), in a thread for tests, and drive it.

- ``run_emulator``: serve the emulator with uvicorn until interrupted, the world saved to
  ``state_path`` (JSON) and loaded again at the next start.
- ``EmulatorServer``: the same on a free loopback port in a background thread (tests, the
  simulator's own tests).
- ``EmulatorControl``: a small httpx client of the control API (``/control/...``), used by
  the simulator and by tests to make things happen in the world.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from siyu.wecom.emulator.app import create_app
from siyu.wecom.emulator.state import Clock, World

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081


def run_emulator(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    state_path: Path | str | None = None,
    seed: int | str | None = None,
    *,
    log_level: str = "info",
) -> None:
    """Serve the WeCom emulator until interrupted (Ctrl-C); the world is saved on exit."""
    world = World(path=state_path, seed=seed)
    app = create_app(world)
    logger.info("WeCom emulator on http://%s:%s (state: %s)", host, port, state_path or "in memory")
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    finally:
        world.flush()


class EmulatorServer:
    """The emulator on a free port in a daemon thread: ``with EmulatorServer() as server:``."""

    def __init__(
        self,
        world: World | None = None,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        clock: Clock | None = None,
        **app_options: Any,
    ) -> None:
        self.world = world or World(clock=clock)
        self.app = create_app(self.world, **app_options)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: without, every response on a kept-alive
        # connection waits ~40 ms for the client's delayed ACK (Nagle's algorithm).
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the WeCom emulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()
        self.world.flush()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmulatorControlError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class EmulatorControl:
    """The control API over HTTP. ``corp_id`` given here is sent with every call."""

    def __init__(
        self,
        base_url: str,
        *,
        corp_id: str | None = None,
        client: httpx.Client | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.corp_id = corp_id
        self._client = client or httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> EmulatorControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------------------------
    def _url(self, path: str) -> str:
        return f"/control/{path.lstrip('/')}"

    def _check(self, response: httpx.Response) -> Any:
        try:
            data = response.json()
        except ValueError:
            data = {"error": response.text}
        if response.status_code >= 400:
            error = data.get("error") if isinstance(data, dict) else str(data)
            raise EmulatorControlError(response.status_code, str(error))
        return data

    def post(self, path: str, **body: Any) -> Any:
        payload = {k: v for k, v in body.items() if v is not None}
        if self.corp_id and "corp_id" not in payload:
            payload["corp_id"] = self.corp_id
        return self._check(self._client.post(self._url(path), json=payload))

    def get(self, path: str, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        return self._check(self._client.get(self._url(path), params=query))

    # --- the world -----------------------------------------------------------------------------
    def setup_corp(
        self,
        corp_id: str,
        *,
        contact_secret: str,
        token: str,
        encoding_aes_key: str,
        callback_url: str | None = None,
        name: str | None = None,
        agent_secret: str | None = None,
        agent_id: int | None = None,
        settings: dict[str, int] | None = None,
        departments: list[dict[str, Any]] | None = None,
        staff: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        self.corp_id = self.corp_id or corp_id
        return self.post(
            "corps",
            corp_id=corp_id,
            contact_secret=contact_secret,
            token=token,
            encoding_aes_key=encoding_aes_key,
            callback_url=callback_url,
            name=name,
            agent_secret=agent_secret,
            agent_id=agent_id,
            settings=settings,
            departments=departments,
            staff=staff,
        )

    def settings(self, **values: int) -> dict[str, Any]:
        return self.post("settings", **values)

    def snapshot(self, corp_id: str | None = None) -> dict[str, Any]:
        return self.get("snapshot", corp_id=corp_id)

    def reset(self) -> None:
        self.post("reset")

    def advance_clock(self, seconds: float) -> int:
        return self.post("clock", advance=seconds)["now"]

    def set_clock(self, timestamp: float) -> int:
        return self.post("clock", set=timestamp)["now"]

    # --- the address book ----------------------------------------------------------------------
    def add_department(self, name: str, *, parentid: int = 1, **fields: Any) -> dict[str, Any]:
        return self.post("departments", name=name, parentid=parentid, **fields)

    def update_department(self, department_id: int, **changes: Any) -> dict[str, Any]:
        return self.post("departments/update", id=department_id, **changes)

    def delete_department(self, department_id: int) -> dict[str, Any]:
        return self.post("departments/delete", id=department_id)

    def add_staff(
        self, userid: str, name: str, department: list[int] | None = None, **fields: Any
    ) -> dict[str, Any]:
        return self.post("staff", userid=userid, name=name, department=department, **fields)

    def update_staff(self, userid: str, **changes: Any) -> dict[str, Any]:
        return self.post("staff/update", userid=userid, **changes)

    def delete_staff(self, userid: str) -> dict[str, Any]:
        return self.post("staff/delete", userid=userid)

    def add_customer(self, **fields: Any) -> dict[str, Any]:
        return self.post("customers", **fields)

    def bulk_customers(
        self, customers: list[dict[str, Any]], *, silent: bool = True
    ) -> dict[str, Any]:
        """Many customers with their ``follows`` in one call (see ``physics.bulk_customers``)."""
        return self.post("bulk/customers", customers=customers, silent=silent)

    # --- customers -----------------------------------------------------------------------------
    def scan(
        self,
        config_id: str | None = None,
        *,
        qr_code: str | None = None,
        external_userid: str | None = None,
        customer: dict[str, Any] | None = None,
        userid: str | None = None,
        half: bool | None = None,
        add_way: int | None = None,
    ) -> dict[str, Any]:
        """A customer scans a contact way (new customer unless ``external_userid``)."""
        return self.post(
            "scan",
            config_id=config_id,
            qr_code=qr_code,
            external_userid=external_userid,
            customer=customer,
            userid=userid,
            half=half,
            add_way=add_way,
        )

    def add_contact(
        self,
        userid: str,
        *,
        external_userid: str | None = None,
        customer: dict[str, Any] | None = None,
        by: str = "customer",
        add_way: int | None = None,
        state: str | None = None,
    ) -> dict[str, Any]:
        return self.post(
            "add-contact",
            userid=userid,
            external_userid=external_userid,
            customer=customer,
            by=by,
            add_way=add_way,
            state=state,
        )

    def customer_deletes_staff(self, external_userid: str, userid: str) -> dict[str, Any]:
        return self.post("customer-deletes-staff", external_userid=external_userid, userid=userid)

    def staff_deletes_customer(self, userid: str, external_userid: str) -> dict[str, Any]:
        return self.post("staff-deletes-customer", userid=userid, external_userid=external_userid)

    def edit_contact(self, userid: str, external_userid: str, **changes: Any) -> dict[str, Any]:
        return self.post("edit-contact", userid=userid, external_userid=external_userid, **changes)

    def chat(
        self, userid: str, external_userid: str, *, sender: str = "customer", count: int = 1
    ) -> dict[str, Any]:
        return self.post(
            "chat", userid=userid, external_userid=external_userid, count=count, **{"from": sender}
        )

    # --- engagement ----------------------------------------------------------------------------
    def confirm_mass_message(
        self, msgid: str, userid: str, *, skip: list[str] | None = None
    ) -> dict[str, Any]:
        return self.post("mass-messages/confirm", msgid=msgid, userid=userid, skip=skip)

    def publish_moment(self, moment_id: str, userid: str) -> dict[str, Any]:
        return self.post("moments/publish", moment_id=moment_id, userid=userid)

    # --- groups --------------------------------------------------------------------------------
    def create_group(
        self, owner: str, name: str, members: list[Any] | None = None, **fields: Any
    ) -> str:
        return self.post("groups/create", owner=owner, name=name, members=members, **fields)[
            "chat_id"
        ]

    def join_group(
        self,
        *,
        chat_id: str | None = None,
        config_id: str | None = None,
        qr_code: str | None = None,
        member: Any = None,
        members: list[Any] | None = None,
        scene: str | None = None,
        invitor: str | None = None,
    ) -> dict[str, Any]:
        return self.post(
            "groups/join",
            chat_id=chat_id,
            config_id=config_id,
            qr_code=qr_code,
            member=member,
            members=members,
            scene=scene,
            invitor=invitor,
        )

    def leave_group(self, chat_id: str, member: str, *, removed: bool = False) -> dict[str, Any]:
        return self.post("groups/leave", chat_id=chat_id, member=member, removed=removed)

    def update_group(self, chat_id: str, **changes: Any) -> dict[str, Any]:
        return self.post("groups/update", chat_id=chat_id, **changes)

    def group_message(self, chat_id: str, sender: str, *, count: int = 1) -> dict[str, Any]:
        return self.post("groups/message", chat_id=chat_id, sender=sender, count=count)

    def dismiss_group(self, chat_id: str) -> dict[str, Any]:
        return self.post("groups/dismiss", chat_id=chat_id)

    # --- tags, transfers -----------------------------------------------------------------------
    def tag_change(self, action: str, **fields: Any) -> dict[str, Any]:
        """A tag created/updated/deleted/shuffled in the WeCom client (change_external_tag)."""
        return self.post("tags", action=action, **fields)

    def complete_transfers(self, **filters: Any) -> dict[str, Any]:
        return self.post("transfers/complete", **filters)

    def refuse_transfer(self, **filters: Any) -> dict[str, Any]:
        return self.post("transfers/refuse", **filters)

    # --- callbacks, faults, tokens -------------------------------------------------------------
    def verify_callback(self, url: str | None = None) -> dict[str, Any]:
        return self.post("callbacks/verify", url=url)

    def callbacks(self, corp_id: str | None = None) -> list[dict[str, Any]]:
        return self.get("callbacks", corp_id=corp_id)

    def outbox(self, corp_id: str | None = None) -> list[dict[str, Any]]:
        return self.get("outbox", corp_id=corp_id)

    def wait_callbacks(self, timeout: float = 10.0) -> bool:
        try:
            return self.post("callbacks/wait", timeout=timeout)["idle"]
        except EmulatorControlError as error:
            if error.status == 504:
                return False
            raise

    def configure_callbacks(self, **options: float) -> dict[str, Any]:
        return self.post("callbacks/config", **options)

    def inject_fault(
        self, kind: str, *, api: str = "*", count: int | None = None, **values: Any
    ) -> dict[str, Any]:
        """kind errcode (errcode=-1|45009|45033…), http (status=500|502…), latency (seconds)."""
        return self.post("faults", kind=kind, api=api, count=count, **values)

    def callback_fault(self, kind: str, *, count: int = 1, **values: Any) -> dict[str, Any]:
        """kind duplicate (copies), delay (seconds), reorder (window), drop."""
        return self.post("callback-faults", kind=kind, count=count, **values)

    def clear_faults(self) -> None:
        self.post("faults/clear")

    def expire_tokens(self, access_token: str | None = None) -> int:
        return self.post("tokens/expire", access_token=access_token)["expired"]

    def revoke_tokens(self, access_token: str | None = None) -> int:
        return self.post("tokens/revoke", access_token=access_token)["revoked"]
