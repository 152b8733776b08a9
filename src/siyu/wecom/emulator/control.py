"""The control API (``/control/...``): the world's physics, for the simulator and tests.

Plain JSON in and out, no WeCom authentication. Every action takes an optional
``corp_id``: when omitted it is inferred (the only corp, or the corp owning the config id,
chat id, msgid or customer named in the body). Errors answer HTTP 4xx with
``{"error": "..."}``. Actions made here are what people do in WeCom's apps, so they emit
the callbacks WeCom emits; the platform only ever sees their effects through the real API
and the real callback endpoint.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from siyu.wecom.crypto import AES_KEY_LENGTH
from siyu.wecom.emulator import physics
from siyu.wecom.emulator.callbacks import CallbackDispatcher, verify_url
from siyu.wecom.emulator.state import (
    App,
    Corp,
    EmulatorError,
    Settings,
    World,
    dump,
)

Action = Callable[[World, Corp, dict[str, Any]], Any]

FAULT_KINDS = ("errcode", "http", "latency")
CALLBACK_FAULT_KINDS = ("duplicate", "delay", "reorder", "drop")


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        body: dict[str, Any] = {}
    else:
        try:
            body = json.loads(raw)
        except ValueError as error:
            raise EmulatorError(f"the body is not JSON: {error}") from error
        if not isinstance(body, dict):
            raise EmulatorError("the body must be a JSON object")
    for key, value in request.query_params.items():
        body.setdefault(key, value)
    return body


def infer_corp(world: World, body: dict[str, Any]) -> Corp:
    if body.get("corp_id"):
        return world.corp(str(body["corp_id"]))
    if len(world.corps) == 1:
        return next(iter(world.corps.values()))
    if not world.corps:
        raise EmulatorError("no corp yet: POST /control/corps first", 409)
    config_id = body.get("config_id") or (
        physics.config_id_from(str(body["qr_code"])) if body.get("qr_code") else None
    )
    probes: list[Callable[[Corp], bool]] = []
    if config_id:
        probes.append(lambda c: config_id in c.contact_ways or config_id in c.join_ways)
    if body.get("chat_id"):
        probes.append(lambda c: body["chat_id"] in c.groups)
    if body.get("msgid"):
        probes.append(lambda c: body["msgid"] in c.mass_messages)
    if body.get("external_userid"):
        probes.append(lambda c: body["external_userid"] in c.customers)
    for probe in probes:
        corp = world.find_corp(probe)
        if corp is not None:
            return corp
    raise EmulatorError("several corps: give corp_id")


# --- corps, settings, tokens -------------------------------------------------------------------
def setup_corp(world: World, body: dict[str, Any]) -> dict[str, Any]:
    """Create or update a corp: secrets, callback settings, and optionally its org chart."""
    corp_id = str(body.get("corp_id") or "")
    if not corp_id:
        raise EmulatorError("give corp_id")
    corp = world.corps.get(corp_id) or Corp(corp_id)
    corp.name = str(body.get("name") or corp.name or corp_id)
    if body.get("contact_secret"):
        corp.apps[str(body["contact_secret"])] = App(str(body["contact_secret"]), "contact")
    apps = list(body.get("apps") or [])
    if body.get("agent_secret"):
        apps.append({"secret": body["agent_secret"], "agentid": body.get("agent_id") or 1000002})
    for spec in apps:
        secret = str(spec.get("secret") or "")
        if not secret or spec.get("agentid") is None:
            raise EmulatorError("an app needs secret and agentid")
        corp.apps[secret] = App(
            secret,
            "agent",
            int(spec["agentid"]),
            str(spec.get("name") or ""),
            bool(spec.get("contact_access", True)),
        )
    callback = corp.callback
    key = body.get("encoding_aes_key")
    if key is not None:
        if len(str(key)) != AES_KEY_LENGTH:
            raise EmulatorError("encoding_aes_key must be 43 characters")
        callback.encoding_aes_key = str(key)
    for source, target in (("token", "token"), ("callback_url", "url"), ("url", "url")):
        if body.get(source) is not None:
            setattr(callback, target, str(body[source]))
    if body.get("callback_agent_id") is not None:
        callback.agent_id = str(body["callback_agent_id"])
    if body.get("settings"):
        update_settings(corp, body["settings"])
    world.corps[corp_id] = corp
    if 1 not in corp.departments:
        physics.add_department(
            world, corp, {"id": 1, "name": corp.name, "parentid": 0, "silent": True}
        )
    for spec in body.get("departments") or []:
        if int(spec.get("id") or 0) not in corp.departments:
            physics.add_department(world, corp, {**spec, "silent": True})
    for spec in body.get("staff") or []:
        if spec.get("userid") not in corp.staff:
            physics.add_staff(world, corp, {**spec, "silent": True})
    return corp_summary(corp)


def corp_summary(corp: Corp) -> dict[str, Any]:
    return {
        "corp_id": corp.corp_id,
        "name": corp.name,
        "apps": [dump(a) for a in corp.apps.values()],
        "callback": dump(corp.callback),
        "settings": dump(corp.settings),
        "departments": len(corp.departments),
        "staff": len(corp.staff),
        "customers": len(corp.customers),
    }


def update_settings(corp: Corp, values: dict[str, Any]) -> dict[str, Any]:
    names = {f.name: f for f in dataclasses.fields(Settings)}
    for name, value in values.items():
        if name == "corp_id":
            continue
        if name not in names:
            raise EmulatorError(f"unknown setting {name!r}; known: {', '.join(names)}")
        setattr(corp.settings, name, int(value))
    return dump(corp.settings)


def _tokens(world: World, body: dict[str, Any]) -> list[str]:
    return [
        token
        for token, info in world.tokens.items()
        if body.get("access_token") in (None, token) and body.get("corp_id") in (None, info.corp_id)
    ]


def expire_tokens(world: World, body: dict[str, Any]) -> dict[str, Any]:
    """Expire tokens early (the next call answers 42001) to exercise the client's refresh."""
    tokens = _tokens(world, body)
    for token in tokens:
        world.tokens[token].expires_at = world.clock() - 1
    return {"expired": len(tokens)}


