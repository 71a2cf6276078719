"""The catalog's database: engines (SQLite pragmas, PostgreSQL in UTC) and its schema,
versioned with Alembic (``workbench/store/migrations``).

Opening a catalog (`open_engine`) brings any database to the newest revision (a
new one, one made before migrations, one a revision behind), under a lock so
several processes opening it at once (workers on several machines on one
PostgreSQL) upgrade it once. At the newest revision opening costs one small
query. A catalog newer than the code is refused with the revision it is at.
``workbench db upgrade`` / ``workbench db current`` do the same explicitly.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, event, inspect, make_url, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from workbench.errors import StoreError
from workbench.redaction import redact_url

SCHEMA_REVISIONS: tuple[str, ...] = ("0001", "0002", "0003", "0004", "0005")
"""The catalog's Alembic revisions, oldest first (tests check them against the scripts)."""
SCHEMA_HEAD = SCHEMA_REVISIONS[-1]
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_PG_MIGRATION_LOCK = 0x57_42_43_41_54_4C_47  # pg_advisory_xact_lock key: "WBCATLG"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, foreign_keys: bool = True) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")  # first: switching to WAL may wait for a lock
    cur.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
    # Readers (dashboards) do not block the ingest. Switching a new file to WAL needs it
    # to itself and SQLite answers "locked" at once, without the busy timeout, while
    # another process holds it (two workers opening a new catalog): try again.
    deadline = time.monotonic() + 30
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as e:
            path = _main_file(cur)
            if "disk i/o error" in str(e).lower() and path and _out_of_space(path):
                raise OSError(errno.ENOSPC, "No space left on device", path) from e
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _main_file(cur: Any) -> str | None:
    """The path of the SQLite file a connection has open (None in memory)."""
    try:
        rows = cur.execute("PRAGMA database_list").fetchall()
    except sqlite3.Error:
        return None
    return next((r[2] for r in rows if r[1] == "main" and r[2]), None)


def _postgres_utc(dbapi_conn: Any, _record: Any) -> None:
    """Timestamps come back in UTC whatever the server's or the database's TimeZone (as
    SQLite's do): exports and dates must not shift with the server's configuration."""
    autocommit = dbapi_conn.autocommit
    dbapi_conn.autocommit = True
    cur = dbapi_conn.cursor()
    cur.execute("SET TIME ZONE 'UTC'")
    cur.close()
    dbapi_conn.autocommit = autocommit


def _sqlite_memory(url: str) -> bool:
    u = make_url(url)
    return u.get_backend_name() == "sqlite" and u.database in (None, "", ":memory:")


def redacted(url: str) -> str:
    """The URL without its password (for messages and ``workbench db current``)."""
    return redact_url(url)


