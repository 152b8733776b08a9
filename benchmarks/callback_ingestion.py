"""Benchmark: WeCom callback ingestion, against a bare Django view on the same server.

Issue target (2-core machine): ≥ 300 encrypted ``add_external_contact`` callbacks/s
acknowledged with p99 ack latency < 100 ms, and processing keeps up (the inbox backlog
drains) at 100 events/s sustained for a minute.

Everything runs for real, in subprocesses, with a temporary ``SIYU_DATA_DIR``:
``siyu migrate``, ``siyu tenant add`` / ``siyu staff add``, the local WeCom emulator (the
processors' ``externalcontact/get`` goes there, through ``SIYU_WECOM_API_BASE``), the server
(``siyu serve --workers 2 --threads 4``: gunicorn) and one worker (``siyu worker``). An
httpx async client on loopback then measures, in one run:

1. baseline: ``POST /ping`` (a bare view: same middleware, no database) with the same body
   size and the same number of connections;
2. burst: encrypted callbacks, each for a new ExternalUserID (a new inbox row), from N
   concurrent connections for D seconds: acknowledged/s, ack latency p50/p99/max, errors,
   ratios against the baseline; then the inbox is watched until the worker has drained the
   burst: processed events/s;
3. target rate: callbacks offered at 300/s for 10 s whatever the answers (open loop), the
   ack latency p50/p99 judged against the target. The burst's closed loop cannot show it: N
   connections waiting on each other see a mean latency of N / throughput (Little's law),
   107 ms for 32 connections at 300/s, however fast each callback is handled;
4. sustained: callbacks at a fixed rate (100/s) for 60 s, the inbox backlog sampled every
   second; processed events/s, the largest backlog, and whether the backlog drained within a
   few seconds after the load stopped.

Run: ``.venv/bin/python benchmarks/callback_ingestion.py`` (about 3–5 minutes) or with
``--quick`` (about a minute). The database is SQLite unless ``SIYU_BENCH_DATABASE_URL`` is
set (and the queue SQLite unless ``SIYU_BENCH_REDIS_URL`` is). Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from siyu.wecom.crypto import WeComCrypto, envelope_xml

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
STAFF_COUNT = 4
DONE = ("processed", "ignored", "failed")

ADD_EXTERNAL_CONTACT_XML = (
    "<xml>"
    "<ToUserName><![CDATA[{corp_id}]]></ToUserName>"
    "<FromUserName><![CDATA[sys]]></FromUserName>"
    "<CreateTime>{create_time}</CreateTime>"
    "<MsgType><![CDATA[event]]></MsgType>"
    "<Event><![CDATA[change_external_contact]]></Event>"
    "<ChangeType><![CDATA[add_external_contact]]></ChangeType>"
    "<UserID><![CDATA[{userid}]]></UserID>"
    "<ExternalUserID><![CDATA[{external_userid}]]></ExternalUserID>"
    "<State><![CDATA[{state}]]></State>"
    "<WelcomeCode><![CDATA[{welcome_code}]]></WelcomeCode>"
    "</xml>"
)


# --- plumbing: ports, subprocesses, the Siyu CLI --------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Children:
    """The subprocesses this benchmark started; all stopped (by pid) on exit."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 (closed with the child)
        process = subprocess.Popen(
            args,
            env=self.env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop them in order
        )
        process.log = log  # type: ignore[attr-defined]
        self.running[name] = process
        return process

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each child with its descendants, and by this process
        (the load client). Linux /proc; empty elsewhere."""
        tick = os.sysconf("SC_CLK_TCK")
        usage: dict[int, float] = {}
        parents: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            pid = int(stat.parent.name)
            parents[pid] = int(fields[1])
            usage[pid] = (int(fields[11]) + int(fields[12])) / tick
        totals = {"client": sum(os.times()[:2])}
        for name, process in self.running.items():
            tree, frontier = {process.pid}, [process.pid]
            while frontier:
                parent = frontier.pop()
                for pid, ppid in parents.items():
                    if ppid == parent and pid not in tree:
                        tree.add(pid)
                        frontier.append(pid)
            totals[name] = sum(usage.get(pid, 0.0) for pid in tree)
        return totals

    def check(self) -> None:
        for name, process in self.running.items():
            if process.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the {name} exited with code {process.returncode}:\n{tail}")

    def stop_all(self) -> None:
        for process in reversed(self.running.values()):
            if process.poll() is None:
                process.terminate()
        for process in reversed(self.running.values()):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # its own group (new session)
                process.wait(timeout=5)
            process.log.close()  # type: ignore[attr-defined]
        self.running.clear()


def siyu_cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [PYTHON, "-m", "siyu.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"siyu {' '.join(args[:2])} failed:\n{result.stdout}{result.stderr}")
    return result.stdout.strip()


def wait_http(url: str, children: Children, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children.check()
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


# --- the inbox, read from outside the server ------------------------------------------------
class SqliteInbox:
    """The inbox and the task queue read straight from their SQLite files, read-only (no
    Django in this process)."""

    def __init__(self, data_dir: Path, tenant_slug: str, queue_name: str) -> None:
        self._db = self._open(data_dir / "siyu.sqlite3")
        self._queue = self._open(data_dir / "queue.sqlite3")
        self._queue_name = queue_name
        row = self._db.execute("SELECT id FROM tenancy_tenant WHERE slug = ?", (tenant_slug,))
        self.tenant_id = row.fetchone()[0]

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    def counts(self, after_id: int) -> Counter:
        """Inbox rows by status (id > after_id), and ``queued``: tasks waiting in the queue."""
        rows = self._db.execute(
            "SELECT status, COUNT(*) FROM wecom_callbackinbox"
            " WHERE tenant_id = ? AND id > ? GROUP BY status",
            (self.tenant_id, after_id),
        )
        counts = Counter(dict(rows.fetchall()))
        queued = self._queue.execute(
            "SELECT COUNT(*) FROM task WHERE queue = ?", (self._queue_name,)
        ).fetchone()
        counts["queued"] = int(queued[0])
        return counts

    def max_id(self) -> int:
        row = self._db.execute(
            "SELECT COALESCE(MAX(id), 0) FROM wecom_callbackinbox WHERE tenant_id = ?",
            (self.tenant_id,),
        ).fetchone()
        return int(row[0])

    def delays(self, after_id: int) -> list[float]:
        """Seconds from receipt to the end of processing, per processed row."""
        rows = self._db.execute(
            "SELECT received_at, processed_at FROM wecom_callbackinbox"
            " WHERE tenant_id = ? AND id > ? AND processed_at IS NOT NULL",
            (self.tenant_id, after_id),
        )
        return [
            (datetime.fromisoformat(done) - datetime.fromisoformat(received)).total_seconds()
            for received, done in rows.fetchall()
        ]

    def close(self) -> None:
        self._db.close()
        self._queue.close()


class DjangoInbox:
    """The inbox through a helper process with the server's environment (any database)."""

    def __init__(self, env: dict[str, str], tenant_slug: str) -> None:
        self._process = subprocess.Popen(
            [PYTHON, __file__, "--inbox-probe", tenant_slug],
            env=env,
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def _ask(self, op: str, after_id: int = 0) -> Any:
        assert self._process.stdin and self._process.stdout
        self._process.stdin.write(json.dumps({"op": op, "after_id": after_id}) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the inbox probe exited")
        return json.loads(line)

    def counts(self, after_id: int) -> Counter:
        return Counter(self._ask("counts", after_id))

    def max_id(self) -> int:
        return int(self._ask("max_id"))

    def delays(self, after_id: int) -> list[float]:
        return list(self._ask("delays", after_id))

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)


def inbox_probe_main(tenant_slug: str) -> None:
    """``--inbox-probe``: answer inbox questions (JSON lines on stdin/stdout) via Django."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "siyu.settings")
    import django

    django.setup()
    from django.db import close_old_connections
    from django.db.models import Count, Max
    from huey.contrib.djhuey import HUEY

    from siyu.tenancy.models import Tenant
    from siyu.wecom.models import CallbackInbox

    tenant = Tenant.objects.get(slug=tenant_slug)
    for line in sys.stdin:
        request = json.loads(line)
        rows = CallbackInbox.objects.for_tenant(tenant).filter(id__gt=request["after_id"])
        if request["op"] == "counts":
            answer: Any = {
                r["status"]: r["n"]
                for r in rows.order_by().values("status").annotate(n=Count("id"))
            }
            answer["queued"] = HUEY.pending_count()
        elif request["op"] == "max_id":
            answer = rows.aggregate(m=Max("id"))["m"] or 0
        else:
            answer = [
                (done - received).total_seconds()
                for received, done in rows.filter(processed_at__isnull=False).values_list(
                    "received_at", "processed_at"
                )
            ]
        print(json.dumps(answer), flush=True)
        close_old_connections()


# --- callbacks as WeCom sends them ----------------------------------------------------------
@dataclass
class Corp:
    corp_id: str
    contact_secret: str
    token: str
    aes_key: str
    slug: str
    staff: list[str]
    run: str

    @classmethod
    def generate(cls) -> Corp:
        run = secrets.token_hex(3)
        return cls(
            corp_id=f"wwbench{run}",
            contact_secret=secrets.token_urlsafe(32),
            token=secrets.token_hex(16),
            aes_key=base64.b64encode(os.urandom(32)).decode()[:43],
            slug=f"bench-{run}",
            staff=[f"bench_staff_{n}" for n in range(1, STAFF_COUNT + 1)],
            run=run,
        )

    def external_userid(self, n: int) -> str:
        return f"wmbench{self.run}{n:010d}"


class CallbackMaker:
    """Encrypted, signed ``add_external_contact`` callbacks, as WeCom POSTs them."""

    def __init__(self, corp: Corp, path: str) -> None:
        self.corp = corp
        self.path = path
        self.crypto = WeComCrypto(corp.token, corp.aes_key, corp.corp_id)

    def make(self, n: int) -> tuple[str, bytes]:
        corp = self.corp
        plaintext = ADD_EXTERNAL_CONTACT_XML.format(
            corp_id=corp.corp_id,
            create_time=int(time.time()),
            userid=corp.staff[n % len(corp.staff)],
            external_userid=corp.external_userid(n),
            state="bench",
            welcome_code=secrets.token_urlsafe(32),
        )
        message = self.crypto.encrypt_message(plaintext, nonce=str(secrets.randbelow(10**10)))
        url = (
            f"{self.path}?msg_signature={message.msg_signature}"
            f"&timestamp={message.timestamp}&nonce={message.nonce}"
        )
        return url, envelope_xml(corp.corp_id, message).encode()


# --- the load -------------------------------------------------------------------------------
@dataclass
class Load:
    """What a load phase measured."""

    name: str
    sent: int = 0
    ok: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process, this phase

    def cpu_line(self) -> str:
        if not self.cpu or not self.elapsed:
            return "-"
        cores = ", ".join(f"{name} {sec / self.elapsed:.2f}" for name, sec in self.cpu.items())
        per_request = self.cpu.get("server", 0.0) / self.ok * 1000 if self.ok else math.nan
        return f"cores busy: {cores}; server CPU {per_request:.2f} ms/request"

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile of the successful requests' latency, in ms."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        return ordered[rank - 1] * 1000

    @property
    def max_ms(self) -> float:
        return max(self.latencies) * 1000 if self.latencies else math.nan


class ProtocolError(Exception):
    """The server's answer is not the HTTP/1.1 this client understands."""


class HttpxClient:
    """httpx's AsyncClient with one pool of ``connections`` keep-alive connections."""

    def __init__(self, base_url: str, connections: int) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self._client = httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30.0)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        response = await self._client.post(path, content=body, headers={"Content-Type": "text/xml"})
        return response.status_code, response.content

    async def warm(self, connections: int) -> None:
        await asyncio.gather(*(self._client.get("/ping") for _ in range(connections)))

    async def aclose(self) -> None:
        await self._client.aclose()


