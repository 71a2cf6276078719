"""Processes of this host, as the store's servers and runs need to know them: whether a
pid still runs, its command line, and which process holds a ``flock`` on a file."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (another user's counts; an exited child not yet
    reaped, a zombie, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def command_words(pid: int) -> list[str]:
    """The command line of ``pid``, word by word ([] when it cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [w.decode(errors="replace") for w in raw.split(b"\0") if w]


def command_of(pid: int) -> str:
    """The command line of ``pid`` (shortened), or ``unknown command``."""
    return " ".join(command_words(pid))[:120] or "unknown command"


def flock_holder(path: Path) -> int | None:
    """The pid holding a ``flock`` on ``path`` (Linux ``/proc/locks``), if any."""
    try:
        inode = path.stat().st_ino
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].endswith(f":{inode}"):
            with contextlib.suppress(ValueError):
                return int(fields[4])
    return None


__all__ = ["command_of", "command_words", "flock_holder", "pid_alive"]
