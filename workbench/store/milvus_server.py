"""A real standalone Milvus server on this machine, without Docker.

The PyPI package ``milvus`` (2.3.5, the ``server`` extra) ships the standalone
binary with embedded etcd and local storage. Its own launcher
(``milvus-server``) moves to the next free port when one is taken and always
starts etcd on 2379/2380, so two servers (a user's and a test session's)
would collide or answer on a port nobody asked for. `MilvusServer` uses the
package only to render the config and unpack the binary, then runs the binary
itself with every port fixed, every component bound to 127.0.0.1 and embedded
etcd on its own client and peer ports:

    server = MilvusServer(Path("milvus-server"), port=19530)
    uri = server.start()          # http://127.0.0.1:19530, ready for MilvusClient
    ...
    server.stop()

The server runs detached (its own session): it outlives the Python process
that started it. ``<data_dir>/milvus.pid`` names it and ``<data_dir>/ports.json``
its ports, so another process (``workbench milvus stop``) finds it again.

Measured here: a fresh data dir is ready in ~10-20 s, a restart in ~5-10 s; but
within ~40 s of a stop the old server's sessions are still in etcd, and the
first collection operation after such a restart waited ~30 s for them to
expire (a start that fails on them outright is retried once, after 45 s). A
SIGTERM stop took 0.2-30 s. Components listen on all interfaces whatever
their ``ip`` setting (only etcd binds 127.0.0.1): firewall them on shared hosts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from loguru import logger

from workbench.errors import MissingDependencyError, StoreError
from workbench.store.processes import pid_alive

#: Ports of one server, by role; unset roles take Milvus's own defaults.
DEFAULT_PORTS: dict[str, int] = {
    "etcd": 2379,
    "etcd_peer": 2380,
    "metrics": 9091,
    "root_coord": 53100,
    "proxy_internal": 19529,
    "query_coord": 19531,
    "query_node": 21123,
    "index_coord": 22930,
    "index_node": 21121,
    "data_coord": 13333,
    "data_node": 21124,
}
# Ports the launcher's config template knows (role -> template key).
_TEMPLATE_PORTS = {
    "etcd": "etcd_port",
    "root_coord": "root_coord_port",
    "proxy_internal": "proxy_internal_port",
    "query_coord": "query_coord_port",
    "query_node": "query_node_port",
    "index_coord": "index_coord_port",
    "index_node": "index_node_port",
    "data_coord": "data_coord_port",
    "data_node": "data_node_port",
}
# Roles that actually listen (index coord lives inside data coord in 2.3 standalone).
_LISTENING = ("etcd", "etcd_peer", "metrics", "root_coord", "proxy_internal", "query_coord")
_LISTENING += ("query_node", "index_node", "data_coord", "data_node")
_COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord")
_COMPONENTS += ("dataNode",)
INSTALL_HINT = "pip install 'face-workbench[server]'"
PID_FILE = "milvus.pid"
PORTS_FILE = "ports.json"
LOG_FILE = "milvus.log"
# Milvus keeps a stopped server's sessions in etcd for their TTL (~30-40 s):
# a restart inside that window can fail while registering its components.
_STALE_SESSION_WAIT = 45.0
STOP_GRACE_S = 10.0
"""Seconds a stopping server gets to exit on SIGTERM before SIGKILL (see `MilvusServer.stop`)."""
_STALE_MARKERS = ("session", "already exist", "register", "etcdserver")


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``port`` can be listened on at ``host``.

    Like the server's own (Go) listeners it sets SO_REUSEADDR, so connections of a
    just-stopped server lingering in TIME_WAIT do not count as busy.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free right now (for a throw-away server, e.g. in tests)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def random_ports() -> tuple[int, dict[str, int]]:
    """A proxy port and a full `ports` mapping, all currently free."""
    got = free_ports(len(DEFAULT_PORTS) + 1)
    return got[0], dict(zip(DEFAULT_PORTS, got[1:], strict=True))


def pick_ports(data_dir: Path) -> dict[str, int]:
    """Internal ports for a server in ``data_dir``: those it used last time if all are still
    free (its etcd keeps its peer address), else fresh free ones."""
    try:
        doc = json.loads((Path(data_dir) / PORTS_FILE).read_text())
        ports = {role: int(doc[role]) for role in DEFAULT_PORTS}
        if all(port_free(p) for p in ports.values()):
            return ports
    except (OSError, ValueError, KeyError):
        pass
    return random_ports()[1]


def _is_milvus(pid: int) -> bool:
    """Whether ``pid`` is a Milvus binary (a pid file may outlive its process; pids recycle)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid_alive(pid)  # no /proc: trust the pid file
    return bool(cmdline) and cmdline[0].endswith(b"milvus") and b"standalone" in cmdline


