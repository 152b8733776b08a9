"""The emulator's HTTP app: WeCom's ``/cgi-bin`` API, QR images and the control API.

For every ``/cgi-bin/<api>`` call, in this order: injected faults (latency, then an errcode
or an HTTP error), the access token (41001 missing, 40014 unknown, 42001 expired), the
app's permission (48002), the per-corp per-API rate limit (45009), then the handler in
``api.py`` under the world's lock. Answers are WeCom's: HTTP 200 with
``{"errcode": 0, "errmsg": "ok", ...}`` or ``{"errcode": N, "errmsg": "..."}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from email import policy
from email.parser import BytesParser
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from siyu.wecom.emulator import control
from siyu.wecom.emulator import errcodes as e
from siyu.wecom.emulator.api import ENDPOINTS, Call, before_call
from siyu.wecom.emulator.callbacks import CallbackDispatcher
from siyu.wecom.emulator.errcodes import ApiError, errmsg
from siyu.wecom.emulator.qr import qr_png
from siyu.wecom.emulator.state import AccessToken, App, Corp, World

READ_ONLY = {
    "user/list",
    "user/get",
    "department/list",
    "externalcontact/get_follow_user_list",
    "externalcontact/list",
    "externalcontact/get",
    "externalcontact/batch/get_by_user",
    "externalcontact/get_corp_tag_list",
    "externalcontact/get_contact_way",
    "externalcontact/get_groupmsg_list_v2",
    "externalcontact/get_groupmsg_task",
    "externalcontact/get_groupmsg_send_result",
    "externalcontact/groupchat/list",
    "externalcontact/groupchat/get",
    "externalcontact/groupchat/statistic",
    "externalcontact/groupchat/get_join_way",
    "externalcontact/get_moment_task_result",
    "externalcontact/get_user_behavior_data",
    "externalcontact/transfer_result",
    "externalcontact/resigned/transfer_result",
    "externalcontact/get_unassigned_list",
}


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str, bytes]]:
    """``name -> (filename, content)`` of a multipart/form-data body."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    files: dict[str, tuple[str, bytes]] = {}
    if not message.is_multipart():
        return files
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            payload = part.get_payload(decode=True)
            files[str(name)] = (
                part.get_filename() or "",
                payload if isinstance(payload, bytes) else b"",
            )
    return files


def _take_faults(world: World, api: str, corp_id: str | None) -> tuple[float, dict | None]:
    """The latency to add and the errcode/HTTP fault (if any) for this call; counts down."""
    latency, chosen = 0.0, None
    for fault in world.faults:
        if fault["remaining"] == 0 or fault["api"] not in ("*", api):
            continue
        if fault.get("corp_id") and fault["corp_id"] != corp_id:
            continue
        if fault["kind"] == "latency":
            latency += fault["seconds"]
        elif chosen is None:
            chosen = fault
        else:
            continue
        if fault["remaining"] is not None:
            fault["remaining"] -= 1
    world.faults[:] = [f for f in world.faults if f["remaining"] != 0]
    return latency, chosen


def _authenticate(world: World, access_token: str | None) -> tuple[Corp, App]:
    if not access_token:
        raise ApiError(e.MISSING_TOKEN)
    token = world.tokens.get(access_token)
    if token is None:
        raise ApiError(e.INVALID_TOKEN)
    if world.clock() >= token.expires_at:
        raise ApiError(e.TOKEN_EXPIRED)
    corp = world.corps.get(token.corp_id)
    app = corp.apps.get(token.secret) if corp is not None else None
    if corp is None or app is None:
        raise ApiError(e.INVALID_TOKEN)
    return corp, app


