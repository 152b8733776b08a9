"""The ``siyu`` command: run the platform and administer tenants without the console.

Every command is non-interactive, prints a clear message on bad input and exits non-zero
on failure, so it can be scripted. Writes go through the same services as the console.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import wraps
from typing import Any

import click

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_EMULATOR_PORT = 8081


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "siyu.settings")
    import django

    django.setup()


def django_command(function: Callable[..., Any]) -> Callable[..., Any]:
    """Set Django up before the command and turn service errors into CLI errors."""

    @wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        _setup_django()
        from django.core.exceptions import ImproperlyConfigured
        from django.db import DatabaseError
        from django.utils import translation

        from siyu.core.errors import ServiceError

        try:
            with translation.override(cli_language()):
                return function(*args, **kwargs)
        except ServiceError as error:
            raise click.ClickException(error.message) from error
        except (ImproperlyConfigured, DatabaseError) as error:
            raise click.ClickException(f"{type(error).__name__}: {error}") from error

    return run


def cli_language(environ: Mapping[str, str] | None = None) -> str:
    """The language of the CLI's messages: the shell's locale (``LC_ALL``, ``LC_MESSAGES``,
    ``LANG``, as gettext reads them) when Siyu speaks it, else the configured default.

    ``LANG=en_US.UTF-8 siyu ...`` answers in English, ``zh_CN.UTF-8`` in Chinese; a server's
    neutral ``C.UTF-8`` gets the platform's default language (Chinese).
    """
    from django.conf import settings
    from django.utils.translation import get_supported_language_variant

    environ = os.environ if environ is None else environ
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name, "").split(".")[0].split("@")[0]
        if not value:
            continue
        if value in ("C", "POSIX"):
            break
        code = value.replace("_", "-").lower()
        if code.startswith("zh"):
            code = "zh-hans"  # Siyu's one Chinese: simplified
        try:
            return get_supported_language_variant(code)
        except LookupError:
            break
    return settings.LANGUAGE_CODE


def _tenant(slug: str):
    from siyu.tenancy.models import Tenant

    tenant = Tenant.objects.filter(slug=slug.strip().lower()).first()
    if tenant is None:
        raise click.ClickException(f"No tenant with slug '{slug}' (see: siyu tenant list)")
    return tenant


def _staff(tenant, wecom_userid: str):
    from siyu.tenancy.models import Staff

    staff = Staff.objects.for_tenant(tenant).filter(wecom_userid=wecom_userid).first()
    if staff is None:
        raise click.ClickException(f"No staff with WeCom userid '{wecom_userid}' in {tenant.slug}")
    return staff


def _cli_actor(tenant):
    from siyu.tenancy.services import system_actor

    return system_actor(tenant, channel="cli")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="siyu")
def main() -> None:
    """Siyu (私域): private-domain customer operations for WeCom brands."""


# --- running the platform ---------------------------------------------------------------
@main.command()
@django_command
def migrate() -> None:
    """Create or upgrade the database schema."""
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=1)


@main.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64))
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Serve the console, the API and H5 pages with gunicorn."""
    from siyu.server import run_gunicorn

    _setup_django()
    run_gunicorn(host=host, port=port, workers=workers, threads=threads)


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("huey_options", nargs=-1, type=click.UNPROCESSED)
@django_command
def worker(huey_options: tuple[str, ...]) -> None:
    """Run the background worker (Huey consumer with its periodic scheduler)."""
    from django.conf import settings
    from django.core.management import call_command

    from siyu.analytics.tasks import start_keeper

    mode = "redis" if settings.REDIS_URL else f"sqlite ({settings.HUEY['filename']})"
    click.echo(f"Siyu worker: queue '{settings.HUEY['name']}' on {mode}")
    keeper = start_keeper()
    if keeper is not None:
        click.echo(f"Analytics copy kept current every {keeper.interval:g} s")
    call_command("run_huey", *huey_options)


@main.group()
def analytics() -> None:
    """The analytics engine's columnar copy."""


