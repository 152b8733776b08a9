"""The simulator's engine: simulated days of a brand's private domain, played on the emulator.

The simulator is the outside world. It talks only to the WeCom emulator's control API
(``EmulatorControl``): people scan contact ways, add staff, join groups, chat and leave, as
they would in WeChat; the platform learns all of it the way it would from Tencent, through
the emulator's callbacks and its own WeCom client. Nothing here touches the platform's
database.

A simulated day is planned, then played in time order: the funnel draws who of the day's
passers-by visits (at times drawn from an hourly activity profile), the visit decides on a
purchase some minutes later, the purchase on an add; the behaviours (``on_day``) schedule
each customer's actions of the day. Every action checks, when it runs, that it still makes
sense, and is one control call.

- ``backfill(days)`` plays the ``days`` days before today as history: before each call the
  emulator's clock is moved (``/control/clock``, relative steps) to the action's moment, so
  follows, joins and callbacks carry CreateTimes spread over those days; afterwards the
  clock's offset is restored exactly.
- ``run_live(speed)`` plays one simulated day every ``86400 / speed`` seconds of real time
  (24 minutes at the default 60×), the day's actions spread over that interval, at the
  emulator's current time (the clock is never moved forward: the platform never sees a
  timestamp from the future), until the stop event is set.

Determinism: one ``random.Random`` drives every decision in a fixed order, and people are
a pure function of (seed, index): the same seed, rates, scale and starting world give the
same sequence of control calls.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from siyu.simulator.model import (
    Behaviour,
    DayReport,
    FunnelRates,
    GroupInfo,
    SimulatedCustomer,
    default_behaviours,
)
from siyu.simulator.population import Person, Population
from siyu.wecom.emulator.server import EmulatorControlError

logger = logging.getLogger(__name__)

DAY = 86400
BEIJING_OFFSET = 8 * 3600
LAST_MOMENT = 1.0 - 1e-9  # actions spilling past midnight happen at the day's last moment
# Relative activity by Beijing hour: quiet nights, a lunch bump, busy evenings.
HOURLY_ACTIVITY = (
    0.3, 0.15, 0.08, 0.05, 0.05, 0.1, 0.3, 0.8, 1.3, 1.6, 1.9, 2.1,
    2.4, 2.0, 1.8, 1.8, 1.9, 2.1, 2.6, 3.2, 3.5, 3.3, 2.4, 1.2,
)  # fmt: skip
CUMULATIVE_ACTIVITY = tuple(itertools.accumulate(HOURLY_ACTIVITY))
HOURS = tuple(range(24))
# How a buyer adds a staff member directly (no contact way): WeCom's add_way values
# (1 the member's personal QR code, 3 a shared card, 2 search by mobile).
DIRECT_ADD_WAYS = ((1, 0.6), (3, 0.25), (2, 0.15))
ADD_WAY_CARD = 3
GROUP_NAMES = ("会员福利群", "新品体验群", "老友交流群", "好物分享群", "VIP专属群")


class SimulatorError(RuntimeError):
    """The simulator cannot run against this emulator (no corp, no staff, unknown ids)."""


class Control(Protocol):
    """The part of ``EmulatorControl`` the simulator uses (tests record it with a fake)."""

    corp_id: str | None

    def snapshot(self, corp_id: str | None = None) -> dict[str, Any]: ...
    def advance_clock(self, seconds: float) -> int: ...
    def scan(self, config_id: str | None = None, **fields: Any) -> dict[str, Any]: ...
    def add_contact(self, userid: str, **fields: Any) -> dict[str, Any]: ...
    def customer_deletes_staff(self, external_userid: str, userid: str) -> dict[str, Any]: ...
    def chat(self, userid: str, external_userid: str, **fields: Any) -> dict[str, Any]: ...
    def create_group(self, owner: str, name: str, **fields: Any) -> str: ...
    def join_group(self, **fields: Any) -> dict[str, Any]: ...
    def leave_group(self, chat_id: str, member: str, **fields: Any) -> dict[str, Any]: ...
    def group_message(self, chat_id: str, sender: str, **fields: Any) -> dict[str, Any]: ...


def beijing_midnight(timestamp: float) -> int:
    """Midnight (Beijing time, as WeCom counts days) of the day holding ``timestamp``."""
    return int((int(timestamp) + BEIJING_OFFSET) // DAY * DAY - BEIJING_OFFSET)


def beijing_date(timestamp: float) -> dt.date:
    return dt.datetime.fromtimestamp(int(timestamp) + BEIJING_OFFSET, dt.UTC).date()


class Day:
    """One simulated day: the context behaviours get, with the day's actions.

    ``now`` is the time of day of the action being played, as a fraction of the day
    (0.5 is noon, Beijing time); ``start`` is the day's midnight as a Unix timestamp when
    the day is history (back-fill), None when it is played live.
    """

    def __init__(
        self, simulator: Simulator, index: int, label: str, start: int | None = None
    ) -> None:
        self.simulator = simulator
        self.index = index
        self.start = start
        self.report = DayReport(index=index, label=label)
        self.now = 0.0
        self._queue: list[tuple[float, int, Callable[[Day], Any]]] = []
        self._sequence = itertools.count()

    # --- what behaviours read ------------------------------------------------------------------
    @property
    def rng(self) -> random.Random:
        return self.simulator.rng

    @property
    def rates(self) -> FunnelRates:
        return self.simulator.rates

    @property
    def customers(self) -> list[SimulatedCustomer]:
        """Customers still friends with their staff member."""
        return [c for c in self.simulator.customers if c.active]

    @property
    def group_members(self) -> list[SimulatedCustomer]:
        """Customers in at least one group (friends or not)."""
        return [c for c in self.simulator.customers if c.groups]

    @property
    def timestamp(self) -> int | None:
        """The current action's Unix time when the day is history."""
        return None if self.start is None else self.start + int(self.now * DAY)

    # --- time ----------------------------------------------------------------------------------
    def schedule(self, at: float, action: Callable[[Day], Any]) -> None:
        """Play ``action(day)`` at time of day ``at`` (never before now, at the latest at the
        day's last moment)."""
        at = min(max(at, self.now), LAST_MOMENT)
        heapq.heappush(self._queue, (at, next(self._sequence), action))

    def random_time(self) -> float:
        """A time of day drawn from the hourly activity profile."""
        hour = self.rng.choices(HOURS, cum_weights=CUMULATIVE_ACTIVITY)[0]
        return (hour + self.rng.random()) / 24

    def soon(self, low: float = 60, high: float = 3600) -> float:
        """A moment ``low`` to ``high`` seconds after now."""
        return self.now + self.rng.uniform(low, high) / DAY

    # --- calling the emulator ------------------------------------------------------------------
    def attempt(
        self, method: str, *args: Any, **kwargs: Any
    ) -> tuple[Any, EmulatorControlError | None]:
        """One control call at the current moment; a refusal (4xx) is counted, not raised."""
        self.simulator.move_clock_to(self)
        try:
            return getattr(self.simulator.control, method)(*args, **kwargs), None
        except EmulatorControlError as error:
            self.report.errors += 1
            logger.info("simulator: %s refused: %s", method, error)
            return None, error

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.attempt(method, *args, **kwargs)[0]

    # --- the actions ---------------------------------------------------------------------------
    def add_customer(
        self,
        person: Person,
        *,
        userid: str | None = None,
        add_way: int | None = None,
        state: str | None = None,
        referred_by: str = "",
    ) -> SimulatedCustomer | None:
        """The person adds a staff member: by scanning one of the brand's contact ways
        (``rates.scan_share`` of the time when there are any and no staff member is
        given), else directly (personal QR code, shared card, search)."""
        simulator = self.simulator
        fields = simulator.customer_fields(person)
        result, config_id = None, ""
        if userid is None and simulator.contact_ways and self.rng.random() < self.rates.scan_share:
            config_id = self.rng.choice(simulator.contact_ways)
            result, error = self.attempt("scan", config_id, customer=fields)
            if error is not None:
                if error.status in (404, 409, 410):  # deleted, nobody to route to, used up
                    simulator.contact_ways.remove(config_id)
                    logger.warning("simulator: stops using contact way %s: %s", config_id, error)
                config_id = ""
        if result is None:
            staff = userid or self.rng.choice(simulator.staff)
            if add_way is None:
                ways, weights = zip(*DIRECT_ADD_WAYS, strict=True)
                add_way = self.rng.choices(ways, weights=weights)[0]
            result = self.call("add_contact", staff, customer=fields, add_way=add_way, state=state)
            if result is None:
                return None
        customer = SimulatedCustomer(
            person=person,
            external_userid=result["external_userid"],
            userid=result["userid"],
            added_on=self.index,
            referred_by=referred_by,
            config_id=config_id,
        )
        simulator.customers.append(customer)
        self.report.adds += 1
        for behaviour in simulator.behaviours:
            behaviour.on_added(self, customer)
        return customer

    def chat(
        self, customer: SimulatedCustomer, *, count: int = 1, sender: str = "customer"
    ) -> None:
        if not customer.active:
            return
        result, error = self.attempt(
            "chat", customer.userid, customer.external_userid, sender=sender, count=count
        )
        if result is not None:
            self.report.messages += count
            customer.chatted = True
        elif error is not None and error.status == 404:  # no longer friends
            customer.active = False

    def join_group(self, customer: SimulatedCustomer) -> str | None:
        """Join a group: by a group code (join way) or invited by a group's owner."""
        if not customer.active or customer.groups:
            return None
        simulator = self.simulator
        member = customer.external_userid
        result = None
        if simulator.join_ways and self.rng.random() < self.rates.join_way_share:
            config_id = self.rng.choice(simulator.join_ways)
            result, error = self.attempt("join_group", config_id=config_id, member=member)
            if error is not None and error.status in (404, 409):
                simulator.join_ways.remove(config_id)
                logger.warning("simulator: stops using group code %s: %s", config_id, error)
        if result is None:
            group = simulator.group_to_invite_into(self)
            if group is None:
                return None
            result = self.call(
                "join_group",
                chat_id=group.chat_id,
                member=member,
                scene="invite",
                invitor=group.owner,
            )
            if result is None:
                return None
        chat_id = result["chat_id"]
        info = simulator.groups.setdefault(chat_id, GroupInfo(chat_id, owner="", members=0))
        info.members = int(result.get("member_count", info.members))
        if member not in result.get("added", []):
            return None
        customer.groups.append(chat_id)
        self.report.group_joins += 1
        return chat_id

    def group_message(self, customer: SimulatedCustomer, chat_id: str, *, count: int = 1) -> None:
        if chat_id not in customer.groups:
            return
        result, error = self.attempt(
            "group_message", chat_id, customer.external_userid, count=count
        )
        if result is not None:
            self.report.messages += count
        elif error is not None and error.status == 404:  # dismissed, or removed by the owner
            customer.groups.remove(chat_id)

    def leave_group(self, customer: SimulatedCustomer, chat_id: str) -> None:
        if chat_id not in customer.groups:
            return
        result, error = self.attempt("leave_group", chat_id, customer.external_userid)
        if result is None and (error is None or error.status != 404):
            return
        customer.groups.remove(chat_id)
        if result is not None:
            info = self.simulator.groups.get(chat_id)
            if info is not None:
                info.members = int(result.get("member_count", info.members))
            self.report.group_leaves += 1

    def delete_staff(self, customer: SimulatedCustomer) -> None:
        if not customer.active:
            return
        result, error = self.attempt(
            "customer_deletes_staff", customer.external_userid, customer.userid
        )
        if result is not None or (error is not None and error.status == 404):
            customer.active = False
        if result is not None:
            self.report.deletions += 1

    def refer(self, customer: SimulatedCustomer) -> SimulatedCustomer | None:
        """The customer shares their staff member's card with a friend, who adds them."""
        if not customer.active:
            return None
        friend = self.add_customer(
            self.simulator.next_person(),
            userid=customer.userid,
            add_way=ADD_WAY_CARD,
            referred_by=customer.external_userid,
        )
        if friend is not None:
            self.report.referrals += 1
        return friend


