"""Seeding many customers at once (``POST /control/bulk/customers``), for large worlds."""

import pytest

from siyu.wecom.emulator import EmulatorControlError


def test_bulk_customers_are_friends_with_their_staff_without_callbacks(api, control, world):
    tag = control.tag_change("create", group_name="等级", tags=["金卡"])["tag_ids"][0]
    before = len(world.outbox)
    result = control.bulk_customers(
        [
            {"name": "甲", "follows": [{"userid": "zhangsan", "tags": [tag], "state": "s1"}]},
            {
                "external_userid": "wmshared",
                "name": "乙",
                "follows": [
                    {"userid": "zhangsan", "createtime": 1700000000, "remark": "老客"},
                    {"userid": "lisi"},
                ],
            },
        ]
    )
    assert (result["customers"], result["follows"]) == (2, 3)
    assert result["external_userids"][1] == "wmshared"
    assert len(world.outbox) == before  # friendships that already existed: no callbacks
    page = api.ok(
        "externalcontact/batch/get_by_user", {"userid_list": ["zhangsan", "lisi"], "limit": 100}
    )
    infos = [
        (i["external_contact"]["name"], i["follow_info"]) for i in page["external_contact_list"]
    ]
    assert [(name, info["userid"]) for name, info in infos] == [
        ("甲", "zhangsan"),
        ("乙", "zhangsan"),
        ("乙", "lisi"),
    ]
    assert infos[0][1]["tag_id"] == [tag] and infos[0][1]["state"] == "s1"
    assert (infos[1][1]["createtime"], infos[1][1]["remark"]) == (1700000000, "老客")


def test_bulk_customers_can_emit_the_add_callbacks(corp, control, world):
    before = len(world.outbox)
    control.bulk_customers([{"follows": [{"userid": "wangwu"}]}], silent=False)
    assert [e["change_type"] for e in list(world.outbox)[before:]] == ["add_external_contact"]


def test_a_bad_item_creates_nothing(corp, control, world):
    with pytest.raises(EmulatorControlError) as caught:
        control.bulk_customers(
            [{"name": "ok", "follows": [{"userid": "zhangsan"}]}, {"follows": [{"userid": "x"}]}]
        )
    assert caught.value.status == 404
    corp = next(iter(world.corps.values()))
    assert corp.customers == {}
