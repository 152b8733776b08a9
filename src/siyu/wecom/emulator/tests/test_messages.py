"""Welcome messages, media, mass messages waiting for the sender, Moments, app messages."""

import pytest

from siyu.wecom.emulator.tests.support import AGENT_SECRET, WeComApi


def upload(api, kind="image", content=b"\x89PNG fake image bytes", filename="a.png"):
    response = api.client.post(
        "/cgi-bin/media/upload",
        params={"access_token": api.token, "type": kind},
        files={"media": (filename, content, "application/octet-stream")},
    )
    return response.json()


# --- welcome messages --------------------------------------------------------------------------
def test_a_welcome_code_works_once_within_20_seconds(api, control, contact_way, clock):
    scan = control.scan(contact_way["config_id"])
    body = {"welcome_code": scan["welcome_code"], "text": {"content": "欢迎！"}}
    clock.advance(19)
    assert api.post("externalcontact/send_welcome_msg", body)["errcode"] == 0
    assert api.post("externalcontact/send_welcome_msg", body)["errcode"] == 41050
    [sent] = control.snapshot()["corps"]["wwtestcorp0000001"]["welcome_messages"]
    assert sent["external_userid"] == scan["external_userid"]
    assert sent["text"] == {"content": "欢迎！"}


def test_a_welcome_code_expires_after_20_seconds(api, control, contact_way, clock):
    scan = control.scan(contact_way["config_id"])
    clock.advance(20)
    body = {"welcome_code": scan["welcome_code"], "text": {"content": "欢迎！"}}
    assert api.post("externalcontact/send_welcome_msg", body)["errcode"] == 41050


def test_no_welcome_code_when_the_two_already_chatted(api, control, contact_way):
    scan = control.scan(contact_way["config_id"], userid="zhangsan")
    control.chat("zhangsan", scan["external_userid"], sender="customer")
    control.customer_deletes_staff(scan["external_userid"], "zhangsan")
    again = control.scan(
        contact_way["config_id"], userid="zhangsan", external_userid=scan["external_userid"]
    )
    assert again["welcome_code"] is None
    xml = control.outbox()[-1]["xml"]
    assert "<ChangeType><![CDATA[add_external_contact]]></ChangeType>" in xml
    assert "WelcomeCode" not in xml


@pytest.mark.parametrize(
    ("attachments", "errcode"),
    [
        ([{"msgtype": "link", "link": {"title": "t", "url": "https://a.cn"}}] * 10, 41064),
        ([{"msgtype": "voice", "voice": {"media_id": "x"}}], 41065),
        ([{"msgtype": "image", "image": {"media_id": "3unknown"}}], 40007),
        ([{"msgtype": "link", "link": {"title": "t"}}], 40058),
    ],
)
def test_welcome_attachment_errcodes(api, control, contact_way, attachments, errcode):
    scan = control.scan(contact_way["config_id"])
    body = {"welcome_code": scan["welcome_code"], "attachments": attachments}
    assert api.post("externalcontact/send_welcome_msg", body)["errcode"] == errcode


def test_nine_attachments_with_uploaded_media(api, control, contact_way):
    media = upload(api)
    assert media["errcode"] == 0
    assert media["type"] == "image"
    assert isinstance(media["created_at"], str)
    scan = control.scan(contact_way["config_id"])
    attachments = [{"msgtype": "image", "image": {"media_id": media["media_id"]}}] * 9
    body = {"welcome_code": scan["welcome_code"], "attachments": attachments}
    assert api.post("externalcontact/send_welcome_msg", body)["errcode"] == 0
    assert api.post("externalcontact/send_welcome_msg", {})["errcode"] == 41049


def test_media_upload_errcodes_and_expiry(api, control, contact_way, clock):
    assert upload(api, kind="sticker")["errcode"] == 40004
    assert upload(api, content=b"")["errcode"] == 44001
    media = upload(api)
    clock.advance(3 * 86400 + 1)
    scan = control.scan(contact_way["config_id"])
    body = {
        "welcome_code": scan["welcome_code"],
        "attachments": [{"msgtype": "image", "image": {"media_id": media["media_id"]}}],
    }
    assert api.post("externalcontact/send_welcome_msg", body)["errcode"] == 40007


# --- mass messages -----------------------------------------------------------------------------
def customers_of(control, contact_way, userid, count):
    return [
        control.scan(contact_way["config_id"], userid=userid)["external_userid"]
        for _ in range(count)
    ]


