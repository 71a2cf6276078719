"""One Milvus Lite server per home, shared by every process that opens the home.

A Milvus Lite data directory admits one process at a time (an exclusive ``flock``
on its ``LOCK``). So that a notebook kernel, the dashboards' kernels and any CLI
command can use one home at once, the home's vectors are served by one small
server process on 127.0.0.1, and every process talks to it:

* the first process that needs the vectors starts the server (``python -m
  workbench.store.lite_server``), which records its pid and port in
  ``<data dir>.server/server.json``; later processes find the record and attach;
* every attached process holds a shared ``flock`` on ``users.lock`` for as long as
  it uses the index (the kernel drops it when the process ends, ``kill -9``
  included); the server stops `DEFAULT_IDLE_S` after the last holder has gone;
* starting, attaching and stopping are serialised by ``start.lock``, so two
  processes never start two servers, and none attaches to a server that is
  stopping;
* a record whose process is gone, or whose port does not answer, is stale: it is
  replaced by a new server;
* a process that cannot get the vectors within its wait says in one line what
  holds them (another server's pid, or the process that has the data directory
  open by itself).

In-process Milvus Lite served its data over the same gRPC on 127.0.0.1, from a thread
of the process; `benchmarks/bench_shared_lite.py` measures what the move costs.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from workbench.errors import StoreError
from workbench.store.processes import command_of, command_words, flock_holder, pid_alive

DEFAULT_IDLE_S = 30.0
"""How long the server outlives its last user (so a command right after another reuses it)."""
DEFAULT_WAIT_S = 60.0
"""How long a process waits for the server (its start, or another process starting it)."""
RUN_SUFFIX = ".server"
START_LOCK = "start.lock"
USERS_LOCK = "users.lock"
RECORD = "server.json"
LOG = "server.log"
HOST = "127.0.0.1"
MODULE = "workbench.store.lite_server"
"""What a server's command line runs (``python -m MODULE --data-dir DIR``)."""
_POLL_S = 0.05
_SERVER_START_S = 1.0
"""About what a server takes to start (its imports): taken off the wait it is given."""
_SAY_WHY_S = 3.0
_STARTED: list[subprocess.Popen[bytes]] = []
"""Servers this process started (kept, so that no warning says they still run)."""


def run_dir(data_dir: Path) -> Path:
    """The folder of the server's record, locks and log, beside the data directory."""
    return data_dir.with_name(data_dir.name + RUN_SUFFIX)


@dataclass(frozen=True)
class ServerRecord:
    """What the running server wrote about itself."""

    pid: int
    port: int
    data_dir: str
    started: float
    host: str = HOST

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"