@analytics.command("predict")
@click.option("--tenant", "slug", default=None, help="One tenant (default: every tenant)")
@django_command
def analytics_predict(slug: str | None) -> None:
    """Fit the buyers' predicted value (what the worker does nightly) from the copy."""
    from siyu.analytics.predictions import refresh_predictions
    from siyu.analytics.store import ColumnarStore
    from siyu.tenancy.models import Tenant

    if slug:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise click.ClickException(f"No tenant {slug!r}")
        tenant_ids = [tenant.pk]
    else:
        tenant_ids = ColumnarStore().tenants("orders")
    if not tenant_ids:
        click.echo("No orders in the analytics copy yet (run 'siyu analytics sync').")
    for tenant_id in tenant_ids:
        report = refresh_predictions(tenant_id)
        reason = f" — skipped: {report.skipped}" if report.skipped else ""
        click.echo(
            f"tenant {tenant_id}: {report.buyers:,} buyers, {report.stored:,} predictions{reason}"
        )


@analytics.command("sync")
@click.option("--rebuild", is_flag=True, help="Forget the copy and copy everything again.")
@django_command
def analytics_sync(rebuild: bool) -> None:
    """Bring the columnar copy up to date now (what the worker does every few seconds)."""
    from siyu.analytics.store import ColumnarStore, WriterBusy
    from siyu.analytics.sync import rebuild as rebuild_copy
    from siyu.analytics.sync import sync

    store = ColumnarStore()
    try:
        if rebuild:
            report = rebuild_copy(store)
        else:
            report = sync(store)
            while report.events:
                more = sync(store)
                if not more.events:
                    break
                report.events += more.events
                click.echo(f"  … {report.events:,} events copied")
    except WriterBusy:
        raise click.ClickException(
            "Another process is writing the analytics copy (a worker's sync); try again."
        ) from None
    click.echo(
        f"Copied {report.events:,} events, {report.customers:,} customer rows and "
        f"{report.orders:,} order rows into {store.root}"
    )


@main.group()
def queue() -> None:
    """Inspect the task queue."""


@queue.command("ping")
@click.option("--timeout", default=20.0, show_default=True, help="Seconds to wait for a worker.")
@django_command
def queue_ping(timeout: float) -> None:
    """Send a task through the queue and wait for a worker to answer."""
    from huey.exceptions import ResultTimeout

    from siyu.core.tasks import echo

    started = time.monotonic()
    result = echo("ping")
    try:
        answer = result.get(blocking=True, timeout=timeout)
    except ResultTimeout:
        answer = None
    if answer is None:
        result.revoke()  # do not leave a stale ping for a worker that starts later
        raise click.ClickException(f"No worker answered within {timeout:g}s")
    elapsed_ms = (time.monotonic() - started) * 1000
    click.echo(f"pong from {answer['host']} pid {answer['pid']} in {elapsed_ms:.0f} ms")