def catalog_revision(conn: Connection) -> str | None:
    """The schema revision the database is at: None before migrations (or when empty)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    revs = list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    if len(revs) > 1:
        raise StoreError(
            f"the catalog's alembic_version table names several revisions ({', '.join(revs)}); "
            "the workbench's migrations are one line: repair the table by hand"
        )
    return revs[0] if revs else None


def _quick_revision(engine: Engine) -> str | None:
    """The revision in one query (opening a catalog at the newest revision costs only
    this); None when there is no version table (then `upgrade_catalog` looks closely)."""
    with engine.connect() as conn:
        try:
            revs = list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
        except (OperationalError, ProgrammingError):  # no such table (or worse: looked at next)
            conn.rollback()
            return None
    return revs[0] if len(revs) == 1 else None


def _check_known(rev: str | None, url: str) -> None:
    if rev is not None and rev not in SCHEMA_REVISIONS:
        raise StoreError(
            f"the catalog at {redacted(url)} is at schema revision {rev!r}, which this "
            f"workbench does not know (it knows {', '.join(SCHEMA_REVISIONS)}; newest "
            f"{SCHEMA_HEAD}): a newer workbench upgraded it; upgrade the workbench "
            "(pip install -U face-workbench) to open it"
        )


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Any:
    """An Alembic `Config` for the catalog's migrations (no alembic.ini needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _migration_engine(url: str) -> Engine:
    """SQLite: a connection of its own for the upgrade. Foreign keys off (rebuilding a
    table in batch mode drops it, which would otherwise cascade-delete its children),
    and one explicit ``BEGIN IMMEDIATE`` transaction: the upgrade is atomic and holds
    the write lock, so a second process opening the file waits, then finds it done."""
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)

    def connect(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver's own BEGINs off: ours below
        _sqlite_pragmas(dbapi_conn, record, foreign_keys=False)

    event.listen(engine, "connect", connect)
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return engine


def upgrade_catalog(
    url: str, engine: Engine | None = None, wait_s: float = 600.0
) -> tuple[str | None, str]:
    """Bring the catalog at ``url`` to the newest revision; returns (before, after).

    Serialised between processes: on PostgreSQL by a transaction-level advisory
    lock, on SQLite by the write lock of ``BEGIN IMMEDIATE``; the revision is
    read again under the lock, so the second process finds the work done. The
    whole upgrade is one transaction on both (DDL is transactional there).
    A database with the tables but no ``alembic_version`` (made before
    migrations) goes through revision 0001, which creates only what is missing.
    """
    from alembic import command

    if make_url(url).get_backend_name() == "sqlite" and not _sqlite_memory(url):
        eng = _migration_engine(url)
    else:  # a server database, or an in-memory SQLite only the given engine can reach
        eng = engine or create_engine(url)
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                with eng.connect() as conn:
                    if eng.dialect.name == "postgresql":
                        conn.execute(
                            text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK}
                        )
                    else:
                        conn.begin()
                    before = catalog_revision(conn)
                    _check_known(before, url)
                    if before != SCHEMA_HEAD:
                        command.upgrade(alembic_config(conn), "head")
                    conn.commit()
                    return before, SCHEMA_HEAD
            except OperationalError as exc:
                # SQLite: another process held the write lock past busy_timeout (a long
                # rebuild of a big catalog): wait on, up to wait_s.
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
    finally:
        if eng is not engine:
            eng.dispose()


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite catalog URL (None for a server database or an in-memory one)."""
    if not url.startswith("sqlite:///") or _sqlite_memory(url):
        return None
    return Path(url.removeprefix("sqlite:///"))


def read_only_file(path: Path) -> bool:
    """Whether an existing SQLite catalog cannot be written here (a read-only mount, no
    permission): it is then opened for reading only."""
    return path.exists() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))


def _read_only_url(path: Path) -> str:
    """A URL that reads ``path`` without writing anything beside it. ``immutable`` skips
    locking and the WAL; it is safe when no WAL holds transactions the file lacks (a
    writer that closed cleanly left none), else plain ``mode=ro`` reads through it."""
    wal = path.with_name(path.name + "-wal")
    pending = wal.exists() and wal.stat().st_size > 0
    flags = "mode=ro" if pending else "mode=ro&immutable=1"
    return f"sqlite:///file:{quote(str(path))}?{flags}&uri=true"


def _sqlite_read_only(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA query_only=ON")
    cur.close()


def open_engine(url: str) -> tuple[Engine, tuple[str | None, str] | None]:
    """An engine for the catalog at ``url``, its schema at the newest revision.

    Returns the engine and ``(before, after)`` when this call upgraded the
    schema, else None (also when another process upgraded it meanwhile).
    A SQLite file's folder is made; SQLite gets its pragmas (WAL, busy
    timeout, foreign keys), PostgreSQL sessions read timestamps in UTC. A SQLite
    catalog that cannot be written here is opened for reading only: queries
    work, a write says the catalog is read-only.
    """
    path = sqlite_path(url)
    read_only = path is not None and read_only_file(path)
    if path is not None and not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    sqlite = make_url(url).get_backend_name() == "sqlite"
    # Server databases: a connection dropped while a notebook sat idle is replaced.
    engine = create_engine(
        _read_only_url(path) if read_only and path else url, future=True, pool_pre_ping=not sqlite
    )
    if read_only:
        event.listen(engine, "connect", _sqlite_read_only)
    elif sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    elif engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _postgres_utc)
    upgraded = None
    try:
        rev = _quick_revision(engine)
        _check_known(rev, url)
        if rev != SCHEMA_HEAD and read_only:
            raise StoreError(
                f"the catalog {path} is read-only here and at schema revision {rev or 'none'}, "
                f"older than this workbench's {SCHEMA_HEAD}: open it once where it can be "
                "written (or run `workbench db upgrade` there), then read it here"
            )
        if rev != SCHEMA_HEAD:
            before, after = upgrade_catalog(url, engine)
            upgraded = (before, after) if before != after else None
    except BaseException:
        engine.dispose()
        raise
    return engine, upgraded


def storage_failure(e: BaseException, where: str) -> StoreError | None:
    """A write that failed for a reason the user can act on, in words: a full disk or a
    read-only catalog (SQLite's and the OS's errors alike); None for anything else."""
    text = str(e).lower()
    code = getattr(e, "errno", None) or getattr(getattr(e, "orig", None), "errno", None)
    # SQLite says only "disk I/O error" when it cannot grow its -wal or -shm file.
    io_error_on_full_disk = "disk i/o error" in text and _out_of_space(where)
    if (
        code == errno.ENOSPC
        or "disk is full" in text
        or "no space left" in text
        or io_error_on_full_disk
    ):
        return StoreError(
            f"the disk holding {where} is full: free some space, then run the same command "
            "again (what was stored so far is kept)"
        )
    if code in (errno.EROFS, errno.EACCES) or "readonly database" in text or "read-only" in text:
        return StoreError(
            f"{where} is read-only here: reading commands (stats, search, export, gallery) "
            "work, writing ones need write access to it"
        )
    return None


def _out_of_space(where: str) -> bool:
    """Whether the file system holding the file ``where`` (when it is a path) is full."""
    folder = Path(where).parent
    try:
        return folder.is_absolute() and shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def is_contention(e: BaseException) -> bool:
    """Whether a failed write met another writer (SQLite's lock, PostgreSQL's unique key or
    serialization): worth trying again."""
    if isinstance(e, IntegrityError):
        return True
    text = str(e).lower()
    return any(w in text for w in ("locked", "busy", "could not serialize", "deadlock"))
