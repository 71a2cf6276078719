"""Alembic environment of the catalog.

The workbench runs it programmatically (`workbench.store.schema.upgrade_catalog`,
`workbench db upgrade`), handing in an open connection under
``config.attributes["connection"]``; nobody needs an alembic.ini.

A new revision, for developers (after changing the models in catalog.py)::

    from alembic import command
    from workbench.store.schema import alembic_config
    command.revision(alembic_config(url="sqlite:///catalog-at-head.sqlite"),
                     "what changed", autogenerate=True, rev_id="0003")

then review it (SQLite needs batch mode: see script.py.mako), add its id to
`SCHEMA_REVISIONS` in catalog.py, and extend tests/unit/test_migrations.py.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from workbench.store.models import Base

config = context.config
target_metadata = Base.metadata  # for `alembic revision --autogenerate` only


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("no catalog URL: use workbench.store.schema.alembic_config(url=...)")
    return url


def run_offline() -> None:
    context.configure(
        url=_url(), target_metadata=target_metadata, render_as_batch=True, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(_url())
        with engine.connect() as conn:
            context.configure(
                connection=conn, target_metadata=target_metadata, render_as_batch=True
            )
            with context.begin_transaction():
                context.run_migrations()
        engine.dispose()
        return
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