@main.command()
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--emulator-port",
    default=DEFAULT_EMULATOR_PORT,
    show_default=True,
    type=click.IntRange(1, 65535),
)
@click.option("--no-worker", is_flag=True, help="Do not start the background worker.")
@click.option("--no-simulator", is_flag=True, help="Do not run the private-domain simulator.")
@click.option("--seed", default=7, show_default=True, help="Seed of the simulated population.")
@click.option("--days", default=14, show_default=True, help="Days of history to back-fill.")
@click.option("--speed", default=720.0, show_default=True, help="Simulated seconds per second.")
@click.option("--scale", default=0.1, show_default=True, help="Share of the default traffic.")
@django_command
def demo(
    port: int,
    emulator_port: int,
    no_worker: bool,
    no_simulator: bool,
    seed: int,
    days: int,
    speed: float,
    scale: float,
) -> None:
    """Run the whole demo: platform, worker, WeCom emulator and the simulated brand."""
    from django.conf import settings
    from django.core.management import call_command

    from siyu.demo import ensure_demo_data, simulator_shop_options

    call_command("migrate", interactive=False, verbosity=0)
    credentials = ensure_demo_data()
    emulator_url = f"http://{DEFAULT_HOST}:{emulator_port}"
    # The platform reaches the emulator exactly as it reaches WeCom: at the API base URL.
    os.environ["SIYU_WECOM_API_BASE"] = settings.WECOM_API_BASE = f"{emulator_url}/cgi-bin"
    siyu = [sys.executable, "-m", "siyu.cli"]
    processes = {
        "WeCom emulator": [*siyu, "wecom-emulator", "--port", str(emulator_port)],
        "server": [*siyu, "serve", "--port", str(port)],
    }
    if not no_worker:
        processes["worker"] = [*siyu, "worker"]
    with _supervise(processes) as running:
        _wait_until_healthy(f"http://{DEFAULT_HOST}:{port}/healthz", running)
        _wait_until_healthy(f"{emulator_url}/control/snapshot", running)
        _connect_demo_corp(emulator_url, port)
        if not no_simulator:
            shop_options, shop_environment = simulator_shop_options(
                credentials, f"http://{DEFAULT_HOST}:{port}"
            )
            running["simulator"] = subprocess.Popen(
                [
                    *siyu,
                    "simulate",
                    "--emulator-url",
                    emulator_url,
                    "--seed",
                    str(seed),
                    "--days",
                    str(days),
                    "--follow",
                    "--speed",
                    str(speed),
                    "--scale",
                    str(scale),
                    *shop_options,
                ],
                env={**os.environ, **shop_environment},
            )
        click.echo(
            "\n".join(
                [
                    "",
                    click.style("Siyu demo is running", fg="green", bold=True),
                    f"  Console:  http://{DEFAULT_HOST}:{port}/console/",
                    f"  API docs: http://{DEFAULT_HOST}:{port}/api/v1/docs",
                    f"  Login:    {credentials.username} / {credentials.password}",
                    f"  API key:  {credentials.api_key_note}",
                    f"  WeCom emulator: {emulator_url}",
                    f"  Emulated world: {settings.DATA_DIR}/wecom-emulator.json",
                    "  Customers and groups appear in the console as the simulator runs.",
                    "  Stop with Ctrl-C.",
                    "",
                ]
            )
        )
        _wait_for_exit(running)


def _connect_demo_corp(emulator_url: str, port: int) -> None:
    """Set the demo corp up in the emulator, verify the callback URL, sync the directory."""
    from siyu.demo import DEMO_SLUG, assign_demo_roles, emulator_corp
    from siyu.tenancy.models import Tenant
    from siyu.wecom.emulator.server import EmulatorControl
    from siyu.wecom.sync import run_sync_cli

    tenant = Tenant.objects.get(slug=DEMO_SLUG)
    callback_url = f"http://{DEFAULT_HOST}:{port}/wecom/{DEMO_SLUG}/callback"
    with EmulatorControl(emulator_url, corp_id=tenant.wecom_corp_id) as control:
        control.setup_corp(**emulator_corp(tenant, callback_url))
        if not control.verify_callback().get("ok"):
            raise click.ClickException("The emulator could not verify the callback URL")
    if run_sync_cli(DEMO_SLUG, full=True) != 0:
        raise click.ClickException("The first sync of the demo corp failed")
    assign_demo_roles(tenant)


