"""Contact ways (「联系我」) and corp tags: happy paths, limits and errcodes."""

import pytest


def test_contact_way_lifecycle(api, client):
    added = api.ok(
        "externalcontact/add_contact_way",
        {"type": 1, "scene": 2, "user": ["zhangsan"], "state": "poster_7", "remark": "海报"},
    )
    assert len(added["config_id"]) == 32
    image = client.get(added["qr_code"].removeprefix("http://testserver"))
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")
    way = api.ok("externalcontact/get_contact_way", {"config_id": added["config_id"]})[
        "contact_way"
    ]
    assert way["type"] == 1
    assert way["scene"] == 2
    assert way["state"] == "poster_7"
    assert way["user"] == ["zhangsan"]
    assert way["skip_verify"] is True
    assert way["qr_code"] == added["qr_code"]
    api.ok(
        "externalcontact/update_contact_way",
        {"config_id": added["config_id"], "state": "poster_8", "user": ["lisi"]},
    )
    way = api.ok("externalcontact/get_contact_way", {"config_id": added["config_id"]})
    assert (way["contact_way"]["state"], way["contact_way"]["user"]) == ("poster_8", ["lisi"])
    api.ok("externalcontact/del_contact_way", {"config_id": added["config_id"]})
    gone = api.post("externalcontact/get_contact_way", {"config_id": added["config_id"]})
    assert gone["errcode"] == 41044
    assert client.get(added["qr_code"].removeprefix("http://testserver")).status_code == 404


def test_a_mini_program_contact_way_has_no_qr_code(api):
    added = api.ok("externalcontact/add_contact_way", {"type": 1, "scene": 1, "user": ["lisi"]})
    assert "qr_code" not in added


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"scene": 2, "user": ["zhangsan"]}, 41037),
        ({"type": 3, "scene": 2, "user": ["zhangsan"]}, 41039),
        ({"type": 1, "user": ["zhangsan"]}, 41038),
        ({"type": 1, "scene": 5, "user": ["zhangsan"]}, 41040),
        ({"type": 1, "scene": 2, "user": ["zhangsan", "lisi"]}, 40058),
        ({"type": 2, "scene": 2}, 40058),
        ({"type": 1, "scene": 2, "user": ["nobody"]}, 40003),
        ({"type": 2, "scene": 2, "party": [42]}, 60003),
        ({"type": 1, "scene": 2, "user": ["zhangsan"], "state": "s" * 31}, 40058),
        ({"type": 1, "scene": 2, "user": ["zhangsan"], "remark": "r" * 31}, 40058),
        ({"type": 2, "scene": 2, "user": ["zhangsan"], "is_temp": True}, 40058),
    ],
)
def test_add_contact_way_errcodes(api, body, errcode):
    assert api.post("externalcontact/add_contact_way", body)["errcode"] == errcode


def test_a_state_of_30_characters_is_accepted(api):
    body = {"type": 1, "scene": 2, "user": ["zhangsan"], "state": "s" * 30}
    assert api.post("externalcontact/add_contact_way", body)["errcode"] == 0


def test_a_contact_way_takes_at_most_100_members_after_expanding_departments(api, control):
    control.add_department("门店", id=5)
    for i in range(99):
        control.add_staff(f"guide{i}", f"导购{i}", department=[5])
    ok = api.post(
        "externalcontact/add_contact_way",
        {"type": 2, "scene": 2, "user": ["zhangsan"], "party": [5]},
    )
    assert ok["errcode"] == 0
    too_many = api.post(
        "externalcontact/add_contact_way",
        {"type": 2, "scene": 2, "user": ["zhangsan", "lisi"], "party": [5]},
    )
    assert too_many["errcode"] == 41041


def test_config_id_errcodes(api):
    assert api.post("externalcontact/get_contact_way", {})["errcode"] == 41043
    assert api.post("externalcontact/del_contact_way", {"config_id": "0" * 32})["errcode"] == 41044


