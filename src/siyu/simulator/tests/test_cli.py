"""``run_simulate_cli``: what a user running ``siyu simulate`` sees."""

from __future__ import annotations

import os
import signal
import socket

from siyu.simulator import cli
from siyu.simulator.cli import run_simulate_cli
from siyu.simulator.engine import DAY
from siyu.simulator.tests.conftest import AES_KEY, CONTACT_SECRET, CORP_ID, TOKEN


def simulate(url, **options):
    arguments = {
        "emulator_url": url,
        "corp_id": None,
        "seed": 1,
        "days": 2,
        "follow": False,
        "speed": 60.0,
        "scale": 0.1,
    }
    return run_simulate_cli(**(arguments | options))


def test_it_back_fills_and_prints_a_line_per_day(emulator, corp, capsys):
    # when
    status = simulate(emulator.base_url)
    # then
    out = capsys.readouterr().out
    assert status == 0
    assert f"Simulating corp {CORP_ID}: 3 staff" in out
    assert "1,000 passers-by → 200 visit → 20 buy → ≈10 add" in out
    day_lines = [line for line in out.splitlines() if "passers-by 1000" in line]
    assert [line.split(":")[0].split("\x1b[K")[-1] for line in day_lines] == [
        "2025-12-30",
        "2025-12-31",
    ]
    assert "History done:" in out


def test_a_second_run_the_same_day_back_fills_nothing(emulator, corp, capsys):
    simulate(emulator.base_url)
    capsys.readouterr()
    # when
    status = simulate(emulator.base_url, days=5)
    # then
    out = capsys.readouterr().out
    assert status == 0
    assert "5 of the 5 days requested are already there; back-filling 0" in out
    assert "passers-by 1000" not in out


def test_a_corp_without_staff_is_refused_with_a_clear_message(emulator, control, capsys):
    # given a corp with nobody to add
    control.setup_corp(
        CORP_ID, contact_secret=CONTACT_SECRET, token=TOKEN, encoding_aes_key=AES_KEY
    )
    # when
    status = simulate(emulator.base_url, corp_id=CORP_ID)
    # then
    assert status == 1
    assert f"corp {CORP_ID} has no active staff" in capsys.readouterr().err


def test_an_emulator_without_corps_is_refused(emulator, capsys):
    assert simulate(emulator.base_url) == 1
    assert "has no corp yet" in capsys.readouterr().err


def test_an_unreachable_emulator_is_reported(capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert simulate(f"http://127.0.0.1:{port}") == 1
    assert "cannot talk to the WeCom emulator" in capsys.readouterr().err


def test_follow_runs_live_until_interrupted(emulator, corp, capsys, monkeypatch):
    # given Ctrl-C pressed once the first live day is printed
    printed = []

    def echo_then_interrupt(report, over_bar=False):
        printed.append(report)
        if report.label == "live day 1":
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(cli, "_echo_day", echo_then_interrupt)
    previous = signal.getsignal(signal.SIGINT)
    # when: a simulated day every 50 ms
    status = simulate(emulator.base_url, days=0, follow=True, speed=DAY / 0.05)
    # then the running day ended cleanly and the handler is restored
    assert status == 0
    assert [r.label for r in printed][:1] == ["live day 1"]
    assert len(printed) <= 2
    out = capsys.readouterr().out
    assert "Live: one simulated day every" in out and "Simulator stopped." in out
    assert signal.getsignal(signal.SIGINT) is previous
