"""A preview of a big file's newest threads, read by a forked child while the app imports.

The app asks for it before it imports Textual and the agent stack (half a
second of Python). A thread would share the interpreter's lock with those
imports, and each SQLite step hands the lock back and waits for it again: in a
thread the 0.06 s read took 0.5 s. A forked child reads on its own connection
and core, and hands the summaries over a pipe. Started before the process
starts any thread (`supervisor.split` says why a fork must come first).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
from collections.abc import Callable
from typing import Any

from supervisor.states import ThreadSummary
from supervisor.store import StoreError

Read = Callable[[], list[ThreadSummary]]


class EarlyPreview:
    """One child reading a preview; its result taken once, or the child stopped."""

    def __init__(self, pid: int, reading: int) -> None:
        self.pid = pid
        self._reading = reading

    @classmethod
    def start(cls, read: Read) -> EarlyPreview:
        """Fork a child that runs `read` and hands back what it found (or its error)."""
        reading, writing = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: read, hand over, and leave without running any cleanup
            try:
                os.close(reading)
                try:
                    found: tuple[str, Any] = ("ok", read())
                except StoreError as exc:
                    found = ("error", str(exc))
                with os.fdopen(writing, "wb") as out:
                    pickle.dump(found, out, protocol=pickle.HIGHEST_PROTOCOL)
            finally:
                os._exit(0)
        os.close(writing)
        return cls(pid, reading)

    def ready(self) -> bool:
        """Whether the child has handed its result over: `result` returns at once."""
        readable, _, _ = select.select([self._reading], [], [], 0)
        return bool(readable)

    def result(self, again: Read) -> list[ThreadSummary]:
        """The child's preview; `again` reads it here if the child died without one."""
        with os.fdopen(self._reading, "rb") as pipe:
            data = pipe.read()
        os.waitpid(self.pid, 0)
        try:
            status, found = pickle.loads(data)
        except (pickle.UnpicklingError, EOFError, ValueError):
            return again()
        if status == "error":
            raise StoreError(found)
        return found

    def cancel(self) -> None:
        """Stop a child whose preview was never asked for."""
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self._reading)
