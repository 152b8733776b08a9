"""Customer transfers (on-job and resigned), the behaviour statistics, contact events."""

import pytest

from siyu.wecom.emulator.state import day_start
from siyu.wecom.xml import parse


def contact_events(control):
    return [parse(e["xml"]) for e in control.outbox() if e["event"] == "change_external_contact"]


def customers(control, contact_way, userid, count):
    return [
        control.scan(contact_way["config_id"], userid=userid)["external_userid"]
        for _ in range(count)
    ]


def test_an_on_job_transfer_completes_after_24_hours(api, control, contact_way, clock):
    # given
    ids = customers(control, contact_way, "zhangsan", 2)
    api.ok(
        "externalcontact/remark",
        {"userid": "zhangsan", "external_userid": ids[0], "remark": "老客户"},
    )
    # when
    answer = api.ok(
        "externalcontact/transfer_customer",
        {
            "handover_userid": "zhangsan",
            "takeover_userid": "wangwu",
            "external_userid": [*ids, "wmnobody"],
            "transfer_success_msg": "您好，我是新的顾问王五",
        },
    )
    # then
    assert answer["customer"] == [
        {"external_userid": ids[0], "errcode": 0},
        {"external_userid": ids[1], "errcode": 0},
        {"external_userid": "wmnobody", "errcode": 40096},
    ]
    query = {"handover_userid": "zhangsan", "takeover_userid": "wangwu"}
    waiting = api.ok("externalcontact/transfer_result", query)["customer"]
    assert [(c["status"], c["takeover_time"]) for c in waiting] == [(2, 0), (2, 0)]
    again = api.ok(
        "externalcontact/transfer_customer",
        {"handover_userid": "zhangsan", "takeover_userid": "lisi", "external_userid": [ids[0]]},
    )
    assert again["customer"][0]["errcode"] == 40129
    clock.advance(86400)
    done = api.ok("externalcontact/transfer_result", query)["customer"]
    assert [(c["status"], c["takeover_time"]) for c in done] == [(1, int(clock()))] * 2
    follow = api.get("externalcontact/get", external_userid=ids[0])["follow_user"]
    assert [(f["userid"], f["remark"], f["add_way"]) for f in follow] == [("wangwu", "老客户", 202)]
    events = contact_events(control)[-4:]
    assert [(e["ChangeType"], e["UserID"], e.get("Source")) for e in events] == [
        ("del_external_contact", "zhangsan", "DELETE_BY_TRANSFER"),
        ("add_external_contact", "wangwu", None),
    ] * 2


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"handover_userid": "zhangsan", "takeover_userid": "lisi", "external_userid": []}, 40058),
        (
            {
                "handover_userid": "zhangsan",
                "takeover_userid": "lisi",
                "external_userid": [f"wm{i}" for i in range(101)],
            },
            40058,
        ),
        ({"handover_userid": "nobody", "takeover_userid": "lisi", "external_userid": ["x"]}, 40003),
        (
            {"handover_userid": "zhangsan", "takeover_userid": "nobody", "external_userid": ["x"]},
            40003,
        ),
    ],
)
def test_transfer_errcodes(api, body, errcode):
    assert api.post("externalcontact/transfer_customer", body)["errcode"] == errcode


def test_per_customer_transfer_errcodes(api, control, contact_way):
    [mine] = customers(control, contact_way, "zhangsan", 1)
    [theirs] = customers(control, contact_way, "lisi", 1)
    answer = api.ok(
        "externalcontact/transfer_customer",
        {"handover_userid": "zhangsan", "takeover_userid": "zhangsan", "external_userid": [mine]},
    )
    assert answer["customer"][0]["errcode"] == 40130
    answer = api.ok(
        "externalcontact/transfer_customer",
        {"handover_userid": "zhangsan", "takeover_userid": "wangwu", "external_userid": [theirs]},
    )
    assert answer["customer"][0]["errcode"] == 40131