@contextmanager
def _supervise(commands: dict[str, list[str]]) -> Iterator[dict[str, subprocess.Popen]]:
    """Start child processes and stop them all when any exits or on Ctrl-C."""
    running = {name: subprocess.Popen(cmd) for name, cmd in commands.items()}
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        yield running
    except KeyboardInterrupt:
        click.echo("\nStopping…")
    finally:
        signal.signal(signal.SIGTERM, previous)
        for process in running.values():
            if process.poll() is None:
                process.terminate()
        for process in running.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_until_healthy(url: str, running: dict[str, subprocess.Popen]) -> None:
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for name, process in running.items():
            if process.poll() is not None:
                raise click.ClickException(f"The {name} exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise click.ClickException(f"{url} did not answer within 60 s")


def _wait_for_exit(running: dict[str, subprocess.Popen]) -> None:
    while True:
        for name, process in running.items():
            if process.poll() is not None:
                raise click.ClickException(f"The {name} exited with code {process.returncode}")
        time.sleep(0.5)


# --- WeCom ------------------------------------------------------------------------------
@main.command("wecom-emulator")
@click.option("--host", default=DEFAULT_HOST, show_default=True)
@click.option(
    "--port", default=DEFAULT_EMULATOR_PORT, show_default=True, type=click.IntRange(1, 65535)
)
@click.option("--state", "state_path", default=None, help="JSON file of the emulated world.")
@click.option("--seed", default=None, help="Seed of the emulator's id generator.")
def wecom_emulator(host: str, port: int, state_path: str | None, seed: str | None) -> None:
    """Run the local WeCom emulator (a stand-in for Tencent's servers)."""
    from siyu.wecom.emulator import run_emulator

    if state_path is None:
        data_dir = os.environ.get("SIYU_DATA_DIR", os.path.join(os.getcwd(), "var"))
        os.makedirs(data_dir, exist_ok=True)
        state_path = os.path.join(data_dir, "wecom-emulator.json")
    run_emulator(host=host, port=port, state_path=state_path, seed=seed, log_level="warning")


@main.group()
def wecom() -> None:
    """WeCom connection: sync."""


@wecom.command("sync")
@click.option("--tenant", "tenant_slug", default=None, help="Tenant slug (default: all).")
@click.option(
    "--incremental", is_flag=True, help="Only add and update; do not remove what is missing."
)
@django_command
def wecom_sync(tenant_slug: str | None, incremental: bool) -> None:
    """Reconcile staff, departments, tags, customers and groups with WeCom."""
    from siyu.wecom.sync import run_sync_cli

    code = run_sync_cli(tenant_slug, full=not incremental)
    if code:
        raise SystemExit(code)


@main.command()
@click.option(
    "--emulator-url", default=f"http://{DEFAULT_HOST}:{DEFAULT_EMULATOR_PORT}", show_default=True
)
@click.option("--corp-id", default=None, help="Emulated corp (default: the only one).")
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--days", default=7, show_default=True, type=click.IntRange(0, 365))
@click.option("--follow", is_flag=True, help="Keep running live after the back-fill.")
@click.option("--speed", default=720.0, show_default=True, help="Simulated seconds per second.")
@click.option("--scale", default=1.0, show_default=True, help="Share of the default traffic.")
@click.option(
    "--shop-url",
    default=f"http://{DEFAULT_HOST}:{DEFAULT_PORT}",
    show_default=True,
    help="Siyu's base URL: where the simulated shop posts its orders.",
)
@click.option("--shop-tenant", default="", help="Slug of the tenant the shop's orders are for.")
@click.option(
    "--shop-secret",
    envvar="SIYU_SHOP_SECRET",
    default="",
    help="The tenant's webhook secret (better: $SIYU_SHOP_SECRET). Without it the shop "
    "sends no orders.",
)
def simulate(
    emulator_url: str,
    corp_id: str | None,
    seed: int,
    days: int,
    follow: bool,
    speed: float,
    scale: float,
    shop_url: str,
    shop_tenant: str,
    shop_secret: str,
) -> None:
    """Drive the WeCom emulator with a synthetic population (a living private domain)."""
    from siyu.simulator.cli import run_simulate_cli

    code = run_simulate_cli(
        emulator_url=emulator_url,
        corp_id=corp_id,
        seed=seed,
        days=days,
        follow=follow,
        speed=speed,
        scale=scale,
        shop_url=shop_url,
        shop_tenant=shop_tenant,
        shop_secret=shop_secret,
    )
    if code:
        raise SystemExit(code)


# --- tenants ----------------------------------------------------------------------------
@main.group()
def tenant() -> None:
    """Manage tenants (brands)."""


@tenant.command("add")
@click.argument("slug")
@click.option("--name", required=True, help="Brand name shown in the console.")
@click.option("--corp-id", default="", help="WeCom corp id (ww…).")
@click.option("--secret", default="", help="WeCom customer-contact secret.")
@click.option("--callback-token", default="", help="Token of the WeCom callback.")
@click.option("--callback-aes-key", default="", help="EncodingAESKey of the WeCom callback.")
@click.option(
    "--agent-id", default="", help="AgentId of the self-built app (directory, reminders)."
)
@click.option("--agent-secret", default="", help="Secret of that app.")
@django_command
def tenant_add(
    slug: str,
    name: str,
    corp_id: str,
    secret: str,
    callback_token: str,
    callback_aes_key: str,
    agent_id: str,
    agent_secret: str,
) -> None:
    """Create a tenant with its six built-in roles."""
    from siyu.tenancy.services import create_tenant

    created = create_tenant(
        slug=slug,
        name=name,
        wecom_corp_id=corp_id,
        wecom_contact_secret=secret,
        wecom_callback_token=callback_token,
        wecom_callback_aes_key=callback_aes_key,
        wecom_agent_id=agent_id,
        wecom_agent_secret=agent_secret,
    )
    click.echo(f"Created tenant {created.slug} (id {created.pk}): {created.name}")


@tenant.command("list")
@django_command
def tenant_list() -> None:
    """List tenants."""
    from siyu.tenancy.models import Tenant

    for row in Tenant.objects.order_by("slug"):
        status = "active" if row.is_active else "inactive"
        click.echo(f"{row.slug}\t{row.name}\t{row.wecom_corp_id or '-'}\t{status}")


# --- staff and console users ------------------------------------------------------------
@main.group()
def staff() -> None:
    """Manage a tenant's staff."""


@staff.command("add")
@click.option("--tenant", "tenant_slug", required=True, help="Tenant slug.")
@click.option("--userid", required=True, help="The member's WeCom userid.")
@click.option("--name", required=True)
@click.option("--role", "roles", multiple=True, help="Role code (repeatable); default sales.")
@click.option("--department", default=None, help="Department name (created if missing).")
@django_command
def staff_add(
    tenant_slug: str, userid: str, name: str, roles: tuple[str, ...], department: str | None
) -> None:
    """Add a staff member."""
    from siyu.tenancy import services
    from siyu.tenancy.models import Department

    brand = _tenant(tenant_slug)
    actor = _cli_actor(brand)
    dept = None
    if department:
        dept = Department.objects.for_tenant(brand).filter(name=department).first()
        dept = dept or services.create_department(brand, name=department, by=actor)
    member = services.add_staff(
        brand,
        wecom_userid=userid,
        name=name,
        department=dept,
        role_codes=roles or ("sales",),
        by=actor,
    )
    click.echo(f"Added staff {member.name} ({member.wecom_userid}) to {brand.slug}")


@main.group()
def user() -> None:
    """Manage console logins."""


@user.command("add")
@click.option("--tenant", "tenant_slug", required=True, help="Tenant slug.")
@click.option("--staff", "staff_userid", required=True, help="WeCom userid of the staff.")
@click.option("--username", required=True)
@click.option(
    "--password",
    envvar="SIYU_USER_PASSWORD",
    default=None,
    help="Password (or SIYU_USER_PASSWORD); generated and printed when omitted.",
)
@click.option("--superuser", is_flag=True, help="May also manage all tenants.")
@django_command
def user_add(
    tenant_slug: str, staff_userid: str, username: str, password: str | None, superuser: bool
) -> None:
    """Give a staff member a console login."""
    import secrets

    from siyu.tenancy.services import create_console_user

    brand = _tenant(tenant_slug)
    member = _staff(brand, staff_userid)
    generated = password is None
    password = password or secrets.token_urlsafe(12)
    create_console_user(
        member, username=username, password=password, is_superuser=superuser, by=_cli_actor(brand)
    )
    click.echo(f"Created console login '{username}' for {member.name}")
    if generated:
        click.echo(f"Password: {password}")


# --- API keys ---------------------------------------------------------------------------
@main.group()
def apikey() -> None:
    """Manage API keys."""


@apikey.command("add")
@click.option("--tenant", "tenant_slug", required=True, help="Tenant slug.")
@click.option("--name", default="cli", show_default=True, help="What the key is for.")
@click.option(
    "--scopes",
    default="tenant:read,staff:read,events:read",
    show_default=True,
    help="Comma-separated scopes.",
)
@click.option("--staff", "staff_userid", default=None, help="Act as this staff (their scope).")
@click.option("--expires-days", default=None, type=int, help="Expire after N days.")
@django_command
def apikey_add(
    tenant_slug: str, name: str, scopes: str, staff_userid: str | None, expires_days: int | None
) -> None:
    """Create an API key and print it once (it is stored only as a hash)."""
    from siyu.tenancy.services import create_api_key

    brand = _tenant(tenant_slug)
    member = _staff(brand, staff_userid) if staff_userid else None
    key, raw_key = create_api_key(
        brand,
        name=name,
        scopes=[s.strip() for s in scopes.split(",") if s.strip()],
        staff=member,
        expires_in_days=expires_days,
        by=_cli_actor(brand),
    )
    click.echo(f"Created API key {key.prefix} ({', '.join(key.scopes)}). It is shown only once:")
    click.echo(raw_key)


@apikey.command("revoke")
@click.option("--tenant", "tenant_slug", required=True, help="Tenant slug.")
@click.argument("prefix")
@django_command
def apikey_revoke(tenant_slug: str, prefix: str) -> None:
    """Revoke the key with the given prefix."""
    from siyu.tenancy.models import ApiKey
    from siyu.tenancy.services import revoke_api_key

    brand = _tenant(tenant_slug)
    key = ApiKey.objects.for_tenant(brand).filter(prefix=prefix).first()
    if key is None:
        raise click.ClickException(f"No API key with prefix '{prefix}' in {brand.slug}")
    revoke_api_key(key, by=_cli_actor(brand))
    click.echo(f"Revoked API key {prefix}")


# --- customers: import and export ----------------------------------------------------------
REPORT_LINES = 50  # problems of a failed import printed (all are in the job's report file)


@main.group()
def customers() -> None:
    """Import and export customers (CSV or Excel)."""


def _job_actor(brand, staff_userid: str | None):
    """The CLI acts as the platform (every customer), or as a staff with their rights."""
    if not staff_userid:
        return _cli_actor(brand)
    from siyu.tenancy.services import actor_for_staff

    return actor_for_staff(_staff(brand, staff_userid), channel="cli")


def _run_with_progress(job, label: str):
    """Run the job here with a progress bar; if a worker took it first, follow it there."""
    from siyu.core.jobs import execute_job
    from siyu.core.models import BackgroundJob

    with click.progressbar(length=1, label=label, show_percent=True, show_pos=True) as bar:

        def show(done: int, total: int | None) -> None:
            if total:
                bar.length = total
            bar.update(done - bar.pos)

        finished = execute_job(job.tenant_id, job.pk, on_progress=show)
        while finished is None or finished.status in ("queued", "running"):
            time.sleep(0.5)
            finished = BackgroundJob.objects.for_tenant(job.tenant_id).get(pk=job.pk)
            show(finished.done, finished.total)
        if finished.status == "succeeded" and finished.total:
            show(finished.total, finished.total)
    return finished


def _fail(job) -> None:
    """Print why a job failed (an import's problems, row by row) and exit non-zero."""
    click.echo(click.style(job.error or job.get_status_display(), fg="red"), err=True)
    problems = (job.result or {}).get("errors") or []
    for problem in problems[:REPORT_LINES]:
        where = f"row {problem.get('row')}"
        if problem.get("column"):
            where += f", {problem['column']}"
        value = f" ({problem['value']})" if problem.get("value") else ""
        click.echo(f"  {where}: {problem.get('reason')}{value}", err=True)
    count = (job.result or {}).get("error_count", len(problems))
    if count > REPORT_LINES:
        click.echo(
            f"  … and {count - REPORT_LINES} more: the full report is job {job.pk}'s file "
            "(console: Background jobs)",
            err=True,
        )
    raise SystemExit(1)


@customers.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--tenant", "tenant_slug", required=True, help="Tenant slug.")
@click.option("--dry-run", is_flag=True, help="Only check the file; write nothing.")
@click.option(
    "--create-missing", is_flag=True, help="Create customers whose external_userid is unknown."
)
@click.option("--as", "staff_userid", default=None, help="Import as this staff (their rights).")
@django_command
def customers_import(
    path: str, tenant_slug: str, dry_run: bool, create_missing: bool, staff_userid: str | None
) -> None:
    """Import customers from a CSV (UTF-8 or GBK) or .xlsx file: all rows or none."""
    from siyu.customers.imports import start_import

    brand = _tenant(tenant_slug)
    with open(path, "rb") as handle:
        content = handle.read()
    job = start_import(
        _job_actor(brand, staff_userid),
        filename=os.path.basename(path),
        content=content,
        dry_run=dry_run,
        create_missing=create_missing,
        enqueue=False,
    )
    finished = _run_with_progress(job, "Checking" if dry_run else "Importing")
    if finished.status != "succeeded":
        _fail(finished)
    result = finished.result
    verb = "Checked" if dry_run else "Imported"
    click.echo(
        f"{verb} {result.get('rows', 0)} rows: {result.get('created', 0)} new, "
        f"{result.get('updated', 0)} changed, {result.get('unchanged', 0)} unchanged"
        + (" (dry run: nothing written)" if dry_run else "")
    )


@customers.command("export")
@click.option("--tenant", "tenant_slug", required=True, help="Tenant slug.")
@click.option("--segment", "segment_id", type=int, default=None, help="Only this segment.")
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["csv", "xlsx"]),
    default=None,
    help="File format (default: from the file name, else xlsx).",
)
@click.option("--columns", default="", help="Comma-separated column keys (default: all).")
@click.option("--stage", "stages", multiple=True, help="Lifecycle stage (repeatable).")
@click.option("--status", default="", help="active or lost.")
@click.option("--as", "staff_userid", default=None, help="Export as this staff (their scope).")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False))
@django_command
def customers_export(
    tenant_slug: str,
    segment_id: int | None,
    file_format: str | None,
    columns: str,
    stages: tuple[str, ...],
    status: str,
    staff_userid: str | None,
    output: str,
) -> None:
    """Export customers (all, or a segment's) to a CSV or .xlsx file."""
    import shutil

    from siyu.customers.exports import start_export

    brand = _tenant(tenant_slug)
    if file_format is None:
        file_format = "csv" if output.lower().endswith(".csv") else "xlsx"
    selection = {
        "format": file_format,
        "segment_id": segment_id,
        "columns": [c.strip() for c in columns.split(",") if c.strip()],
        "stage": list(stages),
        "status": status,
    }
    job = start_export(_job_actor(brand, staff_userid), selection, enqueue=False)
    finished = _run_with_progress(job, "Exporting")
    if finished.status != "succeeded":
        _fail(finished)
    with finished.output_file.open("rb") as source, open(output, "wb") as target:
        shutil.copyfileobj(source, target)
    click.echo(f"Wrote {finished.result.get('rows', 0)} customers to {output}")


