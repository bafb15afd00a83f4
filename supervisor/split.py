"""When a read of a SQLite file is worth splitting between two processes.

Past SQLite's aggregate, a listing is Python on one core (each thread's
summary, state and line); at 100,000 threads that is half the wait. `list`
(`supervisor.listing`) and the app's first read (`supervisor.first_read`)
divide a big file's threads at a thread id about half the rows sort before
(`SQLiteStore.split_point`) and read each half in its own process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

#: A file smaller than this is read by one process: forking would cost what it saves.
SPLIT_ABOVE_BYTES = 32 << 20


def worth_splitting(database: Path) -> bool:
    """A big file, on a machine with a second core to give it, where processes fork."""
    return hasattr(os, "fork") and cores() >= 2 and database.stat().st_size >= SPLIT_ABOVE_BYTES


def fork_child(child: Callable[[], None]) -> int:
    """Run `child()` in a forked process and return its pid. The child leaves by
    `os._exit` (0 if `child` returned, 1 if it raised): it never returns into the
    parent's code or runs the parent's cleanup (its stores, its temporary files)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            child()
            code = 0
        except BaseException:  # noqa: BLE001, S110 - the exit code is the child's whole report
            pass
        finally:
            os._exit(code)
    return pid


def cores() -> int:
    """The cores this process may run on (a container's share, not the machine's)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1
