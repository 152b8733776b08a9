"""A local stand-in for Tencent's WeCom servers (``siyu wecom-emulator``).

It speaks WeCom's server API (``/cgi-bin/...``: tokens, address book, customers, tags,
contact ways, welcome messages, mass messages, groups and join ways, Moments, statistics,
transfers, media, app messages) with WeCom's field names, limits and errcodes, keeps a
world in memory (saved to JSON), and delivers encrypted, signed callbacks to the callback
URL configured for each corp, with WeCom's 5 s time-out and 3 retries. A control API
(``/control/...``) makes things happen in that world and injects faults.

The platform never takes a shortcut into it: it only talks to the emulator through its
real WeCom client and receives its callbacks at its real callback endpoint. This package
imports nothing from Django.
"""

from siyu.wecom.emulator.app import create_app
from siyu.wecom.emulator.server import (
    EmulatorControl,
    EmulatorControlError,
    EmulatorServer,
    run_emulator,
)
from siyu.wecom.emulator.state import Clock, FakeClock, World

__all__ = [
    "Clock",
    "EmulatorControl",
    "EmulatorControlError",
    "EmulatorServer",
    "FakeClock",
    "World",
    "create_app",
    "run_emulator",
]
