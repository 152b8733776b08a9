"""The world survives a restart: saved to JSON (debounced), loaded at start."""

import json

from siyu.wecom.emulator import FakeClock, World, create_app
from siyu.wecom.emulator.server import EmulatorControl
from siyu.wecom.emulator.tests.support import (
    AES_KEY,
    CONTACT_SECRET,
    CORP_ID,
    STAFF,
    TOKEN,
    TestClient,
    WeComApi,
)


def start(path, clock):
    world = World(path=path, seed="persist", clock=clock, save_delay=0.01)
    return world, TestClient(create_app(world, callback_delivery=False))


def test_the_world_persists_across_a_restart(tmp_path):
    path = tmp_path / "wecom-emulator.json"
    clock = FakeClock()
    # given a world with a corp, a contact way, a customer, a tag and a group
    _world, client = start(path, clock)
    with client:
        control = EmulatorControl("http://testserver", client=client)
        control.setup_corp(
            CORP_ID,
            contact_secret=CONTACT_SECRET,
            token=TOKEN,
            encoding_aes_key=AES_KEY,
            staff=STAFF,
        )
        api = WeComApi(client)
        way = api.ok("externalcontact/add_contact_way", {"type": 1, "scene": 2, "user": ["lisi"]})
        customer = control.scan(way["config_id"], customer={"name": "老王"})
        tag = api.ok(
            "externalcontact/add_corp_tag", {"group_name": "等级", "tag": [{"name": "VIP"}]}
        )["tag_group"]["tag"][0]
        api.ok(
            "externalcontact/mark_tag",
            {
                "userid": "lisi",
                "external_userid": customer["external_userid"],
                "add_tag": [tag["id"]],
            },
        )
        chat_id = control.create_group("lisi", "群")
        token = api.token
    # the lifespan saved it on shutdown
    saved = json.loads(path.read_text())
    assert CORP_ID in saved["corps"]
    # when the emulator starts again
    _world, client = start(path, clock)
    with client:
        api = WeComApi(client)
        api._token = token  # the old token is still valid
        # then everything is there
        follow = api.get("externalcontact/get", external_userid=customer["external_userid"])
        assert follow["errcode"] == 0
        assert follow["follow_user"][0]["tags"][0]["tag_id"] == tag["id"]
        assert api.ok("externalcontact/groupchat/get", {"chat_id": chat_id})["group_chat"]["name"]
        assert (
            api.ok("externalcontact/batch/get_by_user", {"userid_list": ["lisi"]})[
                "external_contact_list"
            ][0]["external_contact"]["name"]
            == "老王"
        )
        # and new ids do not collide with old ones
        control = EmulatorControl("http://testserver", client=client)
        again = control.scan(way["config_id"], customer={"name": "新客"})
        assert again["external_userid"] != customer["external_userid"]


def test_changes_are_saved_after_the_debounce_delay(tmp_path):
    path = tmp_path / "state.json"
    world = World(path=path, seed=1, save_delay=0.05)
    with TestClient(create_app(world, callback_delivery=False)) as client:
        control = EmulatorControl("http://testserver", client=client)
        control.setup_corp(
            "wwsaved", contact_secret="s", token="t", encoding_aes_key=AES_KEY, staff=STAFF
        )
        import time

        deadline = time.monotonic() + 5
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "wwsaved" in json.loads(path.read_text())["corps"]


def test_seeded_worlds_issue_the_same_ids():
    first, second = World(seed=42), World(seed=42)
    assert [first.ids.external_userid() for _ in range(3)] == [
        second.ids.external_userid() for _ in range(3)
    ]
    assert World(seed=43).ids.external_userid() != World(seed=42).ids.external_userid()
