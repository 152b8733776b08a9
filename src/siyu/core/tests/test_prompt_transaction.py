"""``prompt_transaction`` takes SQLite's write lock as soon as another writer lets go."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from django.db import OperationalError, connection

from siyu.core.db import prompt_transaction
from siyu.tenancy.models import Tenant
from siyu.testing.factories import TenantFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sqlite_only():
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL locks rows; prompt_transaction is a plain atomic() there")
    connection.ensure_connection()
    return connection.settings_dict["NAME"]


def hold_write_lock(path: str, seconds: float, holding: threading.Event) -> None:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    holding.set()
    time.sleep(seconds)
    other.execute("COMMIT")
    other.close()


def test_it_writes_as_soon_as_the_lock_is_free(sqlite_only):
    tenant = TenantFactory()
    holding = threading.Event()
    other = threading.Thread(target=hold_write_lock, args=(sqlite_only, 0.3, holding))
    other.start()
    assert holding.wait(timeout=5)
    started = time.monotonic()
    with prompt_transaction():
        Tenant.objects.filter(pk=tenant.pk).update(name="after the lock")
    waited = time.monotonic() - started
    other.join()
    assert 0.25 <= waited < 1.0  # it waited for the other writer, not for its patience
    assert Tenant.objects.get(pk=tenant.pk).name == "after the lock"
    # and the connection's own busy timeout is back
    assert connection.connection.execute("PRAGMA busy_timeout").fetchone()[0] > 0


def test_it_gives_up_after_its_patience(sqlite_only):
    holding = threading.Event()
    other = threading.Thread(target=hold_write_lock, args=(sqlite_only, 0.5, holding))
    other.start()
    assert holding.wait(timeout=5)
    with pytest.raises(OperationalError, match="locked"):
        with prompt_transaction(patience=0.1):
            pass  # pragma: no cover
    other.join()
    assert not connection.in_atomic_block
    with prompt_transaction():  # the connection is usable again
        TenantFactory()


def test_an_error_inside_rolls_back(db):
    tenant = TenantFactory(name="kept")
    with pytest.raises(ZeroDivisionError):
        with prompt_transaction():
            Tenant.objects.filter(pk=tenant.pk).update(name="lost")
            1 / 0  # noqa: B018
    assert Tenant.objects.get(pk=tenant.pk).name == "kept"
