"""What customers do today: chat with their staff member, join a group, speak in it, leave it,
delete the staff member, bring a friend.

Each behaviour draws its decisions in ``on_day`` (for every customer, in a fixed order) and
schedules the actions at times drawn from the day's activity profile; an action checks when
it runs that it still makes sense (a customer who deleted the staff member earlier that day
no longer chats). The shop (orders over Siyu's webhook) lives in ``siyu.simulator.shop``,
registered after these; campaigns will register their own behaviours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from siyu.simulator.model import Behaviour, SimulatedCustomer, register_behaviour

if TYPE_CHECKING:
    from siyu.simulator.engine import Day


def _chance(day: Day, rate: float, customer: SimulatedCustomer, behaviour: str) -> bool:
    probability = min(1.0, rate * customer.person.persona.factor(behaviour))
    return day.rng.random() < probability


@register_behaviour
class ChatWithStaff(Behaviour):
    """Private messages with the staff member; the staff member usually answers a little later.
    The first chat marks the pair as "already chatted" (WeCom then issues no welcome code)."""

    name = "chat_with_staff"

    def on_added(self, day: Day, customer: SimulatedCustomer) -> None:
        if _chance(day, day.rates.chat_on_add, customer, "chat"):
            self._plan(day, customer, day.soon())

    def on_day(self, day: Day) -> None:
        for customer in day.customers:
            if _chance(day, day.rates.chat_with_staff, customer, "chat"):
                self._plan(day, customer, day.random_time())

    def _plan(self, day: Day, customer: SimulatedCustomer, at: float) -> None:
        count = day.rng.randint(1, 3)
        replies = day.rng.random() < day.rates.staff_reply
        delay = day.rng.uniform(30, 7200) / 86400  # 30 s to 2 h
        day.schedule(at, lambda d: d.chat(customer, count=count))
        if replies:
            day.schedule(at + delay, lambda d: d.chat(customer, count=1, sender="staff"))


@register_behaviour
class JoinGroup(Behaviour):
    """Join one of the brand's groups (by its group code when it has one, else invited)."""

    name = "join_group"

    def on_added(self, day: Day, customer: SimulatedCustomer) -> None:
        if _chance(day, day.rates.join_group_on_add, customer, "join_group"):
            day.schedule(day.soon(), lambda d: d.join_group(customer))

    def on_day(self, day: Day) -> None:
        for customer in day.customers:
            if not customer.groups and _chance(day, day.rates.join_group, customer, "join_group"):
                day.schedule(day.random_time(), lambda d, c=customer: d.join_group(c))


@register_behaviour
class MessageInGroup(Behaviour):
    name = "message_in_group"

    def on_day(self, day: Day) -> None:
        for customer in day.group_members:
            if _chance(day, day.rates.message_in_group, customer, "group_message"):
                chat_id = day.rng.choice(customer.groups)
                count = day.rng.randint(1, 4)
                day.schedule(
                    day.random_time(),
                    lambda d, c=customer, g=chat_id, n=count: d.group_message(c, g, count=n),
                )


@register_behaviour
class LeaveGroup(Behaviour):
    name = "leave_group"

    def on_day(self, day: Day) -> None:
        for customer in day.group_members:
            if _chance(day, day.rates.leave_group, customer, "leave_group"):
                chat_id = day.rng.choice(customer.groups)
                day.schedule(
                    day.random_time(), lambda d, c=customer, g=chat_id: d.leave_group(c, g)
                )


@register_behaviour
class DeleteStaff(Behaviour):
    """Churn: the customer deletes the staff member (≈ 0.2 % of customers a day)."""

    name = "delete_staff"

    def on_day(self, day: Day) -> None:
        for customer in day.customers:
            if _chance(day, day.rates.delete_staff, customer, "delete_staff"):
                day.schedule(day.random_time(), lambda d, c=customer: d.delete_staff(c))


@register_behaviour
class Referral(Behaviour):
    """Old brings new (老带新): a customer shares the staff member's card with a friend, who
    adds the same staff member. Off by default (``FunnelRates.referral`` = 0); fission
    campaigns will route friends through their own contact ways."""

    name = "referral"

    def on_day(self, day: Day) -> None:
        if day.rates.referral <= 0:
            return
        for customer in day.customers:
            if _chance(day, day.rates.referral, customer, "referral"):
                day.schedule(day.random_time(), lambda d, c=customer: d.refer(c))


# The shop runs after the behaviours above (it sends nothing without a webhook secret).
from siyu.simulator import shop  # noqa: E402, F401
