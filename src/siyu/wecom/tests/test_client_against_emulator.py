"""The client's token refresh, retries and rate limits against the emulator's faults.

The unit tests in ``test_client.py`` script single answers; these drive the real client over
real HTTP to the local WeCom, whose faults (expired tokens, errcodes, 5xx, latency, its
own 45009 rate limit) are injected through its control API. Each test also reads the
emulator's world afterwards: nothing may be lost, and nothing applied twice.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.core.cache.backends.locmem import LocMemCache

from siyu.wecom.client import WeComClient
from siyu.wecom.emulator import EmulatorControl, EmulatorServer, FakeClock, World
from siyu.wecom.errors import WeComBusy, WeComRateLimited, WeComUnavailable

CORP_ID = "wwclientfaults001"
SECRET = "client-faults-secret"
STAFF = [{"userid": "zhangsan", "name": "张三"}, {"userid": "lisi", "name": "李四"}]


class WireLog:
    """Counts the requests that actually left the client, by API."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()

    def __call__(self, request: httpx.Request) -> None:
        self.sent[request.url.path.removeprefix("/cgi-bin/")] += 1


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(
        World(seed="client-faults", clock=FakeClock()), callback_delivery=False
    ) as server:
        yield server


@pytest.fixture
def control(emulator: EmulatorServer) -> Iterator[EmulatorControl]:
    with EmulatorControl(emulator.base_url, corp_id=CORP_ID) as control:
        control.setup_corp(
            CORP_ID,
            contact_secret=SECRET,
            token="faultsToken",
            encoding_aes_key="6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt",
            staff=STAFF,
        )
        control.bulk_customers(
            [
                {
                    "external_userid": "wmCUSTOMER0001",
                    "name": "李雷",
                    "follows": [{"userid": "zhangsan", "state": "cc_test"}],
                }
            ]
        )
        yield control


@pytest.fixture
def wire() -> WireLog:
    return WireLog()


@pytest.fixture
def make_client(emulator: EmulatorServer, wire: WireLog, control: EmulatorControl):
    cache = LocMemCache(f"client-faults-{uuid.uuid4()}", {})  # no token of another test
    made: list[httpx.Client] = []

    def make(**options: Any) -> WeComClient:
        http = httpx.Client(event_hooks={"request": [wire]})
        made.append(http)
        options.setdefault("backoff_initial", 0.01)
        options.setdefault("backoff_max", 0.02)
        return WeComClient(
            CORP_ID,
            SECRET,
            base_url=f"{emulator.base_url}/cgi-bin",
            cache=cache,
            http=http,
            **options,
        )

    yield make
    for http in made:
        http.close()


def world(control: EmulatorControl) -> dict[str, Any]:
    return control.snapshot(CORP_ID)["corps"][CORP_ID]


def tag_names(control: EmulatorControl) -> list[str]:
    return sorted(
        tag["name"]
        for group in world(control)["tag_groups"].values()
        for tag in group["tags"].values()
    )


# --- tokens ------------------------------------------------------------------------------------
def test_an_expired_token_is_refreshed_once_and_the_call_succeeds(make_client, control, wire):
    client = make_client()
    first = client.access_token()
    assert client.get_external_contact("wmCUSTOMER0001")["external_contact"]["name"] == "李雷"
    # when WeCom expires the token early (errcode 42001 on the next call)
    assert control.expire_tokens(first) == 1
    answer = client.get_external_contact("wmCUSTOMER0001")
    # then one new token was fetched and the call resent once
    assert answer["external_contact"]["name"] == "李雷"
    assert client.access_token() != first
    assert wire.sent["gettoken"] == 2
    assert wire.sent["externalcontact/get"] == 3


def test_a_revoked_token_is_refreshed_too(make_client, control, wire):
    client = make_client()
    old = client.access_token()
    control.revoke_tokens(old)  # errcode 40014, as after a secret reset elsewhere
    assert client.list_departments()["department"]
    assert client.access_token() != old
    assert wire.sent["gettoken"] == 2


def test_clients_sharing_a_cache_share_the_token(make_client, wire):
    make_client().list_departments()
    make_client().list_departments()
    assert wire.sent["gettoken"] == 1


