"""Customers and follows: scanning contact ways, externalcontact/get|list|batch, remark."""

import pytest

from siyu.wecom.emulator.tests.support import CORP_ID


def test_scanning_a_contact_way_creates_a_customer_and_a_follow(api, control, contact_way, clock):
    # when
    scan = control.scan(contact_way["config_id"], customer={"name": "小红", "gender": 2})
    # then
    assert scan["userid"] == "zhangsan"
    assert scan["state"] == "cc_spring"
    assert scan["welcome_code"]
    answer = api.get("externalcontact/get", external_userid=scan["external_userid"])
    assert answer["errcode"] == 0
    customer = answer["external_contact"]
    assert customer["external_userid"].startswith("wm")
    assert len(customer["external_userid"]) == 32
    assert customer["name"] == "小红"
    assert customer["gender"] == 2
    assert customer["type"] == 1
    assert customer["unionid"].startswith("o")
    [follow] = answer["follow_user"]
    assert follow == {
        "userid": "zhangsan",
        "remark": "",
        "description": "",
        "createtime": int(clock()),
        "tags": [],
        "remark_mobiles": [],
        "oper_userid": scan["external_userid"],
        "add_way": 1,
        "state": "cc_spring",
    }


def test_a_multi_member_contact_way_hands_scanners_round_robin(api, control, contact_way):
    owners = [control.scan(contact_way["config_id"])["userid"] for _ in range(4)]
    assert owners == ["zhangsan", "lisi", "zhangsan", "lisi"]


def test_scanning_by_qr_code_url_and_an_existing_customer(api, control, contact_way):
    first = control.scan(qr_code=contact_way["qr_code"])
    again = control.scan(
        qr_code=contact_way["qr_code"], external_userid=first["external_userid"], userid="lisi"
    )
    assert again["external_userid"] == first["external_userid"]
    answer = api.get("externalcontact/get", external_userid=first["external_userid"])
    assert [f["userid"] for f in answer["follow_user"]] == ["zhangsan", "lisi"]


def test_externalcontact_list_and_its_errcodes(api, control, contact_way):
    ids = [control.scan(contact_way["config_id"], userid="zhangsan")["external_userid"]]
    ids.append(control.scan(contact_way["config_id"], userid="zhangsan")["external_userid"])
    assert api.get("externalcontact/list", userid="zhangsan") == {
        "errcode": 0,
        "errmsg": "ok",
        "external_userid": ids,
    }
    # WeCom answers 84061 for a member without customers
    assert api.get("externalcontact/list", userid="wangwu")["errcode"] == 84061
    assert api.get("externalcontact/list", userid="nobody")["errcode"] == 40003
    assert api.get("externalcontact/list")["errcode"] == 41009


def test_externalcontact_get_errcodes(api, control, contact_way):
    assert api.get("externalcontact/get")["errcode"] == 41035
    assert api.get("externalcontact/get", external_userid="wmnobody")["errcode"] == 40096
    scan = control.scan(contact_way["config_id"])
    control.customer_deletes_staff(scan["external_userid"], scan["userid"])
    assert api.get("externalcontact/get", external_userid=scan["external_userid"])["errcode"] == (
        84061
    )


def test_batch_get_by_user_pages_through_every_follow_once(api, control, contact_way):
    # given 7 customers of zhangsan, 5 of lisi, none of wangwu
    expected = []
    for userid, count in (("zhangsan", 7), ("lisi", 5)):
        for _ in range(count):
            scan = control.scan(contact_way["config_id"], userid=userid)
            expected.append((userid, scan["external_userid"]))
    # when
    seen, cursor, pages = [], "", 0
    while True:
        answer = api.ok(
            "externalcontact/batch/get_by_user",
            {"userid_list": ["zhangsan", "wangwu", "lisi"], "cursor": cursor, "limit": 4},
        )
        pages += 1
        assert len(answer["external_contact_list"]) <= 4
        seen += [
            (item["follow_info"]["userid"], item["external_contact"]["external_userid"])
            for item in answer["external_contact_list"]
        ]
        cursor = answer["next_cursor"]
        if not cursor:
            break
    # then
    assert seen == expected
    assert pages == 3
    item = answer["external_contact_list"][-1]
    assert set(item["follow_info"]) == {
        "userid",
        "remark",
        "description",
        "createtime",
        "tag_id",
        "remark_mobiles",
        "oper_userid",
        "add_way",
        "state",
    }


