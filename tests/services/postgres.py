"""A real PostgreSQL for the test session, and a fresh empty database per test.

``postgres_url`` (session): initdb into a temporary directory, start the server
on a free local port (trust auth on 127.0.0.1 only, durability off for speed,
its unix socket in the same directory), stop and delete it at session end.
Returns the admin URL ``postgresql+psycopg://postgres@127.0.0.1:<port>/postgres``.

``fresh_pg_url`` (function): a new empty database on that server, dropped after
the test (its connections terminated first).

``dev_local_pg`` (session): the dev set ingested with the `local` pack into a
catalog on that server (the PostgreSQL twin of ``dev_local``).

Only ``postgres_url`` is imported by tests/conftest.py; a module that uses the
others imports them (``from tests.services.postgres import fresh_pg_url``).

The server binaries come from ``$WORKBENCH_TEST_PG_BIN`` or Debian's
``/usr/lib/postgresql/<version>/bin`` (15 preferred). PostgreSQL refuses to run
as root, so as root every server command runs as the ``postgres`` user. If the
server cannot start, the fixtures FAIL with the cause (never skip).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_USER = "postgres"


def _pg_bin() -> Path:
    env = os.environ.get("WORKBENCH_TEST_PG_BIN")
    candidates = [Path(env)] if env else []
    candidates.append(Path("/usr/lib/postgresql/15/bin"))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    pytest.fail(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin "
        "or on PATH: install Debian's `postgresql` (15) or set WORKBENCH_TEST_PG_BIN",
        pytrace=False,
    )


def _as_pg_user() -> list[str]:
    """Command prefix: the server refuses root, so run it as the postgres user."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.fail("running as root and `runuser` is missing: cannot start PostgreSQL")
    return [runuser, "-u", PG_USER, "--"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(cmd: list[str], what: str, log: Path | None = None) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"PostgreSQL {what} failed: {exc}", pytrace=False)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
        pytest.fail(
            f"PostgreSQL {what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}\n{tail}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """Admin URL of a PostgreSQL server started for this test session."""
    bindir = _pg_bin()
    prefix = _as_pg_user()
    # Not under pytest's tmp dirs: those are private to root, the server user must enter.
    root = Path(tempfile.mkdtemp(prefix="wb-pg-"))
    data, sock, log = root / "data", root / "sock", root / "server.log"
    sock.mkdir()
    if prefix:
        import pwd

        pw = pwd.getpwnam(PG_USER)
        for p in (root, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    os.chmod(root, 0o755)
    started = False
    try:
        _run(
            [
                *prefix,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                PG_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            "initdb",
        )
        # Trust on the loopback address and the private socket only.
        (data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        port = 0
        for _attempt in range(3):  # a free port can be taken between the probe and the start
            port = _free_port()
            opts = (
                f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200"
            )
            cmd = [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log)]
            proc = subprocess.run(
                [*cmd, "-w", "-t", "60", "-o", opts, "start"],
                capture_output=True,
                text=True,
                timeout=90,
            )
            if proc.returncode == 0:
                started = True
                break
        if not started:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            pytest.fail(
                f"PostgreSQL did not start (pg_ctl exit {proc.returncode}):\n"
                f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}\n{tail}",
                pytrace=False,
            )
        yield f"postgresql+psycopg://{PG_USER}@127.0.0.1:{port}/postgres"
    finally:
        if started:
            subprocess.run(
                [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh_pg_url(postgres_url: str) -> Iterator[str]:
    """URL of a new empty database on the session's server; dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = create_database(postgres_url, name)
    try:
        yield url
    finally:
        drop_database(postgres_url, name)


def create_database(admin_url: str, name: str) -> str:
    """A new empty database ``name`` on the server of ``admin_url``; returns its URL."""
    from sqlalchemy import create_engine, text

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"could not create the PostgreSQL database {name!r}: {exc}", pytrace=False)
    finally:
        admin.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(admin_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with contextlib.suppress(Exception), admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


_SHARED: dict[str, object] = {}
"""Session-wide objects that several test modules import a fixture for (a fixture imported
into two modules is two fixtures to pytest: this keeps it one)."""


@pytest.fixture(scope="session")
def dev_local_pg(
    postgres_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,
    faces_dev_dir: Path,
    dev_photos: list[object],
) -> Iterator[object]:
    """Like ``dev_local`` (the dev set ingested with the `local` pack), with its catalog
    on PostgreSQL: built once per session, whichever modules import it."""
    if "dev_local_pg" in _SHARED:
        yield _SHARED["dev_local_pg"]
        return
    from tests.conftest import local_pack_settings
    from tests.integration.conftest import build_dev_workbench

    name = f"dev_local_{uuid.uuid4().hex[:8]}"
    url = create_database(postgres_url, name)
    home = tmp_path_factory.mktemp("dev-local-pg")
    settings = local_pack_settings(home, models_dir, storage={"catalog_url": url})
    dw = build_dev_workbench(settings, faces_dev_dir, dev_photos)
    _SHARED["dev_local_pg"] = dw
    try:
        yield dw
    finally:
        _SHARED.pop("dev_local_pg", None)
        dw.wb.close()
        drop_database(postgres_url, name)