def test_invalid_json_is_40058(api):
    response = api.client.post(
        "/cgi-bin/externalcontact/get_contact_way",
        params={"access_token": api.token},
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.json()["errcode"] == 40058


# --- tags --------------------------------------------------------------------------------------
def add_group(api, name="客户等级", tags=("金卡", "银卡")):
    return api.ok(
        "externalcontact/add_corp_tag",
        {"group_name": name, "order": 1, "tag": [{"name": t} for t in tags]},
    )["tag_group"]


def test_corp_tags_lifecycle(api, control, contact_way):
    group = add_group(api)
    assert group["group_id"].startswith("et")
    assert [t["name"] for t in group["tag"]] == ["金卡", "银卡"]
    gold, silver = (t["id"] for t in group["tag"])
    # adding by group name puts the tag into the existing group
    more = add_group(api, tags=("铜卡",))
    assert more["group_id"] == group["group_id"]
    listed = api.ok("externalcontact/get_corp_tag_list")["tag_group"]
    assert [t["name"] for t in listed[0]["tag"]] == ["金卡", "银卡", "铜卡"]
    only = api.ok("externalcontact/get_corp_tag_list", {"tag_id": [silver]})["tag_group"]
    assert [t["id"] for t in only[0]["tag"]] == [silver]
    api.ok("externalcontact/edit_corp_tag", {"id": gold, "name": "黑金卡", "order": 9})
    listed = api.ok("externalcontact/get_corp_tag_list", {"group_id": [group["group_id"]]})
    assert listed["tag_group"][0]["tag"][0] == {
        "id": gold,
        "name": "黑金卡",
        "create_time": group["tag"][0]["create_time"],
        "order": 9,
    }
    # mark a customer, then delete the tag: it leaves the customer
    scan = control.scan(contact_way["config_id"])
    pair = {"userid": scan["userid"], "external_userid": scan["external_userid"]}
    api.ok("externalcontact/mark_tag", {**pair, "add_tag": [gold, silver]})
    follow = api.get("externalcontact/get", external_userid=scan["external_userid"])["follow_user"][
        0
    ]
    assert follow["tags"] == [
        {"group_name": "客户等级", "tag_name": "黑金卡", "type": 1, "tag_id": gold},
        {"group_name": "客户等级", "tag_name": "银卡", "type": 1, "tag_id": silver},
    ]
    api.ok("externalcontact/mark_tag", {**pair, "remove_tag": [silver]})
    api.ok("externalcontact/del_corp_tag", {"tag_id": [gold]})
    follow = api.get("externalcontact/get", external_userid=scan["external_userid"])["follow_user"][
        0
    ]
    assert follow["tags"] == []
    # deleting the last tags deletes the group
    remaining = [
        t["id"] for t in api.ok("externalcontact/get_corp_tag_list")["tag_group"][0]["tag"]
    ]
    api.ok("externalcontact/del_corp_tag", {"tag_id": remaining})
    assert api.ok("externalcontact/get_corp_tag_list")["tag_group"] == []
    # API changes emit no callbacks, as WeCom documents
    assert [e["event"] for e in control.outbox()] == ["change_external_contact"]


@pytest.mark.parametrize(
    ("path", "body", "errcode"),
    [
        ("add_corp_tag", {"group_name": "g", "tag": []}, 40058),
        ("add_corp_tag", {"group_name": "g", "tag": [{"name": "x" * 31}]}, 40058),
        ("add_corp_tag", {"group_name": "g", "tag": [{"name": "a"}, {"name": "a"}]}, 40071),
        ("add_corp_tag", {"group_id": "etnope", "tag": [{"name": "a"}]}, 40068),
        ("add_corp_tag", {"tag": [{"name": "a"}]}, 40058),
        ("edit_corp_tag", {"id": "etnope", "name": "x"}, 40068),
        ("del_corp_tag", {}, 40068),
        ("del_corp_tag", {"tag_id": ["etnope"]}, 40068),
    ],
)
def test_tag_errcodes(api, path, body, errcode):
    assert api.post(f"externalcontact/{path}", body)["errcode"] == errcode


def test_a_duplicate_tag_name_in_a_group_is_40071(api):
    add_group(api)
    duplicate = api.post(
        "externalcontact/add_corp_tag", {"group_name": "客户等级", "tag": [{"name": "金卡"}]}
    )
    assert duplicate["errcode"] == 40071


def test_the_corp_tag_limit_is_40126(api, control):
    control.settings(max_corp_tags=3)
    add_group(api, tags=("a", "b"))
    assert (
        api.post("externalcontact/add_corp_tag", {"group_name": "x", "tag": [{"name": "c"}]})[
            "errcode"
        ]
        == 0
    )
    over = api.post("externalcontact/add_corp_tag", {"group_name": "x", "tag": [{"name": "d"}]})
    assert over["errcode"] == 40126


def test_mark_tag_errcodes(api, control, contact_way):
    group = add_group(api)
    scan = control.scan(contact_way["config_id"])
    pair = {"userid": scan["userid"], "external_userid": scan["external_userid"]}
    assert api.post("externalcontact/mark_tag", pair)["errcode"] == 40058
    assert api.post("externalcontact/mark_tag", {**pair, "add_tag": ["etx"]})["errcode"] == 40068
    stranger = {"userid": "wangwu", "external_userid": scan["external_userid"]}
    answer = api.post("externalcontact/mark_tag", {**stranger, "add_tag": [group["tag"][0]["id"]]})
    assert answer["errcode"] == 84061


def test_tags_changed_in_the_client_emit_change_external_tag(api, control, world):
    created = control.tag_change("create", group_name="兴趣", tags=["茶", "咖啡"])
    control.tag_change("create", group_id=created["group_id"], tags=["果汁"])
    control.tag_change("update", id=created["tag_ids"][0], name="绿茶")
    control.tag_change("delete", id=created["tag_ids"][1])
    control.tag_change("shuffle", group_id=created["group_id"])
    events = [e for e in control.outbox() if e["event"] == "change_external_tag"]
    assert [e["change_type"] for e in events] == ["create", "create", "update", "delete", "shuffle"]
    assert (
        "<Id><![CDATA[{}]]></Id><TagType><![CDATA[tag_group]]></TagType>"
        "<ChangeType><![CDATA[create]]></ChangeType>".format(created["group_id"])
    ) in events[0]["xml"]
    assert "<TagType><![CDATA[tag]]></TagType><ChangeType><![CDATA[update]]>" in events[2]["xml"]
    assert "<TagType>" not in events[4]["xml"]
    names = [t["name"] for t in api.ok("externalcontact/get_corp_tag_list")["tag_group"][0]["tag"]]
    assert names == ["果汁", "绿茶"]  # the shuffle reversed their order


def test_a_temporary_contact_way_admits_one_customer_until_it_expires(api, control, clock):
    added = api.ok(
        "externalcontact/add_contact_way",
        {"type": 1, "scene": 2, "user": ["zhangsan"], "is_temp": True, "expires_in": 3600},
    )
    way = api.ok("externalcontact/get_contact_way", {"config_id": added["config_id"]})
    assert (way["contact_way"]["expires_in"], way["contact_way"]["chat_expires_in"]) == (
        3600,
        86400,
    )
    control.scan(added["config_id"])
    with pytest.raises(Exception, match="410"):
        control.scan(added["config_id"])
    other = api.ok(
        "externalcontact/add_contact_way",
        {"type": 1, "scene": 2, "user": ["zhangsan"], "is_temp": True, "expires_in": 3600},
    )
    clock.advance(3601)
    with pytest.raises(Exception, match="410"):
        control.scan(other["config_id"])