def test_batch_get_by_user_survives_deletions_between_pages(api, control, contact_way):
    ids = [
        control.scan(contact_way["config_id"], userid="lisi")["external_userid"] for _ in range(6)
    ]
    first = api.ok("externalcontact/batch/get_by_user", {"userid_list": ["lisi"], "limit": 3})
    control.staff_deletes_customer("lisi", ids[1])  # already returned
    control.staff_deletes_customer("lisi", ids[4])  # not yet returned
    second = api.ok(
        "externalcontact/batch/get_by_user",
        {"userid_list": ["lisi"], "limit": 3, "cursor": first["next_cursor"]},
    )
    got = [i["external_contact"]["external_userid"] for i in second["external_contact_list"]]
    assert got == [ids[3], ids[5]]
    assert second["next_cursor"] == ""


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({}, 41009),
        ({"userid_list": ["nobody"]}, 40003),
        ({"userid_list": [f"u{i}" for i in range(101)]}, 40058),
        ({"userid_list": ["zhangsan"], "cursor": "!!not-a-cursor"}, 40058),
    ],
)
def test_batch_get_by_user_errcodes(api, body, errcode):
    assert api.post("externalcontact/batch/get_by_user", body)["errcode"] == errcode


def test_batch_limit_above_100_is_taken_as_100(api, control, contact_way):
    for _ in range(3):
        control.scan(contact_way["config_id"], userid="zhangsan")
    answer = api.ok(
        "externalcontact/batch/get_by_user", {"userid_list": ["zhangsan"], "limit": 500}
    )
    assert len(answer["external_contact_list"]) == 3


def test_remark_updates_the_follow(api, control, contact_way):
    scan = control.scan(contact_way["config_id"])
    body = {
        "userid": scan["userid"],
        "external_userid": scan["external_userid"],
        "remark": "老客户",
        "description": "喜欢绿茶",
        "remark_mobiles": ["13800000000"],
    }
    api.ok("externalcontact/remark", body)
    follow = api.get("externalcontact/get", external_userid=scan["external_userid"])["follow_user"][
        0
    ]
    assert (follow["remark"], follow["description"], follow["remark_mobiles"]) == (
        "老客户",
        "喜欢绿茶",
        ["13800000000"],
    )
    too_long = api.post("externalcontact/remark", {**body, "remark": "长" * 21})
    assert too_long["errcode"] == 40058
    not_friends = api.post("externalcontact/remark", {**body, "userid": "wangwu"})
    assert not_friends["errcode"] == 84061
    nothing = api.post(
        "externalcontact/remark",
        {"userid": body["userid"], "external_userid": body["external_userid"]},
    )
    assert nothing["errcode"] == 40058


def test_get_follow_user_list_and_the_address_book(api, control):
    control.add_department("销售部", id=2)
    control.add_staff("zhaoliu", "赵六", department=[2])
    assert api.get("externalcontact/get_follow_user_list")["follow_user"] == [
        "zhangsan",
        "lisi",
        "wangwu",
        "zhaoliu",
    ]
    departments = api.get("department/list")["department"]
    assert [(d["id"], d["parentid"]) for d in departments] == [(1, 0), (2, 1)]
    assert [u["userid"] for u in api.get("user/list", department_id=2)["userlist"]] == ["zhaoliu"]
    everyone = api.get("user/list", department_id=1, fetch_child=1)["userlist"]
    assert len(everyone) == 4
    assert api.get("user/list", department_id=99)["errcode"] == 60003
    assert api.get("user/get", userid="zhaoliu")["name"] == "赵六"
    control.delete_staff("zhaoliu")
    assert api.get("user/get", userid="zhaoliu")["errcode"] == 60111


def test_staff_and_departments_changes_emit_change_contact(control, api):
    control.add_department("市场部", id=3)
    control.add_staff("xiaoming", "小明", department=[3], position="导购")
    control.update_staff("xiaoming", position="店长")
    control.delete_staff("xiaoming")
    events = [(e["event"], e["change_type"]) for e in control.outbox()]
    assert events == [
        ("change_contact", "create_party"),
        ("change_contact", "create_user"),
        ("change_contact", "update_user"),
        ("change_contact", "delete_user"),
    ]
    create_user = control.outbox()[1]["xml"]
    assert "<ChangeType><![CDATA[create_user]]></ChangeType>" in create_user
    assert "<UserID><![CDATA[xiaoming]]></UserID>" in create_user
    assert "<Department><![CDATA[3]]></Department>" in create_user
    assert f"<ToUserName><![CDATA[{CORP_ID}]]></ToUserName>" in create_user
