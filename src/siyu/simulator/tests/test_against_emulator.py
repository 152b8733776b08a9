"""The simulator against the real emulator over HTTP: what the world holds afterwards."""

from __future__ import annotations

import re
import threading

from siyu.simulator import Simulator
from siyu.simulator.engine import DAY, beijing_date, beijing_midnight
from siyu.simulator.tests.conftest import AES_KEY, CONTACT_SECRET, CORP_ID, STAFF, START, TOKEN
from siyu.wecom.emulator import EmulatorControl, EmulatorServer, FakeClock, World


def total(reports, name):
    return sum(getattr(r, name) for r in reports)


def world_of(control):
    return control.snapshot(CORP_ID)["corps"][CORP_ID]


def customer_members(corp):
    return [
        (chat_id, member)
        for chat_id, group in corp["groups"].items()
        for member in group["members"].values()
        if member["type"] == 2
    ]


def test_backfill_fills_three_days_of_history(control, corp):
    # given a brand with three staff and nothing else
    simulator = Simulator(control, CORP_ID, seed=7, scale=0.2)
    # when
    reports = simulator.backfill(3)
    # then the world holds exactly what the reports say happened
    world = world_of(control)
    adds, deletions = total(reports, "adds"), total(reports, "deletions")
    assert adds > 30
    assert len(world["customers"]) == adds
    follows = [f for c in world["customers"].values() for f in c["follows"].values()]
    assert len(follows) == adds - deletions
    members = customer_members(world)
    assert len(members) == total(reports, "group_joins") - total(reports, "group_leaves") > 0
    # three groups, owned by the staff in turn
    assert [g["owner"] for g in world["groups"].values()] == ["wangfang", "chenjie", "zhaolei"]
    assert {f["userid"] for f in follows} <= {s["userid"] for s in STAFF}
    # CreateTimes spread over the three days before today, and the clock is back
    today = beijing_midnight(START)
    days = [r.label for r in reports]
    assert days == ["2025-12-29", "2025-12-30", "2025-12-31"]
    assert {beijing_date(f["createtime"]).isoformat() for f in follows} == set(days)
    assert {beijing_date(m["join_time"]).isoformat() for _, m in members} <= set(days)
    assert all(today - 3 * DAY <= f["createtime"] < today for f in follows)
    assert control.snapshot()["now"] == START
    times = [
        int(re.search(r"<CreateTime>(\d+)</CreateTime>", e["xml"]).group(1))
        for e in control.outbox(CORP_ID)
        if e.get("change_type") == "add_external_contact"
    ]
    assert len(times) == adds
    assert {beijing_date(t).isoformat() for t in times} == set(days)
    # the emulator's statistics count the history on its days
    assert set(world["group_activity"]) <= {d.replace("-", "") for d in days}
    assert sum(a["msg_total"] for d in world["group_activity"].values() for a in d.values()) > 0


def test_customers_use_the_channel_codes_and_group_codes_the_platform_created(
    control, corp, wecom_api
):
    # given a channel code and a group code created through the WeCom API, as the platform does
    wecom_api.ok(
        "externalcontact/add_contact_way",
        {"type": 2, "scene": 2, "user": ["wangfang", "chenjie"], "state": "cc_store"},
    )
    chat_id = control.create_group("zhaolei", "门店福利群")
    wecom_api.ok(
        "externalcontact/groupchat/add_join_way",
        {"scene": 2, "chat_id_list": [chat_id], "state": "gc_store"},
    )
    simulator = Simulator(control, CORP_ID, seed=3, scale=0.3)
    # when
    reports = simulator.backfill(2)
    # then
    world = world_of(control)
    states = [f["state"] for c in world["customers"].values() for f in c["follows"].values()]
    assert states.count("cc_store") > states.count("") > 0  # 70 % scan, the rest add directly
    members = [m for _, m in customer_members(world)]
    assert any(m["state"] == "gc_store" and m["join_scene"] == 3 for m in members)
    assert len(world["groups"]) == 1  # the brand had a group: nothing created
    assert total(reports, "errors") == 0


def test_a_second_run_adopts_the_customers_and_fills_only_missing_days(control, corp):
    # given three days of history
    first = Simulator(control, CORP_ID, seed=7, scale=0.2)
    reports = first.backfill(3)
    # when the simulator starts again the same day
    again = Simulator(control, CORP_ID, seed=7, scale=0.2)
    found = again.load()
    # then it knows the customers and groups, and there is nothing to back-fill
    assert found["customers"] == total(reports, "adds") - total(reports, "deletions")
    assert found["groups"] == 3
    assert again.days_to_backfill(30) == 0
    # and two days later, the two days since the history ended are filled
    control.advance_clock(2 * DAY)
    later = Simulator(control, CORP_ID, seed=7, scale=0.2)
    assert later.days_to_backfill(30) == 2
    assert later.days_to_backfill(1) == 1
    resumed = later.backfill(2)
    assert [r.label for r in resumed] == ["2026-01-01", "2026-01-02"]
    assert resumed[0].messages > 0  # the adopted customers keep living


def test_run_live_stops_cleanly_on_the_stop_event(control, corp):
    simulator = Simulator(control, CORP_ID, seed=1, scale=0.3)
    stop = threading.Event()
    reports = []

    played = []

    def stop_soon_after_the_first_day(report) -> None:
        # the stop arrives while the second day is being played, however slow the machine
        played.append(report)
        if len(played) == 1:
            threading.Timer(0.05, stop.set).start()

    # a simulated day every 0.2 s
    worker = threading.Thread(
        target=lambda: reports.extend(
            simulator.run_live(
                speed=DAY / 0.2, stop_event=stop, progress=stop_soon_after_the_first_day
            )
        )
    )
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert len(reports) == 2 and reports[0].complete
    world = world_of(control)
    assert len(world["customers"]) == total(reports, "adds") > 0
    # live actions happen at the emulator's current time
    times = {f["createtime"] for c in world["customers"].values() for f in c["follows"].values()}
    assert times == {START}


def test_the_same_seed_builds_the_same_world_on_two_emulators():
    def build(simulator_seed):
        world = World(seed="same-world", clock=FakeClock(START))
        with EmulatorServer(world) as server, EmulatorControl(server.base_url) as control:
            control.setup_corp(
                CORP_ID,
                contact_secret=CONTACT_SECRET,
                token=TOKEN,
                encoding_aes_key=AES_KEY,
                staff=STAFF,
            )
            Simulator(control, CORP_ID, seed=simulator_seed, scale=0.1).backfill(2)
            corp = world_of(control)
        return {
            external_userid: (
                customer["name"],
                customer["gender"],
                sorted(
                    (f["userid"], f["createtime"], f["add_way"])
                    for f in customer["follows"].values()
                ),
            )
            for external_userid, customer in corp["customers"].items()
        }, corp["group_activity"]

    assert build(21) == build(21)
    assert build(21) != build(22)