# --- transient faults ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "errcode", "errcode": -1},
        {"kind": "errcode", "errcode": 45009},
        {"kind": "errcode", "errcode": 45033},
        {"kind": "http", "status": 502},
    ],
    ids=["-1 busy", "45009", "45033", "HTTP 502"],
)
def test_transient_faults_are_retried_until_the_call_succeeds(make_client, control, wire, fault):
    control.inject_fault(api="externalcontact/get", count=2, **fault)
    answer = make_client().get_external_contact("wmCUSTOMER0001")
    assert answer["external_contact"]["external_userid"] == "wmCUSTOMER0001"
    assert wire.sent["externalcontact/get"] == 3


def test_a_read_that_times_out_is_retried(make_client, control, wire):
    control.inject_fault("latency", api="externalcontact/get", count=1, seconds=1.0)
    answer = make_client(timeout=0.3).get_external_contact("wmCUSTOMER0001")
    assert answer["external_contact"]["name"] == "李雷"
    assert wire.sent["externalcontact/get"] == 2


def test_a_fault_that_outlasts_the_attempts_is_a_typed_error(make_client, control, wire):
    control.inject_fault("errcode", api="externalcontact/get", errcode=-1)  # until cleared
    with pytest.raises(WeComBusy) as caught:
        make_client(max_attempts=3).get_external_contact("wmCUSTOMER0001")
    assert caught.value.errcode == -1
    assert wire.sent["externalcontact/get"] == 3


def test_a_create_answered_system_busy_is_resent_and_applied_once(make_client, control, wire):
    # errcode -1 is an answer: WeCom did not do it, so the client may safely ask again
    control.inject_fault("errcode", api="externalcontact/add_corp_tag", count=2, errcode=-1)
    made = make_client().add_corp_tag(group_name="客户等级", tag=["高意向"])
    assert [tag["name"] for tag in made["tag_group"]["tag"]] == ["高意向"]
    assert wire.sent["externalcontact/add_corp_tag"] == 3
    assert tag_names(control) == ["高意向"]


def test_a_create_that_timed_out_is_not_resent_and_exists_once(make_client, control, wire):
    # WeCom received it and acts after the client gave up waiting: resending would make two
    control.inject_fault("latency", api="externalcontact/add_contact_way", count=1, seconds=0.8)
    client = make_client(timeout=0.2)
    with pytest.raises(WeComUnavailable) as caught:
        client.add_contact_way(type=1, scene=2, user=["zhangsan"], state="cc_once")
    assert caught.value.maybe_applied is True
    assert wire.sent["externalcontact/add_contact_way"] == 1
    deadline = time.monotonic() + 5
    while not world(control)["contact_ways"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [way["state"] for way in world(control)["contact_ways"].values()] == ["cc_once"]


def test_a_create_that_got_a_5xx_is_not_resent(make_client, control, wire):
    control.inject_fault("http", api="externalcontact/add_corp_tag", count=1, status=502)
    with pytest.raises(WeComUnavailable) as caught:
        make_client().add_corp_tag(group_name="来源", tag=["直播"])
    assert caught.value.maybe_applied is True
    assert wire.sent["externalcontact/add_corp_tag"] == 1


# --- rate limits --------------------------------------------------------------------------------
def test_wecoms_own_rate_limit_is_retried_then_reported(make_client, control, wire):
    control.settings(rate_limit_per_minute=2)
    client = make_client(max_attempts=2)
    client.list_departments()
    client.list_departments()
    with pytest.raises(WeComRateLimited) as caught:
        client.list_departments()
    assert caught.value.errcode == 45009
    assert caught.value.local is False
    assert wire.sent["department/list"] == 4
    # the next minute of WeCom's clock serves again
    control.advance_clock(60)
    assert client.list_departments()["department"]


def test_the_clients_own_limit_refuses_before_anything_is_sent(make_client, control, wire):
    client = make_client(api_rate_limits={"externalcontact/mark_tag": 2}, rate_limit_max_wait=0)
    made = client.add_corp_tag(group_name="兴趣", tag=["茶", "咖啡", "果汁"])
    tag_ids = [tag["id"] for tag in made["tag_group"]["tag"]]
    for tag_id in tag_ids[:2]:
        client.mark_tag(userid="zhangsan", external_userid="wmCUSTOMER0001", add_tag=[tag_id])
    with pytest.raises(WeComRateLimited) as caught:
        client.mark_tag(userid="zhangsan", external_userid="wmCUSTOMER0001", add_tag=[tag_ids[2]])
    assert caught.value.local is True
    assert wire.sent["externalcontact/mark_tag"] == 2
    follow = world(control)["customers"]["wmCUSTOMER0001"]["follows"]["zhangsan"]
    assert sorted(follow["tags"]) == sorted(tag_ids[:2])
