"""``workbench db``: the catalog's schema revision, and upgrading it explicitly.

Opening a catalog upgrades it anyway; ``db upgrade`` does it on purpose (before
starting many workers, after installing a new workbench) and says what it did;
``db current`` only reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from workbench.cli._common import emit, say, settings_from
from workbench.errors import WorkbenchError


@click.group("db")
def db_group() -> None:
    """The catalog database: schema revision and upgrade (SQLite or PostgreSQL)."""


def _url(ctx: click.Context) -> str:

    return str(settings_from(ctx).catalog_url)


def _current(url: str) -> dict[str, Any]:
    from sqlalchemy import create_engine, inspect

    from workbench.store.schema import SCHEMA_HEAD, SCHEMA_REVISIONS, catalog_revision, redacted

    doc: dict[str, Any] = {"url": redacted(url), "head": SCHEMA_HEAD}
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return doc | {
            "dialect": "sqlite",
            "revision": None,
            "up_to_date": False,
            "state": "no catalog yet (made on first use, or by `workbench db upgrade`)",
        }
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            revision = catalog_revision(conn)
            has_tables = inspect(conn).has_table("photos")
    except Exception as exc:  # noqa: BLE001 - the driver's own error says why
        raise WorkbenchError(f"cannot read the catalog at {redacted(url)}: {exc}") from exc
    finally:
        engine.dispose()
    if revision is None:
        state = "before migrations (upgrades on open)" if has_tables else "empty"
    elif revision == SCHEMA_HEAD:
        state = "up to date"
    elif revision in SCHEMA_REVISIONS:
        state = "behind (upgrades on open)"
    else:
        state = "newer than this workbench (upgrade the workbench)"
    return doc | {
        "dialect": engine.dialect.name,
        "revision": revision,
        "up_to_date": revision == SCHEMA_HEAD,
        "state": state,
    }


@db_group.command("current")
@click.option("--json", "as_json", is_flag=True, help="Print {url, dialect, revision, head, ...}.")
@click.pass_context
def current_command(ctx: click.Context, as_json: bool) -> None:
    """Show the catalog's schema revision and the newest this workbench knows."""

    doc = _current(_url(ctx))
    if as_json:
        emit(doc)
    else:
        say(
            f"{doc['url']} ({doc['dialect']}): revision {doc['revision'] or '-'}, "
            f"newest {doc['head']}: {doc['state']}"
        )


@db_group.command("upgrade")
@click.option("--json", "as_json", is_flag=True, help="Print {url, dialect, before, after}.")
@click.pass_context
def upgrade_command(ctx: click.Context, as_json: bool) -> None:
    """Bring the catalog to the newest schema revision (safe to run from several
    machines at once; a no-op when it is there already)."""
    from sqlalchemy.engine import make_url

    from workbench.store.schema import redacted, upgrade_catalog

    url = _url(ctx)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        before, after = upgrade_catalog(url)
    except WorkbenchError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise WorkbenchError(f"could not upgrade the catalog at {redacted(url)}: {exc}") from exc
    doc = {
        "url": redacted(url),
        "dialect": make_url(url).get_backend_name(),
        "before": before,
        "after": after,
        "changed": before != after,
    }
    if as_json:
        emit(doc)
    elif before == after:
        say(f"{doc['url']}: already at revision {after}")
    else:
        say(f"{doc['url']}: upgraded from {before or 'no revision'} to {after}")


COMMANDS = [db_group]
