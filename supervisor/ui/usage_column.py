"""The list's TOKENS column: each thread's tokens and cost, read beside the list, kept current.

The sums come from `usage.UsageTally` on a store of their own, so a big
first read (every assistant message of a fleet: seconds, at a low priority)
never holds the connection the list, the detail and the refreshes share.
After it, each refresh that changed threads reads only what is new.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from supervisor.location import Location
from supervisor.text import one_line
from supervisor.usage import UsageTally, load_or_shipped

if TYPE_CHECKING:
    from supervisor.ui.app import SupervisorApp


#: How long the tally's work waits, each time, for a held key to be let go.
GIVE_WAY_STEP = 0.05
#: The longest it waits at one batch: a key held for minutes does not starve the column.
GIVE_WAY_AT_MOST = 30.0


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
                updates = self.tally.read(self._store, touched, pace=self._give_way)
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

    def _give_way(self) -> None:
        """Between batches of the tally's Python work: wait while a key is held, so the
        interpreter is the screen's (a held `j` missed frames for 100-250 ms at a time
        while a first read at 100,000 threads was summed beside it)."""
        waited = 0.0
        while self.app.held_key.held and not self._closed and waited < GIVE_WAY_AT_MOST:
            time.sleep(GIVE_WAY_STEP)
            waited += GIVE_WAY_STEP

    def close(self) -> None:
        """Let go of the store (a read under way finishes first)."""
        self._closed = True
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