def read_record(data_dir: Path) -> ServerRecord | None:
    """The record of the home's server, if one was written (it may be stale)."""
    path = run_dir(data_dir) / RECORD
    try:
        return ServerRecord(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_record(data_dir: Path, record: ServerRecord) -> None:
    folder = run_dir(data_dir)
    tmp = folder / f".{RECORD}.{os.getpid()}"
    tmp.write_text(json.dumps(asdict(record)))
    os.replace(tmp, folder / RECORD)


def _remove_record(data_dir: Path, pid: int) -> None:
    """Remove the record if it is ``pid``'s (a newer server's record is left alone)."""
    record = read_record(data_dir)
    if record is not None and record.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            (run_dir(data_dir) / RECORD).unlink()


def _answers(record: ServerRecord, timeout: float = 1.0) -> bool:
    with (
        contextlib.suppress(OSError),
        socket.create_connection((record.host, record.port), timeout=timeout),
    ):
        return True
    return False


def _serves(record: ServerRecord, data_dir: Path) -> bool:
    """Whether the record's process is this home's server still (after a crash or a
    reboot its pid may be another program's: that one is never signalled)."""
    if Path(record.data_dir) != data_dir or not pid_alive(record.pid):
        return False
    words = command_words(record.pid)
    return MODULE in words and str(data_dir) in words


def _live(record: ServerRecord, data_dir: Path) -> bool:
    return _serves(record, data_dir) and _answers(record)


def _open_lock(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same permissions as the home's other files (the umask decides).
    return open(path, "ab+")  # noqa: SIM115 - held open as long as the lock is


def _flock(fh: IO[bytes], mode: int, deadline: float) -> bool:
    """``flock`` ``mode`` on ``fh``, trying until ``deadline``; False when it could not."""
    while True:
        try:
            fcntl.flock(fh.fileno(), mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)


@contextlib.contextmanager
def _start_lock(data_dir: Path, deadline: float) -> Iterator[None]:
    fh = _open_lock(run_dir(data_dir) / START_LOCK)
    try:
        if not _flock(fh, fcntl.LOCK_EX, deadline):
            raise StoreError(
                f"the vector index {data_dir} is being started or stopped by another "
                f"process and did not become ready in time ({_who_holds(data_dir)}); "
                "try again, or stop that process"
            )
        yield
    finally:
        fh.close()  # releases the lock


def _who_holds(data_dir: Path) -> str:
    """One line on what holds the home's vectors: its server, or another process."""
    record = read_record(data_dir)
    if record is not None and _serves(record, data_dir):
        return f"served by process {record.pid} ({command_of(record.pid)}) on port {record.port}"
    holder = flock_holder(data_dir / "LOCK")
    if holder is not None:
        return f"open in process {holder} ({command_of(holder)})"
    return "nothing holds it now"


class LiteLease:
    """This process's use of a home's shared Milvus Lite server (until `close`)."""

    def __init__(self, record: ServerRecord, users: IO[bytes]) -> None:
        self.record = record
        self._users: IO[bytes] | None = users

    @property
    def uri(self) -> str:
        return self.record.uri

    def close(self) -> None:
        """Let go of the server (it stops once nobody holds it for its idle time)."""
        if self._users is not None:
            self._users.close()
            self._users = None

    def __enter__(self) -> LiteLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def attach(
    data_dir: Path, *, idle_s: float = DEFAULT_IDLE_S, wait_s: float = DEFAULT_WAIT_S
) -> LiteLease:
    """Use the home's Milvus Lite server, starting it when none runs (see module notes).

    Raises `StoreError` naming what holds the vectors when it cannot have them
    within ``wait_s`` seconds.
    """
    data_dir = Path(data_dir).expanduser().resolve()
    deadline = time.monotonic() + wait_s
    _STARTED[:] = [p for p in _STARTED if p.poll() is None]  # reap servers that have stopped
    users = _open_lock(run_dir(data_dir) / USERS_LOCK)
    try:
        with _start_lock(data_dir, deadline):
            found = read_record(data_dir)
            if found is not None and _live(found, data_dir):
                record = found
            else:
                if found is not None and _serves(found, data_dir):
                    # A server that no longer answers: stop it before starting another.
                    _terminate(found.pid)
                record = _start(data_dir, idle_s, deadline)
            # Under the start lock: the server cannot be stopping while this is taken.
            fcntl.flock(users.fileno(), fcntl.LOCK_SH)
        return LiteLease(record, users)
    except BaseException:
        users.close()
        raise


HELD_EXIT = 3
"""The server's exit status when another process kept the data directory all its wait."""


def _start(data_dir: Path, idle_s: float, deadline: float) -> ServerRecord:
    folder = run_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (folder / RECORD).unlink()  # stale
    cmd = [
        sys.executable,
        "-m",
        MODULE,
        "--data-dir",
        str(data_dir),
        "--idle",
        str(idle_s),
        "--wait",  # for a process that has the data directory open by itself to let go
        f"{max(0.0, deadline - time.monotonic() - _SERVER_START_S):.1f}",
    ]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    with open(folder / LOG, "ab") as log:
        start = log.tell()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this process; Ctrl-C here does not stop it
            env=env,
        )
    _STARTED.append(proc)
    # The server gives up on a held data directory about when the deadline passes, and says
    # why: it is given _SAY_WHY_S past the deadline to say it.
    while time.monotonic() < deadline + _SAY_WHY_S:
        record = read_record(data_dir)
        if record is not None and record.pid == proc.pid and _answers(record, timeout=0.5):
            return record
        code = proc.poll()
        if code is not None:
            raise StoreError(
                f"cannot serve the vector index {data_dir}: "
                f"{_failure(folder / LOG, start) or f'its server exited with code {code}'}"
            )
        time.sleep(_POLL_S)
    _terminate(proc.pid)
    raise StoreError(
        f"the vector index {data_dir} did not start within its wait; see {folder / LOG}"
    )


def _failure(log: Path, offset: int) -> str:
    """The server's one-line reason, from what it logged since ``offset``."""
    with contextlib.suppress(OSError), open(log, "rb") as fh:
        fh.seek(offset)
        lines = [line.decode(errors="replace").strip() for line in fh.read().splitlines()]
        reasons = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
        if reasons:
            return reasons[-1]
        return lines[-1] if lines else ""
    return ""


def _terminate(pid: int, grace: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    with contextlib.suppress(ProcessLookupError):
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def stop(data_dir: Path, wait_s: float = DEFAULT_WAIT_S) -> bool:
    """Stop the home's server now (users or not); False when none was running."""
    data_dir = Path(data_dir).expanduser().resolve()
    with _start_lock(data_dir, time.monotonic() + wait_s):
        record = read_record(data_dir)
        if record is None or not _serves(record, data_dir):
            _remove_record(data_dir, record.pid if record else -1)
            return False
        _terminate(record.pid)
        _remove_record(data_dir, record.pid)
        return True


# ---- the server process ----------------------------------------------------------------
def _nobody_attached(users: IO[bytes]) -> bool:
    try:
        fcntl.flock(users.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(users.fileno(), fcntl.LOCK_UN)
    return True


def _milvus_lite_server() -> tuple[type[Exception], Any]:
    """Milvus Lite's lock error and gRPC server, imported without pymilvus's client.

    The server needs only pymilvus's generated gRPC modules, but importing any of them
    runs ``pymilvus/__init__`` (the client, its ORM, pandas): 0.7 s of a 1.4 s start,
    paid by whoever opens a home first. A bare package module stands in for it while
    Milvus Lite is imported, then goes, so a later ``import pymilvus`` gets the real one.
    """
    import importlib.util
    import types

    bare = None
    spec = importlib.util.find_spec("pymilvus") if "pymilvus" not in sys.modules else None
    if spec is not None and spec.submodule_search_locations:
        bare = types.ModuleType("pymilvus")
        bare.__path__ = list(spec.submodule_search_locations)
        sys.modules["pymilvus"] = bare
    try:
        from milvus_lite import DataDirLockedError
        from milvus_lite.adapter.grpc.server import start_server_in_thread
    finally:
        if bare is not None and sys.modules.get("pymilvus") is bare:
            del sys.modules["pymilvus"]
    return DataDirLockedError, start_server_in_thread


def serve(data_dir: Path, idle_s: float = DEFAULT_IDLE_S, wait_s: float = 0.0) -> int:
    """Serve ``data_dir`` until nobody has used it for ``idle_s`` seconds (or SIGTERM).

    A data directory another process has open by itself (Milvus Lite in that process)
    is tried again for ``wait_s`` seconds; then the holder is named and the exit status
    is `HELD_EXIT`.
    """
    DataDirLockedError, start_server_in_thread = _milvus_lite_server()
    data_dir = Path(data_dir).resolve()
    deadline = time.monotonic() + wait_s
    while True:
        try:
            server, db, port = start_server_in_thread(str(data_dir), host=HOST, port=0)
            break
        except DataDirLockedError:
            if time.monotonic() >= deadline:
                print(f"error: {data_dir} is {_who_holds(data_dir)}; close it there", flush=True)
                return HELD_EXIT
            time.sleep(0.2)
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    _write_record(data_dir, ServerRecord(os.getpid(), port, str(data_dir), time.time()))
    print(f"serving {data_dir} on {HOST}:{port} (pid {os.getpid()})", flush=True)
    users = _open_lock(run_dir(data_dir) / USERS_LOCK)
    start_lock: IO[bytes] | None = None
    try:
        idle_since: float | None = None
        while not stopping:
            time.sleep(0.5)
            if not _nobody_attached(users):
                idle_since = None
                continue
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since < idle_s:
                continue
            # Idle: stop, unless someone attaches right now (they hold the start lock).
            fh = _open_lock(run_dir(data_dir) / START_LOCK)
            if _flock(fh, fcntl.LOCK_EX, time.monotonic() + 1.0) and _nobody_attached(users):
                start_lock = fh
                break
            fh.close()
            idle_since = None
    finally:
        _remove_record(data_dir, os.getpid())
        server.stop(grace=2)
        db.close()
        users.close()
        if start_lock is not None:
            start_lock.close()  # only now: a new server may take the data directory
    print(f"stopped serving {data_dir}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.store.lite_server")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--idle", type=float, default=DEFAULT_IDLE_S)
    parser.add_argument("--wait", type=float, default=0.0)
    args: Any = parser.parse_args(argv)
    return serve(args.data_dir, args.idle, args.wait)


__all__ = [
    "DEFAULT_IDLE_S",
    "LiteLease",
    "ServerRecord",
    "attach",
    "read_record",
    "run_dir",
    "serve",
    "stop",
]


if __name__ == "__main__":
    sys.exit(main())
