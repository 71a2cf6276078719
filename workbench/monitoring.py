"""Logging set-up (loguru); metrics join here as the workbench grows."""

from __future__ import annotations

import os
import sys

from loguru import logger

_configured = False


def ensure_logging() -> None:
    """Replace loguru's default DEBUG sink once, unless the application configured logging.

    Level from ``WORKBENCH_LOG_LEVEL`` (default INFO).
    """
    if not _configured:
        configure_logging(os.environ.get("WORKBENCH_LOG_LEVEL", "INFO"))


def configure_logging(level: str = "INFO", json: bool = False) -> None:
    """Send workbench logs to stderr (stdout stays free for ``--json`` output)."""
    global _configured
    logger.remove()
    logger.add(
        sys.stderr,
        level=level.upper(),
        serialize=json,
        format="<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> {message}",
    )
    _configured = True
