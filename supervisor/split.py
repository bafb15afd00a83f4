"""When a read of a SQLite file is worth splitting between two processes.

Past SQLite's aggregate, a listing is Python on one core (each thread's
summary, state and line); at 100,000 threads that is half the wait. `list`
(`supervisor.listing`) and the app's first read (`supervisor.first_read`)
divide a big file's threads at a thread id about half the rows sort before
(`SQLiteStore.split_point`) and read each half in its own process.
"""

from __future__ import annotations

import os
from pathlib import Path

#: A file smaller than this is read by one process: forking would cost what it saves.
SPLIT_ABOVE_BYTES = 32 << 20


def worth_splitting(database: Path) -> bool:
    """A big file, on a machine with a second core to give it, where processes fork."""
    return hasattr(os, "fork") and cores() >= 2 and database.stat().st_size >= SPLIT_ABOVE_BYTES


def cores() -> int:
    """The cores this process may run on (a container's share, not the machine's)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1
