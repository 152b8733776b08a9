"""The simulator's model: funnel rates, what it remembers about customers and groups, the
per-day report, and the behaviours (hooks) that make customers act.

The funnel is the one of seed 003: 10 000 passers-by a day, 20 % visit the store, 10 % of
visitors buy, half of the buyers add a staff member on WeCom (≈ 100 adds a day at scale
1.0). Once customers, people act with daily probabilities (joining a group, chatting with
their staff member, speaking in groups, deleting the staff member, leaving groups), scaled
by their persona.

Behaviours are hooks the engine calls: ``on_day`` at the start of each simulated day (to
schedule the day's actions), ``on_visit`` for each visitor, ``on_purchase`` for each buyer
and ``on_added`` when a person becomes a customer. Today's behaviours live in
``siyu.simulator.behaviours``; later capabilities (orders, campaigns) register their own
with ``@register_behaviour`` (or pass ``behaviours=`` to the ``Simulator``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from siyu.simulator.population import Person

if TYPE_CHECKING:
    from siyu.simulator.engine import Day


@dataclass(frozen=True)
class FunnelRates:
    """How many people pass by, and how likely each step and daily action is.

    The four funnel rates are conditional (visit | passer-by, buy | visit, add | buy);
    the daily probabilities apply to each customer each simulated day and are multiplied by
    the customer's persona factor. ``repurchase`` and ``referral`` are read by the
    behaviours that use them (referral: a customer brings a friend who adds the same staff
    member; repurchase: for the orders capability), both off by default so that the
    default funnel is exactly the seed's.
    """

    passers_by_per_day: int = 10_000
    visit_rate: float = 0.20
    buy_rate: float = 0.10
    add_rate: float = 0.5
    # how a buyer adds: by scanning one of the brand's contact ways (when it has any) ...
    scan_share: float = 0.7
    # ... and how a customer joins a group: by a group code (join way), when there is one
    join_way_share: float = 0.7
    # right after being added (same day)
    chat_on_add: float = 0.5
    join_group_on_add: float = 0.3
    # daily probabilities for each customer
    join_group: float = 0.03
    chat_with_staff: float = 0.06
    staff_reply: float = 0.9
    message_in_group: float = 0.12
    delete_staff: float = 0.002
    leave_group: float = 0.004
    repurchase: float = 0.0
    referral: float = 0.0
    # groups the simulator creates (owned by staff) when the brand has none to invite into
    groups_to_create: int = 3

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in ("passers_by_per_day", "groups_to_create"):
                if value < 0:
                    raise ValueError(f"{item.name} must not be negative")
            elif not 0.0 <= value <= 1.0:
                raise ValueError(f"{item.name} is a probability: {value!r} is not in [0, 1]")

    def expected(self, scale: float = 1.0) -> dict[str, float]:
        """The funnel's expected daily counts at ``scale``."""
        passers_by = round(self.passers_by_per_day * scale)
        visitors = passers_by * self.visit_rate
        buyers = visitors * self.buy_rate
        return {
            "passers_by": passers_by,
            "visitors": visitors,
            "buyers": buyers,
            "adds": buyers * self.add_rate,
        }

    def adds_per_day(self, scale: float = 1.0) -> tuple[float, float]:
        """Mean and standard deviation of the daily funnel adds (a binomial count)."""
        passers_by = round(self.passers_by_per_day * scale)
        p = self.visit_rate * self.buy_rate * self.add_rate
        return passers_by * p, math.sqrt(passers_by * p * (1 - p))


@dataclass
class DayReport:
    """What happened on one simulated day (``complete`` is False for a day cut short)."""

    index: int
    label: str
    passers_by: int = 0
    visitors: int = 0
    buyers: int = 0
    adds: int = 0
    group_joins: int = 0
    messages: int = 0
    deletions: int = 0
    group_leaves: int = 0
    referrals: int = 0
    errors: int = 0
    complete: bool = True
    extra: dict[str, int] = field(default_factory=dict)  # counters of later behaviours

    def count(self, name: str, amount: int = 1) -> None:
        """Count something a behaviour did (orders, invitations...), printed with the day."""
        self.extra[name] = self.extra.get(name, 0) + amount

    def line(self) -> str:
        parts = [
            f"{self.label}:",
            f"passers-by {self.passers_by}",
            f"visitors {self.visitors}",
            f"buyers {self.buyers}",
            f"adds {self.adds}",
            f"group joins {self.group_joins}",
            f"messages {self.messages}",
            f"deletions {self.deletions}",
        ]
        if self.group_leaves:
            parts.append(f"group leaves {self.group_leaves}")
        if self.referrals:
            parts.append(f"referrals {self.referrals}")
        parts += [f"{name} {value}" for name, value in sorted(self.extra.items())]
        if self.errors:
            parts.append(f"errors {self.errors}")
        if not self.complete:
            parts.append("(stopped)")
        return "  ".join(parts)


@dataclass
class SimulatedCustomer:
    """A person who added a staff member: the simulator's memory of the relationship."""

    person: Person
    external_userid: str
    userid: str  # the staff member they added
    added_on: int  # simulated day index (-1: found in the emulator at start)
    groups: list[str] = field(default_factory=list)  # chat ids, in joining order
    active: bool = True  # False once they deleted the staff member
    chatted: bool = False
    referred_by: str = ""  # external_userid of the customer who brought them
    config_id: str = ""  # the contact way scanned, if any


@dataclass
class GroupInfo:
    chat_id: str
    owner: str  # "" when unknown (a group a join way created)
    members: int
    created_by_simulator: bool = False


class Behaviour:
    """Hooks the engine calls; override the ones you need. ``day`` is the engine's ``Day``:
    it holds the random generator, the rates, the report, the customers, ``schedule()`` to
    act later in the day, and the actions (``add_customer``, ``chat``, ``join_group``...).

    Draw randomness only from ``day.rng``, in a fixed order, so runs stay deterministic.
    """

    name = "behaviour"

    def on_day(self, day: Day) -> None:
        """At the start of a simulated day: schedule the day's actions."""

    def on_visit(self, day: Day, person: Person) -> None:
        """A passer-by visited the store (or the online shop)."""

    def on_purchase(self, day: Day, person: Person) -> None:
        """A visitor bought something (the orders capability records the order here)."""

    def on_added(self, day: Day, customer: SimulatedCustomer) -> None:
        """A person added a staff member and became a customer."""


BehaviourFactory = Callable[[], Behaviour]


class BehaviourRegistry:
    """An ordered set of behaviour factories; ``create()`` makes fresh instances."""

    def __init__(self) -> None:
        self._factories: dict[str, BehaviourFactory] = {}

    def register(self, factory: BehaviourFactory, name: str | None = None) -> BehaviourFactory:
        key = name or getattr(factory, "name", None) or factory.__name__
        self._factories[key] = factory
        return factory

    def unregister(self, name: str) -> None:
        self._factories.pop(name, None)

    def names(self) -> list[str]:
        return list(self._factories)

    def create(self) -> list[Behaviour]:
        return [factory() for factory in self._factories.values()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)


registry = BehaviourRegistry()


def register_behaviour(factory: BehaviourFactory) -> BehaviourFactory:
    """Class decorator: run this behaviour in every ``Simulator`` made without
    ``behaviours=``. Registration order is the order hooks are called in."""
    return registry.register(factory)


def default_behaviours() -> list[Behaviour]:
    from siyu.simulator import behaviours  # noqa: F401  (registers today's behaviours)

    return registry.create()
