"""The synthetic private domain (``siyu simulate``): a population living a brand's WeCom.

The simulator is the outside world: it drives the WeCom emulator's control API (people
scan, add, chat, join, leave, delete) and never touches the platform's database; the
platform learns everything through the emulator's callbacks and its real WeCom client.
"""

from siyu.simulator.engine import Day, Simulator, SimulatorError
from siyu.simulator.model import (
    Behaviour,
    DayReport,
    FunnelRates,
    SimulatedCustomer,
    register_behaviour,
    registry,
)
from siyu.simulator.population import Person, Persona, Population

__all__ = [
    "Behaviour",
    "Day",
    "DayReport",
    "FunnelRates",
    "Person",
    "Persona",
    "Population",
    "SimulatedCustomer",
    "Simulator",
    "SimulatorError",
    "register_behaviour",
    "registry",
]
