"""After migrate, new indexes on analysed SQLite tables get planner statistics."""

from __future__ import annotations

import pytest
from django.db import connection

from siyu.core.db import refresh_sqlite_statistics

pytestmark = pytest.mark.django_db


def _stat_indexes() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT idx FROM sqlite_stat1 WHERE tbl = 'stats_probe'")
        return {row[0] for row in cursor.fetchall()}


@pytest.fixture
def probe_table():
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE stats_probe (id INTEGER PRIMARY KEY, kind TEXT, n INT)")
        cursor.executemany(
            "INSERT INTO stats_probe (kind, n) VALUES (%s, %s)",
            [(f"k{i % 5}", i) for i in range(500)],
        )
        cursor.execute("CREATE INDEX stats_probe_kind ON stats_probe (kind)")
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE stats_probe")


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's planner statistics")
def test_new_index_on_an_analysed_table_gets_statistics(probe_table):
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE stats_probe")
        cursor.execute("CREATE INDEX stats_probe_n ON stats_probe (n) WHERE n > 100")
    assert "stats_probe_n" not in _stat_indexes()

    assert "stats_probe_n" in refresh_sqlite_statistics()

    assert {"stats_probe_kind", "stats_probe_n"} <= _stat_indexes()
    assert "stats_probe_n" not in refresh_sqlite_statistics()  # nothing left to do


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's planner statistics")
def test_a_table_never_analysed_is_left_to_the_heuristics(probe_table):
    assert "stats_probe_kind" not in refresh_sqlite_statistics()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")
        if cursor.fetchone() is not None:
            assert not _stat_indexes()


@pytest.mark.skipif(connection.vendor == "sqlite", reason="other databases keep their own")
def test_other_databases_are_left_alone():
    assert refresh_sqlite_statistics() == []
