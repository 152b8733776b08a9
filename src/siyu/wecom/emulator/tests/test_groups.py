"""Customer groups, join ways (群活码) with roll-over, and group statistics."""

import pytest

from siyu.wecom.xml import parse


def chat_events(control):
    return [parse(e["xml"]) for e in control.outbox() if e["event"] == "change_external_chat"]


def test_create_join_and_read_a_group(api, control, clock):
    chat_id = control.create_group("zhangsan", "会员福利群", admin_list=["lisi"], notice="群规")
    assert chat_id.startswith("wr")
    clock.advance(10)
    joined = control.join_group(
        chat_id=chat_id, members=[{"name": "小明"}, "lisi"], scene="invite", invitor="zhangsan"
    )
    assert joined["member_count"] == 3
    group = api.ok("externalcontact/groupchat/get", {"chat_id": chat_id, "need_name": 1})[
        "group_chat"
    ]
    assert group["name"] == "会员福利群"
    assert group["owner"] == "zhangsan"
    assert group["notice"] == "群规"
    assert group["admin_list"] == [{"userid": "lisi"}]
    assert len(group["member_version"]) == 32
    customer = group["member_list"][1]
    assert customer["userid"].startswith("wm")
    assert customer["type"] == 2
    assert customer["join_scene"] == 1
    assert customer["join_time"] == int(clock())
    assert customer["invitor"] == {"userid": "zhangsan"}
    assert customer["name"] == "小明"
    assert customer["unionid"].startswith("o")
    assert group["member_list"][2]["type"] == 1
    without_names = api.ok("externalcontact/groupchat/get", {"chat_id": chat_id})["group_chat"]
    assert "name" not in without_names["member_list"][1]
    create, update = chat_events(control)
    assert (create["ChangeType"], create["ChatId"]) == ("create", chat_id)
    assert update["ChangeType"] == "update"
    assert update["UpdateDetail"] == "add_member"
    assert update["JoinScene"] == "0"  # the callback numbers "invited" 0, groupchat/get 1
    assert update["MemChangeCnt"] == "2"
    assert update["MemChangeList"] == [customer["userid"], "lisi"]
    assert update["CurMemVer"] == group["member_version"]
    assert update["LastMemVer"] != update["CurMemVer"]


def test_leave_update_and_dismiss(api, control):
    chat_id = control.create_group("zhangsan", "群", members=["lisi", "wangwu"])
    control.leave_group(chat_id, "lisi")
    control.leave_group(chat_id, "wangwu", removed=True)
    control.update_group(chat_id, name="新群名", notice="新公告", owner="lisi")
    control.dismiss_group(chat_id)
    events = chat_events(control)[1:]
    assert [(e["ChangeType"], e.get("UpdateDetail"), e.get("QuitScene")) for e in events] == [
        ("update", "del_member", "0"),
        ("update", "del_member", "1"),
        ("update", "change_name", None),
        ("update", "change_notice", None),
        ("update", "change_owner", None),
        ("dismiss", None, None),
    ]
    assert api.post("externalcontact/groupchat/get", {"chat_id": chat_id})["errcode"] == 40050


def test_groupchat_list_pages_and_filters_by_owner(api, control):
    ids = [control.create_group("zhangsan", f"群{i}") for i in range(5)]
    control.create_group("lisi", "other")
    seen, cursor = [], ""
    while True:
        page = api.ok(
            "externalcontact/groupchat/list",
            {"owner_filter": {"userid_list": ["zhangsan"]}, "limit": 2, "cursor": cursor},
        )
        seen += [g["chat_id"] for g in page["group_chat_list"]]
        assert all(g["status"] == 0 for g in page["group_chat_list"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids
    assert api.post("externalcontact/groupchat/list", {})["errcode"] == 40058
    assert api.post("externalcontact/groupchat/list", {"limit": 1001})["errcode"] == 40058


def join_way(api, chat_ids, **options):
    body = {"scene": 2, "chat_id_list": chat_ids, "state": "gc_1", **options}
    return api.ok("externalcontact/groupchat/add_join_way", body)["config_id"]


def test_join_way_lifecycle_and_limits(api, control):
    chat_id = control.create_group("zhangsan", "群")
    config_id = join_way(api, [chat_id], room_base_name="粉丝群", room_base_id=2)
    way = api.ok("externalcontact/groupchat/get_join_way", {"config_id": config_id})["join_way"]
    assert way["chat_id_list"] == [chat_id]
    assert way["state"] == "gc_1"
    assert way["auto_create_room"] == 1
    assert way["qr_code"].endswith(f"/qr/join/{config_id}")
    api.ok(
        "externalcontact/groupchat/update_join_way",
        {"config_id": config_id, "scene": 2, "chat_id_list": [chat_id], "state": "gc_2"},
    )
    assert (
        api.ok("externalcontact/groupchat/get_join_way", {"config_id": config_id})["join_way"][
            "state"
        ]
        == "gc_2"
    )
    api.ok("externalcontact/groupchat/del_join_way", {"config_id": config_id})
    gone = api.post("externalcontact/groupchat/get_join_way", {"config_id": config_id})
    assert gone["errcode"] == 41044


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"scene": 2, "chat_id_list": ["wr1", "wr2", "wr3", "wr4", "wr5", "wr6"]}, 41091),
        ({"scene": 2, "chat_id_list": ["wrunknown"]}, 40050),
        ({"scene": 2}, 40058),
        ({"scene": 3, "chat_id_list": ["x"]}, 40058),
        ({"scene": 2, "chat_id_list": ["VALID"], "state": "s" * 31}, 40058),
    ],
)
def test_add_join_way_errcodes(api, control, body, errcode):
    chat_id = control.create_group("zhangsan", "群")
    if body.get("chat_id_list") == ["VALID"]:
        body = {**body, "chat_id_list": [chat_id]}
    assert api.post("externalcontact/groupchat/add_join_way", body)["errcode"] == errcode


