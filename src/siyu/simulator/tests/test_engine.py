"""The engine against a fake control that records every call: determinism, the funnel's
arithmetic, the clock during a back-fill, hooks, refusals, live pacing."""

from __future__ import annotations

import math
import threading
import time

import pytest

from siyu.simulator import Behaviour, FunnelRates, Simulator, SimulatorError
from siyu.simulator.engine import DAY, beijing_midnight
from siyu.simulator.model import default_behaviours, register_behaviour, registry
from siyu.simulator.tests.conftest import START, FakeControl


def simulate(seed, *, days=3, scale=0.2, rates=None, control=None, **options):
    control = control or FakeControl()
    simulator = Simulator(control, seed=seed, scale=scale, rates=rates, **options)
    reports = simulator.backfill(days)
    return control, simulator, reports


def total(reports, name):
    return sum(getattr(r, name) for r in reports)


# --- determinism -------------------------------------------------------------------------------
def test_the_same_seed_makes_the_same_control_calls():
    # when
    first, _, first_reports = simulate(seed=11)
    second, _, second_reports = simulate(seed=11)
    # then
    assert first.calls == second.calls
    assert first_reports == second_reports
    kinds = {method for method, _, _ in first.calls}
    assert {"add_contact", "chat", "join_group", "group_message", "create_group"} <= kinds


def test_another_seed_makes_other_calls():
    first, _, _ = simulate(seed=11)
    other, _, _ = simulate(seed=12)
    assert first.action_calls() != other.action_calls()


def test_the_same_seed_with_other_rates_makes_other_calls():
    first, _, _ = simulate(seed=11)
    other, _, _ = simulate(seed=11, rates=FunnelRates(chat_with_staff=0.5))
    assert first.action_calls() != other.action_calls()


# --- the funnel ----------------------------------------------------------------------------------
def within_four_sigma(value, trials, probability):
    mean = trials * probability
    sigma = math.sqrt(trials * probability * (1 - probability))
    return abs(value - mean) <= 4 * sigma


def test_the_seed_funnel_adds_about_a_hundred_a_day_at_full_scale():
    # given the seed's funnel: 10 000 passers-by, 20 % visit, 10 % buy, half add
    rates = FunnelRates()
    mean, sigma = rates.adds_per_day(1.0)
    assert (round(mean, 6), round(sigma, 2)) == (100.0, 9.95)
    # when
    _, _, reports = simulate(seed=2026, days=5, scale=1.0, behaviours=[])
    # then every day's counts are binomial draws around the expected values
    for report in reports:
        assert report.passers_by == 10_000
        assert within_four_sigma(report.visitors, 10_000, 0.20)
        assert within_four_sigma(report.buyers, 10_000, 0.02)
        assert within_four_sigma(report.adds, 10_000, 0.01)
    assert within_four_sigma(total(reports, "adds"), 50_000, 0.01)


def test_scale_shrinks_the_passers_by():
    _, _, reports = simulate(seed=3, days=2, scale=0.1, behaviours=[])
    assert [r.passers_by for r in reports] == [1000, 1000]
    assert FunnelRates().expected(0.1) == {
        "passers_by": 1000,
        "visitors": 200.0,
        "buyers": 20.0,
        "adds": 10.0,
    }


@pytest.mark.parametrize("field", ["visit_rate", "delete_staff"])
def test_rates_are_probabilities(field):
    with pytest.raises(ValueError, match="probability"):
        FunnelRates(**{field: 1.5})


