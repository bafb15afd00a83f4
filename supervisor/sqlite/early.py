"""A preview of a big file's newest threads, read by a forked child while the app imports.

The app asks for it before it imports Textual and the agent stack (half a
second of Python). A thread would share the interpreter's lock with those
imports, and each SQLite step hands the lock back and waits for it again: in a
thread the 0.06 s read took 0.5 s. A forked child (`split.Forked`) reads on its
own connection and core, and hands the summaries back as one pickled tuple.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO

from supervisor.split import Forked, report_to
from supervisor.states import ThreadSummary
from supervisor.store import StoreError

Read = Callable[[], list[ThreadSummary]]


class EarlyPreview:
    """One child reading a preview; its result taken once, or the child stopped."""

    def __init__(self, read: Read) -> None:
        def work(_orders: IO[bytes], report: IO[bytes]) -> None:
            send = report_to(report)
            try:
                send(("ok", read()))
            except StoreError as exc:
                send(("error", str(exc)))

        self._child = Forked(work)

    @classmethod
    def start(cls, read: Read) -> EarlyPreview:
        """Fork a child that runs `read` and hands back what it found (or its error)."""
        return cls(read)

    @property
    def pid(self) -> int | None:
        return self._child.pid

    def ready(self) -> bool:
        """Whether the child has handed its result over: `result` returns at once."""
        return self._child.has_message()

    def result(self, again: Read) -> list[ThreadSummary]:
        """The child's preview; `again` reads it here if the child died without one."""
        found = self._child.receive()
        self._child.reap()
        if found is None:
            return again()
        status, value = found
        if status == "error":
            raise StoreError(value)
        return value

    def cancel(self) -> None:
        """Stop a child whose preview was never asked for."""
        self._child.reap()
