"""``siyu simulate``: back-fill history, then (``--follow``) keep the private domain alive."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator

import click
import httpx

from siyu.simulator.engine import DAY, Simulator, SimulatorError
from siyu.simulator.model import DayReport, FunnelRates
from siyu.simulator.shop import ShopWebhook, shop_of
from siyu.wecom.emulator.server import EmulatorControl


def run_simulate_cli(
    *,
    emulator_url: str,
    corp_id: str | None,
    seed: int,
    days: int,
    follow: bool,
    speed: float,
    scale: float,
    shop_url: str = "",
    shop_tenant: str = "",
    shop_secret: str = "",
) -> int:
    """Run the simulator against the emulator at ``emulator_url``; the exit status.

    Back-fills the missing part of ``days`` days of history (with a progress bar), printing
    one line per simulated day, then with ``follow`` plays one day every ``86400 / speed``
    seconds until interrupted (Ctrl-C, SIGTERM).

    With ``shop_secret`` (the tenant's webhook secret), the brand's shop sends its orders to
    Siyu at ``shop_url`` for the tenant ``shop_tenant``; without, it sends none.
    """
    if scale < 0 or speed <= 0 or days < 0:
        click.echo("simulate: --scale and --days must not be negative, --speed positive", err=True)
        return 2
    if shop_secret and not (shop_url and shop_tenant):
        click.echo(
            "simulate: the shop needs Siyu's URL (--shop-url) and the tenant (--shop-tenant) "
            "with its webhook secret",
            err=True,
        )
        return 2
    rates = FunnelRates()
    with contextlib.ExitStack() as stack:
        stack.enter_context(_quiet_http_log())
        control = stack.enter_context(EmulatorControl(emulator_url, corp_id=corp_id))
        webhook = (
            stack.enter_context(ShopWebhook(shop_url, shop_tenant, shop_secret))
            if shop_secret
            else None
        )
        simulator = Simulator(control, corp_id, seed=seed, rates=rates, scale=scale)
        shop = shop_of(simulator.behaviours)
        if shop is not None:
            shop.connect(webhook)
        try:
            found = simulator.load()
            _introduce(found, rates, seed, scale)
            _introduce_shop(webhook, running=shop is not None)
            missing = simulator.days_to_backfill(days)
            if missing < days:
                click.echo(
                    f"History: {days - missing} of the {days} days requested are already "
                    f"there; back-filling {missing}."
                )
            if missing:
                _backfill(simulator, missing)
            if follow:
                _follow(simulator, speed)
        except SimulatorError as error:
            click.echo(f"simulate: {error}", err=True)
            return 1
        except httpx.HTTPError as error:
            click.echo(
                f"simulate: cannot talk to the WeCom emulator at {emulator_url} "
                f"({type(error).__name__}: {error}). Start it with `siyu wecom-emulator` "
                "(or `make demo`).",
                err=True,
            )
            return 1
    return 0


def _introduce(found: dict, rates: FunnelRates, seed: int, scale: float) -> None:
    expected = rates.expected(scale)
    click.echo(
        f"Simulating corp {found['corp_id']}: {found['staff']} staff, {found['groups']} groups, "
        f"{found['contact_ways']} channel codes, {found['join_ways']} group codes, "
        f"{found['customers']} customers already there (seed {seed}, scale {scale:g})."
    )
    click.echo(
        f"Funnel per day: {expected['passers_by']:,} passers-by → "
        f"{expected['visitors']:,.0f} visit → {expected['buyers']:,.0f} buy → "
        f"≈{expected['adds']:,.0f} add a staff member on WeCom."
    )


def _introduce_shop(webhook: ShopWebhook | None, *, running: bool) -> None:
    if webhook is None:
        click.echo(
            "Shop: off (no webhook secret: --shop-secret or $SIYU_SHOP_SECRET); no orders sent."
        )
    elif not running:
        click.echo("Shop: not among the simulator's behaviours; no orders sent.")
    else:
        click.echo(
            f"Shop: orders go to {webhook.url} for tenant {webhook.tenant!r}, signed with its "
            "webhook secret."
        )


def _echo_day(report: DayReport, over_bar: bool = False) -> None:
    # on a terminal the progress bar owns the current line: clear it, print, let it redraw
    prefix = "\r\x1b[K" if over_bar and sys.stdout.isatty() else ""
    click.echo(prefix + report.line())


def _backfill(simulator: Simulator, days: int) -> None:
    with click.progressbar(length=days, label=f"Back-filling {days} days of history") as bar:

        def progress(report: DayReport) -> None:
            _echo_day(report, over_bar=True)
            bar.update(1)

        reports = simulator.backfill(days, progress=progress)
    totals = {
        name: sum(getattr(r, name) for r in reports)
        for name in ("adds", "group_joins", "messages", "deletions")
    }
    click.echo(
        f"History done: {totals['adds']} adds, {totals['group_joins']} group joins, "
        f"{totals['messages']} messages, {totals['deletions']} deletions over {days} days."
    )
    orders = sum(r.extra.get("orders", 0) for r in reports)
    if orders:
        revenue = sum(r.extra.get("revenue_fen", 0) for r in reports)
        refunds = sum(r.extra.get("refunds", 0) for r in reports)
        failed = sum(r.extra.get("order_errors", 0) for r in reports)
        click.echo(
            f"Shop: {orders} orders, ¥{revenue / 100:,.2f} paid, {refunds} refunds"
            + (f", {failed} not accepted by Siyu." if failed else ".")
        )


def _follow(simulator: Simulator, speed: float) -> None:
    seconds = DAY / speed
    every = f"{seconds / 60:.1f} minutes" if seconds >= 60 else f"{seconds:.2g} seconds"
    click.echo(f"Live: one simulated day every {every} ({speed:g}× speed). Ctrl-C to stop.")
    stop = threading.Event()
    with _stopping_on_signals(stop):
        # a second Ctrl-C, or Ctrl-C where no signal handler could be set, ends at once
        with contextlib.suppress(KeyboardInterrupt):
            simulator.run_live(speed, stop, progress=_echo_day)
    click.echo("Simulator stopped.")


@contextlib.contextmanager
def _quiet_http_log() -> Iterator[None]:
    """httpx logs every request at INFO: thousands of control calls would bury the days."""
    http_logger = logging.getLogger("httpx")
    level = http_logger.level
    http_logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        http_logger.setLevel(level)


@contextlib.contextmanager
def _stopping_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT / SIGTERM set ``stop`` (the running day ends cleanly) while inside."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():  # asked twice: stop now
            raise KeyboardInterrupt
        stop.set()

    for number in (signal.SIGINT, signal.SIGTERM):
        previous[number] = signal.signal(number, handler)
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