def revoke_tokens(world: World, body: dict[str, Any]) -> dict[str, Any]:
    """Forget tokens (the next call answers 40014, as after a secret reset)."""
    tokens = _tokens(world, body)
    for token in tokens:
        del world.tokens[token]
    return {"revoked": len(tokens)}


# --- faults ------------------------------------------------------------------------------------
def add_fault(world: World, body: dict[str, Any]) -> dict[str, Any]:
    """Answer the next ``count`` calls of ``api`` (or "*") with a fault; no count: until
    cleared. kind errcode (``errcode``: -1, 45009, 45033...), http (``status``: 500, 502...)
    or latency (``seconds``)."""
    kind = body.get("kind")
    if kind not in FAULT_KINDS:
        raise EmulatorError(f"kind must be one of {', '.join(FAULT_KINDS)}")
    fault = {
        "id": max((f["id"] for f in world.faults), default=0) + 1,
        "api": str(body.get("api") or "*").removeprefix("/cgi-bin/").strip("/") or "*",
        "kind": kind,
        "corp_id": body.get("corp_id"),
        "remaining": None if body.get("count") is None else int(body["count"]),
    }
    if kind == "errcode":
        fault["errcode"] = int(body.get("errcode", body.get("value", -1)))
    elif kind == "http":
        fault["status"] = int(body.get("status", body.get("value", 500)))
    else:
        fault["seconds"] = float(body.get("seconds", body.get("value", 1.0)))
    world.faults.append(fault)
    return fault


def add_callback_fault(world: World, body: dict[str, Any]) -> dict[str, Any]:
    """Disturb the next ``count`` callbacks: duplicate (``copies``), delay (``seconds``),
    reorder (held until ``window`` = count arrived, then delivered last-first) or drop."""
    kind = body.get("kind")
    if kind not in CALLBACK_FAULT_KINDS:
        raise EmulatorError(f"kind must be one of {', '.join(CALLBACK_FAULT_KINDS)}")
    count = int(body.get("count") or 1)
    fault = {"kind": kind, "count": count, "remaining": count}
    for name in ("copies", "seconds", "window"):
        if body.get(name) is not None:
            fault[name] = float(body[name]) if name == "seconds" else int(body[name])
    world.callback_faults.append(fault)
    return fault


def clear_faults(world: World, body: dict[str, Any]) -> dict[str, Any]:
    cleared = len(world.faults) + len(world.callback_faults)
    world.faults.clear()
    world.callback_faults.clear()
    return {"cleared": cleared}


# --- the routes --------------------------------------------------------------------------------
CORP_ACTIONS: dict[str, Action] = {
    "departments": lambda w, c, b: dump(physics.add_department(w, c, b)),
    "departments/update": lambda w, c, b: dump(physics.update_department(w, c, b)),
    "departments/delete": physics.delete_department,
    "staff": lambda w, c, b: dump(physics.add_staff(w, c, b)),
    "staff/update": lambda w, c, b: dump(physics.update_staff(w, c, b)),
    "staff/delete": physics.delete_staff,
    "customers": lambda w, c, b: {
        k: v for k, v in dump(physics.new_customer(w, c, b)).items() if k != "follows"
    },
    "bulk/customers": physics.bulk_customers,
    "scan": physics.scan_contact_way,
    "add-contact": physics.add_contact,
    "customer-deletes-staff": physics.customer_deletes_staff,
    "staff-deletes-customer": physics.staff_deletes_customer,
    "edit-contact": physics.edit_contact,
    "chat": physics.chat,
    "mass-messages/confirm": physics.confirm_mass_message,
    "moments/publish": physics.publish_moment,
    "groups/create": lambda w, c, b: {"chat_id": physics.create_group(w, c, b).chat_id},
    "groups/join": physics.join_group,
    "groups/leave": physics.leave_group,
    "groups/update": physics.update_group,
    "groups/message": physics.group_message,
    "groups/dismiss": physics.dismiss_group,
    "tags": physics.client_tag_change,
    "transfers/complete": physics.complete_transfers,
    "transfers/refuse": physics.refuse_transfer,
    "settings": lambda w, c, b: update_settings(c, b),
}

