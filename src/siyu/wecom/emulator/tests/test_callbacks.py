"""Callbacks delivered for real: encryption, signature, XML, retries, faults, URL check."""

import re

from siyu.wecom.crypto import sign
from siyu.wecom.emulator.tests.support import AES_KEY, CORP_ID, TOKEN
from siyu.wecom.xml import parse


def scan(api, control):
    way = api.ok(
        "externalcontact/add_contact_way",
        {"type": 1, "scene": 2, "user": ["zhangsan"], "state": "poster_1"},
    )
    return control.scan(way["config_id"], customer={"name": "小红"})


def test_add_external_contact_is_delivered_encrypted_and_signed(live, receiver, clock):
    _, control, api = live
    # when
    result = scan(api, control)
    # then
    [request] = receiver.wait_for(1)
    assert request.path == "/wecom/brand-a/callback"
    assert set(request.query) == {"msg_signature", "timestamp", "nonce"}
    encrypt = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>", request.body).group(1)
    assert request.query["msg_signature"] == sign(
        TOKEN, request.query["timestamp"], request.query["nonce"], encrypt
    )
    envelope = parse(request.body)
    assert envelope["ToUserName"] == CORP_ID
    plaintext = receiver.decrypt(request)
    assert plaintext == (
        "<xml>"
        f"<ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
        "<FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{int(clock())}</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_contact]]></Event>"
        "<ChangeType><![CDATA[add_external_contact]]></ChangeType>"
        "<UserID><![CDATA[zhangsan]]></UserID>"
        f"<ExternalUserID><![CDATA[{result['external_userid']}]]></ExternalUserID>"
        "<State><![CDATA[poster_1]]></State>"
        f"<WelcomeCode><![CDATA[{result['welcome_code']}]]></WelcomeCode>"
        "</xml>"
    )
    assert control.wait_callbacks(5)
    [delivery] = control.callbacks()
    assert delivery["status"] == "delivered"
    assert len(delivery["attempts"]) == 1


def test_del_follow_user_and_del_external_contact(live, receiver):
    _, control, api = live
    first = scan(api, control)
    second = scan(api, control)
    control.customer_deletes_staff(first["external_userid"], "zhangsan")
    control.staff_deletes_customer("zhangsan", second["external_userid"])
    requests = receiver.wait_for(4)
    events = [parse(receiver.decrypt(r)) for r in requests]
    assert [e["ChangeType"] for e in events] == [
        "add_external_contact",
        "add_external_contact",
        "del_follow_user",
        "del_external_contact",
    ]
    assert events[2]["ExternalUserID"] == first["external_userid"]
    assert "Source" not in events[3]


def test_a_callback_not_answered_within_the_time_out_is_retried(live, receiver):
    _, control, api = live
    receiver.plan.extend([("sleep", 0.8), ("sleep", 0.8)])  # time-out is 0.5 s here
    scan(api, control)
    requests = receiver.wait_for(3)
    assert control.wait_callbacks(10)
    assert len(receiver.posts()) == 3
    assert len({(r.body, tuple(sorted(r.query.items()))) for r in requests}) == 1  # the same
    [delivery] = control.callbacks()
    assert delivery["status"] == "delivered"
    assert [a.get("error") for a in delivery["attempts"]] == ["timeout", "timeout", None]


def test_retries_stop_after_three(live, receiver):
    _, control, api = live
    receiver.plan.extend([("status", 500)] * 10)
    scan(api, control)
    assert control.wait_callbacks(10)
    assert len(receiver.posts()) == 4  # the delivery and 3 retries
    [delivery] = control.callbacks()
    assert delivery["status"] == "failed"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 500, 500]


def test_duplicated_callbacks(live, receiver):
    _, control, api = live
    control.callback_fault("duplicate", count=1, copies=3)
    scan(api, control)
    scan(api, control)
    assert control.wait_callbacks(5)
    bodies = [r.body for r in receiver.posts()]
    assert len(bodies) == 4
    assert bodies[0] == bodies[1] == bodies[2] != bodies[3]


def test_reordered_callbacks(live, receiver):
    _, control, api = live
    control.callback_fault("reorder", count=3)
    results = [scan(api, control) for _ in range(3)]
    assert control.wait_callbacks(5)
    delivered = [parse(receiver.decrypt(r))["ExternalUserID"] for r in receiver.posts()]
    assert delivered == [r["external_userid"] for r in reversed(results)]


def test_delayed_and_dropped_callbacks(live, receiver):
    _, control, api = live
    control.callback_fault("delay", count=1, seconds=0.3)
    control.callback_fault("drop", count=1)
    scan(api, control)  # delayed... and dropped: both faults take the first callback
    second = scan(api, control)
    assert control.wait_callbacks(5)
    [request] = receiver.posts()
    assert parse(receiver.decrypt(request))["ExternalUserID"] == second["external_userid"]
    assert [d["status"] for d in control.callbacks()] == ["dropped", "delivered"]


def test_url_verification(live, receiver):
    _, control, _ = live
    result = control.verify_callback()
    assert result["ok"] is True
    [request] = [r for r in receiver.requests if r.method == "GET"]
    assert set(request.query) == {"msg_signature", "timestamp", "nonce", "echostr"}
    receiver.verify_reply = "not the echostr"
    assert control.verify_callback()["ok"] is False


def test_a_corp_without_a_callback_url_records_the_callback_as_skipped(live, receiver):
    _, control, api = live
    control.post("corps", corp_id=CORP_ID, callback_url="", encoding_aes_key=AES_KEY)
    scan(api, control)
    assert [d["status"] for d in control.callbacks()] == ["skipped"]
    assert receiver.posts() == []


def test_group_and_tag_callbacks_decrypt_to_wecoms_xml(live, receiver):
    _, control, _ = live
    chat_id = control.create_group("zhangsan", "群")
    control.join_group(chat_id=chat_id, member={"name": "x"}, scene="link")
    created = control.tag_change("create", group_name="兴趣", tags=["茶"])
    requests = receiver.wait_for(3)
    create, update, tag = (receiver.decrypt(r) for r in requests)
    assert create.endswith(
        f"<Event><![CDATA[change_external_chat]]></Event><ChatId><![CDATA[{chat_id}]]></ChatId>"
        "<ChangeType><![CDATA[create]]></ChangeType></xml>"
    )
    assert re.search(
        r"<ChangeType><!\[CDATA\[update\]\]></ChangeType>"
        r"<UpdateDetail><!\[CDATA\[add_member\]\]></UpdateDetail>"
        r"<JoinScene>1</JoinScene><MemChangeCnt>1</MemChangeCnt>"
        r"<MemChangeList><Item><!\[CDATA\[wm[\w-]+\]\]></Item></MemChangeList>"
        r"<LastMemVer><!\[CDATA\[[0-9a-f]{32}\]\]></LastMemVer>"
        r"<CurMemVer><!\[CDATA\[[0-9a-f]{32}\]\]></CurMemVer></xml>$",
        update,
    )
    assert tag.endswith(
        f"<Event><![CDATA[change_external_tag]]></Event><Id><![CDATA[{created['group_id']}]]></Id>"
        "<TagType><![CDATA[tag_group]]></TagType><ChangeType><![CDATA[create]]></ChangeType></xml>"
    )