class Simulator:
    """A synthetic population living a brand's private domain on the WeCom emulator.

    ``staff_userids``: who customers add (default: every active member of the corp);
    ``group_chat_ids``: the groups customers are invited into (default: the corp's groups;
    when there is none, ``rates.groups_to_create`` groups owned by the staff are created);
    ``contact_way_ids`` / ``join_way_ids``: the channel codes scanned and group codes used
    (default: the corp's, i.e. those the platform created through the API). Customers found
    in the emulator (earlier runs) are adopted and keep living.
    """

    def __init__(
        self,
        control: Control,
        corp_id: str | None = None,
        *,
        seed: int | str = 0,
        rates: FunnelRates | None = None,
        scale: float = 1.0,
        staff_userids: Sequence[str] | None = None,
        group_chat_ids: Sequence[str] | None = None,
        contact_way_ids: Sequence[str] | None = None,
        join_way_ids: Sequence[str] | None = None,
        behaviours: Sequence[Behaviour] | None = None,
        clock_step: int = 60,
    ) -> None:
        if scale < 0:
            raise ValueError("scale must not be negative")
        self.control = control
        self.corp_id = corp_id
        self.seed = seed
        self.rates = rates or FunnelRates()
        self.scale = scale
        self.population = Population(seed)
        self.behaviours: list[Behaviour] = (
            list(behaviours) if behaviours is not None else default_behaviours()
        )
        self.clock_step = clock_step
        self._wanted_staff = list(staff_userids) if staff_userids is not None else None
        self._wanted_groups = list(group_chat_ids) if group_chat_ids is not None else None
        self._wanted_contact_ways = list(contact_way_ids) if contact_way_ids is not None else None
        self._wanted_join_ways = list(join_way_ids) if join_way_ids is not None else None
        self.staff: list[str] = []
        self.groups: dict[str, GroupInfo] = {}
        self.contact_ways: list[str] = []
        self.join_ways: list[str] = []
        self.customers: list[SimulatedCustomer] = []
        self.group_limit = 500
        self.rng = random.Random(seed)
        self.last_activity: int | None = None
        self.loaded_at: int | None = None
        self._next_person = 0
        self._days = 0
        self._groups_created = 0
        self._clock: int | None = None  # where the emulator's clock was moved (back-fill)
        self._loaded = False

    # --- the world as found --------------------------------------------------------------------
    def load(self) -> dict[str, Any]:
        """Read the corp from the emulator's snapshot (once): staff, groups, contact ways,
        group codes, and the customers of earlier runs."""
        if self._loaded:
            return self.summary()
        snapshot = self.control.snapshot(self.corp_id)
        corps = snapshot.get("corps") or {}
        if self.corp_id is None:
            if not corps:
                raise SimulatorError(
                    "the WeCom emulator has no corp yet: create one (POST /control/corps, "
                    "or `make demo`) before simulating"
                )
            if len(corps) > 1:
                raise SimulatorError(
                    f"the WeCom emulator holds several corps ({', '.join(sorted(corps))}): "
                    "say which one to simulate"
                )
            self.corp_id = next(iter(corps))
        corp = corps.get(self.corp_id)
        if corp is None:
            raise SimulatorError(f"the WeCom emulator has no corp {self.corp_id!r}")
        if getattr(self.control, "corp_id", None) is None:
            self.control.corp_id = self.corp_id
        self.loaded_at = int(snapshot.get("now") or 0)
        self.group_limit = int((corp.get("settings") or {}).get("group_max_members") or 500)
        self._load_staff(corp)
        self._load_ways(corp)
        self._load_groups(corp)
        adopted = self._adopt_customers(corp)
        # a fresh world starts from the seed; a resumed one from the seed and its size, so
        # that a restarted demo does not replay the first days' numbers
        self.rng = random.Random(self.seed if not adopted else f"{self.seed}:resume:{adopted}")
        self._loaded = True
        return self.summary()

    def summary(self) -> dict[str, Any]:
        return {
            "corp_id": self.corp_id,
            "staff": len(self.staff),
            "groups": len(self.groups),
            "contact_ways": len(self.contact_ways),
            "join_ways": len(self.join_ways),
            "customers": sum(1 for c in self.customers if c.active),
            "last_activity": self.last_activity,
        }

    def _load_staff(self, corp: dict[str, Any]) -> None:
        active = [
            userid
            for userid, member in (corp.get("staff") or {}).items()
            if int(member.get("status") or 0) == 1 and not member.get("resigned_at")
        ]
        if self._wanted_staff is not None:
            missing = [u for u in self._wanted_staff if u not in active]
            if missing:
                raise SimulatorError(
                    f"no active staff {', '.join(missing)} in corp {self.corp_id} of the emulator"
                )
            self.staff = list(self._wanted_staff)
        else:
            self.staff = active
        if not self.staff:
            raise SimulatorError(
                f"corp {self.corp_id} has no active staff in the WeCom emulator: customers "
                "need someone to add. Add staff first (POST /control/staff, or `make demo`)."
            )

    def _load_ways(self, corp: dict[str, Any]) -> None:
        ways = corp.get("contact_ways") or {}
        join_ways = corp.get("join_ways") or {}
        for wanted, known, kind in (
            (self._wanted_contact_ways, ways, "contact way"),
            (self._wanted_join_ways, join_ways, "group code (join way)"),
        ):
            missing = [c for c in wanted or [] if c not in known]
            if missing:
                raise SimulatorError(f"no {kind} {', '.join(missing)} in corp {self.corp_id}")
        if self._wanted_contact_ways is not None:
            self.contact_ways = list(self._wanted_contact_ways)
        else:  # temporary ways are one-use links for a single customer: not public traffic
            self.contact_ways = [c for c, way in ways.items() if not way.get("is_temp")]
        if self._wanted_join_ways is not None:
            self.join_ways = list(self._wanted_join_ways)
        else:
            self.join_ways = [c for c, way in join_ways.items() if way.get("chat_id_list")]

    def _load_groups(self, corp: dict[str, Any]) -> None:
        groups = corp.get("groups") or {}
        if self._wanted_groups is not None:
            missing = [
                c for c in self._wanted_groups if c not in groups or groups[c].get("dismissed")
            ]
            if missing:
                raise SimulatorError(f"no group {', '.join(missing)} in corp {self.corp_id}")
            chosen = self._wanted_groups
        else:
            chosen = [c for c, g in groups.items() if not g.get("dismissed")]
        for chat_id in chosen:
            group = groups[chat_id]
            owner = group.get("owner") or ""
            self.groups[chat_id] = GroupInfo(
                chat_id, owner if owner in self.staff else "", len(group.get("members") or {})
            )

    def _adopt_customers(self, corp: dict[str, Any]) -> int:
        staff = set(self.staff)
        memberships: dict[str, list[str]] = {}
        last = 0
        for chat_id, group in (corp.get("groups") or {}).items():
            if group.get("dismissed"):
                continue
            for member_id, member in (group.get("members") or {}).items():
                if int(member.get("type") or 0) == 2:
                    memberships.setdefault(member_id, []).append(chat_id)
                    last = max(last, int(member.get("join_time") or 0))
        chatted = set(corp.get("chatted") or [])
        adopted = 0
        for external_userid, found in (corp.get("customers") or {}).items():
            follows = list((found.get("follows") or {}).values())
            for follow in follows:
                last = max(last, int(follow.get("createtime") or 0))
            ours = [f for f in follows if f.get("userid") in staff]
            groups = memberships.get(external_userid, [])
            if not ours and not groups:
                continue
            first = min(ours, key=lambda f: int(f.get("createtime") or 0)) if ours else None
            person = self.next_person()
            person = replace(
                person,
                name=str(found.get("name") or person.name),
                gender=int(found.get("gender") or person.gender),
            )
            userid = str(first["userid"]) if first else ""
            self.customers.append(
                SimulatedCustomer(
                    person=person,
                    external_userid=external_userid,
                    userid=userid,
                    added_on=-1,
                    groups=list(groups),
                    active=first is not None,
                    chatted=f"{userid}|{external_userid}" in chatted,
                )
            )
            adopted += 1
        self.last_activity = last or None
        return adopted

    def days_to_backfill(self, requested: int) -> int:
        """How many of the ``requested`` days of history are missing: all of them in a new
        world, else the days between the last activity found and today (a demo restarted
        the next morning fills the night; restarted the same day, nothing)."""
        self.load()
        if requested <= 0:
            return 0
        if self.last_activity is None or self.loaded_at is None:
            return requested
        missing = (beijing_midnight(self.loaded_at) - beijing_midnight(self.last_activity)) // DAY
        return max(0, min(requested, missing - 1))

    # --- people and groups ---------------------------------------------------------------------
    def customer_fields(self, person: Person) -> dict[str, Any]:
        """What the emulator is told about a person becoming a WeChat user of the brand: the
        person's own fields, and what behaviours with a ``customer_fields(person)`` method
        know of them (the shop: the unionid its orders carry, so that Siyu can match)."""
        fields = person.customer_fields()
        for behaviour in self.behaviours:
            known = getattr(behaviour, "customer_fields", None)
            if known is not None:
                fields.update(known(person))
        return fields

    def next_person(self) -> Person:
        person = self.population.person(self._next_person)
        self._next_person += 1
        return person

    def group_to_invite_into(self, day: Day) -> GroupInfo | None:
        """A random group with room whose owner is one of our staff; groups are created
        (owned by the staff in turn) when there is none."""
        candidates = self._open_groups()
        if not candidates and self.rates.groups_to_create:
            count = self.rates.groups_to_create if not self._groups_created else 1
            for _ in range(count):
                owner = self.staff[self._groups_created % len(self.staff)]
                base = GROUP_NAMES[self._groups_created % len(GROUP_NAMES)]
                self._groups_created += 1
                name = f"{base}{self._groups_created}"
                chat_id = day.call("create_group", owner, name)
                if chat_id:
                    self.groups[chat_id] = GroupInfo(chat_id, owner, 1, created_by_simulator=True)
            candidates = self._open_groups()
        return self.rng.choice(candidates) if candidates else None

    def _open_groups(self) -> list[GroupInfo]:
        return [
            g
            for g in self.groups.values()
            if g.owner in self.staff and g.members < self.group_limit
        ]

    # --- the emulator's clock ------------------------------------------------------------------
    def move_clock_to(self, day: Day) -> None:
        """Back-fill only: step the emulator's clock to the moment of the current action
        (steps under ``clock_step`` seconds are skipped: actions keep minute precision)."""
        target = day.timestamp
        if target is None or self._clock is None:
            return
        delta = target - self._clock
        if abs(delta) >= self.clock_step:
            self.control.advance_clock(delta)
            self._clock = target

    # --- playing days --------------------------------------------------------------------------
    def _new_day(self, label: str, start: int | None) -> Day:
        day = Day(self, self._days, label, start)
        self._days += 1
        return day

    def _plan_funnel(self, day: Day) -> None:
        passers_by = round(self.rates.passers_by_per_day * self.scale)
        day.report.passers_by = passers_by
        visit_rate = self.rates.visit_rate
        random_number = self.rng.random
        for _ in range(passers_by):
            if random_number() < visit_rate:
                day.schedule(day.random_time(), self._visit)

    def _visit(self, day: Day) -> None:
        person = self.next_person()
        day.report.visitors += 1
        for behaviour in self.behaviours:
            behaviour.on_visit(day, person)
        if self.rng.random() < self.rates.buy_rate:
            day.schedule(day.soon(300, 2400), lambda d: self._purchase(d, person))

    def _purchase(self, day: Day, person: Person) -> None:
        day.report.buyers += 1
        for behaviour in self.behaviours:
            behaviour.on_purchase(day, person)
        if self.rng.random() < self.rates.add_rate:
            day.schedule(day.soon(60, 3600), lambda d: d.add_customer(person))

    def _play(self, day: Day, pace: Callable[[float], bool]) -> DayReport:
        """Plan the day, then play its actions in time order while ``pace(at)`` says go."""
        self._plan_funnel(day)
        for behaviour in self.behaviours:
            behaviour.on_day(day)
        while day._queue:
            at, _, action = heapq.heappop(day._queue)
            if not pace(at):
                day.report.complete = False
                break
            day.now = at
            action(day)
        return day.report

    def backfill(
        self, days: int, progress: Callable[[DayReport], None] | None = None
    ) -> list[DayReport]:
        """Play the ``days`` days before today as history (fast), then put the emulator's
        clock back where it was. ``progress`` is called with each day's report."""
        self.load()
        if days <= 0:
            return []
        origin = int(self.control.advance_clock(0))
        today = beijing_midnight(origin)
        self._clock = origin
        reports: list[DayReport] = []
        try:
            for offset in range(days, 0, -1):
                start = today - offset * DAY
                day = self._new_day(beijing_date(start).isoformat(), start)
                reports.append(self._play(day, lambda at: True))
                if progress is not None:
                    progress(day.report)
        finally:
            moved, self._clock = (self._clock or origin) - origin, None
            if moved:
                self.control.advance_clock(-moved)
        return reports

    def run_live(
        self,
        speed: float = 60.0,
        stop_event: threading.Event | None = None,
        *,
        days: int | None = None,
        progress: Callable[[DayReport], None] | None = None,
    ) -> list[DayReport]:
        """Play one simulated day every ``86400 / speed`` seconds, its actions spread over
        that interval, until ``stop_event`` is set (or ``days`` days were played). A day cut
        short is reported with ``complete=False``."""
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.load()
        stop = stop_event or threading.Event()
        interval = DAY / speed
        reports: list[DayReport] = []
        live = 0
        while not stop.is_set() and (days is None or live < days):
            live += 1
            day = self._new_day(f"live day {live}", None)
            started = time.monotonic()

            def pace(at: float, started: float = started) -> bool:
                delay = started + at * interval - time.monotonic()
                if delay > 0:
                    return not stop.wait(delay)
                return not stop.is_set()

            report = self._play(day, pace)
            if report.complete and (days is None or live < days):
                stop.wait(max(0.0, started + interval - time.monotonic()))
            reports.append(report)
            if progress is not None:
                progress(report)
        return reports
