"""Session fixture `postgres_url` (being built)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def postgres_url() -> str:
    pytest.fail("postgres_url: not built yet", pytrace=False)
