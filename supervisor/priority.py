"""Whole-table scans on a thread of their own, at a lower CPU priority than the screen.

The app's background scans (the check of every row, a transcript read on a
database without the thread index) are SQLite statements that release the
GIL: on a two-core machine they compete with drawing for the CPU, not for
the interpreter, so the scheduler decides who waits. On Linux a thread has
its own nice value: the scan's thread gives way whenever the screen needs the
core, and takes every cycle it leaves. A new thread each time, because a
priority once lowered cannot be raised again without privileges: a pooled
worker thread must never carry it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: How much lower than the app's own, for these threads and the forked first-read
#: processes (`first_read`) alike.
NICENESS = 10


def lower_this_thread(niceness: int = NICENESS) -> bool:
    """Lower the calling thread's priority (Linux; elsewhere nothing); whether it was."""
    setpriority = getattr(os, "setpriority", None)
    if setpriority is None or not hasattr(threading, "get_native_id"):
        return False
    tid = threading.get_native_id()
    try:
        setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + niceness)
    except OSError:
        return False
    return True


def at_low_priority(work: Callable[[], T], niceness: int = NICENESS) -> T:
    """`work()` on a new thread of lower priority; waits, and returns or raises what it did."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        lower_this_thread(niceness)
        try:
            outcome.append(work())
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="low-priority scan", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