def test_a_refused_transfer_emits_transfer_fail(api, control, contact_way):
    [customer] = customers(control, contact_way, "zhangsan", 1)
    api.ok(
        "externalcontact/transfer_customer",
        {"handover_userid": "zhangsan", "takeover_userid": "lisi", "external_userid": [customer]},
    )
    control.refuse_transfer(external_userid=customer)
    result = api.ok(
        "externalcontact/transfer_result",
        {"handover_userid": "zhangsan", "takeover_userid": "lisi"},
    )
    assert result["customer"][0]["status"] == 3
    event = contact_events(control)[-1]
    assert (event["ChangeType"], event["FailReason"], event["UserID"]) == (
        "transfer_fail",
        "customer_refused",
        "lisi",
    )


def test_a_resigned_members_customers_are_reassigned(api, control, contact_way):
    ids = customers(control, contact_way, "zhangsan", 2)
    body = {"handover_userid": "zhangsan", "takeover_userid": "lisi", "external_userid": ids}
    assert api.post("externalcontact/resigned/transfer_customer", body)["errcode"] == 40097
    control.delete_staff("zhangsan")
    unassigned = api.ok("externalcontact/get_unassigned_list", {})
    assert [i["external_userid"] for i in unassigned["info"]] == ids
    assert unassigned["is_last"] is True
    assert api.post("externalcontact/transfer_customer", body)["errcode"] == 40003
    api.ok("externalcontact/resigned/transfer_customer", body)
    control.complete_transfers(handover_userid="zhangsan")
    result = api.ok(
        "externalcontact/resigned/transfer_result",
        {"handover_userid": "zhangsan", "takeover_userid": "lisi"},
    )
    assert [c["status"] for c in result["customer"]] == [1, 1]
    assert api.get("externalcontact/list", userid="lisi")["external_userid"][-2:] == ids
    assert api.ok("externalcontact/get_unassigned_list", {})["info"] == []


def test_user_behavior_data_counts_adds_chats_and_deletions(api, control, contact_way, clock):
    today = day_start(clock())
    first, second = customers(control, contact_way, "zhangsan", 2)
    control.chat("zhangsan", first, sender="customer")
    clock.advance(120)
    control.chat("zhangsan", first, sender="staff", count=2)
    control.customer_deletes_staff(second, "zhangsan")
    clock.advance(86400)
    control.chat("zhangsan", first, sender="staff")
    answer = api.ok(
        "externalcontact/get_user_behavior_data",
        {"userid": ["zhangsan"], "start_time": today, "end_time": today + 86400},
    )
    day1, day2 = answer["behavior_data"]
    assert day1 == {
        "stat_time": today,
        "chat_cnt": 1,
        "message_cnt": 2,
        "negative_feedback_cnt": 1,
        "new_apply_cnt": 2,
        "new_contact_cnt": 2,
        "reply_percentage": 100.0,
        "avg_reply_time": 2,
    }
    assert (day2["stat_time"], day2["message_cnt"], day2["new_contact_cnt"]) == (
        today + 86400,
        1,
        0,
    )
    assert "reply_percentage" not in day2
    by_party = api.ok(
        "externalcontact/get_user_behavior_data",
        {"partyid": [1], "start_time": today, "end_time": today},
    )
    assert by_party["behavior_data"][0]["new_contact_cnt"] == 2
    assert (
        api.post(
            "externalcontact/get_user_behavior_data", {"start_time": today, "end_time": today}
        )["errcode"]
        == 40058
    )
    assert (
        api.post(
            "externalcontact/get_user_behavior_data",
            {"userid": ["zhangsan"], "start_time": today, "end_time": today + 31 * 86400},
        )["errcode"]
        == 40058
    )


def test_half_added_and_edited_contacts(api, control, contact_way):
    result = control.scan(contact_way["config_id"], half=True)
    control.edit_contact(result["userid"], result["external_userid"], remark="VIP")
    added = control.add_contact("wangwu", customer={"name": "名片客户"})
    half, edit, direct = contact_events(control)
    assert half["ChangeType"] == "add_half_external_contact"
    assert half["WelcomeCode"] == result["welcome_code"]
    assert edit == {
        "ToUserName": "wwtestcorp0000001",
        "FromUserName": "sys",
        "CreateTime": edit["CreateTime"],
        "MsgType": "event",
        "Event": "change_external_contact",
        "ChangeType": "edit_external_contact",
        "UserID": result["userid"],
        "ExternalUserID": result["external_userid"],
    }
    assert "State" not in direct
    follow = api.get("externalcontact/get", external_userid=added["external_userid"])
    assert follow["follow_user"][0]["add_way"] == 3
