"""Small helpers that read configuration from the environment.

Kept free of Django imports: ``siyu.settings`` imports this module before Django is set up.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

# WAL lets the worker write while the server reads; IMMEDIATE transactions avoid the
# "database is locked" deadlock of upgrading a read lock; the busy timeout waits instead of
# failing when another process holds the write lock.
SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
}


def sqlite_options(mmap_megabytes: int) -> dict:
    """SQLite's connection options, reading the database through a memory map of this size.

    Through the map, pages already in the OS cache are read without a system call each; a
    count over a hundred thousand index entries took 40 % less time. SQLite caps the map at
    its compiled maximum (2 GB in Debian's build); 0 turns it off.
    """
    if mmap_megabytes < 0:
        raise ValueError(f"SIYU_SQLITE_MMAP_MB must be 0 or more; got {mmap_megabytes}")
    options = dict(SQLITE_OPTIONS)
    options["init_command"] += f" PRAGMA mmap_size={mmap_megabytes * 1024 * 1024};"
    return options


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    """Read a yes/no variable; a typo fails loudly instead of silently meaning "no"."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name} must be one of 1/0, true/false, yes/no, on/off; got {raw!r}")


def env_list(name: str) -> list[str]:
    """Read a comma-separated list; empty items are dropped."""
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def persistent_secret(path: Path, *, fernet: bool = False) -> str:
    """Return the secret stored at ``path``, generating it on first use.

    Why: a fresh demo must not run on a key published in the source code, and the key must
    survive restarts (sessions, encrypted tenant secrets). Production passes the key through
    the environment instead, and this file is never read.
    """
    if path.exists():
        return path.read_text().strip()
    raw = secrets.token_bytes(32)
    value = base64.urlsafe_b64encode(raw).decode() if fernet else secrets.token_urlsafe(50)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value
