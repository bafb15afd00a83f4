"""When a read of a SQLite file is worth splitting between two processes.

Past SQLite's aggregate, a listing is Python on one core (each thread's
summary, state and line); at 100,000 threads that is half the wait. `list`
(`supervisor.listing`) and the app's first read (`supervisor.first_read`)
divide a big file's threads at a thread id about half the rows sort before
(`SQLiteStore.split_point`) and read each half in its own process.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from supervisor import collector

#: A file smaller than this is read by one process: forking would cost what it saves.
SPLIT_ABOVE_BYTES = 32 << 20


def worth_splitting(database: Path) -> bool:
    """A big file, on a machine with a second core to give it, where processes fork."""
    return hasattr(os, "fork") and cores() >= 2 and database.stat().st_size >= SPLIT_ABOVE_BYTES


class ThreadsRunning(RuntimeError):
    """A fork was asked for while other threads run: the child would inherit their locks
    held (SQLite's, the allocator's, the logging module's) with nobody to release them."""


def fork_child(child: Callable[[], None]) -> int:
    """Run `child()` in a forked process and return its pid: every fork of the package
    goes through here. The child leaves by `os._exit` (0 if `child` returned, 1 if it
    raised): it never returns into the parent's code or runs the parent's cleanup (its
    stores, its temporary files). Refused (`ThreadsRunning`) once another thread runs:
    forks come first, in the CLI and before the app imports what starts threads."""
    others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if others:
        raise ThreadsRunning(f"fork refused: threads running ({', '.join(others)})")
    for stream in (sys.stdout, sys.stderr):  # a buffer copied into the child is written twice
        with contextlib.suppress(Exception):
            stream.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            with collector.bulk_read():  # a short life of reading: no cycles to collect
                child()
            code = 0
        except BaseException:  # noqa: BLE001, S110 - the exit code is the child's whole report
            pass
        finally:
            os._exit(code)
    return pid


class Forked:
    """A forked process and the two pipes to it: pickled tuples each way (the one
    message format of the package's forks; `first_read` sends its summaries as pickled
    chunks on the same kind of pipe).

    `work(orders, report)` runs in the child with its ends of the pipes
    (`fork_child`: it never returns into our code). `receive` gives None for a
    child that died or closed its end without a word: the caller does its
    share itself.
    """

    def __init__(self, work: Callable[[IO[bytes], IO[bytes]], None]) -> None:
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()

        def child() -> None:
            os.close(down_w)
            os.close(up_r)
            with os.fdopen(down_r, "rb") as orders, os.fdopen(up_w, "wb") as report:
                work(orders, report)

        self.pid: int | None = fork_child(child)
        os.close(down_r)
        os.close(up_w)
        self._to = os.fdopen(down_w, "wb")
        self._from = os.fdopen(up_r, "rb")

    def send(self, message: tuple[Any, ...]) -> None:
        with contextlib.suppress(OSError):  # a child that is gone is found by `receive`
            pickle.dump(message, self._to, protocol=pickle.HIGHEST_PROTOCOL)
            self._to.flush()

    def has_message(self) -> bool:
        """Whether the child has written to us (`receive` returns at once)."""
        readable, _, _ = select.select([self._from], [], [], 0)
        return bool(readable)

    def receive(self) -> tuple[Any, ...] | None:
        try:
            return pickle.load(self._from)
        except (EOFError, OSError, pickle.UnpicklingError):
            return None

    def reap(self) -> None:
        """Stop the child if it still runs (we were interrupted), and wait for it."""
        if self.pid is None:
            return
        for pipe in (self._to, self._from):
            with contextlib.suppress(OSError):
                pipe.close()
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        self.pid = None


def report_to(pipe: IO[bytes]) -> Callable[[tuple[Any, ...]], None]:
    """The child's side of `Forked.receive`: each message pickled and flushed at once."""

    def send(message: tuple[Any, ...]) -> None:
        pickle.dump(message, pipe, protocol=pickle.HIGHEST_PROTOCOL)
        pipe.flush()

    return send


def cores() -> int:
    """The cores this process may run on (a container's share, not the machine's)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1
