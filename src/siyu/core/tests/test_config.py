"""Configuration defaults, SQLite tuning and secrets at rest."""

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from siyu.core import crypto
from siyu.core.config import env_bool, env_list, persistent_secret


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("yes", True), ("ON", True), ("0", False), ("off", False)]
)
def test_env_bool_reads_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("SIYU_FLAG", raw)
    assert env_bool("SIYU_FLAG", not expected) is expected


def test_env_bool_refuses_a_typo(monkeypatch):
    monkeypatch.setenv("SIYU_FLAG", "ture")
    with pytest.raises(ValueError, match="SIYU_FLAG must be one of"):
        env_bool("SIYU_FLAG", False)


def test_env_list_drops_blanks(monkeypatch):
    monkeypatch.setenv("SIYU_HOSTS", " a.example, ,b.example ")
    assert env_list("SIYU_HOSTS") == ["a.example", "b.example"]


def test_a_generated_secret_is_kept_private_and_reused(tmp_path):
    path = tmp_path / "secret_key"
    first = persistent_secret(path)
    assert persistent_secret(path) == first
    assert len(first) >= 50
    assert path.stat().st_mode & 0o777 == 0o600
    Fernet(persistent_secret(tmp_path / "fernet", fernet=True).encode())  # a valid Fernet key


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path, django_db_blocker):
    from django.db.backends.sqlite3.base import DatabaseWrapper

    from siyu.core.config import sqlite_options

    # a file database opened with the options settings.py gives SQLite
    wrapper = DatabaseWrapper(
        {
            **connection.settings_dict,
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(tmp_path / "wal.sqlite3"),
            "OPTIONS": sqlite_options(64),
        },
        alias="wal-check",
    )
    try:
        with django_db_blocker.unblock(), wrapper.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            mode = cursor.fetchone()[0]
            cursor.execute("PRAGMA busy_timeout")
            timeout_ms = cursor.fetchone()[0]
            cursor.execute("PRAGMA mmap_size")
            mmap_bytes = cursor.fetchone()[0]
    finally:
        wrapper.close()
    assert mode == "wal"
    assert timeout_ms == 20000
    assert mmap_bytes == 64 * 1024 * 1024  # pages read through a memory map


def test_a_negative_memory_map_is_refused():
    from siyu.core.config import sqlite_options

    with pytest.raises(ValueError, match="SIYU_SQLITE_MMAP_MB"):
        sqlite_options(-1)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL driver")
def test_postgresql_runs_through_psycopg_3(db):
    import psycopg

    assert isinstance(connection.connection, psycopg.Connection)


def test_secrets_survive_key_rotation(settings):
    old_key = Fernet.generate_key().decode()
    new_key = Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [old_key]
    crypto._cipher.cache_clear()
    token = crypto.encrypt("corp-secret")
    settings.ENCRYPTION_KEYS = [new_key, old_key]
    crypto._cipher.cache_clear()
    assert crypto.decrypt(token) == "corp-secret"
    settings.ENCRYPTION_KEYS = [new_key]
    crypto._cipher.cache_clear()
    with pytest.raises(ImproperlyConfigured, match="lacks the key"):
        crypto.decrypt(token)
    crypto._cipher.cache_clear()


@pytest.mark.parametrize(
    ("secret", "masked"), [("", ""), ("short", "*****"), ("abcdefghijkl", "abc******jkl")]
)
def test_masking_never_shows_a_secret_in_full(secret, masked):
    assert crypto.mask_secret(secret) == masked
