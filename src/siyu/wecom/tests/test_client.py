"""Unit tests of the WeCom API client's logic, against a scripted fake over httpx.MockTransport.

(The same client against the real emulator is covered by the emulator's integration tests.)
"""

from __future__ import annotations

import json
import logging
import pickle
from collections import defaultdict, deque
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from django.core.cache import cache

from siyu.tenancy import services
from siyu.wecom.client import TOKEN_REFRESH_MARGIN, WeComClient, client_for, redact
from siyu.wecom.errors import (
    WeComAuthError,
    WeComBusy,
    WeComConflict,
    WeComError,
    WeComInvalidArgument,
    WeComNotConfigured,
    WeComNotFound,
    WeComPermissionDenied,
    WeComRateLimited,
    WeComUnavailable,
)

CORP_ID = "wwcorp0000000001"
SECRET = "contact-secret-NEVER-LOGGED-5f3a"
BASE = "https://wecom.test/cgi-bin"
T0 = 1_800_000_000.0  # a fixed "now" (epoch seconds), at the start of a minute window


class FakeWeCom:
    """A scripted WeCom: counts calls per API and answers from per-API queues.

    A scripted answer is a dict (JSON, errcode 0 added when missing), an int (a bare HTTP
    status) or an exception instance (raised as the transport failure). Unscripted calls
    answer ``{"errcode": 0}``; ``gettoken`` hands out TOKEN-1, TOKEN-2, … valid 7200 s.
    """

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.scripts: dict[str, deque] = defaultdict(deque)
        self.tokens_issued = 0

    def script(self, api: str, *answers: Any) -> None:
        self.scripts[api].extend(answers)

    def count(self, api: str) -> int:
        return sum(1 for call in self.calls if call["api"] == api)

    def api_calls(self) -> list[dict[str, Any]]:
        return [call for call in self.calls if call["api"] != "gettoken"]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        api = request.url.path.removeprefix("/cgi-bin/")
        params = {key: values[-1] for key, values in parse_qs(request.url.query.decode()).items()}
        body: Any = None
        if request.headers.get("content-type", "").startswith("application/json"):
            body = json.loads(request.content)
        self.calls.append(
            {
                "api": api,
                "method": request.method,
                "params": params,
                "json": body,
                "content": request.content,
                "content_type": request.headers.get("content-type", ""),
            }
        )
        if self.scripts[api]:
            answer = self.scripts[api].popleft()
        elif api == "gettoken":
            self.tokens_issued += 1
            answer = {"access_token": f"TOKEN-{self.tokens_issued}", "expires_in": 7200}
        else:
            answer = {}
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, int):
            return httpx.Response(answer, text="upstream trouble")
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok", **answer})


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Sleeper:
    """Records sleeps and moves the fake clock forward by them."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.now += seconds


@pytest.fixture
def wecom_cache(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "wecom-tests",
        }
    }
    cache.clear()
    yield cache
    cache.clear()


@pytest.fixture
def fake() -> FakeWeCom:
    return FakeWeCom()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sleeper(clock) -> Sleeper:
    return Sleeper(clock)


@pytest.fixture
def make_client(wecom_cache, fake, clock, sleeper):
    """A client on the fake, the locmem cache and the fake clock, with zero retry waits."""
    http = httpx.Client(transport=httpx.MockTransport(fake))

    def build(**options: Any) -> WeComClient:
        defaults: dict[str, Any] = {
            "base_url": BASE,
            "cache": wecom_cache,
            "http": http,
            "backoff_initial": 0,
            "backoff_max": 0,
            "clock": clock,
            "sleep": sleeper,
        }
        defaults.update(options)
        return WeComClient(CORP_ID, SECRET, **defaults)

    yield build
    http.close()


# --- access token -----------------------------------------------------------------------
def test_token_is_fetched_once_and_shared_by_clients_on_the_same_cache(make_client, fake):
    # given two clients, as two processes would build them
    first, second = make_client(), make_client()
    # when both call the API
    first.get_external_contact("wmCUSTOMER1")
    second.get_external_contact("wmCUSTOMER2")
    # then gettoken ran once and both calls carried its token
    assert fake.count("gettoken") == 1
    assert [call["params"]["access_token"] for call in fake.api_calls()] == ["TOKEN-1"] * 2
    gettoken = fake.calls[0]
    assert gettoken["method"] == "GET"
    assert gettoken["params"] == {"corpid": CORP_ID, "corpsecret": SECRET}


def test_token_is_refreshed_when_less_than_five_minutes_remain(make_client, fake, clock):
    client = make_client()
    client.get_external_contact("wmCUSTOMER1")
    # more than the margin left: the cached token is reused
    clock.now = T0 + 7200 - TOKEN_REFRESH_MARGIN - 1
    client.get_external_contact("wmCUSTOMER1")
    assert fake.count("gettoken") == 1
    # less than the margin left: a new token before the old one expires
    clock.now = T0 + 7200 - TOKEN_REFRESH_MARGIN + 1
    client.get_external_contact("wmCUSTOMER1")
    assert fake.count("gettoken") == 2
    assert fake.api_calls()[-1]["params"]["access_token"] == "TOKEN-2"


@pytest.mark.parametrize("errcode", [42001, 40014])
def test_refused_token_is_refreshed_and_the_call_resent_once(make_client, fake, errcode):
    fake.script("externalcontact/get", {"errcode": errcode, "errmsg": "access_token expired"})
    fake.script("externalcontact/get", {"external_contact": {"external_userid": "wmC"}})
    client = make_client()

    result = client.get_external_contact("wmC")

    assert result == {"external_contact": {"external_userid": "wmC"}}
    assert fake.count("gettoken") == 2
    assert [call["params"]["access_token"] for call in fake.api_calls()] == ["TOKEN-1", "TOKEN-2"]


def test_token_refused_twice_is_an_auth_error_without_looping(make_client, fake):
    invalid = {"errcode": 40014, "errmsg": "invalid access_token"}
    fake.script("externalcontact/get", invalid, invalid, invalid, invalid)
    client = make_client()

    with pytest.raises(WeComAuthError) as caught:
        client.get_external_contact("wmC")

    assert caught.value.errcode == 40014
    assert fake.count("externalcontact/get") == 2
    assert fake.count("gettoken") == 2


def test_wrong_secret_is_an_auth_error(make_client, fake):
    fake.script("gettoken", {"errcode": 40001, "errmsg": "invalid credential"})
    with pytest.raises(WeComAuthError) as caught:
        make_client().list_departments()
    assert (caught.value.errcode, caught.value.api) == (40001, "gettoken")
    assert fake.api_calls() == []


def test_a_refresh_in_progress_elsewhere_keeps_the_still_valid_token(make_client, fake, clock):
    client = make_client()
    client.get_external_contact("wmC")  # TOKEN-1, expires at T0 + 7200
    # given another process holds the refresh lock as the token nears its expiry
    clock.now = T0 + 7200 - 60
    assert cache.add(client._token_lock_key, "other-process", timeout=30)
    # when this one calls, it does not stampede gettoken: the token is valid for a minute
    client.get_external_contact("wmC")
    assert fake.count("gettoken") == 1
    assert fake.api_calls()[-1]["params"]["access_token"] == "TOKEN-1"


def test_a_refresh_in_progress_elsewhere_is_waited_for(make_client, fake, sleeper):
    client = make_client()
    assert cache.add(client._token_lock_key, "other-process", timeout=30)

    def other_process_finishes(seconds: float) -> None:
        sleeper(seconds)
        cache.set(client._token_key, {"access_token": "FROM-OTHER", "expires_at": T0 + 7200})

    client._sleep = other_process_finishes
    client.get_external_contact("wmC")

    assert fake.count("gettoken") == 0
    assert fake.api_calls()[0]["params"]["access_token"] == "FROM-OTHER"


# --- retries ----------------------------------------------------------------------------
TRANSIENT = [
    pytest.param({"errcode": -1, "errmsg": "system busy"}, WeComBusy, id="busy -1"),
    pytest.param(
        {"errcode": 45009, "errmsg": "api freq out of limit"}, WeComRateLimited, id="45009"
    ),
    pytest.param(
        {"errcode": 45033, "errmsg": "api concurrent out of limit"}, WeComRateLimited, id="45033"
    ),
    pytest.param(503, WeComUnavailable, id="HTTP 503"),
    pytest.param(httpx.ReadTimeout("timed out"), WeComUnavailable, id="read time-out"),
    pytest.param(httpx.ConnectError("connection refused"), WeComUnavailable, id="connect error"),
]


@pytest.mark.parametrize(("failure", "_error"), TRANSIENT)
def test_transient_failures_are_retried_with_backoff(make_client, fake, sleeper, failure, _error):
    fake.script("externalcontact/get", failure, failure, {"external_contact": {"name": "Li"}})
    client = make_client(backoff_initial=0.5, backoff_max=8)

    result = client.get_external_contact("wmC")

    assert result["external_contact"] == {"name": "Li"}
    assert fake.count("externalcontact/get") == 3
    # two waits, jittered within the exponential windows 0.5 s and 1 s
    assert len(sleeper.waits) == 2
    assert 0 <= sleeper.waits[0] <= 0.5
    assert 0 <= sleeper.waits[1] <= 1.0


@pytest.mark.parametrize(("failure", "error"), TRANSIENT)
def test_transient_failures_become_a_typed_error_after_max_attempts(
    make_client, fake, failure, error
):
    fake.script("externalcontact/get", *[failure] * 5)
    client = make_client(max_attempts=3)

    with pytest.raises(error) as caught:
        client.get_external_contact("wmC")

    assert fake.count("externalcontact/get") == 3
    assert caught.value.api == "externalcontact/get"
    if isinstance(failure, dict):
        assert caught.value.errcode == failure["errcode"]
        assert caught.value.errmsg == failure["errmsg"]


def test_a_create_is_not_resent_after_a_failure_that_may_have_reached_wecom(make_client, fake):
    fake.script("externalcontact/add_msg_template", httpx.ReadTimeout("timed out"))

    with pytest.raises(WeComUnavailable) as caught:
        make_client().add_msg_template(external_userid=["wmA"], text="Hello")

    assert caught.value.maybe_applied is True
    assert caught.value.details["maybe_applied"] is True
    assert fake.count("externalcontact/add_msg_template") == 1


def test_a_create_is_resent_when_the_request_never_left(make_client, fake):
    fake.script(
        "externalcontact/add_msg_template",
        httpx.ConnectError("connection refused"),
        {"errcode": -1, "errmsg": "system busy"},
        {"msgid": "msgGCAAAXtWyujaWJHDDGi0mACAAAA", "fail_list": []},
    )

    result = make_client().add_msg_template(external_userid=["wmA"], text="Hello")

    assert result == {"msgid": "msgGCAAAXtWyujaWJHDDGi0mACAAAA", "fail_list": []}
    assert fake.count("externalcontact/add_msg_template") == 3


@pytest.mark.parametrize(
    ("errcode", "error"),
    [
        (40096, WeComNotFound),
        (84061, WeComNotFound),
        (60011, WeComPermissionDenied),
        (41051, WeComConflict),
        (40058, WeComError),
        (99999, WeComError),
    ],
)
def test_other_errcodes_are_raised_at_once_with_errcode_and_errmsg(
    make_client, fake, errcode, error
):
    fake.script("externalcontact/get", {"errcode": errcode, "errmsg": f"failure {errcode}"})

    with pytest.raises(error) as caught:
        make_client().get_external_contact("wmC")

    raised = caught.value
    assert type(raised) is error
    assert (raised.errcode, raised.errmsg, raised.api) == (
        errcode,
        f"failure {errcode}",
        "externalcontact/get",
    )
    assert (raised.status, raised.code) == (502, "wecom_error")
    assert raised.details["errcode"] == errcode
    assert str(errcode) in raised.message
    assert fake.count("externalcontact/get") == 1


def test_results_are_the_payload_without_errcode_and_errmsg(make_client, fake):
    fake.script("externalcontact/list", {"external_userid": ["wmA", "wmB"]})
    assert make_client().list_external_contacts("zhangsan") == {"external_userid": ["wmA", "wmB"]}


# --- rate limit -------------------------------------------------------------------------
def test_rate_limiter_blocks_the_eleventh_call_and_resets_next_minute(make_client, fake, clock):
    client = make_client(rate_limit_per_minute=10, rate_limit_max_wait=0)
    for _call in range(10):
        client.get_group_chat("wrCHAT")

    with pytest.raises(WeComRateLimited) as caught:
        client.get_group_chat("wrCHAT")

    assert caught.value.local is True
    assert caught.value.retry_after == pytest.approx(60)
    assert fake.count("externalcontact/groupchat/get") == 10
    # other APIs have their own budget
    client.get_join_way("cfgJOIN")
    # and the next minute starts afresh
    clock.now += 60
    client.get_group_chat("wrCHAT")
    assert fake.count("externalcontact/groupchat/get") == 11


def test_rate_limiter_waits_for_the_next_window_when_allowed(make_client, fake, sleeper, clock):
    client = make_client(rate_limit_per_minute=10, rate_limit_max_wait=60)
    clock.now = T0 + 45
    for _call in range(11):
        client.get_group_chat("wrCHAT")

    assert sleeper.waits == [pytest.approx(15)]
    assert fake.count("externalcontact/groupchat/get") == 11


def test_rate_limit_is_shared_by_the_clients_of_one_corp(make_client, fake):
    first = make_client(rate_limit_per_minute=3, rate_limit_max_wait=0)
    second = make_client(rate_limit_per_minute=3, rate_limit_max_wait=0)
    first.get_group_chat("wrCHAT")
    first.get_group_chat("wrCHAT")
    second.get_group_chat("wrCHAT")
    with pytest.raises(WeComRateLimited):
        second.get_group_chat("wrCHAT")


def test_moments_tasks_have_their_documented_budget_of_ten_a_minute(make_client, fake):
    client = make_client(rate_limit_max_wait=0)
    for _call in range(10):
        client.add_moment_task(text="New arrivals")
    with pytest.raises(WeComRateLimited):
        client.add_moment_task(text="New arrivals")


# --- local validation of documented limits ------------------------------------------------
def _users(count: int) -> list[str]:
    return [f"user{index}" for index in range(count)]


def _images(count: int) -> list[dict[str, Any]]:
    return [{"msgtype": "image", "image": {"media_id": f"MEDIA{index}"}} for index in range(count)]


LIMIT_BREAKS = [
    pytest.param(
        lambda c: c.add_contact_way(2, 2, state="s" * 31, user=["zhangsan"]), "state", id="state"
    ),
    pytest.param(lambda c: c.add_contact_way(2, 2, user=_users(101)), "user", id="101 users"),
    pytest.param(
        lambda c: c.update_contact_way("cfg", user=_users(101)), "user", id="update 101 users"
    ),
    pytest.param(
        lambda c: c.add_contact_way(1, 2, user=["a", "b"]), "user", id="single with two users"
    ),
    pytest.param(
        lambda c: c.add_join_way(2, [f"wr{index}" for index in range(6)]),
        "chat_id_list",
        id="6 chats per join way",
    ),
    pytest.param(
        lambda c: c.add_join_way(2, ["wr1"], state="s" * 31), "state", id="join way state"
    ),
    pytest.param(
        lambda c: c.add_msg_template(external_userid=["wmA"], attachments=_images(10)),
        "attachments",
        id="10 attachments",
    ),
    pytest.param(
        lambda c: c.add_msg_template(external_userid=_users(10_001), text="Hi"),
        "external_userid",
        id="10001 recipients",
    ),
    pytest.param(
        lambda c: c.add_msg_template(external_userid=["wmA"], text="长" * 1334),
        "text",
        id="text over 4000 bytes",
    ),
    pytest.param(
        lambda c: c.send_welcome_msg("CODE", attachments=_images(10)),
        "attachments",
        id="welcome 10 attachments",
    ),
    pytest.param(lambda c: c.send_welcome_msg("CODE"), "text", id="welcome without content"),
    pytest.param(
        lambda c: c.transfer_customer("a", "b", _users(101)),
        "external_userid",
        id="transfer 101",
    ),
    pytest.param(
        lambda c: c.resigned_transfer_customer("a", "b", _users(101)),
        "external_userid",
        id="resigned transfer 101",
    ),
    pytest.param(lambda c: c.batch_get_by_user(_users(101)), "userid_list", id="batch 101 userids"),
    pytest.param(
        lambda c: c.add_moment_task(
            attachments=[{"msgtype": "video", "video": {"media_id": "V"}}, *_images(1)]
        ),
        "attachments",
        id="moment mixing video and image",
    ),
    pytest.param(
        lambda c: c.add_corp_tag(group_name="Interests", tag=["t" * 31]),
        "tag.name",
        id="tag name",
    ),
    pytest.param(lambda c: c.mark_tag("zhangsan", "wmA"), "add_tag", id="mark nothing"),
    pytest.param(
        lambda c: c.list_group_chats(owner_filter=_users(101)),
        "owner_filter.userid_list",
        id="101 owners",
    ),
    pytest.param(
        lambda c: c.get_user_behavior_data(userid=["a"], start_time=0, end_time=31 * 86400),
        "end_time",
        id="behaviour over 30 days",
    ),
    pytest.param(
        lambda c: c.upload_media("image", b"x" * 5, filename="a.png"), "media", id="tiny file"
    ),
    pytest.param(
        lambda c: c.send_app_message("text", {"content": "Hi"}, agentid=1000002),
        "touser",
        id="app message without recipients",
    ),
]


@pytest.mark.parametrize(("call", "field_name"), LIMIT_BREAKS)
def test_documented_limits_are_checked_before_any_http_call(make_client, fake, call, field_name):
    with pytest.raises(WeComInvalidArgument) as caught:
        call(make_client())

    assert caught.value.field == field_name
    assert (caught.value.status, caught.value.code) == (400, "invalid")
    assert caught.value.errcode is None
    assert fake.calls == []  # not even gettoken


def test_limits_at_the_documented_figure_are_accepted(make_client, fake):
    client = make_client()
    client.add_contact_way(2, 2, state="s" * 30, user=_users(100))
    client.add_join_way(2, [f"wr{index}" for index in range(5)], state="s" * 30)
    client.add_msg_template(external_userid=_users(10_000), attachments=_images(9))
    client.transfer_customer("a", "b", _users(100))
    assert len(fake.api_calls()) == 4


# --- pagination -------------------------------------------------------------------------
def test_customers_by_user_walk_next_cursor_across_pages(make_client, fake):
    page = lambda name, cursor: {  # noqa: E731
        "external_contact_list": [{"external_contact": {"name": name}}],
        "next_cursor": cursor,
    }
    fake.script(
        "externalcontact/batch/get_by_user",
        page("A", "CURSOR-1"),
        page("B", "CURSOR-2"),
        page("C", ""),
        page("D", ""),
    )
    userids = _users(150)

    names = [
        item["external_contact"]["name"] for item in make_client().iter_customers_by_user(userids)
    ]

    assert names == ["A", "B", "C", "D"]
    bodies = [call["json"] for call in fake.api_calls()]
    assert [body.get("cursor") for body in bodies] == [None, "CURSOR-1", "CURSOR-2", None]
    assert [len(body["userid_list"]) for body in bodies] == [100, 100, 100, 50]
    assert all(call["method"] == "POST" for call in fake.api_calls())


def test_group_chats_walk_next_cursor(make_client, fake):
    fake.script(
        "externalcontact/groupchat/list",
        {"group_chat_list": [{"chat_id": "wr1", "status": 0}], "next_cursor": "N1"},
        {"group_chat_list": [{"chat_id": "wr2", "status": 0}]},
    )
    chats = list(make_client().iter_group_chats(owner_filter=["zhangsan"], limit=1))
    assert [chat["chat_id"] for chat in chats] == ["wr1", "wr2"]
    first, second = (call["json"] for call in fake.api_calls())
    assert first == {"owner_filter": {"userid_list": ["zhangsan"]}, "limit": 1}
    assert second["cursor"] == "N1"


def test_a_repeated_cursor_stops_the_walk_with_an_error(make_client, fake):
    looping = {"group_chat_list": [{"chat_id": "wr1"}], "next_cursor": "SAME"}
    fake.script("externalcontact/groupchat/list", looping, looping, looping)
    with pytest.raises(WeComError, match="游标"):  # "the pagination cursor repeated"
        list(make_client().iter_group_chats())


# --- request shapes ---------------------------------------------------------------------
def test_get_endpoints_send_query_parameters(make_client, fake):
    client = make_client()
    client.list_users(1, fetch_child=True)
    client.list_departments()
    client.get_moment_task_result("JOB1")
    shapes = [(call["method"], call["api"], call["params"]) for call in fake.api_calls()]
    assert shapes == [
        ("GET", "user/list", {"department_id": "1", "fetch_child": "1", "access_token": "TOKEN-1"}),
        ("GET", "department/list", {"access_token": "TOKEN-1"}),
        (
            "GET",
            "externalcontact/get_moment_task_result",
            {"jobid": "JOB1", "access_token": "TOKEN-1"},
        ),
    ]


def test_post_endpoints_send_tencents_field_names(make_client, fake):
    client = make_client()
    client.add_contact_way(2, 2, state="cc:42", user=["zhangsan"], skip_verify=True)
    client.send_welcome_msg(
        "WELCOME", text="Hi", attachments=[{"msgtype": "link", "link": {"title": "T", "url": "u"}}]
    )
    client.resigned_transfer_customer("left", "stays", ["wmA"])
    client.send_app_message("text", {"content": "Follow up"}, agentid=1000002, touser=["a", "b"])
    bodies = {call["api"]: call["json"] for call in fake.api_calls()}
    assert bodies["externalcontact/add_contact_way"] == {
        "type": 2,
        "scene": 2,
        "state": "cc:42",
        "user": ["zhangsan"],
        "skip_verify": True,
    }
    assert bodies["externalcontact/send_welcome_msg"] == {
        "welcome_code": "WELCOME",
        "text": {"content": "Hi"},
        "attachments": [{"msgtype": "link", "link": {"title": "T", "url": "u"}}],
    }
    assert bodies["externalcontact/resigned/transfer_customer"] == {
        "handover_userid": "left",
        "takeover_userid": "stays",
        "external_userid": ["wmA"],
    }
    assert bodies["message/send"] == {
        "touser": "a|b",
        "msgtype": "text",
        "agentid": 1000002,
        "text": {"content": "Follow up"},
    }


def test_media_upload_is_multipart_with_field_media(make_client, fake):
    fake.script("media/upload", {"type": "image", "media_id": "MEDIA1", "created_at": "1"})
    result = make_client().upload_media("image", b"\x89PNG-bytes", filename="poster.png")
    assert result["media_id"] == "MEDIA1"
    (call,) = fake.api_calls()
    assert call["params"]["type"] == "image"
    assert call["content_type"].startswith("multipart/form-data")
    assert b'name="media"; filename="poster.png"' in call["content"]


# --- secrets ----------------------------------------------------------------------------
def test_secret_and_token_never_reach_the_logs(make_client, fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.script("externalcontact/get", {"errcode": 42001, "errmsg": "expired"}, 503)
    fake.script("externalcontact/list", {"errcode": 60011, "errmsg": "no privilege"})
    client = make_client()
    client.get_external_contact("wmC")
    with pytest.raises(WeComPermissionDenied):
        client.list_external_contacts("zhangsan")

    assert "externalcontact/get" in caplog.text  # the calls were logged …
    assert "HTTP Request" in caplog.text  # … httpx's own line too …
    for secret in (SECRET, "TOKEN-1", "TOKEN-2"):  # … without the secret or a token
        assert secret not in caplog.text
    assert SECRET not in repr(client)


def test_redact_masks_token_and_secret_in_urls():
    url = f"{BASE}/gettoken?corpid={CORP_ID}&corpsecret={SECRET}"
    assert redact(url) == f"{BASE}/gettoken?corpid={CORP_ID}&corpsecret=***"
    assert redact("/cgi-bin/user/list?access_token=abc&department_id=1") == (
        "/cgi-bin/user/list?access_token=***&department_id=1"
    )


# --- the tenant's client ----------------------------------------------------------------
def test_client_for_uses_the_tenants_corp_id_and_decrypted_secret(tenant, wecom_cache, settings):
    settings.WECOM_API_BASE = "http://127.0.0.1:9999/cgi-bin/"
    services.update_tenant(
        tenant,
        by=services.system_actor(tenant),
        wecom_corp_id=CORP_ID,
        wecom_contact_secret=SECRET,
    )
    tenant.refresh_from_db()

    client = client_for(tenant)

    assert client.corp_id == CORP_ID
    assert client._secret == SECRET
    assert client.base_url == "http://127.0.0.1:9999/cgi-bin"


def test_client_for_a_tenant_without_credentials_says_what_is_missing(tenant):
    tenant.wecom_contact_secret = ""
    with pytest.raises(WeComNotConfigured) as caught:
        client_for(tenant)
    assert caught.value.details["missing"] == ["wecom_contact_secret"]
    assert caught.value.status == 409
    with pytest.raises(WeComNotConfigured):
        client_for(tenant, secret="app")


def test_client_for_the_app_secret_carries_the_agent_id(tenant, wecom_cache):
    tenant.wecom_corp_id = CORP_ID
    tenant.wecom_agent_id = "1000002"
    tenant.wecom_agent_secret = "app-secret"

    client = client_for(tenant, secret="app")

    assert (client.corp_id, client._secret, client.agentid) == (CORP_ID, "app-secret", 1000002)


# --- errors ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "error",
    [
        WeComNotFound(40096, "invalid external userid", "externalcontact/get"),
        WeComRateLimited(None, "local limit", "user/list", local=True, retry_after=12.5),
        WeComUnavailable("HTTP 502", "gettoken", http_status=502, maybe_applied=False),
        WeComInvalidArgument("externalcontact/add_contact_way", "state", "too long", limit=30),
    ],
    ids=type,
)
def test_errors_survive_pickling(error):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert copy.__dict__ == error.__dict__
    assert str(copy) == str(error)


# --- the shared caches of production ------------------------------------------------------
def _shared_cache_clients(shared_cache, fake, clock, sleeper, **options):
    http = httpx.Client(transport=httpx.MockTransport(fake))
    return [
        WeComClient(
            CORP_ID,
            SECRET,
            base_url=BASE,
            cache=shared_cache,
            http=http,
            backoff_initial=0,
            backoff_max=0,
            clock=clock,
            sleep=sleeper,
            **options,
        )
        for _process in range(2)
    ]


def _assert_token_and_budget_are_shared(clients, fake):
    first, second = clients
    first.get_group_chat("wrCHAT")
    second.get_group_chat("wrCHAT")
    assert fake.count("gettoken") == 1
    with pytest.raises(WeComRateLimited):
        first.get_group_chat("wrCHAT")


def test_token_and_budget_are_shared_through_the_file_cache(tmp_path, fake, clock, sleeper):
    from django.core.cache.backends.filebased import FileBasedCache

    shared = FileBasedCache(str(tmp_path / "cache"), {})
    clients = _shared_cache_clients(
        shared, fake, clock, sleeper, rate_limit_per_minute=2, rate_limit_max_wait=0
    )
    _assert_token_and_budget_are_shared(clients, fake)


@pytest.mark.redis
def test_token_and_budget_are_shared_through_redis(redis_url, fake, clock, sleeper):
    from django.core.cache.backends.redis import RedisCache

    shared = RedisCache(redis_url, {"KEY_PREFIX": "wecom-client-test"})
    shared.clear()
    clients = _shared_cache_clients(
        shared, fake, clock, sleeper, rate_limit_per_minute=2, rate_limit_max_wait=0
    )
    _assert_token_and_budget_are_shared(clients, fake)
    shared.clear()