def _rate_limit(world: World, corp: Corp, api: str) -> None:
    minute = int(world.clock() // 60)
    key = (corp.corp_id, api)
    window, count = world.rate_counters.get(key, (minute, 0))
    if window != minute:
        window, count = minute, 0
    count += 1
    world.rate_counters[key] = (window, count)
    if count > corp.settings.rate_limit_per_minute:
        raise ApiError(e.FREQUENCY_LIMIT, f"{corp.settings.rate_limit_per_minute} calls a minute")


def _gettoken(world: World, corpid: str | None, secret: str | None) -> tuple[dict[str, Any], bool]:
    if not corpid:
        raise ApiError(e.MISSING_CORPID)
    if not secret:
        raise ApiError(e.MISSING_SECRET)
    corp = world.corps.get(corpid)
    if corp is None:
        raise ApiError(e.INVALID_CORPID)
    if secret not in corp.apps:
        raise ApiError(e.INVALID_SECRET)
    _rate_limit(world, corp, "gettoken")
    now = world.clock()
    for token in list(world.tokens.values()):
        if now >= token.expires_at + 86400:  # long dead: forget
            del world.tokens[token.token]
        elif token.corp_id == corpid and token.secret == secret and now < token.expires_at:
            # WeCom answers the same token while it is valid
            return {"access_token": token.token, "expires_in": int(token.expires_at - now)}, False
    token = AccessToken(world.ids.access_token(), corpid, secret, now + corp.settings.token_ttl)
    world.tokens[token.token] = token
    return {"access_token": token.token, "expires_in": corp.settings.token_ttl}, True


def create_app(
    state: World,
    *,
    callback_delivery: bool = True,
    callback_timeout: float = 5.0,
    callback_retries: int = 3,
    callback_retry_delay: float = 1.0,
    callback_workers: int = 4,
) -> Starlette:
    """The emulator as an ASGI app over ``state``.

    With ``callback_delivery`` the callbacks the world emits are encrypted and POSTed to
    each corp's callback URL (5 s time-out, 3 retries); without, they are only recorded
    (``GET /control/outbox``).
    """
    world = state
    dispatcher = (
        CallbackDispatcher(
            world,
            timeout=callback_timeout,
            retries=callback_retries,
            retry_delay=callback_retry_delay,
            workers=callback_workers,
        )
        if callback_delivery
        else None
    )

    def answer(
        errcode: int,
        data: dict[str, Any] | None = None,
        *,
        detail: str = "",
        client_ip: str = "127.0.0.1",
    ) -> JSONResponse:
        payload = {
            "errcode": errcode,
            "errmsg": errmsg(errcode, detail=detail, client_ip=client_ip),
        }
        if errcode == 0 and data:
            payload.update(data)
        return JSONResponse(payload)

    async def cgi(request: Request) -> Response:
        api = request.path_params["path"].strip("/")
        query = request.query_params
        client_ip = request.client.host if request.client else "127.0.0.1"
        # The whole request is received before any injected latency, as at WeCom: a client
        # that gives up waiting has still delivered its call, which then takes effect.
        raw = await request.body() if request.method == "POST" else b""
        with world.lock:
            token = world.tokens.get(query.get("access_token") or "")
            corp_hint = token.corp_id if token else query.get("corpid")
            latency, fault = _take_faults(world, api, corp_hint)
        if latency:
            await asyncio.sleep(latency)
        if fault is not None:
            if fault["kind"] == "http":
                status = fault["status"]
                return Response(
                    f"<html><body><h1>{status}</h1></body></html>",
                    status_code=status,
                    media_type="text/html",
                )
            return answer(fault["errcode"], client_ip=client_ip)

        if api == "gettoken":
            try:
                with world.lock:
                    data, issued = _gettoken(world, query.get("corpid"), query.get("corpsecret"))
            except ApiError as error:
                return answer(error.errcode, detail=error.detail, client_ip=client_ip)
            if issued:
                world.changed()
            return answer(0, data)

        endpoint = ENDPOINTS.get(api)
        if endpoint is None:
            return Response("Not Found", status_code=404, media_type="text/plain")
        body: dict[str, Any] = {}
        files: dict[str, tuple[str, bytes]] = {}
        if request.method == "POST" and endpoint.method == "POST":
            content_type = request.headers.get("content-type", "")
            if content_type.startswith("multipart/form-data"):
                files = parse_multipart(content_type, raw)
            elif raw.strip():
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    return answer(e.INVALID_PARAMETER, detail="invalid json", client_ip=client_ip)
                if not isinstance(parsed, dict):
                    return answer(e.INVALID_PARAMETER, detail="invalid json", client_ip=client_ip)
                body = parsed
        changed = False
        try:
            with world.lock:
                corp, app = _authenticate(world, query.get("access_token"))
                if endpoint.scope == "contact" and not (
                    app.kind == "contact" or app.contact_access
                ):
                    raise ApiError(e.API_FORBIDDEN)
                if endpoint.scope == "agent" and app.kind != "agent":
                    raise ApiError(e.API_FORBIDDEN, "needs an app's secret (agentid)")
                _rate_limit(world, corp, api)
                call = Call(
                    world=world,
                    corp=corp,
                    app=app,
                    query=query,
                    body=body,
                    base_url=str(request.base_url).rstrip("/"),
                    now=world.now(),
                    client_ip=client_ip,
                    files=files,
                )
                changed = bool(before_call(call))
                data = endpoint.handler(call)
                changed = changed or api not in READ_ONLY
        except ApiError as error:
            if changed:
                world.changed()
            return answer(error.errcode, detail=error.detail, client_ip=client_ip)
        if changed:
            world.changed()
        return answer(0, data)

    async def qr(request: Request) -> Response:
        kind = request.path_params["kind"]
        config_id = request.path_params["config_id"].removesuffix(".png")
        with world.lock:
            found = any(
                config_id in (corp.contact_ways if kind == "contact" else corp.join_ways)
                for corp in world.corps.values()
            )
        if not found:
            return Response("Not Found", status_code=404, media_type="text/plain")
        return Response(qr_png(f"{kind}:{config_id}"), media_type="image/png")

    async def index(request: Request) -> JSONResponse:
        with world.lock:
            corps = sorted(world.corps)
        return JSONResponse(
            {
                "service": "siyu WeCom emulator",
                "api": "/cgi-bin/",
                "control": "/control/",
                "corps": corps,
            }
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if dispatcher is not None:
                dispatcher.close()
            world.flush()

    application = Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/cgi-bin/{path:path}", cgi, methods=["GET", "POST"]),
            Route("/qr/{kind}/{config_id}", qr, methods=["GET"]),
            Mount("/control", routes=control.routes(world, dispatcher)),
        ],
        lifespan=lifespan,
    )
    application.state.world = world
    application.state.dispatcher = dispatcher
    return application
