"""gettoken, token expiry and the errcodes of authentication."""

import pytest

from siyu.wecom.emulator.tests.support import AGENT_SECRET, CONTACT_SECRET, CORP_ID, WeComApi


def gettoken(client, **params):
    return client.get("/cgi-bin/gettoken", params=params).json()


def test_gettoken_issues_a_token_valid_two_hours(client, corp):
    answer = gettoken(client, corpid=CORP_ID, corpsecret=CONTACT_SECRET)
    assert answer["errcode"] == 0
    assert answer["errmsg"] == "ok"
    assert answer["expires_in"] == 7200
    assert len(answer["access_token"]) > 32


def test_gettoken_answers_the_same_token_while_it_is_valid(client, corp, clock):
    first = gettoken(client, corpid=CORP_ID, corpsecret=CONTACT_SECRET)
    clock.advance(600)
    second = gettoken(client, corpid=CORP_ID, corpsecret=CONTACT_SECRET)
    assert second["access_token"] == first["access_token"]
    assert second["expires_in"] == 7200 - 600
    other_app = gettoken(client, corpid=CORP_ID, corpsecret=AGENT_SECRET)
    assert other_app["access_token"] != first["access_token"]


@pytest.mark.parametrize(
    ("params", "errcode"),
    [
        ({"corpsecret": CONTACT_SECRET}, 41002),
        ({"corpid": CORP_ID}, 41004),
        ({"corpid": "wwunknown", "corpsecret": CONTACT_SECRET}, 40013),
        ({"corpid": CORP_ID, "corpsecret": "wrong"}, 40001),
    ],
)
def test_gettoken_errcodes(client, corp, params, errcode):
    answer = gettoken(client, **params)
    assert answer["errcode"] == errcode
    assert "access_token" not in answer
    assert f"e={errcode}" in answer["errmsg"]


def test_calls_without_token_or_with_an_unknown_one(client, corp):
    missing = client.get("/cgi-bin/user/list", params={"department_id": 1}).json()
    assert missing["errcode"] == 41001
    unknown = client.get(
        "/cgi-bin/user/list", params={"department_id": 1, "access_token": "nope"}
    ).json()
    assert unknown["errcode"] == 40014


def call_with(client, token):
    return client.get("/cgi-bin/user/list", params={"department_id": 1, "access_token": token})


def test_a_token_expires_after_7200_seconds_and_a_new_one_is_issued(client, corp, clock):
    api = WeComApi(client)
    assert call_with(client, api.token).json()["errcode"] == 0
    clock.advance(7200)
    assert call_with(client, api.token).json()["errcode"] == 42001
    fresh = gettoken(client, corpid=CORP_ID, corpsecret=CONTACT_SECRET)
    assert fresh["access_token"] != api.token
    assert fresh["expires_in"] == 7200


def test_the_control_api_expires_a_token_early(client, corp, control):
    api = WeComApi(client)
    assert api.get("user/list", department_id=1)["errcode"] == 0
    assert control.expire_tokens(api.token) == 1
    assert call_with(client, api.token).json()["errcode"] == 42001
    refreshed = gettoken(client, corpid=CORP_ID, corpsecret=CONTACT_SECRET)
    assert refreshed["access_token"] != api.token


def test_a_revoked_token_is_unknown(client, corp, control):
    api = WeComApi(client)
    api.get("user/list", department_id=1)
    control.revoke_tokens(api.token)
    assert api.get("user/list", department_id=1)["errcode"] == 40014


def test_app_messages_need_an_apps_secret(client, corp):
    contact = WeComApi(client, CONTACT_SECRET)
    body = {"touser": "zhangsan", "msgtype": "text", "agentid": 1000002, "text": {"content": "hi"}}
    assert contact.post("message/send", body)["errcode"] == 48002
    app = WeComApi(client, AGENT_SECRET)
    answer = app.post("message/send", body)
    assert answer["errcode"] == 0
    assert answer["invaliduser"] == ""
    wrong_agent = app.post("message/send", {**body, "agentid": 42})
    assert wrong_agent["errcode"] == 40056


def test_an_unknown_api_is_404(api):
    response = api.client.get("/cgi-bin/no/such/api", params={"access_token": api.token})
    assert response.status_code == 404