def test_a_mass_message_waits_for_the_senders_confirmation(api, control, contact_way, clock):
    # given
    mine = customers_of(control, contact_way, "zhangsan", 3)
    theirs = customers_of(control, contact_way, "lisi", 2)
    # when
    added = api.ok(
        "externalcontact/add_msg_template",
        {
            "chat_type": "single",
            "external_userid": [*mine, *theirs, "wmunknown"],
            "text": {"content": "双十一预告"},
        },
    )
    msgid = added["msgid"]
    # then it waits
    assert added["fail_list"] == ["wmunknown"]
    tasks = api.ok("externalcontact/get_groupmsg_task", {"msgid": msgid})["task_list"]
    assert tasks == [{"userid": "zhangsan", "status": 0}, {"userid": "lisi", "status": 0}]
    results = api.ok(
        "externalcontact/get_groupmsg_send_result", {"msgid": msgid, "userid": "zhangsan"}
    )
    assert [r["status"] for r in results["send_list"]] == [0, 0, 0]
    # when zhangsan confirms
    clock.advance(60)
    confirmed = control.confirm_mass_message(msgid, "zhangsan")
    assert confirmed["sent"] == 3
    tasks = api.ok("externalcontact/get_groupmsg_task", {"msgid": msgid})["task_list"]
    assert tasks[0] == {"userid": "zhangsan", "status": 2, "send_time": int(clock())}
    assert tasks[1] == {"userid": "lisi", "status": 0}
    results = api.ok(
        "externalcontact/get_groupmsg_send_result", {"msgid": msgid, "userid": "zhangsan"}
    )["send_list"]
    assert results[0] == {
        "external_userid": mine[0],
        "userid": "zhangsan",
        "status": 1,
        "send_time": int(clock()),
    }
    listed = api.ok(
        "externalcontact/get_groupmsg_list_v2",
        {"chat_type": "single", "start_time": int(clock()) - 3600, "end_time": int(clock())},
    )["group_msg_list"]
    assert listed == [
        {
            "msgid": msgid,
            "create_time": int(clock()) - 60,
            "create_type": 0,
            "text": {"content": "双十一预告"},
        },
    ]


def test_a_customer_of_two_members_receives_the_message_once(api, control, contact_way):
    scan = control.scan(contact_way["config_id"], userid="zhangsan")
    control.scan(contact_way["config_id"], userid="lisi", external_userid=scan["external_userid"])
    msgid = api.ok(
        "externalcontact/add_msg_template",
        {"external_userid": [scan["external_userid"]], "text": {"content": "hi"}},
    )["msgid"]
    control.confirm_mass_message(msgid, "lisi")
    control.confirm_mass_message(msgid, "zhangsan")
    statuses = {
        userid: api.ok(
            "externalcontact/get_groupmsg_send_result", {"msgid": msgid, "userid": userid}
        )["send_list"][0]["status"]
        for userid in ("zhangsan", "lisi")
    }
    assert statuses == {"lisi": 1, "zhangsan": 3}


def test_a_customer_who_deleted_the_sender_is_not_a_friend(api, control, contact_way):
    [customer] = customers_of(control, contact_way, "zhangsan", 1)
    msgid = api.ok(
        "externalcontact/add_msg_template", {"sender": "zhangsan", "text": {"content": "hi"}}
    )["msgid"]
    control.customer_deletes_staff(customer, "zhangsan")
    control.confirm_mass_message(msgid, "zhangsan")
    result = api.ok(
        "externalcontact/get_groupmsg_send_result", {"msgid": msgid, "userid": "zhangsan"}
    )
    assert result["send_list"][0]["status"] == 2


def test_mass_message_to_the_senders_groups(api, control):
    chat_id = control.create_group("zhangsan", "VIP 1 群")
    control.create_group("lisi", "other")
    answer = api.ok(
        "externalcontact/add_msg_template",
        {"chat_type": "group", "sender": "zhangsan", "text": {"content": "群发"}},
    )
    control.confirm_mass_message(answer["msgid"], "zhangsan")
    result = api.ok(
        "externalcontact/get_groupmsg_send_result", {"msgid": answer["msgid"], "userid": "zhangsan"}
    )["send_list"]
    assert [(r["chat_id"], r["status"]) for r in result] == [(chat_id, 1)]
    assert (
        api.post(
            "externalcontact/add_msg_template", {"chat_type": "group", "text": {"content": "x"}}
        )["errcode"]
        == 40058
    )


def test_a_cancelled_mass_message_cannot_be_confirmed(api, control, contact_way):
    customers_of(control, contact_way, "zhangsan", 1)
    msgid = api.ok(
        "externalcontact/add_msg_template", {"sender": "zhangsan", "text": {"content": "hi"}}
    )["msgid"]
    api.ok("externalcontact/cancel_groupmsg_send", {"msgid": msgid})
    with pytest.raises(Exception, match="409"):
        control.confirm_mass_message(msgid, "zhangsan")


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"external_userid": [f"wm{i}" for i in range(10_001)], "text": {"content": "x"}}, 40058),
        ({"text": {"content": "x"}}, 40058),
        ({"external_userid": ["wmnobody"], "text": {"content": "x"}}, 41048),
        ({"sender": "zhangsan"}, 40058),
        ({"chat_type": "broadcast", "sender": "zhangsan", "text": {"content": "x"}}, 40058),
        (
            {
                "sender": "zhangsan",
                "text": {"content": "x"},
                "attachments": [{"msgtype": "link", "link": {"title": "t", "url": "u"}}] * 10,
            },
            41064,
        ),
    ],
)
def test_add_msg_template_errcodes(api, body, errcode):
    assert api.post("externalcontact/add_msg_template", body)["errcode"] == errcode


