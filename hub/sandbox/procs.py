"""The machine's live processes, read from ``/proc``: what stopping a process tree checks for
(a process group left behind, a child that outlived its parent)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple


class Proc(NamedTuple):
    ppid: int
    pgid: int


def live_processes() -> dict[int, Proc]:
    """Every process by pid that has not exited; zombies count as exited (an orphan reparented
    to a PID 1 that never reaps it stays a zombie for good). Empty where there is no ``/proc``."""
    out: dict[int, Proc] = {}
    root = Path("/proc")
    if not root.is_dir():
        return out
    for entry in root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        # After the command name (in parentheses, which may hold spaces): state, ppid, pgid, ...
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] not in ("Z", "X"):
            out[int(entry.name)] = Proc(int(fields[1]), int(fields[2]))
    return out