# --- the clock during a back-fill --------------------------------------------------------------
def test_backfill_spreads_actions_over_the_past_days_and_restores_the_clock():
    # when
    control, _, reports = simulate(seed=5, days=3)
    # then
    today = beijing_midnight(START)
    moments = [
        at
        for (method, _, _), at in zip(control.calls, control.times, strict=True)
        if method not in ("snapshot", "advance_clock")
    ]
    assert moments and all(today - 3 * DAY <= at < today for at in moments)
    days_with_actions = {(at - (today - 3 * DAY)) // DAY for at in moments}
    assert days_with_actions == {0, 1, 2}
    assert moments == sorted(moments)
    assert [r.label for r in reports] == ["2025-12-29", "2025-12-30", "2025-12-31"]
    # the emulator's clock is back where it was
    assert control.now == START
    steps = [args[0] for method, args, _ in control.calls if method == "advance_clock"]
    assert sum(steps) == 0


def test_days_to_backfill_counts_the_days_since_the_last_activity():
    corp = FakeControl().corp | {
        "customers": {
            "wmold": {
                "name": "老客户",
                "gender": 2,
                "follows": {"wangfang": {"userid": "wangfang", "createtime": START - 3 * DAY}},
            }
        }
    }
    simulator = Simulator(FakeControl(corp=corp), seed=1)
    assert simulator.days_to_backfill(30) == 2  # the two days between then and today
    assert simulator.days_to_backfill(1) == 1
    assert Simulator(FakeControl(), seed=1).days_to_backfill(30) == 30


# --- hooks ---------------------------------------------------------------------------------------
class Recorder(Behaviour):
    name = "recorder"

    def __init__(self):
        self.days, self.visits, self.purchases, self.added = [], [], [], []

    def on_day(self, day):
        self.days.append(day.index)

    def on_visit(self, day, person):
        self.visits.append(person.index)

    def on_purchase(self, day, person):
        self.purchases.append(person.index)
        day.report.count("orders")

    def on_added(self, day, customer):
        self.added.append(customer.person.index)


def test_hooks_are_called_for_every_day_visit_purchase_and_add():
    # given
    recorder = Recorder()
    # when
    _, simulator, reports = simulate(seed=8, behaviours=[*default_behaviours(), recorder])
    # then
    assert recorder.days == [0, 1, 2]
    assert len(recorder.visits) == total(reports, "visitors")
    assert len(recorder.purchases) == total(reports, "buyers")
    assert len(recorder.added) == total(reports, "adds")
    assert set(recorder.added) <= set(recorder.purchases) <= set(recorder.visits)
    assert [c.person.index for c in simulator.customers] == recorder.added
    assert [r.extra["orders"] for r in reports] == [r.buyers for r in reports]
    assert "orders" in reports[0].line()


def test_registered_behaviours_run_by_default():
    calls = []

    @register_behaviour
    class Later(Behaviour):
        name = "later_capability"

        def on_day(self, day):
            calls.append(day.index)

    try:
        simulate(seed=1, days=2, behaviours=None)
    finally:
        registry.unregister("later_capability")
    assert calls == [0, 1]
    assert "later_capability" not in registry.names()


# --- behaviours and refusals ---------------------------------------------------------------------
def test_customers_scan_the_brands_contact_ways_and_a_broken_one_is_dropped():
    # given a brand with one contact way that the emulator refuses (its staff left)
    corp = FakeControl().corp | {"contact_ways": {"cw1": {"is_temp": False, "user": ["x"]}}}
    control = FakeControl(corp=corp, refuse={"scan": 409})
    # when
    _, simulator, reports = simulate(seed=4, control=control, behaviours=[])
    # then the first scan is refused and counted, the buyer adds directly, no more scans
    scans = [c for c in control.calls if c[0] == "scan"]
    assert len(scans) == 1 and total(reports, "errors") == 1
    assert simulator.contact_ways == []
    assert total(reports, "adds") == len([c for c in control.calls if c[0] == "add_contact"])


def test_scans_go_through_contact_ways_with_the_scan_share():
    corp = FakeControl().corp | {
        "contact_ways": {"cw1": {"is_temp": False}, "tmp": {"is_temp": True}}
    }
    control, _, reports = simulate(seed=4, control=FakeControl(corp=corp), behaviours=[])
    scans = [c for c in control.calls if c[0] == "scan"]
    assert scans and {args[0] for _, args, _ in scans} == {"cw1"}  # never the temporary way
    assert within_four_sigma(len(scans), total(reports, "adds"), FunnelRates().scan_share)


def test_referrals_bring_friends_to_the_same_staff_member():
    # when
    control, simulator, reports = simulate(seed=9, rates=FunnelRates(referral=0.3))
    # then
    friends = [c for c in simulator.customers if c.referred_by]
    assert len(friends) == total(reports, "referrals") > 0
    by_id = {c.external_userid: c for c in simulator.customers}
    for friend in friends:
        assert friend.userid == by_id[friend.referred_by].userid
    direct = [kw for method, _, kw in control.calls if method == "add_contact"]
    assert sum(1 for kw in direct if kw["add_way"] == 3) >= len(friends)


def test_deleted_customers_no_longer_chat():
    control, simulator, _ = simulate(seed=6, days=4, rates=FunnelRates(delete_staff=0.3))
    deleted_at = {
        args[0]: index
        for index, (method, args, _) in enumerate(control.calls)
        if method == "customer_deletes_staff"
    }
    assert deleted_at
    for index, (method, args, _) in enumerate(control.calls):
        if method == "chat" and args[1] in deleted_at:
            assert index < deleted_at[args[1]]
    assert all(not c.active for c in simulator.customers if c.external_userid in deleted_at)


def test_groups_are_created_once_and_joined_by_invitation():
    control, simulator, reports = simulate(seed=10, days=3)
    created = [args for method, args, _ in control.calls if method == "create_group"]
    assert [owner for owner, _ in created] == ["wangfang", "chenjie", "wangfang"]
    joins = [kw for method, _, kw in control.calls if method == "join_group"]
    assert len(joins) == total(reports, "group_joins") > 0
    for join in joins:
        assert join["scene"] == "invite"
        assert join["invitor"] == simulator.groups[join["chat_id"]].owner


def test_a_corp_without_staff_cannot_be_simulated():
    with pytest.raises(SimulatorError, match="no active staff"):
        Simulator(FakeControl(staff=[]), seed=1).load()


def test_unknown_staff_are_refused():
    with pytest.raises(SimulatorError, match="nobody"):
        Simulator(FakeControl(), seed=1, staff_userids=["nobody"]).load()


# --- live ----------------------------------------------------------------------------------------
def test_run_live_plays_days_at_the_current_time():
    control = FakeControl()
    simulator = Simulator(control, seed=3, scale=0.05)
    started = time.monotonic()
    # when: a simulated day every 20 ms
    reports = simulator.run_live(speed=DAY / 0.02, days=3)
    # then
    assert [r.label for r in reports] == ["live day 1", "live day 2", "live day 3"]
    assert all(r.complete for r in reports)
    assert time.monotonic() - started < 5
    assert not [c for c in control.calls if c[0] == "advance_clock"]


def test_run_live_stops_on_the_stop_event():
    simulator = Simulator(FakeControl(), seed=3, scale=0.05)
    stop = threading.Event()
    reports = []
    worker = threading.Thread(
        target=lambda: reports.extend(simulator.run_live(speed=DAY / 0.5, stop_event=stop))
    )
    worker.start()
    time.sleep(0.3)
    stop.set()
    worker.join(timeout=3)
    assert not worker.is_alive()
    assert len(reports) == 1 and not reports[0].complete
    assert "(stopped)" in reports[0].line()