def test_ten_thousand_recipients_are_accepted(api, control, contact_way):
    [customer] = customers_of(control, contact_way, "zhangsan", 1)
    ids = [customer] + [f"wmghost{i}" for i in range(9_999)]
    answer = api.ok(
        "externalcontact/add_msg_template", {"external_userid": ids, "text": {"content": "x"}}
    )
    assert len(answer["fail_list"]) == 9_999


def test_msgid_errcodes_and_list_paging(api, control, contact_way, clock):
    assert api.post("externalcontact/get_groupmsg_task", {})["errcode"] == 41046
    assert api.post("externalcontact/get_groupmsg_task", {"msgid": "msgx"})["errcode"] == 41047
    customers_of(control, contact_way, "zhangsan", 1)
    ids = []
    for _ in range(5):
        ids.append(
            api.ok(
                "externalcontact/add_msg_template", {"sender": "zhangsan", "text": {"content": "x"}}
            )["msgid"]
        )
        clock.advance(1)
    body = {
        "chat_type": "single",
        "start_time": int(clock()) - 100,
        "end_time": int(clock()),
        "limit": 2,
    }
    seen, cursor = [], ""
    while True:
        page = api.ok("externalcontact/get_groupmsg_list_v2", {**body, "cursor": cursor})
        seen += [m["msgid"] for m in page["group_msg_list"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids
    too_wide = {**body, "start_time": int(clock()) - 40 * 86400}
    assert api.post("externalcontact/get_groupmsg_list_v2", too_wide)["errcode"] == 40058


def test_tag_filter_selects_the_senders_tagged_customers(api, control, contact_way):
    tags = api.ok("externalcontact/add_corp_tag", {"group_name": "等级", "tag": [{"name": "VIP"}]})[
        "tag_group"
    ]["tag"]
    _first, second = customers_of(control, contact_way, "zhangsan", 2)
    api.ok(
        "externalcontact/mark_tag",
        {"userid": "zhangsan", "external_userid": second, "add_tag": [tags[0]["id"]]},
    )
    msgid = api.ok(
        "externalcontact/add_msg_template",
        {
            "sender": "zhangsan",
            "tag_filter": {"group_list": [{"tag_list": [tags[0]["id"]]}]},
            "text": {"content": "VIP 专享"},
        },
    )["msgid"]
    result = api.ok(
        "externalcontact/get_groupmsg_send_result", {"msgid": msgid, "userid": "zhangsan"}
    )
    assert [r["external_userid"] for r in result["send_list"]] == [second]


# --- Moments -----------------------------------------------------------------------------------
def test_moment_task_result_and_publishing(api, control, clock):
    control.settings(moment_job_seconds=5)
    job = api.ok(
        "externalcontact/add_moment_task",
        {
            "text": {"content": "新品上市"},
            "visible_range": {"sender_list": {"user_list": ["zhangsan", "ghost"]}},
        },
    )
    creating = api.get("externalcontact/get_moment_task_result", jobid=job["jobid"])
    assert creating["status"] == 2
    clock.advance(5)
    done = api.get("externalcontact/get_moment_task_result", jobid=job["jobid"])
    assert done["status"] == 3
    assert done["type"] == "add_moment_task"
    assert done["result"]["moment_id"].startswith("mom")
    assert done["result"]["invalid_sender_list"] == {"user_list": ["ghost"], "department_list": []}
    control.publish_moment(done["result"]["moment_id"], "zhangsan")
    clock.advance(86400)
    assert api.get("externalcontact/get_moment_task_result", jobid=job["jobid"])["errcode"] == 40088


def test_moment_tasks_limits(api, control):
    assert api.post("externalcontact/add_moment_task", {})["errcode"] == 41089
    mixed = {
        "attachments": [
            {"msgtype": "video", "video": {"media_id": upload(api, kind="video")["media_id"]}},
            {"msgtype": "link", "link": {"title": "t", "url": "https://a.cn"}},
        ]
    }
    assert api.post("externalcontact/add_moment_task", mixed)["errcode"] == 41065
    for _ in range(10):
        assert (
            api.post("externalcontact/add_moment_task", {"text": {"content": "x"}})["errcode"] == 0
        )
    assert (
        api.post("externalcontact/add_moment_task", {"text": {"content": "x"}})["errcode"] == 45009
    )


# --- app messages ------------------------------------------------------------------------------
def test_app_message_recipients(client, corp, control):
    app = WeComApi(client, AGENT_SECRET)
    body = {"msgtype": "text", "agentid": 1000002, "text": {"content": "今日待办"}}
    answer = app.post("message/send", {**body, "touser": "zhangsan|ghost"})
    assert (answer["errcode"], answer["invaliduser"]) == (0, "ghost")
    assert app.post("message/send", {**body, "touser": "ghost"})["errcode"] == 81013
    assert app.post("message/send", {**body, "touser": "zhangsan", "text": {}})["errcode"] == 44004
    assert app.post("message/send", {**body, "touser": "zhangsan", "msgtype": "fax"})[
        "errcode"
    ] == (40008)
    sent = control.snapshot()["corps"]["wwtestcorp0000001"]["app_messages"]
    assert sent[0]["touser"] == ["zhangsan"]