class MilvusServer:
    """One standalone Milvus server with its data, config and log in ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 19530,
        host: str = "127.0.0.1",
        ports: dict[str, int] | None = None,
    ) -> None:
        unknown = set(ports or {}) - set(DEFAULT_PORTS)
        if unknown:
            raise StoreError(
                f"unknown Milvus server port role(s) {sorted(unknown)}; "
                f"known: {', '.join(DEFAULT_PORTS)}"
            )
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.port = int(port)
        self.host = host
        self.ports = {**DEFAULT_PORTS, **(ports or {})}
        self._proc: subprocess.Popen[bytes] | None = None

    # ---- paths and state ----------------------------------------------------
    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / PID_FILE

    @property
    def log_file(self) -> Path:
        return self.data_dir / "logs" / LOG_FILE

    def pid(self) -> int | None:
        """The pid of the server started from this data dir, if it still runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) and _is_milvus(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def recorded_uri(self) -> str | None:
        """The URI the server in this data dir was started with (it may run on another port
        than this object's)."""
        try:
            doc = json.loads((self.data_dir / PORTS_FILE).read_text())
        except (OSError, ValueError):
            return None
        return f"http://{doc.get('host', self.host)}:{doc['proxy']}"

    def adopt_recorded_ports(self) -> bool:
        """Take the ports the server of this data dir was started with (to reach it from
        another process); False when none are recorded."""
        try:
            doc = json.loads((self.data_dir / PORTS_FILE).read_text())
            self.port = int(doc["proxy"])
            self.ports = {role: int(doc.get(role, p)) for role, p in self.ports.items()}
        except (OSError, ValueError, KeyError):
            return False
        return True

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # ---- start / stop ---------------------------------------------------------
    def start(self, timeout: float = 120) -> str:
        """Start the server (detached) and wait until a client can list collections.

        Returns its URI. When the server of this data dir already runs, returns
        its URI without starting another.
        """
        if self.running():
            self.adopt_recorded_ports()
            self._wait_ready(self.uri, timeout, None)
            return self.uri
        try:
            return self._start_once(timeout)
        except _StaleSession:
            # The previous server's etcd sessions have not expired yet: wait them out once.
            time.sleep(_STALE_SESSION_WAIT)
            return self._start_once(timeout)

    def _start_once(self, timeout: float) -> str:
        exe = self._prepare()
        env = os.environ.copy()
        env.update(
            DEPLOY_MODE="STANDALONE",
            METRICS_PORT=str(self.ports["metrics"]),
            MILVUS_RUN_DIR=str(self.data_dir / "run"),
            LD_LIBRARY_PATH=":".join([str(exe.parent), os.environ.get("LD_LIBRARY_PATH", "")]),
        )
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"\n==== workbench: starting Milvus on {self.uri} ====\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                [str(exe), "run", "standalone"],
                cwd=self.data_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # detached: outlives us, gets no terminal signals
            )
        self.pid_file.write_text(f"{self._proc.pid}\n")
        (self.data_dir / PORTS_FILE).write_text(
            json.dumps({"host": self.host, "proxy": self.port, **self.ports}, indent=2)
        )
        try:
            self._wait_ready(self.uri, timeout, self._proc)
        except BaseException:
            self.stop()
            raise
        return self.uri

    def _prepare(self) -> Path:
        """Check the ports, write the config, unpack the binary; return the binary's path."""
        try:
            import milvus  # the `server` extra's launcher package
        except ImportError as e:
            raise MissingDependencyError("milvus", "server", "a local Milvus server") from e
        busy = [
            f"{role} {self.ports[role]}" for role in _LISTENING if not port_free(self.ports[role])
        ]
        if not port_free(self.port):
            busy.insert(0, f"proxy {self.port}")
        if busy:
            raise StoreError(
                f"cannot start Milvus in {self.data_dir}: port(s) already in use: "
                f"{', '.join(busy)}. Another Milvus (or other program) listens there: stop it "
                "(`workbench milvus stop --data DIR`) or pick other ports "
                "(`workbench milvus start --port P --free-ports`, MilvusServer(ports={...}))"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The launcher's own resolve() would move a busy port to the next free one
        # (and count TIME_WAIT as busy): fill its template with exactly our ports instead.
        cfg: Any = milvus.MilvusServerConfig(data_dir=str(self.data_dir))
        cfg.resolve_storage()  # data, logs and etcd dirs under data_dir
        cfg.set("proxy_port", self.port)
        for role, key in _TEMPLATE_PORTS.items():
            cfg.set(key, self.ports[role])
        for comp in _COMPONENTS:
            cfg.set(f"{comp}.ip", self.host)
        try:
            cfg.write_config()  # configs/milvus.yaml
        except (OSError, TypeError) as e:
            raise StoreError(f"cannot write the Milvus config in {self.data_dir}: {e}") from e
        self._write_etcd_config()
        try:
            milvus._initialize_data_files(str(self.data_dir))  # noqa: SLF001 - unpacks bin/
        except OSError as e:
            raise StoreError(f"cannot unpack the Milvus binary into {self.data_dir}: {e}") from e
        exe = self.data_dir / "bin" / "milvus"
        if not exe.exists():
            raise StoreError(
                f"the Milvus binary is missing from the `milvus` package ({exe}); "
                f"reinstall it: {INSTALL_HINT}"
            )
        return exe

    def _write_etcd_config(self) -> None:
        """Embedded etcd listens on 2379/2380 unless given its own config file."""
        etcd = self.data_dir / "configs" / "etcd.yaml"
        client = f"http://{self.host}:{self.ports['etcd']}"
        peer = f"http://{self.host}:{self.ports['etcd_peer']}"
        etcd.write_text(
            "name: default\n"
            f"listen-client-urls: {client}\n"
            f"advertise-client-urls: {client}\n"
            f"listen-peer-urls: {peer}\n"
            f"initial-advertise-peer-urls: {peer}\n"
            f"initial-cluster: default={peer}\n"
            "initial-cluster-state: new\n"
        )
        milvus_yaml = self.data_dir / "configs" / "milvus.yaml"
        text = milvus_yaml.read_text()
        text = text.replace(
            f"  endpoints: localhost:{self.ports['etcd']}",
            f"  endpoints: {self.host}:{self.ports['etcd']}\n  config:\n    path: {etcd}",
            1,
        )
        milvus_yaml.write_text(text)

    def _wait_ready(self, uri: str, timeout: float, proc: subprocess.Popen[bytes] | None) -> None:
        # pymilvus logs every refused connection with a traceback: quiet while polling.
        quiet = logging.getLogger("pymilvus")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            self._poll_ready(uri, timeout, proc)
        finally:
            quiet.setLevel(level)

    def _poll_ready(self, uri: str, timeout: float, proc: subprocess.Popen[bytes] | None) -> None:
        from pymilvus import MilvusClient

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                tail = self.log_tail(30)
                if any(m in tail.lower() for m in _STALE_MARKERS):
                    raise _StaleSession(tail)
                raise StoreError(
                    f"Milvus in {self.data_dir} exited with code {proc.returncode} while "
                    f"starting; last lines of {self.log_file}:\n{tail}"
                )
            try:
                # Every component healthy (the proxy answers earlier, while the query
                # node still registers: a first collection then waits ~30 s to load).
                health = f"http://{self.host}:{self.ports['metrics']}/healthz"
                with urllib.request.urlopen(health, timeout=5) as resp:  # noqa: S310 - local
                    body = resp.read().decode(errors="replace")
                if "OK" not in body:
                    raise StoreError(f"{health}: {body.strip()[:200]}")
                client = MilvusClient(uri, timeout=5)
                try:
                    client.list_collections(timeout=5)
                    return
                finally:
                    client.close()
            except Exception as e:  # noqa: BLE001 - not up yet
                last = e
                time.sleep(0.5)
        raise StoreError(
            f"Milvus at {uri} (data {self.data_dir}) was not ready after {timeout:.0f} s "
            f"(last error: {last}); last lines of {self.log_file}:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = STOP_GRACE_S) -> bool:
        """Stop the server: SIGTERM, then SIGKILL after ``timeout`` s, to its whole process
        group (it was started in a session of its own); True if one ran.

        Milvus 2.3's standalone often leaves SIGTERM unanswered for a minute (a
        component waits out its etcd session), so the grace is short, as
        ``docker stop``'s 10 s is: what was flushed is on disk, and a write that
        was not flushed is lost either way.
        """
        pid = self.pid()
        if pid is None and self._proc is not None and self._proc.poll() is None:
            pid = self._proc.pid
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        _signal_group(pid, signal.SIGTERM)
        if not self._wait_exit(pid, timeout):
            logger.info("Milvus (pid {}) still up {:.0f} s after SIGTERM: SIGKILL", pid, timeout)
            _signal_group(pid, signal.SIGKILL)
            self._wait_exit(pid, 10)
        self.pid_file.unlink(missing_ok=True)
        return True

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.pid == pid:
                if self._proc.poll() is not None:
                    return True
            elif not pid_alive(pid):
                return True
            time.sleep(0.2)
        return False


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """``sig`` to the server's process group (its pid: `start_new_session`), or to the
    process alone where the group is gone or was not its own."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
            return
    except (ProcessLookupError, PermissionError):
        pass
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


class _StaleSession(StoreError):
    """The server quit at start-up on sessions a previous run left in etcd."""