@main.group()
def jobs() -> None:
    """Background jobs (imports, exports, bulk tagging …)."""


@jobs.command("list")
@click.option("--tenant", "tenant_slug", required=True, help="Tenant slug.")
@click.option("--status", default=None, help="Only jobs in this status.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@django_command
def jobs_list(tenant_slug: str, status: str | None, limit: int) -> None:
    """The tenant's latest jobs: id, status, progress, kind, description."""
    from siyu.core.jobs import visible_jobs

    rows = visible_jobs(_cli_actor(_tenant(tenant_slug)))
    if status:
        rows = rows.filter(status=status)
    for job in rows.order_by("-id")[:limit]:
        percent = "-" if job.percent is None else f"{job.percent}%"
        click.echo(f"{job.pk}\t{job.status}\t{percent}\t{job.kind}\t{job.label}")


@jobs.command("cancel")
@click.option("--tenant", "tenant_slug", required=True, help="Tenant slug.")
@click.argument("job_id", type=int)
@django_command
def jobs_cancel(tenant_slug: str, job_id: int) -> None:
    """Cancel a queued or running job."""
    from siyu.core.jobs import cancel_job

    job = cancel_job(_cli_actor(_tenant(tenant_slug)), job_id)
    click.echo(f"Cancelled job {job.pk}: {job.label}")


if __name__ == "__main__":
    main()
