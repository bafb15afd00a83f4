"""Reading the database for the app: refreshes, the first screen, leases, files, transcripts.

Threading rule (as Harlequin's): database work
happens in thread workers that never touch widgets; they post messages
(`ThreadsRefreshed`, `RefreshFailed`, `StoreNotices`) that the app's `@on`
handlers turn into state. Every read goes through the app's store lock and
stops once the store is closed.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.worker import Worker, get_current_worker

from supervisor import collector
from supervisor.location import Location
from supervisor.markers import Marker
from supervisor.search import Found
from supervisor.store import Store, StoreError, Transcript
from supervisor.ui.lifecycle import StoreClosed
from supervisor.ui.messages import IndexHint, RefreshFailed, StoreNotices, ThreadsRefreshed

if TYPE_CHECKING:
    from textual.timer import Timer

    from supervisor.ui.app import SupervisorApp

#: Seconds between looks at the leases (runs held by other supervisors).
LEASE_POLL = 0.5
#: Seconds between looks at a Postgres database (a refresh reads only what changed).
SERVER_POLL = 1.0
#: A server's look that takes longer than this spaces out the next (`look_wait`). With
#: `index URL`'s indexes a look takes 20 ms; on a busy machine a small database's look
#: can take 150 ms of waiting for a core, which says nothing of the server's cost.
POLL_FREE = 0.15
#: How much longer the next look waits for each second a look took past `POLL_FREE`.
#: Without the indexes each look scans every message (0.6 s of wall time at 100,000
#: threads, and more of the server's CPU: its parallel workers): a wait of 20 times a
#: look left the server at 9.5% of a core, 50 times at 4.1% (a look every half minute).
POLL_COST_FACTOR = 60
#: Seconds after a failed refresh before another is tried (a file's: a server is polled
#: every second anyway), and before the lease poll asks for one: while the database
#: fails (locked, a server gone), leases that changed since the last good refresh stay
#: changed, and every look asked again, twice a second.
AFTER_A_FAILURE = 5.0


def look_wait(took: float) -> float:
    """Seconds from the end of a look that took `took` seconds to the next timed one."""
    return max(SERVER_POLL, POLL_COST_FACTOR * (took - POLL_FREE))


class StoreReader:
    """Refresh, preview, row check, lease poll, file watch, transcript reads.

    It owns the store and the rules for touching it: one lock, every read
    from a worker thread, nothing after `close`. Results go to the app as
    messages; the app's handlers own every change to the screen.
    """

    def __init__(self, app: SupervisorApp, store: Store) -> None:
        self.app = app
        self.store = store
        #: The file to watch; None for a server, which is polled instead.
        self.path: Path | None = store.path
        self.lock = threading.RLock()
        self.closed = False
        #: A refresh is under way; another was asked for meanwhile.
        self.running = False
        self.again = False
        self.stop_watching = asyncio.Event()
        self._lease_poll: Worker[None] | None = None
        #: Live `agent-supervisor watch` processes on this database (the header says so).
        self.watchers_seen: list[dict[str, Any]] = []
        #: When the last refresh ended and how long it took (monotonic seconds).
        self._last_refresh = (0.0, 0.0)
        #: When the last refresh failed, if the one after it has not worked yet.
        self._failed_at: float | None = None
        #: The timer that tries a failed refresh again (`failed`), while one is set.
        self._retry: Timer | None = None

    def poll_due(self, now: float | None = None) -> bool:
        """Whether a server's timer may refresh now: at most once a second, and a costly
        look spaces out the next (`look_wait`; a refresh the person asks for is not held
        back). Not while one runs: a tick would queue a look behind it, to run the moment
        it ends."""
        if self.running:
            return False
        now = time.monotonic() if now is None else now
        ended, took = self._last_refresh
        return now - ended >= look_wait(took) - SERVER_POLL / 2

    def request_refresh(self, full: bool, preview: bool) -> None:
        """Refresh now, or right after the refresh under way. `full`: the listing is read
        whole (a first read; a preview is not a listing, the pass after it replaces it
        whole); `preview`: a big database's newest threads are shown first."""
        if self.running:
            self.again = True
            return
        self.running = True
        self._refresh(full, preview)

    def read_again(self) -> None:
        """Read the whole database again (threads were removed: a refresh reads only what
        is new), as a full refresh the list takes whole."""

        def work() -> None:
            with self.lock:
                if self.closed:
                    return
                self.store.start_over()
            self.app.call_from_thread(self.request_refresh, True, False)

        self.app.run_worker(work, thread=True, group="refresh", exit_on_error=False)

    def failed(self) -> None:
        """A refresh failed (`RefreshFailed`): one asked for meanwhile runs now; else a
        file's is tried again in `AFTER_A_FAILURE` seconds. Nothing else would: file
        events stop when the writes do, and a failure during the last write (a lock held
        past the busy timeout) left the list without it for good."""
        if self.refreshed():
            self.app.request_refresh()
        elif self.path is not None and self._retry is None and not self.closed:
            self._retry = self.app.set_timer(AFTER_A_FAILURE, self._try_again)

    def _try_again(self) -> None:
        self._retry = None
        if not self.closed and not self.app.quitting:
            self.app.request_refresh()

    def refreshed(self) -> bool:
        """A refresh's result was taken (or its failure said); whether to refresh again."""
        self.running = False
        again, self.again = self.again, False
        return again

    def _refresh(self, full: bool, preview: bool) -> None:
        self.app.run_worker(
            functools.partial(self._refresh_work, full, preview),
            thread=True,
            group="refresh",
            exit_on_error=False,
        )

    def _refresh_work(self, full: bool, preview: bool) -> None:
        try:
            if preview:
                self._post_preview()
            # No collection may walk the 100,000 summaries of a first pass while they
            # are built and copied (1.4 s with it), nor the first one after (it walks
            # all a pause allocated: 0.7 s at 100,000): the listing lives as long as
            # the app, so it is frozen out of the collector's walks before it resumes.
            with self.lock, collector.bulk_read(keep=full):
                if self.closed:
                    return
                started = time.monotonic()
                changed = self.store.refresh()
                if not full:  # a first read is no measure of a look for what is new
                    self._last_refresh = (time.monotonic(), time.monotonic() - started)
                notices = self.store.take_notices()
                found = (self.store.get(t) for t in changed)
                copies = {s.thread_id: s.copy() for s in found if s is not None}
        except StoreError as exc:
            self._failed_at = time.monotonic()
            self.app.post_message(RefreshFailed(str(exc)))
            return
        self._failed_at = None
        if notices:
            self.app.post_message(StoreNotices(notices))
        self.app.post_message(ThreadsRefreshed(copies, full))

    def look_for_index(self) -> None:
        """Whether the database lacks the index that keeps a thread's read from scanning
        every row (once the first listing has counted them): `IndexHint`."""
        self.app.run_worker(self._look_for_index, thread=True, group="index", exit_on_error=False)

    def _look_for_index(self) -> None:
        try:
            with self.lock:
                if self.closed:
                    return
                hint = self.store.index_hint()
        except StoreError:
            return
        self.app.post_message(IndexHint(hint))

    def add_indexes(self) -> list[str]:
        """Add the index (in a worker thread; the person agreed): what was added."""
        location = Location.parse(self.app.runner.config.database)
        return location.add_indexes(self.store.busy_timeout)

    def check_rows(self) -> None:
        self.app.run_worker(
            functools.partial(self.check_rows_work), thread=True, group="check", exit_on_error=False
        )

    def check_rows_work(self) -> None:
        """Validate every row the first listing took on trust, in the background.

        The scan runs on its own connection without the app's lock (a
        refresh can go on meanwhile); threads found corrupt are shown so.
        """
        if self.closed:
            return
        try:
            bad = self.store.check_rows()
        except StoreError as exc:
            self.app.post_message(RefreshFailed(str(exc), refresh=False))
            return
        if not bad:
            return
        with self.lock:
            found = (self.store.get(t) for t in bad)
            copies = {s.thread_id: s.copy() for s in found if s is not None}
        self.app.post_message(ThreadsRefreshed(copies, full=False))

    def _post_preview(self) -> None:
        """On a big database, the threads of its newest rows first, while the whole pass runs."""
        with self.lock:
            early = None if self.closed else self.store.preview()
        if early:
            summaries = {s.thread_id: s for s in early}
            self.app.post_message(ThreadsRefreshed(summaries, full=True, provisional=True))

    def poll_leases(self) -> None:
        """One look at a time: a thread worker goes on when cancelled, and two looks that
        ended out of order left the older one's leases as the last seen (a holder that had
        died since was then never noticed: its thread stayed `running`)."""
        if self._lease_poll is not None and not self._lease_poll.is_finished:
            return
        self._lease_poll = self.app.run_worker(
            functools.partial(self.poll_leases_work),
            thread=True,
            group="leases",
            exit_on_error=False,
        )

    def poll_leases_work(self) -> None:
        """Leases change without a database write (a holder that dies touches no file).

        Twice a second, look at the live leases and refresh when they differ
        from those the last refresh folded into the list, so another
        supervisor's run shows (and stops showing) within a second. Not from
        this poll's own last look: a refresh a write set off between two looks
        could fold a holder that then died unseen by either, its thread left
        `running`. It never reads the app's state (it runs in a thread).
        """
        self.store.leases.tidy()  # once: what dead holders left, before it is read each time
        live = self.store.leases.live()
        watchers = self.store.leases.watchers(live)
        if watchers != self.watchers_seen and not self.app.quitting:
            self.watchers_seen = watchers
            self.app.call_from_thread(self.app.update_header)
        failed = self._failed_at
        if failed is not None and time.monotonic() - failed < AFTER_A_FAILURE:
            return  # the refresh would fail again: not one a look
        folded = self.store.leases_folded()
        if folded is not None and live != folded and not self.app.quitting:
            self.app.call_from_thread(self.app.request_refresh)

    def read_transcript(self, thread_id: str, full: bool = False) -> Transcript:
        """Every transcript read, from a thread: waits for a query in flight, never after close."""
        with self.lock:
            if self.closed:
                raise StoreClosed("the database is closed")
            return self.store.transcript(thread_id, full=full)

    def search(self, text: str) -> Found:
        """The threads with a message matching `text` (`Store.search`), from a thread."""
        with self.lock:
            if self.closed:
                raise StoreClosed("the database is closed")
            return self.store.search(text)

    def load_thread(self, thread_id: str) -> tuple[Transcript, list[Marker]]:
        """The detail pane's loader (in its worker): the transcript, then the markers.
        The planner runs next, on the screen's thread: the agent's marker hook it needs
        is waited for here if the agent's import is still under way.

        Loads queue behind the one in flight (one connection; without the thread index
        each is a scan of the whole table): a load whose worker a newer selection
        cancelled while it waited gives way (`LookupError`) instead of scanning, so
        the thread the cursor rests on now is the next one read.
        """
        self.app.marker_hook()
        try:
            with self.lock:
                if get_current_worker().is_cancelled:
                    raise LookupError(thread_id)
                transcript = self.read_transcript(thread_id)
        except StoreClosed:
            raise LookupError(thread_id) from None
        return transcript, self.app.runner.jobs.read_markers()

    def watch_files(self) -> None:
        self.app.run_worker(
            self.watch_files_work(), exclusive=True, group="watch", exit_on_error=False
        )

    async def watch_files_work(self) -> None:
        from watchfiles import awatch

        database = self.path
        assert database is not None  # only files are watched
        # The database, and the watcher's attempt records beside it (`supervisor.attempts`).
        names = {database.name + s + j for s in ("", ".watch") for j in ("", "-wal", "-journal")}
        jobs = None if self.app.runner.jobs.server else self.app.runner.jobs.path.resolve()
        # Not recursive: a database in a home directory would have every file
        # under it watched (seconds of walking, on the UI thread, and the
        # kernel's watch limit). Leases are polled (`_poll_leases`), not watched.
        paths = {str(database.resolve().parent)}
        if jobs is not None and jobs.is_dir():
            paths.add(str(jobs))

        def relevant(_change: object, path: str) -> bool:
            p = Path(path)
            return p.name in names or p.parent == jobs

        watching = False
        async for changes in awatch(
            *paths,
            watch_filter=relevant,
            recursive=False,
            debounce=200,
            step=50,
            stop_event=self.stop_watching,
            rust_timeout=500,
            yield_on_timeout=True,  # the first yield says the watch is in place
        ):
            if not watching:
                # Rows written after the first read looked and before the watch was in
                # place told nobody: one look now finds them (a thread that started
                # waiting for its person then stayed off the list until the next write).
                watching = True
                self.app.request_refresh()
            elif any(Path(p).name in names for _, p in changes):
                self.app.request_refresh()
            if jobs is not None and any(Path(p).parent == jobs for _, p in changes):
                self.app.reload_detail_soon()

    def close(self) -> None:
        """Wait for a worker's query in flight; a connection closed under it crashes."""
        self.store.stop_first_read()  # forked first readers end now, not when they finish
        with self.lock:
            self.closed = True
            self.store.close()
