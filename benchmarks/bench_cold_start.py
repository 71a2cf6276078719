"""How long a fresh `workbench` process takes: `--help`, `import workbench`, a search.

Each command runs ``--repeats`` times (default 5) as a new process, interleaved with
``python -c pass`` (the interpreter's own start, the baseline of the same run); medians
reported. The search runs against a home built once from the dev set under ``--scratch``,
twice: with the home's shared Milvus Lite server stopped (the first command in a new
terminal: the search starts it) and with it running (a notebook or the dashboards have
the home open). Goals (issue 20): ``--help`` ≤ 0.3 s, a search ≤ 1.2 s.

    python benchmarks/bench_cold_start.py [--repeats 5] [--scratch DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from _common import FACES_DEV, machine, median, run_checked, workbench_env, write_json

SAMPLE = FACES_DEV / "images" / "dev_0010.jpg"


def timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    run_checked(cmd, env)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/bench-cold-start"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    home = args.scratch / "dev"
    env = workbench_env(home)
    # The server's idle stop kept short, so that each of these searches starts it.
    cold = workbench_env(home, WORKBENCH_STORAGE__LITE_IDLE_S="0.5")
    cli = [sys.executable, "-m", "workbench.cli"]
    timed([*cli, "ingest", str(FACES_DEV / "images"), "--json", "--no-progress"], env)
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "workbench --help": [*cli, "--help"],
        "import workbench": [sys.executable, "-c", "import workbench"],
        "workbench search": [*cli, "search", str(SAMPLE), "--json"],
    }
    times: dict[str, list[float]] = {name: [] for name in [*commands, "search, server up"]}
    for _ in range(args.repeats):
        for name, cmd in commands.items():
            if name == "workbench search":
                time.sleep(2.0)  # the previous search's Lite server has stopped
                times[name].append(timed(cmd, cold))
            else:
                times[name].append(timed(cmd, env))
    search = commands["workbench search"]
    timed(search, env)  # starts the server (30 s idle stop) for the searches below
    for _ in range(args.repeats):
        times["python -c pass"].append(timed(commands["python -c pass"], env))
        times["search, server up"].append(timed(search, env))
    base = median(times["python -c pass"])
    results: dict[str, Any] = {}
    for name, values in times.items():
        m = median(values)
        results[name] = {"median_s": round(m, 3), "runs_s": [round(v, 3) for v in values]}
        print(f"{name:18s} median {m:6.3f} s  ({m / base:5.1f}× python -c pass)", flush=True)
    path = write_json("cold_start", {"commands": results, "machine": machine()}, args.out)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
