"""Route an added customer to whoever owns the contact way's ``state``.

WeCom puts the contact way's ``state`` (≤ 30 characters) and a ``WelcomeCode`` valid for
20 s on the ``add_external_contact`` callback. Every owner of contact ways (channel codes,
campaigns, landing pages …) claims a short prefix, so the callback reaches its owner without
a lookup across domains (WECOM_FACTS.md). The owner may send the welcome message with the
code before it expires.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AddedByState:
    """What a state owner learns about an add that carried its state."""

    tenant: Any
    state: str
    welcome_code: str
    customer: Any
    follow: Any


StateOwner = Callable[[AddedByState], None]
_owners: dict[str, StateOwner] = {}


def owns_state_prefix(prefix: str) -> Callable[[StateOwner], StateOwner]:
    """Claim every state starting with ``prefix`` (e.g. ``"cc"`` for channel codes)."""
    if not prefix or len(prefix) > 8:
        raise ValueError("A state prefix is 1 to 8 characters")

    def register(owner: StateOwner) -> StateOwner:
        if _owners.get(prefix, owner) is not owner:
            raise ValueError(f"State prefix {prefix!r} is already owned")
        _owners[prefix] = owner
        return owner

    return register


def owner_of(state: str) -> StateOwner | None:
    """The owner with the longest prefix that ``state`` starts with."""
    matches = [prefix for prefix in _owners if state.startswith(prefix)]
    return _owners[max(matches, key=len)] if matches else None


def route(added: AddedByState) -> bool:
    """Hand the add to the state's owner; return whether one took it."""
    owner = owner_of(added.state) if added.state else None
    if owner is None:
        return False
    owner(added)
    return True
