"""Fixtures for the unit tests; the builders they use live in tests/support/clinical.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.clinical import candidate_resources


@pytest.fixture
def candidate() -> list[dict[str, Any]]:
    return candidate_resources()
