"""Logging set-up (loguru) and progress bars; metrics join here as the workbench grows."""

from __future__ import annotations

import os
import sys
from typing import Any

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
        # Tracebacks without local variables: a variable may hold an access token.
        diagnose=False,
        format="<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> {message}",
    )
    _configured = True


def progress_bar(iterable: Any = None, *, enabled: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar: a notebook widget where one can be drawn, text otherwise, nothing if off.

    A disabled bar comes from plain tqdm, so a notebook without ipywidgets
    gets no "IProgress not found" warning for a bar nobody asked for.
    """
    if not enabled:
        from tqdm import tqdm

        return tqdm(iterable, disable=True, **kwargs)
    from tqdm.auto import tqdm as auto_tqdm

    return auto_tqdm(iterable, **kwargs)
