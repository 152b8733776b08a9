"""Injected API faults and the per-corp per-API rate limit."""

import time

import pytest

from siyu.wecom.emulator.tests.support import CONTACT_SECRET, CORP_ID


@pytest.mark.parametrize("errcode", [-1, 45009, 45033])
def test_the_next_calls_of_an_api_answer_an_errcode(api, control, errcode):
    control.inject_fault("errcode", api="user/list", count=2, errcode=errcode)
    assert api.get("department/list")["errcode"] == 0  # another API is unaffected
    assert api.get("user/list", department_id=1)["errcode"] == errcode
    assert api.get("user/list", department_id=1)["errcode"] == errcode
    assert api.get("user/list", department_id=1)["errcode"] == 0


def test_http_errors_for_every_api_until_cleared(api, control):
    token = api.token
    control.inject_fault("http", status=502)
    response = api.client.get("/cgi-bin/department/list", params={"access_token": token})
    assert response.status_code == 502
    response = api.client.get(
        "/cgi-bin/gettoken", params={"corpid": CORP_ID, "corpsecret": CONTACT_SECRET}
    )
    assert response.status_code == 502
    control.clear_faults()
    assert api.get("department/list")["errcode"] == 0


def test_added_latency(api, control):
    control.inject_fault("latency", api="department/list", count=1, seconds=0.2)
    started = time.monotonic()
    assert api.get("department/list")["errcode"] == 0
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    api.get("department/list")
    assert time.monotonic() - started < 0.2


def test_latency_combines_with_an_errcode(api, control):
    token = api.token
    control.inject_fault("latency", count=1, seconds=0.05)
    control.inject_fault("errcode", count=1, errcode=-1)
    answer = api.client.get("/cgi-bin/department/list", params={"access_token": token}).json()
    assert answer["errcode"] == -1
    assert control.get("faults") == {"api": [], "callbacks": []}


def test_the_rate_limit_answers_45009_per_api(api, control, clock):
    control.settings(rate_limit_per_minute=3)
    for _ in range(3):
        assert api.get("department/list")["errcode"] == 0
    assert api.get("department/list")["errcode"] == 45009
    assert api.get("user/list", department_id=1)["errcode"] == 0  # counted per API
    clock.advance(60)
    assert api.get("department/list")["errcode"] == 0


def test_fault_errors_of_the_control_api(control, corp):
    with pytest.raises(Exception, match="kind must be"):
        control.inject_fault("explode")
    with pytest.raises(Exception, match="kind must be"):
        control.callback_fault("explode")
