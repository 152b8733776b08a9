"""Fixtures of the commerce tests."""

from __future__ import annotations

import pytest

from siyu.testing.factories import StaffFactory


@pytest.fixture
def other_sales(tenant):
    """A second sales staff of tenant A: owns other customers."""
    return StaffFactory(tenant=tenant, roles=["sales"], login=True, wecom_userid="sales2")
