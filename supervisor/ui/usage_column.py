"""The list's TOKENS column: each thread's tokens and cost, read beside the list, kept current.

The sums come from `usage.UsageTally` on a store of their own, so a big
first read (every assistant message of a fleet: seconds, at a low priority)
never holds the connection the list, the detail and the refreshes share.
After it, each refresh that changed threads reads only what is new.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from supervisor.location import Location
from supervisor.text import one_line
from supervisor.usage import UsageTally, load_or_shipped

if TYPE_CHECKING:
    from supervisor.ui.app import SupervisorApp


class UsageColumn:
    """Reads for the TOKENS column, one at a time, off the UI thread."""

    def __init__(self, app: SupervisorApp, database: str, busy_timeout: float) -> None:
        self.app = app
        self.database = database
        self.busy_timeout = busy_timeout
        self.tally = UsageTally(load_or_shipped()[0])
        self._store: Any = None
        self._lock = threading.Lock()
        self._closed = False
        self._failed = False

    def read_soon(self, touched: Collection[str] = ()) -> None:
        """Read what changed (everything, the first time) in a worker thread."""
        if not self._closed and not self._failed:
            self.app.run_worker(
                lambda: self._read(set(touched)), thread=True, group="usage", exit_on_error=False
            )

    def _read(self, touched: set[str]) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                if self._store is None:
                    self._store = Location.parse(self.database).store(
                        busy_timeout=self.busy_timeout, only=()
                    )
                first = not self.tally.started
                updates = self.tally.read(self._store, touched)
            except Exception as exc:  # noqa: BLE001 - the column stays empty; said once
                self._failed = True
                self.app.call_from_thread(
                    self.app.notify,
                    f"tokens not read: {one_line(str(exc), 200)}",
                    severity="warning",
                    markup=False,
                )
                return
        if (updates or first) and not self._closed:
            self.app.call_from_thread(self.app.table.set_usage, updates, first)

    def close(self) -> None:
        """Let go of the store (a read under way finishes first)."""
        self._closed = True
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
