"""Session fixture `redis_url` (being built)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def redis_url() -> str:
    pytest.fail("redis_url: not built yet", pytrace=False)
