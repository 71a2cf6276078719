"""Real servers a benchmark starts for itself on free local ports: PostgreSQL, Redis, Milvus.

Each is a context manager that yields a URL and stops (and deletes) the server
on exit. PostgreSQL refuses to run as root, so as root its commands run as the
``postgres`` user (Debian's package creates it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin() -> Path:
    for c in [
        Path("/usr/lib/postgresql/15/bin"),
        *sorted(Path("/usr/lib/postgresql").glob("*/bin")),
    ]:
        if (c / "pg_ctl").exists():
            return c
    raise SystemExit("PostgreSQL server binaries not found: apt-get install postgresql")


@contextmanager
def postgres() -> Iterator[str]:
    """A throw-away PostgreSQL; yields ``postgresql+psycopg://postgres@127.0.0.1:PORT/bench``."""
    bindir = _pg_bin()
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    data, log = root / "data", root / "server.log"
    if prefix:
        shutil.chown(root, "postgres", "postgres")
    os.chmod(root, 0o755)
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
         "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"],
        check=True, capture_output=True,
    )  # fmt: skip
    (data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    port = free_port()
    # Durable settings (fsync on) as in production; more connections for workers.
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c max_connections=200"
    subprocess.run(
        [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o", opts,
         "start"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        subprocess.run(
            [*prefix, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "bench"],
            check=True, capture_output=True,
        )  # fmt: skip
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/bench"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def redis() -> Iterator[str]:
    """A throw-away Redis (no persistence); yields ``redis://127.0.0.1:PORT/0``."""
    root = Path(tempfile.mkdtemp(prefix="bench-redis-"))
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(root), "--logfile", str(root / "redis.log")],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"redis-server did not start on {port}")
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def milvus() -> Iterator[str]:
    """A throw-away Milvus standalone server (the `server` extra); yields its URI."""
    from workbench.store.milvus_server import MilvusServer, random_ports

    root = Path(tempfile.mkdtemp(prefix="bench-milvus-"))
    port, ports = random_ports()
    server = MilvusServer(root, port=port, ports=ports)
    try:
        yield server.start(timeout=180)
    finally:
        server.stop(timeout=60)
        shutil.rmtree(root, ignore_errors=True)