def test_scanning_a_join_way_records_state_and_join_scene(api, control):
    chat_id = control.create_group("zhangsan", "群")
    config_id = join_way(api, [chat_id])
    joined = control.join_group(config_id=config_id, member={"name": "扫码用户"})
    member = api.ok("externalcontact/groupchat/get", {"chat_id": chat_id})["group_chat"][
        "member_list"
    ][-1]
    assert member["join_scene"] == 3
    assert member["state"] == "gc_1"
    assert "invitor" not in member
    assert joined["added"] == [member["userid"]]
    assert chat_events(control)[-1]["JoinScene"] == "3"


def test_a_full_group_rolls_over_to_a_new_one_with_auto_create_room(api, control):
    # given a group with 499 members and a join way that may create rooms
    chat_id = control.create_group("zhangsan", "粉丝群1")
    control.join_group(chat_id=chat_id, members=[{"name": f"c{i}"} for i in range(498)])
    config_id = join_way(api, [chat_id], room_base_name="粉丝群", room_base_id=2)
    # when two more customers scan
    first = control.join_group(config_id=config_id, member={"name": "第500人"})
    second = control.join_group(config_id=config_id, member={"name": "第501人"})
    # then the first fills the group, the second opens a new one
    assert (first["chat_id"], first["member_count"]) == (chat_id, 500)
    assert second["chat_id"] != chat_id
    new_group = api.ok("externalcontact/groupchat/get", {"chat_id": second["chat_id"]})[
        "group_chat"
    ]
    assert new_group["name"] == "粉丝群2"
    assert new_group["owner"] == "zhangsan"
    assert next(m["userid"] for m in new_group["member_list"]) == "zhangsan"
    way = api.ok("externalcontact/groupchat/get_join_way", {"config_id": config_id})["join_way"]
    assert way["chat_id_list"] == [chat_id, second["chat_id"]]
    assert way["room_base_id"] == 3
    assert [e["ChangeType"] for e in chat_events(control)][-2:] == ["create", "update"]


def test_a_full_group_without_auto_create_room_refuses(api, control):
    control.settings(group_max_members=3)
    chat_id = control.create_group("zhangsan", "小群", members=["lisi", "wangwu"])
    config_id = join_way(api, [chat_id], auto_create_room=0)
    with pytest.raises(Exception, match="409"):
        control.join_group(config_id=config_id, member={"name": "x"})
    with pytest.raises(Exception, match="409"):
        control.join_group(chat_id=chat_id, member={"name": "y"})


def test_group_statistic_by_owner(api, control, clock):
    chat_id = control.create_group("zhangsan", "群", members=["lisi"])
    control.join_group(chat_id=chat_id, members=[{"name": "a"}, {"name": "b"}])
    control.group_message(chat_id, "lisi", count=3)
    control.group_message(chat_id, "zhangsan", count=2)
    control.create_group("lisi", "空群")
    today = int(clock())
    answer = api.ok(
        "externalcontact/groupchat/statistic",
        {"day_begin_time": today, "owner_filter": {"userid_list": ["zhangsan", "lisi"]}},
    )
    assert answer["total"] == 2
    assert answer["next_offset"] == 2
    by_owner = {item["owner"]: item["data"] for item in answer["items"]}
    assert by_owner["zhangsan"] == {
        "new_chat_cnt": 1,
        "chat_total": 1,
        "chat_has_msg": 1,
        "new_member_cnt": 3,
        "member_total": 4,
        "member_has_msg": 2,
        "msg_total": 5,
        "migrate_trainee_chat_cnt": 0,
    }
    assert by_owner["lisi"]["chat_has_msg"] == 0
    assert [item["owner"] for item in answer["items"]] == ["zhangsan", "lisi"]
    by_messages = api.ok(
        "externalcontact/groupchat/statistic",
        {
            "day_begin_time": today,
            "owner_filter": {"userid_list": ["lisi", "zhangsan"]},
            "order_by": 7,
            "order_asc": 1,
            "limit": 1,
        },
    )
    assert [item["owner"] for item in by_messages["items"]] == ["lisi"]
    assert (by_messages["total"], by_messages["next_offset"]) == (2, 1)
    missing = api.post("externalcontact/groupchat/statistic", {"day_begin_time": today})
    assert missing["errcode"] == 40058
    too_long = api.post(
        "externalcontact/groupchat/statistic",
        {
            "day_begin_time": today,
            "day_end_time": today + 31 * 86400,
            "owner_filter": {"userid_list": ["zhangsan"]},
        },
    )
    assert too_long["errcode"] == 40058
