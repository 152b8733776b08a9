"""Django's own checks as tests: a system-check error (a bad admin action, a broken model
option) or a model change without its migration would otherwise surface only when someone
runs ``siyu migrate`` or ``make demo``."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command


def test_the_system_checks_pass() -> None:
    call_command("check", fail_level="WARNING", stdout=StringIO())


@pytest.mark.django_db
def test_every_model_change_has_its_migration() -> None:
    out = StringIO()
    try:
        call_command("makemigrations", check=True, dry_run=True, stdout=out)
    except SystemExit:  # pragma: no cover - reported below with the missing migrations
        pytest.fail(f"models changed without a migration:\n{out.getvalue()}")