WORLD_ACTIONS: dict[str, Callable[[World, dict[str, Any]], Any]] = {
    "corps": setup_corp,
    "tokens/expire": expire_tokens,
    "tokens/revoke": revoke_tokens,
    "faults": add_fault,
    "callback-faults": add_callback_fault,
    "faults/clear": clear_faults,
}


def routes(world: World, dispatcher: CallbackDispatcher | None) -> list[Route]:
    def corp_action(action: Action) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> JSONResponse:
            try:
                body = await _body(request)
                with world.lock:
                    corp = infer_corp(world, body)
                    physics.settle(world, corp)
                    result = action(world, corp, body)
            except EmulatorError as error:
                return _error(error.message, error.status)
            except (KeyError, TypeError, ValueError) as error:
                return _error(f"bad request: {type(error).__name__}: {error}")
            world.changed()
            return JSONResponse(result)

        return endpoint

    def world_action(action: Callable[[World, dict[str, Any]], Any]) -> Callable[..., Any]:
        async def endpoint(request: Request) -> JSONResponse:
            try:
                body = await _body(request)
                with world.lock:
                    result = action(world, body)
            except EmulatorError as error:
                return _error(error.message, error.status)
            except (KeyError, TypeError, ValueError) as error:
                return _error(f"bad request: {type(error).__name__}: {error}")
            world.changed()
            return JSONResponse(result)

        return endpoint

    async def snapshot(request: Request) -> JSONResponse:
        corp_id = request.query_params.get("corp_id")
        data = await run_in_threadpool(world.snapshot, corp_id)
        return JSONResponse(data)

    async def reset(request: Request) -> JSONResponse:
        world.reset()
        return JSONResponse({"reset": True})

    async def clock(request: Request) -> JSONResponse:
        try:
            body = await _body(request)
        except EmulatorError as error:
            return _error(error.message)
        with world.lock:
            if body.get("advance") is not None:
                world.clock.advance(float(body["advance"]))
            elif body.get("set") is not None:
                world.clock.set(float(body["set"]))
            for corp in world.corps.values():
                physics.settle(world, corp)
            now = world.now()
        world.changed()
        return JSONResponse({"now": now, "offset": world.clock.offset})

    async def tokens(request: Request) -> JSONResponse:
        with world.lock:
            return JSONResponse([dump(t) for t in world.tokens.values()])

    async def faults(request: Request) -> JSONResponse:
        if request.method == "POST":
            return await world_action(add_fault)(request)
        with world.lock:
            return JSONResponse({"api": world.faults, "callbacks": world.callback_faults})

    async def deliveries(request: Request) -> JSONResponse:
        corp_id = request.query_params.get("corp_id")
        if dispatcher is None:
            with world.lock:
                return JSONResponse([e for e in world.outbox if corp_id in (None, e["corp_id"])])
        return JSONResponse(dispatcher.deliveries(corp_id))

    async def outbox(request: Request) -> JSONResponse:
        corp_id = request.query_params.get("corp_id")
        with world.lock:
            return JSONResponse([e for e in world.outbox if corp_id in (None, e["corp_id"])])

    async def wait(request: Request) -> JSONResponse:
        body = await _body(request)
        if dispatcher is None:
            return JSONResponse({"idle": True})
        idle = await run_in_threadpool(dispatcher.wait_idle, float(body.get("timeout") or 10))
        return JSONResponse({"idle": idle}, status_code=200 if idle else 504)

    async def configure(request: Request) -> JSONResponse:
        body = await _body(request)
        if dispatcher is None:
            return _error("callback delivery is off in this emulator", 409)
        return JSONResponse(dispatcher.configure(**body))

    async def verify(request: Request) -> JSONResponse:
        try:
            body = await _body(request)
            with world.lock:
                corp = infer_corp(world, body)
        except EmulatorError as error:
            return _error(error.message, error.status)
        timeout = dispatcher.timeout if dispatcher is not None else 5.0
        result = await run_in_threadpool(verify_url, corp, body.get("url"), timeout=timeout)
        return JSONResponse(result)

    table = [
        Route("/snapshot", snapshot, methods=["GET"]),
        Route("/reset", reset, methods=["POST"]),
        Route("/clock", clock, methods=["POST"]),
        Route("/tokens", tokens, methods=["GET"]),
        Route("/faults", faults, methods=["GET", "POST"]),
        Route("/callbacks", deliveries, methods=["GET"]),
        Route("/outbox", outbox, methods=["GET"]),
        Route("/callbacks/wait", wait, methods=["POST"]),
        Route("/callbacks/config", configure, methods=["POST"]),
        Route("/callbacks/verify", verify, methods=["POST"]),
    ]
    for path, world_fn in WORLD_ACTIONS.items():
        if path != "faults":
            table.append(Route(f"/{path}", world_action(world_fn), methods=["POST"]))
    for path, corp_fn in CORP_ACTIONS.items():
        table.append(Route(f"/{path}", corp_action(corp_fn), methods=["POST"]))
    return table