class _RawConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.uses = 0
        self.open = True

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        await self.writer.drain()
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status, length, close = int(head[0].split(" ", 2)[1]), None, False
        for line in head[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection":
                close = value == "close"
            elif name == "transfer-encoding":
                raise ProtocolError(f"Transfer-Encoding {value} is not supported")
        if length is None:
            raise ProtocolError("no Content-Length")
        content = await self.reader.readexactly(length)
        self.uses += 1
        if close:
            self.close()
        return status, content

    def close(self) -> None:
        self.open = False
        self.writer.close()


class RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: ``connections`` connections,
    requests built as bytes. It costs the load generator ~0.1 ms of CPU per request where
    httpx costs 1.2–3 ms on a small machine, which would otherwise leave the client, not the
    server, as the bottleneck of the baseline (see benchmarks/README.md)."""

    def __init__(self, base_url: str, connections: int) -> None:
        url = httpx.URL(base_url)
        self.host, self.port = url.host, url.port or 80
        self._slots = asyncio.Semaphore(connections)
        self._idle: list[_RawConnection] = []  # LIFO: the fewest connections stay busy
        self._all: list[_RawConnection] = []

    def _request(self, method: str, path: str, body: bytes) -> bytes:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: text/xml\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def _connect(self) -> _RawConnection:
        connection = _RawConnection(*await asyncio.open_connection(self.host, self.port))
        self._all.append(connection)
        return connection

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        data = self._request(method, path, body)
        async with self._slots, asyncio.timeout(30):
            connection = None
            while self._idle and connection is None:
                candidate = self._idle.pop()
                if candidate.open and not candidate.reader.at_eof():
                    connection = candidate
                else:
                    candidate.close()  # the server closed it while it was idle (keep-alive)
            connection = connection or await self._connect()
            try:
                answer = await connection.exchange(data)
            except (OSError, asyncio.IncompleteReadError):
                connection.close()
                if not connection.uses:
                    raise
                # A kept-alive connection the server had just closed: once more, on a new one.
                connection = await self._connect()
                answer = await connection.exchange(data)
            if connection.open:
                self._idle.append(connection)
            return answer

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        return await self.request("POST", path, body)

    async def warm(self, connections: int) -> None:
        """Open the connections first: the figures are of requests, not of TCP handshakes."""
        fresh = await asyncio.gather(*(self._connect() for _ in range(connections)))
        await asyncio.gather(*(c.exchange(self._request("GET", "/ping", b"")) for c in fresh))
        self._idle.extend(c for c in fresh if c.open)

    async def aclose(self) -> None:
        for connection in self._all:
            if connection.open:
                connection.close()


CLIENTS = {"raw": RawClient, "httpx": HttpxClient}
CLIENT_ERRORS = (httpx.HTTPError, OSError, asyncio.IncompleteReadError, ProtocolError, TimeoutError)


@contextlib.asynccontextmanager
async def load_client(kind: str, base_url: str, connections: int, warm: int):
    client = CLIENTS[kind](base_url, connections)
    try:
        await client.warm(warm)
        yield client
    finally:
        await client.aclose()


async def _post(client: Any, load: Load, url: str, body: bytes, started: float) -> None:
    load.sent += 1
    try:
        status, content = await client.post(url, body)
    except CLIENT_ERRORS as error:
        load.errors[type(error).__name__] += 1
        return
    latency = time.perf_counter() - started
    if status == 200 and content == b"success":
        load.ok += 1
        load.latencies.append(latency)
    else:
        load.errors[f"HTTP {status} {content[:40]!r}"] += 1


async def closed_loop(
    kind: str,
    base_url: str,
    requests: Iterator[tuple[str, bytes]],
    connections: int,
    seconds: float,
    name: str,
) -> Load:
    """``connections`` users, each posting its next request as soon as the last is answered."""
    load = Load(name)
    async with load_client(kind, base_url, connections, connections) as client:
        started = time.perf_counter()
        deadline = started + seconds

        async def user() -> None:
            while time.perf_counter() < deadline:
                url, body = next(requests)
                await _post(client, load, url, body, time.perf_counter())

        await asyncio.gather(*(user() for _ in range(connections)))
        load.elapsed = time.perf_counter() - started
    return load


async def open_loop(
    kind: str,
    base_url: str,
    requests: Iterator[tuple[str, bytes]],
    connections: int,
    rate: float,
    seconds: float,
    name: str,
) -> Load:
    """Requests at a fixed rate whatever the answers; latency counts from the scheduled time
    (a late answer delays nothing else, so a slow server cannot hide behind the client)."""
    load = Load(name)
    async with load_client(kind, base_url, connections, min(connections, 8)) as client:
        started = time.perf_counter()
        pending: set[asyncio.Task] = set()
        for n in range(int(rate * seconds)):
            scheduled = started + n / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            url, body = next(requests)
            task = asyncio.create_task(_post(client, load, url, body, scheduled))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        load.elapsed = time.perf_counter() - started
    return load


async def measured(children: Children, phase: Any) -> Load:
    """Run a load phase and note the CPU each process used meanwhile."""
    before = children.cpu()
    load = await phase
    after = children.cpu()
    load.cpu = {name: after[name] - before.get(name, 0.0) for name in after}
    return load


def inbox_statuses(counts: Counter) -> Counter:
    """The inbox rows by status, without the task queue's count."""
    return Counter({k: v for k, v in counts.items() if k != "queued"})


@dataclass
class Watch:
    """Samples of the inbox of one phase (rows with id > after_id) every second."""

    samples: list[tuple[float, Counter]] = field(default_factory=list)

    def done(self, index: int = -1) -> int:
        return sum(self.samples[index][1][s] for s in DONE)

    def pending(self, index: int = -1) -> int:
        return self.samples[index][1]["pending"]


async def watch_inbox(inbox: Any, after_id: int, watch: Watch, stop: asyncio.Event) -> None:
    started = time.perf_counter()
    while True:
        counts = await asyncio.to_thread(inbox.counts, after_id)
        watch.samples.append((time.perf_counter() - started, counts))
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)


