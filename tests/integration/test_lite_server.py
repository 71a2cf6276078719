"""The home's shared Milvus Lite server (`workbench.store.lite_server`), for real: one
server per home whatever the number of processes, stopped after the last one has gone,
a stale record replaced (never a stranger's pid signalled), and a data directory that
another process keeps open waited for, then named in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DevPhoto, cli_env, run_cli

pytestmark = pytest.mark.integration

HOLD_IN_PROCESS = """
import sys, time
from pymilvus import MilvusClient
client = MilvusClient(sys.argv[1])  # Milvus Lite in this process: the data directory is its own
client.list_collections()
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _gone(pid: int, within: float = 15.0) -> bool:
    from workbench.store.processes import pid_alive

    deadline = time.monotonic() + within
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _lists(uri: str) -> list[str]:
    from pymilvus import MilvusClient

    client = MilvusClient(uri)
    try:
        return list(client.list_collections())
    finally:
        client.close()


def test_processes_share_one_server_which_stops_after_the_last(tmp_path: Path) -> None:
    from workbench.store.lite_server import attach, read_record
    from workbench.store.processes import pid_alive

    data = tmp_path / "vectors.db"
    first = attach(data, idle_s=1)
    second = attach(data, idle_s=1)
    assert first.record == second.record == read_record(data)
    assert _lists(first.uri) == []
    first.close()
    time.sleep(2.5)  # past the idle time, but the second user still holds it
    assert pid_alive(second.record.pid) and _lists(second.uri) == []
    second.close()
    assert _gone(second.record.pid), "the server outlived its last user"
    assert read_record(data) is None


def test_a_stale_record_is_replaced_and_a_strangers_pid_never_signalled(
    tmp_path: Path,
) -> None:
    from workbench.store.lite_server import RECORD, attach, read_record, run_dir
    from workbench.store.processes import pid_alive

    data = tmp_path / "vectors.db"
    lease = attach(data, idle_s=30)
    crashed = lease.record.pid
    os.kill(crashed, signal.SIGKILL)  # the server dies without a word
    lease.close()
    assert _gone(crashed)
    assert read_record(data) is not None and read_record(data).pid == crashed  # type: ignore[union-attr]
    with attach(data, idle_s=1) as again:
        assert again.record.pid != crashed and _lists(again.uri) == []

    # After a reboot the recorded pid may be another program's: it is left alone.
    assert _gone(again.record.pid)
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        record = {"pid": stranger.pid, "port": 1, "data_dir": str(data.resolve()), "started": 0}
        (run_dir(data) / RECORD).write_text(json.dumps(record))
        with attach(data, idle_s=1) as fresh:
            assert fresh.record.pid != stranger.pid and _lists(fresh.uri) == []
        assert pid_alive(stranger.pid)
    finally:
        stranger.kill()
        stranger.wait()


def test_a_data_directory_open_in_another_process_is_waited_for_then_named(
    tmp_path: Path, models_dir: Path, dev_photos: list[DevPhoto]
) -> None:
    from workbench.errors import StoreError
    from workbench.store.lite_server import attach, read_record

    home = tmp_path / "wb"
    data = home / "vectors.db"
    env = {**cli_env(home, models_dir), "WORKBENCH_STORAGE__LITE_IDLE_S": "0"}
    photo = next(p.path for p in dev_photos if p.category == "identity")
    ingested = run_cli(["ingest", str(photo), "--json"], env)
    assert ingested.returncode == 0, ingested.stderr
    record = read_record(data)
    assert record is None or _gone(record.pid)  # its server stopped: nobody uses it
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_IN_PROCESS, str(data), "120"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        with pytest.raises(StoreError) as refused:
            attach(data, wait_s=4)
        waited = time.monotonic() - started
        assert 3 <= waited < 15, waited
        assert f"open in process {holder.pid}" in str(refused.value)
        assert "\n" not in str(refused.value)

        # The CLI says the same in one line, exit status 2.
        proc = run_cli(["stats", "--json"], {**env, "WORKBENCH_STORAGE__WAIT_S": "3"})
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert f"open in process {holder.pid}" in proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    finally:
        holder.kill()
        holder.wait()

    # A holder that lets go within the wait: the server starts once it has.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_IN_PROCESS, str(data), "2"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    with attach(data, wait_s=30, idle_s=1) as lease:
        assert _lists(lease.uri) == ["faces_mobilefacenet_128d"]
    holder.wait(30)
