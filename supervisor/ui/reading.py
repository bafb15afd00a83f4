"""Reading the database for the app: refreshes, the first screen, leases, files, transcripts.

A mixin of `SupervisorApp`. Threading rule (as Harlequin's): database work
happens in thread workers that never touch widgets; they post messages
(`ThreadsRefreshed`, `RefreshFailed`, `StoreNotices`) that the app's `@on`
handlers turn into state. Every read goes through the app's store lock and
stops once the store is closed.
"""

from __future__ import annotations

import gc
from pathlib import Path

from textual import work

from supervisor import collector
from supervisor.markers import Marker
from supervisor.store import StoreError, Transcript
from supervisor.ui.lifecycle import StoreClosed
from supervisor.ui.messages import RefreshFailed, StoreNotices, ThreadsRefreshed

#: Seconds between looks at the leases (runs held by other supervisors).
LEASE_POLL = 0.5
#: Seconds between looks at a Postgres database (a refresh reads only what changed).
SERVER_POLL = 1.0


class DatabaseReading:
    """Refresh, preview, row check, lease poll, file watch, transcript reads."""

    def request_refresh(self) -> None:
        """Refresh now, or right after the refresh under way."""
        if self._refresh_running:
            self._refresh_again = True
            return
        self._refresh_running = True
        # A preview is not a listing: the pass after it replaces it whole.
        self._refresh_worker(full=not self.summaries or self._reading)

    @work(thread=True, group="refresh", exit_on_error=False)
    def _refresh_worker(self, full: bool) -> None:
        try:
            if full and not self._reading:  # not shown already by on_mount
                self._post_preview()
            # No collection may walk the 100,000 summaries of a first pass while they
            # are built and copied (1.4 s with it), nor the first one after (it walks
            # all a pause allocated: 0.7 s at 100,000): the listing lives as long as
            # the app, so it is frozen out of the collector's walks before it resumes.
            with self._store_lock, collector.paused():
                if self._store_closed:
                    return
                changed = self.store.refresh()
                notices = self.store.take_notices()
                found = (self.store.get(t) for t in changed)
                copies = {s.thread_id: s.copy() for s in found if s is not None}
                if full:
                    gc.freeze()
        except StoreError as exc:
            self.post_message(RefreshFailed(str(exc)))
            return
        if notices:
            self.post_message(StoreNotices(notices))
        self.post_message(ThreadsRefreshed(copies, full))

    @work(thread=True, group="check", exit_on_error=False)
    def _check_rows_worker(self) -> None:
        """Validate every row the first listing took on trust, in the background.

        The scan runs on its own connection without the app's lock (a
        refresh can go on meanwhile); threads found corrupt are shown so.
        """
        check = getattr(self.store, "check_rows", None)
        if check is None or self._store_closed:
            return
        try:
            bad = check()
        except StoreError as exc:
            self.post_message(RefreshFailed(str(exc)))
            return
        if not bad:
            return
        with self._store_lock:
            found = (self.store.get(t) for t in bad)
            copies = {s.thread_id: s.copy() for s in found if s is not None}
        self.post_message(ThreadsRefreshed(copies, full=False))

    def _post_preview(self) -> None:
        """On a big database, the threads of its newest rows first, while the whole pass runs."""
        preview = getattr(self.store, "preview", None)
        if preview is None:
            return
        with self._store_lock:
            early = None if self._store_closed else preview()
        if early:
            summaries = {s.thread_id: s for s in early}
            self.post_message(ThreadsRefreshed(summaries, full=True, provisional=True))

    @work(thread=True, exclusive=True, group="leases", exit_on_error=False)
    def _poll_leases(self) -> None:
        """Leases change without a database write (a holder that dies touches no file).

        Twice a second, look at the live leases and refresh when they differ
        from the last look, so another supervisor's run shows (and stops
        showing) within a second. It compares with its own last look, not with
        the list: it runs in a thread and must not read the app's state.
        """
        self.store.leases.tidy()  # once: what dead holders left, before it is read each time
        live = self.store.leases.live()
        watchers = self.store.leases.watchers(live)
        if watchers != self._watchers_seen and not self._quitting:
            self._watchers_seen = watchers
            self.call_from_thread(self._update_summary_line)
        if live != self._leases_seen and not self._quitting:
            self._leases_seen = live
            self.call_from_thread(self.request_refresh)

    def _read_transcript(self, thread_id: str, full: bool = False) -> Transcript:
        """Every transcript read, from a thread: waits for a query in flight, never after close."""
        with self._store_lock:
            if self._store_closed:
                raise StoreClosed("the database is closed")
            return self.store.transcript(thread_id, full=full)

    def _load_thread(self, thread_id: str) -> tuple[Transcript, list[Marker]]:
        """The detail pane's loader (in its worker): the transcript, then the markers.
        The planner runs next, on the screen's thread: the agent's marker hook it needs
        is waited for here if the agent's import is still under way."""
        self._marker_hook()
        try:
            transcript = self._read_transcript(thread_id)
        except StoreClosed:
            raise LookupError(thread_id) from None
        return transcript, self.runner.jobs.read_markers()

    @work(exclusive=True, group="watch", exit_on_error=False)
    async def _watch(self) -> None:
        from watchfiles import awatch

        database = self.database_path
        assert database is not None  # only files are watched
        # The database, and the watcher's attempt records beside it (`supervisor.attempts`).
        names = {database.name + s + j for s in ("", ".watch") for j in ("", "-wal", "-journal")}
        jobs = None if self.runner.jobs.server else self.runner.jobs.path.resolve()
        # Not recursive: a database in a home directory would have every file
        # under it watched (seconds of walking, on the UI thread, and the
        # kernel's watch limit). Leases are polled (`_poll_leases`), not watched.
        paths = {str(database.resolve().parent)}
        if jobs is not None and jobs.is_dir():
            paths.add(str(jobs))

        def relevant(_change: object, path: str) -> bool:
            p = Path(path)
            return p.name in names or p.parent == jobs

        async for changes in awatch(
            *paths,
            watch_filter=relevant,
            recursive=False,
            debounce=200,
            step=50,
            stop_event=self._stop_watching,
            rust_timeout=500,
        ):
            if any(Path(p).name in names for _, p in changes):
                self.request_refresh()
            if jobs is not None and any(Path(p).parent == jobs for _, p in changes):
                self._reload_detail_soon()

    def _close_store(self) -> None:
        """Wait for a worker's query in flight; a connection closed under it crashes."""
        stop = getattr(self.store, "stop_first_read", None)
        if stop is not None:  # a first read by forked readers ends now, not when they finish
            stop()
        with self._store_lock:
            self._store_closed = True
            self.store.close()