async def wait_drained(
    inbox: Any, after_id: int, watch: Watch, expected: int, timeout: float, started: float
) -> float | None:
    """Sample until every one of ``expected`` rows is done; return when (from ``started``)."""
    deadline = time.perf_counter() + timeout
    while True:
        counts = await asyncio.to_thread(inbox.counts, after_id)
        now = time.perf_counter()
        watch.samples.append((now - started, counts))
        if sum(counts[s] for s in DONE) >= expected and not counts["pending"]:
            return now - started
        if now >= deadline:
            return None
        await asyncio.sleep(0.25 if now - started < 30 else 1.0)


async def wait_queue_empty(inbox: Any, timeout: float) -> float | None:
    """Wait until no task waits in the queue (event handlers, tasks of rows a sweep did)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        counts = await asyncio.to_thread(inbox.counts, 2**62)
        if not counts["queued"]:
            return time.perf_counter() - started
        await asyncio.sleep(0.5)
    return None


# --- set-up ---------------------------------------------------------------------------------
def benchmark_env(
    data_dir: Path, emulator_port: int, corp: Corp, worker_threads: int | None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIYU_")}
    env.update(
        {
            "SIYU_DATA_DIR": str(data_dir),
            "SIYU_WECOM_API_BASE": f"http://127.0.0.1:{emulator_port}/cgi-bin",
            "SIYU_QUEUE_NAME": f"siyu-bench-{corp.run}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if os.environ.get("SIYU_BENCH_DATABASE_URL"):
        env["SIYU_DATABASE_URL"] = os.environ["SIYU_BENCH_DATABASE_URL"]
    if os.environ.get("SIYU_BENCH_REDIS_URL"):
        env["SIYU_REDIS_URL"] = os.environ["SIYU_BENCH_REDIS_URL"]
    if worker_threads:
        env["SIYU_WORKER_THREADS"] = str(worker_threads)
    if os.environ.get("SIYU_WORKER_TYPE"):
        env["SIYU_WORKER_TYPE"] = os.environ["SIYU_WORKER_TYPE"]
    return env


async def befriend(emulator_url: str, corp: Corp, numbers: range) -> None:
    """Customers in the emulator, each a friend of one staff (so externalcontact/get answers).

    In batches through ``/control/bulk/customers`` (existing friendships, no callbacks), or
    one ``/control/add-contact`` each on an emulator without it; the corp has no callback URL
    yet, so the emulator delivers no callbacks for these either way."""

    def spec(n: int) -> dict[str, Any]:
        return {
            "external_userid": corp.external_userid(n),
            "name": f"客户{n}",
            "follows": [{"userid": corp.staff[n % len(corp.staff)], "state": "bench"}],
        }

    async with httpx.AsyncClient(base_url=emulator_url, timeout=120) as client:
        batch = 2000
        for start in range(numbers.start, numbers.stop, batch):
            chunk = range(start, min(start + batch, numbers.stop))
            response = await client.post(
                "/control/bulk/customers",
                json={"corp_id": corp.corp_id, "customers": [spec(n) for n in chunk]},
            )
            if response.status_code == 404 and start == numbers.start:
                break  # an emulator without the bulk action
            response.raise_for_status()
        else:
            return
        queue = iter(numbers)

        async def one() -> None:
            for n in queue:
                response = await client.post(
                    "/control/add-contact",
                    json={
                        "corp_id": corp.corp_id,
                        "userid": corp.staff[n % len(corp.staff)],
                        "customer": {"external_userid": corp.external_userid(n), "name": f"客{n}"},
                        "state": "bench",
                    },
                )
                response.raise_for_status()

        await asyncio.gather(*(one() for _ in range(8)))


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the run --------------------------------------------------------------------------------
@dataclass
class Results:
    ping: Load | None = None
    burst: Load | None = None
    burst_rows: int = 0
    burst_beyond_pool: int = 0
    burst_drained_after: float | None = None
    burst_processed_rate: float = math.nan
    burst_drain_rate: float = math.nan
    burst_statuses: Counter = field(default_factory=Counter)
    at_target: Load | None = None
    sustain: Load | None = None
    sustain_watch: Watch = field(default_factory=Watch)
    sustain_processed_rate: float = math.nan
    sustain_max_backlog: int = 0
    sustain_max_queued: int = 0
    sustain_drained_after: float | None = None
    sustain_statuses: Counter = field(default_factory=Counter)
    sustain_delays: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run(args: argparse.Namespace) -> Results:
    corp = Corp.generate()
    data_dir = Path(tempfile.mkdtemp(prefix="siyu-bench-"))
    server_port, emulator_port = free_port(), free_port()
    env = benchmark_env(data_dir, emulator_port, corp, args.worker_threads)
    server_url = f"http://127.0.0.1:{server_port}"
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    callback_path = f"/wecom/{corp.slug}/callback"
    children = Children(env, data_dir)
    inbox: Any = None
    results = Results()
    log(f"data dir {data_dir} (logs there); server :{server_port}, emulator :{emulator_port}")
    try:
        log("siyu migrate, tenant add, staff add …")
        siyu_cli(env, "migrate")
        siyu_cli(
            env,
            *("tenant", "add", corp.slug, "--name", "Benchmark brand"),
            *("--corp-id", corp.corp_id, "--secret", corp.contact_secret),
            *("--callback-token", corp.token, "--callback-aes-key", corp.aes_key),
        )
        for userid in corp.staff:
            siyu_cli(
                env, "staff", "add", "--tenant", corp.slug, "--userid", userid, "--name", userid
            )

        log("starting the WeCom emulator, the server and the worker …")
        state_path = str(data_dir / "emulator.json")
        children.start(
            "emulator",
            [
                PYTHON,
                "-c",
                "from siyu.wecom.emulator import run_emulator; run_emulator("
                f"port={emulator_port}, state_path={state_path!r}, log_level='warning')",
            ],
        )
        server_options = ["--workers", str(args.server_workers)]
        server_options += ["--threads", str(args.server_threads)]
        children.start(
            "server",
            [PYTHON, "-m", "siyu.cli", "serve", "--port", str(server_port), *server_options],
        )
        children.start("worker", [PYTHON, "-m", "siyu.cli", "worker"])
        wait_http(f"{emulator_url}/", children)
        from siyu.wecom.emulator import EmulatorControl

        control = EmulatorControl(emulator_url, corp_id=corp.corp_id)
        control.setup_corp(
            corp.corp_id,
            name="Benchmark corp",
            contact_secret=corp.contact_secret,
            token=corp.token,
            encoding_aes_key=corp.aes_key,
            staff=[{"userid": u, "name": u, "department": [1]} for u in corp.staff],
        )
        wait_http(f"{server_url}/healthz", children)
        log(siyu_cli(env, "queue", "ping", "--timeout", "60"))
        if "SIYU_DATABASE_URL" in env or "SIYU_REDIS_URL" in env:
            inbox = DjangoInbox(env, corp.slug)
        else:
            inbox = SqliteInbox(data_dir, corp.slug, env["SIYU_QUEUE_NAME"])

        maker = CallbackMaker(corp, callback_path)
        asyncio.run(phases(args, corp, maker, control, children, inbox, server_url, results))
        control.close()
    finally:
        if inbox is not None:
            inbox.close()
        children.stop_all()
        if args.keep:
            results.notes.append(f"logs and databases kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    return results


async def phases(
    args: argparse.Namespace,
    corp: Corp,
    maker: CallbackMaker,
    control: Any,
    children: Children,
    inbox: Any,
    server_url: str,
    results: Results,
) -> None:
    emulator_url = control.base_url
    connections, seconds = args.connections, args.seconds

    # The customers the callbacks name, in the emulator (so that externalcontact/get answers):
    # enough for a burst at --pool-rate/s (well above the target) and for the sustained phase.
    burst_pool = int(args.pool_rate * seconds)
    target_count = int(args.target_rate * args.target_seconds)
    sustain_count = int(args.rate * args.sustain_seconds)
    total = burst_pool + target_count + sustain_count
    log(f"creating {total} customers in the emulator …")
    t0 = time.perf_counter()
    await befriend(emulator_url, corp, range(total))
    log(f"    done in {time.perf_counter() - t0:.1f} s")
    log(f"encrypting {burst_pool} callbacks …")
    burst_requests = [maker.make(n) for n in range(burst_pool)]
    # Only now does WeCom (the emulator) know where to call: it checks the URL as WeCom does.
    control.setup_corp(
        corp.corp_id,
        contact_secret=corp.contact_secret,
        token=corp.token,
        encoding_aes_key=corp.aes_key,
        callback_url=f"{server_url}/wecom/{corp.slug}/callback",
    )
    verified = control.verify_callback()
    if not verified.get("ok"):
        raise RuntimeError(f"the emulator could not verify the callback URL: {verified}")

    # 1. baseline: the bare view, the same body size, the same client.
    log(f"1/4 baseline: POST /ping, {connections} connections, {seconds:g} s …")
    _, sample_body = maker.make(0)
    results.ping = await measured(
        children,
        closed_loop(
            args.client,
            server_url,
            iter(lambda: ("/ping", sample_body), None),
            connections,
            seconds,
            "ping",
        ),
    )
    children.check()
    ping = results.ping
    log(
        f"    {ping.rate:.0f}/s, p50 {ping.percentile(50):.1f} ms, p99 {ping.percentile(99):.1f} ms"
    )
    log(f"    {ping.cpu_line()}")

    # 2. burst: as many callbacks as N connections get acknowledged in D seconds.
    beyond = iter(range(total, 10**9))  # past the pool: customers the emulator does not know

    def burst_iter() -> Iterator[tuple[str, bytes]]:
        yield from burst_requests
        while True:
            results.burst_beyond_pool += 1
            yield maker.make(next(beyond))

    before_burst = await asyncio.to_thread(inbox.max_id)
    log(f"2/4 burst: encrypted add_external_contact, {connections} connections, {seconds:g} s …")
    watch = Watch()
    stop = asyncio.Event()
    started = time.perf_counter()
    watcher = asyncio.create_task(watch_inbox(inbox, before_burst, watch, stop))
    results.burst = await measured(
        children,
        closed_loop(args.client, server_url, burst_iter(), connections, seconds, "callback"),
    )
    load_stopped = time.perf_counter() - started
    stop.set()
    await watcher
    children.check()
    burst = results.burst
    log(
        f"    {burst.rate:.0f}/s acknowledged, p50 {burst.percentile(50):.1f} ms, "
        f"p99 {burst.percentile(99):.1f} ms, errors {sum(burst.errors.values())}"
    )
    log(f"    {burst.cpu_line()}")
    counts = await asyncio.to_thread(inbox.counts, before_burst)
    results.burst_rows = sum(inbox_statuses(counts).values())
    done_at_stop = sum(counts[s] for s in DONE)
    log(
        f"    {results.burst_rows} inbox rows, {done_at_stop} already processed; "
        f"waiting for the worker to drain the rest (≤ {args.drain_timeout:g} s) …"
    )
    drained = await wait_drained(inbox, before_burst, watch, burst.ok, args.drain_timeout, started)
    results.burst_statuses = inbox_statuses(await asyncio.to_thread(inbox.counts, before_burst))
    done = sum(results.burst_statuses[s] for s in DONE)
    end = drained if drained is not None else watch.samples[-1][0]
    results.burst_drained_after = drained
    results.burst_processed_rate = done / end if end else math.nan
    if end > load_stopped:
        results.burst_drain_rate = (done - done_at_stop) / (end - load_stopped)
    log(
        f"    processed {done} in {end:.1f} s: {results.burst_processed_rate:.1f}/s overall, "
        f"{results.burst_drain_rate:.1f}/s once the load stopped; "
        f"statuses {dict(results.burst_statuses)}"
    )
    if drained is None:
        results.notes.append(
            f"the burst's backlog had not drained after {args.drain_timeout:g} s: the sustained "
            "phase shares the worker with what is left"
        )

    # The burst leaves tasks behind its rows (event handlers; a row's own task when the
    # minute's sweep got to the row first): let the worker finish them, so that the sustained
    # phase starts with an empty queue (it is first in, first out).
    settled = await wait_queue_empty(inbox, args.drain_timeout)
    log(
        "    the task queue emptied "
        + (f"{settled:.1f} s later" if settled is not None else "not in time")
    )

    # 3. the target rate, offered whatever the answers (open loop): the latency a callback
    # sees when WeCom sends 300/s. (In the closed-loop burst, N connections wait on each
    # other: by Little's law the mean latency there is N / throughput, 107 ms for 32
    # connections at 300/s, whatever the server does.)
    log(
        f"3/4 target rate: {args.target_rate:g} callbacks/s offered for "
        f"{args.target_seconds:g} s (open loop) …"
    )
    target_requests = (maker.make(n) for n in range(burst_pool, burst_pool + target_count))
    before_target = await asyncio.to_thread(inbox.max_id)
    started = time.perf_counter()
    results.at_target = await measured(
        children,
        open_loop(
            args.client,
            server_url,
            target_requests,
            connections,
            args.target_rate,
            args.target_seconds,
            "target",
        ),
    )
    children.check()
    at_target = results.at_target
    log(
        f"    {at_target.ok} acknowledged at {at_target.ok / at_target.elapsed:.0f}/s, "
        f"p50 {at_target.percentile(50):.1f} ms, p99 {at_target.percentile(99):.1f} ms, "
        f"errors {sum(at_target.errors.values())}"
    )
    log(f"    {at_target.cpu_line()}")
    drained = await wait_drained(
        inbox, before_target, Watch(), at_target.ok, args.drain_timeout, started
    )
    settled = await wait_queue_empty(inbox, args.drain_timeout)
    log(
        "    processed "
        + (f"{drained:.1f} s after the phase began" if drained is not None else "not in time")
        + "; the task queue emptied "
        + (f"{settled:.1f} s later" if settled is not None else "not in time")
    )

    # 4. sustained: a fixed rate for a minute; the backlog is sampled every second.
    log(f"4/4 sustained: {args.rate:g} callbacks/s for {args.sustain_seconds:g} s …")
    before_sustain = await asyncio.to_thread(inbox.max_id)
    sustain_requests = (maker.make(n) for n in range(burst_pool + target_count, 10**9))
    watch = results.sustain_watch
    stop = asyncio.Event()
    started = time.perf_counter()
    watcher = asyncio.create_task(watch_inbox(inbox, before_sustain, watch, stop))
    results.sustain = await measured(
        children,
        open_loop(
            args.client,
            server_url,
            sustain_requests,
            connections,
            args.rate,
            args.sustain_seconds,
            "sustained",
        ),
    )
    stopped_at = time.perf_counter() - started
    stop.set()
    await watcher
    children.check()
    sustain = results.sustain
    in_load = [(t, c) for t, c in watch.samples if t <= stopped_at]
    results.sustain_max_backlog = max((c["pending"] for _, c in watch.samples), default=0)
    results.sustain_max_queued = max((c["queued"] for _, c in watch.samples), default=0)
    # Processed/s over the load, leaving out the first seconds (the queue filling up).
    steady = [(t, c) for t, c in in_load if t >= min(5.0, stopped_at / 4)]
    if len(steady) >= 2:
        (t1, c1), (t2, c2) = steady[0], steady[-1]
        done1, done2 = (sum(c[s] for s in DONE) for c in (c1, c2))
        results.sustain_processed_rate = (done2 - done1) / (t2 - t1) if t2 > t1 else math.nan
    drained = await wait_drained(
        inbox, before_sustain, watch, sustain.ok, args.drain_timeout, started
    )
    results.sustain_drained_after = None if drained is None else max(0.0, drained - stopped_at)
    results.sustain_statuses = inbox_statuses(await asyncio.to_thread(inbox.counts, before_sustain))
    results.sustain_delays = await asyncio.to_thread(inbox.delays, before_sustain)
    log(
        f"    sent {sustain.sent} at {sustain.sent / stopped_at:.1f}/s, acknowledged {sustain.ok}; "
        f"p99 {sustain.percentile(99):.1f} ms; processed {results.sustain_processed_rate:.1f}/s; "
        f"max backlog {results.sustain_max_backlog}; statuses {dict(results.sustain_statuses)}"
    )
    log(f"    {sustain.cpu_line()}")


# --- the report -----------------------------------------------------------------------------
def _fmt(value: float | None, spec: str = ".0f", unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:{spec}}{unit}"


def _ratio(value: float, base: float) -> str:
    if not base or math.isnan(value) or math.isnan(base):
        return "-"
    return f"{value / base:.2f}×"


def _mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(args: argparse.Namespace, results: Results) -> bool:
    ping, burst, sustain = results.ping, results.burst, results.sustain
    assert ping and burst and sustain
    rows: list[tuple[str, str, str, str, str, str]] = []

    def row(name: str, value: str, base: str = "", ratio: str = "", target: str = "", mark=""):
        rows.append((name, value, base, ratio, target, mark))

    at_target = results.at_target
    assert at_target
    ack_ok = burst.rate >= 300
    # p99 < 100 ms is judged at the target rate, offered in an open loop (see phases())
    p99_ok = at_target.percentile(99) < 100 and at_target.ok == at_target.sent
    errors = sum(burst.errors.values()) + sum(at_target.errors.values())
    row(
        "acknowledged callbacks/s",
        _fmt(burst.rate),
        _fmt(ping.rate),
        _ratio(burst.rate, ping.rate),
        "≥ 300",
        _mark(ack_ok),
    )
    row(
        "ack latency p50",
        _fmt(burst.percentile(50), ".1f", " ms"),
        _fmt(ping.percentile(50), ".1f", " ms"),
        _ratio(burst.percentile(50), ping.percentile(50)),
    )
    row(
        f"ack latency p99 ({args.connections} connections)",
        _fmt(burst.percentile(99), ".1f", " ms"),
        _fmt(ping.percentile(99), ".1f", " ms"),
        _ratio(burst.percentile(99), ping.percentile(99)),
    )
    row("ack latency max", _fmt(burst.max_ms, ".1f", " ms"), _fmt(ping.max_ms, ".1f", " ms"))
    row(
        f"at {args.target_rate:g}/s offered: acknowledged/s",
        _fmt(at_target.ok / at_target.elapsed if at_target.elapsed else math.nan),
    )
    row(
        f"at {args.target_rate:g}/s offered: ack p50 / p99",
        f"{_fmt(at_target.percentile(50), '.1f')} / {_fmt(at_target.percentile(99), '.1f')} ms",
        "",
        "",
        "p99 < 100 ms",
        _mark(p99_ok),
    )
    row("errors", str(errors), str(sum(ping.errors.values())), "", "0", _mark(errors == 0))
    row(
        "processed events/s (burst, end to end)",
        _fmt(results.burst_processed_rate, ".1f"),
        _fmt(ping.rate),
        _ratio(results.burst_processed_rate, ping.rate),
    )
    row("processed events/s (draining, no load)", _fmt(results.burst_drain_rate, ".1f"))
    drained = results.burst_drained_after
    row(
        "burst backlog drained after",
        _fmt(drained, ".1f", " s") if drained is not None else f"> {args.drain_timeout:g} s",
    )

    sent_rate = sustain.sent / sustain.elapsed if sustain.elapsed else 0.0
    rate_ok = sustain.ok == sustain.sent and sent_rate >= 0.98 * args.rate
    row(
        f"sustained: acknowledged/s (offered {args.rate:g}/s)",
        _fmt(sustain.rate, ".1f"),
        "",
        "",
        f"{args.rate:g}/s, 0 errors",
        _mark(rate_ok),
    )
    row(
        "sustained: ack p50 / p99",
        f"{_fmt(sustain.percentile(50), '.1f')} / {_fmt(sustain.percentile(99), '.1f')} ms",
    )
    row(
        "sustained: processed events/s",
        _fmt(results.sustain_processed_rate, ".1f"),
        _fmt(ping.rate),
        _ratio(results.sustain_processed_rate, ping.rate),
        f"≈ {args.rate:g}/s",
        _mark(results.sustain_processed_rate >= 0.95 * args.rate),
    )
    row(
        "sustained: largest backlog",
        f"{results.sustain_max_backlog} rows, {results.sustain_max_queued} tasks queued",
    )
    after = results.sustain_drained_after
    drain_ok = after is not None and after <= args.drain_grace
    row(
        "sustained: backlog drained after the load",
        _fmt(after, ".1f", " s") if after is not None else f"> {args.drain_timeout:g} s",
        "",
        "",
        f"≤ {args.drain_grace:g} s",
        _mark(drain_ok),
    )
    delays = sorted(results.sustain_delays)
    if delays:
        p50 = delays[len(delays) // 2] * 1000
        p99 = delays[max(0, math.ceil(0.99 * len(delays)) - 1)] * 1000
        row("sustained: received → processed p50 / p99", f"{p50:.0f} / {p99:.0f} ms")

    headers = ("figure", "measured", "/ping", "ratio", "target", "")
    widths = [max(len(r[i]) for r in [*rows, headers]) for i in range(6)]
    line = "  ".join(
        f"{{:<{width}}}" if i == 0 else f"{{:>{width}}}" for i, width in enumerate(widths)
    )
    database = "PostgreSQL/other" if os.environ.get("SIYU_BENCH_DATABASE_URL") else "SQLite"
    print()
    print(
        f"Callback ingestion — server {args.server_workers} workers × {args.server_threads} "
        f"threads, 1 worker, {database}, {args.client} client, {args.connections} connections, "
        f"{args.seconds:g} s "
        f"burst, {args.rate:g}/s × {args.sustain_seconds:g} s sustained, {os.cpu_count()} CPUs"
    )
    print(line.format(*headers))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line.format(*r))
    print()
    statuses = results.burst_statuses + results.sustain_statuses
    if statuses["processed"] == 0 and statuses["ignored"]:
        results.notes.append(
            "every callback ended 'ignored': no processor applied add_external_contact "
            "(not registered yet, or WeCom did not know the customer); counted as processed"
        )
    if statuses["failed"]:
        results.notes.append(f"{statuses['failed']} callbacks failed processing (see worker.log)")
    if results.burst_beyond_pool:
        results.notes.append(
            f"{results.burst_beyond_pool} burst callbacks named customers the emulator does "
            "not know (past the pre-created pool; raise --pool-rate)"
        )
    if burst.errors:
        results.notes.append(f"burst errors: {dict(burst.errors)}")
    if at_target.errors:
        results.notes.append(f"target-rate errors: {dict(at_target.errors)}")
    if sustain.errors:
        results.notes.append(f"sustained errors: {dict(sustain.errors)}")
    print(
        f"inbox statuses: burst {dict(results.burst_statuses)}; "
        f"sustained {dict(results.sustain_statuses)}"
    )
    for note in results.notes:
        print(f"note: {note}")
    return ack_ok and p99_ok and errors == 0 and rate_ok and drain_ok


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument("--seconds", type=float, default=20, help="baseline and burst length")
    parser.add_argument("--sustain-seconds", type=float, default=60, help="sustained phase")
    parser.add_argument("--rate", type=float, default=100, help="sustained callbacks per second")
    parser.add_argument(
        "--target-rate", type=float, default=300, help="open-loop rate of the latency phase"
    )
    parser.add_argument("--target-seconds", type=float, default=10, help="its length")
    parser.add_argument("--quick", action="store_true", help="short run (3 s, 10 s sustained)")
    parser.add_argument(
        "--drain-grace",
        type=float,
        default=5,
        help="seconds the sustained backlog may take to drain after the load",
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=300, help="longest wait for a backlog to drain"
    )
    parser.add_argument(
        "--pool-rate",
        type=float,
        default=500,
        help="customers pre-created for the burst, per second of --seconds",
    )
    parser.add_argument(
        "--client",
        choices=sorted(CLIENTS),
        default="raw",
        help="load generator: a minimal asyncio HTTP/1.1 client (default) or httpx.AsyncClient",
    )
    parser.add_argument(
        "--worker-threads",
        type=int,
        default=None,
        help="SIYU_WORKER_THREADS of the worker (default: the platform's own default)",
    )
    parser.add_argument("--server-workers", type=int, default=2)
    parser.add_argument("--server-threads", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="keep the data dir (logs, databases)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.sustain_seconds, args.target_seconds = 3, 10, 3
    return args


def main(argv: list[str] | None = None) -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--inbox-probe":
        inbox_probe_main(sys.argv[2])
        return 0
    args = parse_args(argv)

    def terminated(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)
    try:
        results = run(args)
    except KeyboardInterrupt:
        print("\ninterrupted; subprocesses stopped", file=sys.stderr)
        return 130
    met = report(args, results)
    print("all targets met" if met else "some targets missed (MISS above)")
    return 0  # a benchmark reports figures; a missed target is not a harness failure


if __name__ == "__main__":
    sys.exit(main())
