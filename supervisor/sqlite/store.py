"""`SQLiteStore`: the `Store` on a SQLite checkpoint file, read-only and incremental.

It holds the parts and says when each runs: the connection (`connection`),
what a listing covers (`sql.Scope`), the listing pass (`messages`), the
small tables (`side_tables`), and the early readers a big file's first
screen is read by (`early` here, `supervisor.first_read` for a split read).
"""

from __future__ import annotations

import heapq
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from supervisor.attempts import FileAttempts
from supervisor.leases import FileLeaseBoard, leases_dir
from supervisor.priority import at_low_priority
from supervisor.sqlite.connection import Connection
from supervisor.sqlite.early import EarlyPreview
from supervisor.sqlite.files import (
    DEFAULT_BUSY_TIMEOUT,
    connect_readonly,
    is_decode_error,
    quote,
    tolerant_text,
)
from supervisor.sqlite.messages import MessageReader
from supervisor.sqlite.rows import (
    CannotSplit,
    KeptHalf,
    NotPlain,
    json_or_none,
    plain_id,
    thread_id_of,
)
from supervisor.sqlite.side_tables import SideTables
from supervisor.sqlite.sql import Scope, unix_time_sql
from supervisor.sqlite.transcripts import Transcripts
from supervisor.states import ThreadSummary
from supervisor.store import INDEX_HINT_BYTES, INDEX_HINT_ROWS, StoreError, Transcript

if TYPE_CHECKING:
    from supervisor.digest import TranscriptDigest
    from supervisor.search import Found
    from supervisor.usage import UsageRow

T = TypeVar("T")

#: A database file bigger than this gets a preview of its newest rows first.
PREVIEW_ABOVE_BYTES = 100_000_000
#: How many of the newest rows a preview reads: a first screen's threads and more
#: (at 5,000 rows, 5,000 threads to place and draw cost the first frame 0.1 s).
PREVIEW_ROWS = 1_000
#: Threads per chunk of a streamed listing (`SQLiteStore.stream`).
STREAM_CHUNK = 2_000


class SQLiteStore:
    """A read-only, incrementally refreshed view of a SQLite checkpoint file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        only: Iterable[str] | None = None,
        newest: int | None = None,
        thread_range: tuple[str | None, str | None] | None = None,
        wal_existed: dict[str, bool] | None = None,
    ) -> None:
        """`only`: read only these threads (a command about one thread need not list
        100,000), each folded row by row, every row checked. `newest`: only the newest
        this many rows (a preview; see `preview`). `thread_range`: (from, before), the
        thread ids `stream` lists, None an open end (a split listing's two processes
        each take one). `wal_existed`: what a split first read saw before it opened."""
        self.db = Connection(path, busy_timeout, wal_existed)
        self.path = self.db.path
        self.location = str(self.path)
        #: `check_rows` runs inside SQLite (it releases the GIL): the app may run it.
        self.checks_in_background = True
        #: Listed in thread-id order, a chunk at a time (`stream`).
        self.streams = "ordered"
        #: Who runs which thread: `flock` files beside the database.
        self.leases = FileLeaseBoard(leases_dir(self.path))
        if thread_range is not None:
            # Each of a split listing's processes has a core: a sorter thread of its own
            # would take the other's.
            self.db.conn.execute("PRAGMA threads = 0")
        #: (Longest thread id, most messages) of what `stream` hands out, once it has begun.
        self.shape = (0, 0)
        self._streams: list[Generator[ThreadSummary, None, None]] = []
        #: The forked readers of a split first read (`read_first_from`), until it is taken.
        self._first_read: Any = None
        #: The child reading a preview `preview_soon` started, and how many rows it reads.
        self._early: tuple[EarlyPreview, int] | None = None
        #: Held while summaries change: `check_rows` runs on another thread.
        self._lock = threading.RLock()
        try:
            columns = self.db.recovering(self.db.read_schema)
        except sqlite3.Error as exc:
            self.db.close()
            raise self.db.error(exc) from None
        except StoreError:
            self.db.close()
            raise
        self.scope = Scope(columns, None if only is None else frozenset(only), newest, thread_range)
        self.reader = MessageReader(self.db, self.scope)
        self.side = SideTables(
            self.db, self.scope, self.reader, self.leases, FileAttempts(self.path)
        )
        self.texts = Transcripts(
            self.db,
            self._lock,
            lambda: self.scope.columns["messages"],
            lambda read: self._reading(read, restart=False),
        )

    @property
    def busy_timeout(self) -> float:
        return self.db.busy_timeout

    @property
    def work(self) -> dict[str, int]:
        """What the last refresh read (`MessageReader.work`)."""
        return self.reader.work

    def take_notices(self) -> list[str]:
        return self.db.take_notices()

    def leases_folded(self) -> dict[str, dict[str, Any]] | None:
        return self.side.held.live

    def newest_row(self) -> int | None:
        """The highest message id in the file now (None: no messages)."""
        return self.reader.newest_row()

    def _reading(self, read: Callable[[], T], restart: bool) -> T:
        """Every read through the connection's recovery (`Connection.reading`); `restart`:
        bad UTF-8 met for the first time reads the listing anew, as rows read before
        the switch to the tolerant decoder may have been skipped."""
        return self.db.reading(read, self._start_over if restart else None)

    def _start_over(self) -> None:
        self.reader.reset()
        self.side.reset()

    def refresh(self) -> set[str]:
        return self._reading(self._refresh, restart=True)

    def start_over(self) -> None:
        """Forget what was read: the next refresh reads the whole file again (threads were
        removed, which a refresh, reading what is new, would never notice)."""
        with self._lock:
            self._start_over()

    def _refresh(self) -> set[str]:
        with self._lock:
            self.reader.work = {"rows": 0, "run_threads": 0}
            self.db.conn.execute("BEGIN")
            try:
                first = not self.reader.has_read
                runs_read = False  # each thread's newest run is known already
                if first and self.scope.only is not None:
                    touched = self.reader.read_only(self.scope.only)
                    self.side.skip_extra()
                    touched |= self.side.fold_forks(self.scope.only)
                elif first and (halves := self._take_halves()) is not None:
                    touched = self._read_since()  # the rows after theirs
                    runs_read = True
                elif first:
                    touched = self.reader.read_all()  # tails included
                else:
                    touched = self._read_since()
                touched |= self.side.read_new_extra()
                touched |= self.side.read_pending_requests()
                touched |= self.side.read_parents(self.reader.threads, touched)
                if runs_read:  # only what changed since the readers looked, as a refresh
                    touched |= self.side.read_open_runs(touched, everything=False) | halves
                else:
                    touched |= self.side.read_open_runs(touched, everything=first)
                touched |= self.side.read_leases()
                touched |= self.side.read_run_done(touched)
            finally:
                self.db.conn.execute("COMMIT")
            touched |= self.side.read_attempts()
        return touched

    def _read_since(self) -> set[str]:
        """The rows after the cursor folded on, tails and all; returns their threads."""
        touched = self.reader.read_new_messages()
        broken = self.reader.fill_tails(touched)
        if broken:
            self.reader.refold(broken)
        return touched

    def _take_halves(self) -> set[str] | None:
        """The split first read's listing (`read_first_from`), its halves merged in the
        order the one-process listing has (by each thread's first row); None if the
        readers failed or were not started."""
        first_read = self._first_read
        if first_read is None:
            return None
        try:
            halves = first_read.collect()  # `stop_first_read` may end it from another thread
        finally:
            self._first_read = None
        if halves is None:
            return None
        merged = heapq.merge(*(zip(h.firsts, h.threads.values(), strict=True) for h in halves))
        self.reader.threads = {s.thread_id: s for _, s in merged}
        for half in halves:
            self.reader.parsed_assistant.update(half.parsed)
            self.side.open_runs |= half.open_runs
        self.reader.cursor = self.reader.unchecked_through = first_read.top
        # Runs rows after the earlier of the two readers' looks are read again.
        self.side.runs_cursor = min(half.runs_cursor for half in halves)
        return set(self.reader.threads)

    def check_rows(self) -> set[str]:
        """Validate the JSON of every row the first listing took on trust; returns corrupt threads.

        The first listing reads each row's start only (its role) and parses
        the rows a state depends on; a row in the middle of a thread whose
        JSON is broken is found here (rows read by later refreshes are
        validated as they arrive). This reads the whole table, so the CLI
        does it on request (`list --check`) and the app in the background.
        SQLite releases the GIL while it scans, and the scan's thread runs at
        a lower priority (`supervisor.priority`): a UI stays live.
        """
        through = self.reader.unchecked_through
        if through is None:
            return set()
        try:
            bad = at_low_priority(lambda: self._invalid_threads(through))
        except sqlite3.Error as exc:
            raise self.db.error(exc) from None
        with self._lock:
            self.reader.unchecked_through = None
            bad = {t for t in bad if t in self.reader.threads}
            if bad:
                try:
                    self._reading(lambda: self.reader.refold(bad), restart=False)
                except sqlite3.ProgrammingError:  # closed meanwhile (the app quit)
                    return set()
        return bad

    def _invalid_threads(self, through: int) -> set[str]:
        """Threads with a row up to `through` that is not JSON: the whole table, on its own
        connection (a refresh can go on meanwhile)."""
        conn = connect_readonly(self.path, self.busy_timeout)
        conn.text_factory = tolerant_text
        try:
            return {
                plain_id(thread_id)
                for (thread_id,) in conn.execute(
                    "SELECT DISTINCT thread_id FROM messages "
                    "WHERE id <= ? AND NOT json_valid(message_json)",
                    (through,),
                )
            }
        finally:
            conn.close()

    def preview(self, rows: int = PREVIEW_ROWS) -> list[ThreadSummary] | None:
        """The threads written to in the newest `rows` rows, read in a fraction of a second.

        For a first screen while the whole pass runs on a big database
        (None for a small one: it is read whole as fast). Their states come
        from the rows that decide them, which are the newest; message
        counts cover the window only. Read by a scratch store: this one's
        state is untouched.
        """
        if self._early is not None:
            early, wanted = self._early
            self._early = None
            return early.result(lambda: self._preview_now(wanted))
        if self.path.stat().st_size < PREVIEW_ABOVE_BYTES:
            return None
        return self._preview_now(rows)

    def _preview_now(self, rows: int) -> list[ThreadSummary]:
        scratch = SQLiteStore(self.path, busy_timeout=self.busy_timeout, newest=rows)
        try:
            scratch.refresh()
            return scratch.threads()
        finally:
            scratch.close()

    def preview_soon(self, rows: int = PREVIEW_ROWS) -> None:
        """Start `preview` now in a forked child (`supervisor.sqlite.early`); the next
        `preview()` returns its result. Called before the process starts threads."""
        if self._early is not None or self.path.stat().st_size < PREVIEW_ABOVE_BYTES:
            return
        self._early = (EarlyPreview.start(lambda: self._preview_now(rows)), rows)

    def preview_ready(self) -> bool:
        """Whether `preview_soon`'s child has its result: `preview()` returns it at once."""
        return self._early is not None and self._early[0].ready()

    def stream(self, chunk: int = STREAM_CHUNK) -> Iterator[ThreadSummary]:
        """Every thread once, complete, in thread-id order, none kept: `list` at fleet size.

        The first listing's pass, with its summaries handed out a chunk at a
        time instead of kept (100,000 summaries were most of a listing's
        memory), the small tables (pending requests, open runs, leases, the
        watcher's records) read first and folded into each chunk. For a store
        that has not read yet; a restricted one, or thread ids the fast pass
        cannot name, take the kept listing instead, sorted. Text is decoded
        tolerantly from the start: a chunk once handed out cannot be read anew.
        A stream left unfinished ends when the store closes.

        A store opened with a `thread_range` streams that range only, and
        raises `CannotSplit` (before handing anything out) where it would
        take the kept listing: that one reads every thread.
        """
        stream = self._stream(chunk)
        self._streams.append(stream)
        return stream

    def _stream(self, chunk: int) -> Generator[ThreadSummary, None, None]:
        if self.reader.has_read or self.scope.only is not None or self.scope.newest is not None:
            if self.scope.range is not None:
                raise CannotSplit
            yield from self._kept_sorted()
            return
        with self._lock:
            self.db.become_tolerant()
            listed: Iterable[dict[str, ThreadSummary]] = []
            try:
                self.db.conn.execute("BEGIN")
                try:
                    top = self.db.recovering(lambda: self.reader.aggregate("thread_id"))
                    self.shape = (0, 0) if top is None else self.reader.listing_shape()
                    runs = self.side.list_open_runs()
                    listed = [] if top is None else self.reader.listed(top, chunk, runs)
                    small = self.side.small_tables()
                    empty = self.side.threads_without_messages(small[0])
                    if runs:
                        self.side.mark_open_runs(empty)
                    folded = (
                        s for part in listed for s in self.side.fold_small(part, *small).values()
                    )
                    if empty:  # threads with no rows are merged in by id
                        folded = heapq.merge(
                            folded,
                            self.side.fold_small(empty, *small).values(),
                            key=thread_id_of,
                        )
                    yield from folded
                except NotPlain:
                    if self.scope.range is not None:
                        raise CannotSplit from None
                else:
                    return
                finally:
                    if isinstance(listed, Generator):
                        listed.close()  # its cursor reads the table dropped next
                    self.db.conn.execute("DROP TABLE IF EXISTS temp.listing")
                    self.db.conn.execute("DROP TABLE IF EXISTS temp.open_runs")
                    self.db.conn.execute("DROP TABLE IF EXISTS temp.done_runs")
                    self.db.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self.db.error(exc) from None
        yield from self._kept_sorted()

    def first_read_half(self, top: int) -> KeptHalf:
        """This store's range of the first listing, up to row `top`: what one forked reader
        of a split first read hands back (`supervisor.first_read`). Raises `CannotSplit`
        on thread ids only the whole listing can name."""
        if self.scope.range is None or self.reader.has_read:
            raise CannotSplit
        with self._lock:
            self.db.conn.execute("BEGIN")
            try:
                if self.reader.aggregate("first", top) is None:
                    return KeptHalf({}, [], {})
                rows = self.db.conn.execute("SELECT first FROM temp.listing ORDER BY rowid")
                firsts = [f for (f,) in rows]
                for _ in self.reader.listed(top, chunk=None):
                    pass
                self.side.read_open_runs(set(), everything=True)
            except NotPlain:
                raise CannotSplit from None
            finally:
                self.db.conn.execute("DROP TABLE IF EXISTS temp.listing")
                self.db.conn.execute("COMMIT")
        return KeptHalf(
            self.reader.threads,
            firsts,
            self.reader.parsed_assistant,
            self.side.open_runs,
            self.side.runs_cursor,
        )

    def stop_first_read(self) -> None:
        """Stop a split first read's readers without waiting for the store's lock: the
        refresh collecting them holds it, and ends at once (`StoreError`) instead of
        after the read. For an app closing mid-read."""
        first_read = self._first_read
        if first_read is not None:
            first_read.stop()

    def read_first_from(self, halves: Any) -> None:
        """Take the first refresh's listing from forked readers started before this store
        opened (`supervisor.first_read.FirstRead`); if they fail, read it here as usual.
        `-wal`/`-shm` are ours to remove if they were not there before the readers."""
        self._first_read = halves
        self.db.wal_existed = halves.wal_existed

    def split_point(self, sample: int = 2049) -> str | None:
        """A thread id that about half the rows sort before: where a listing split between
        two processes divides (`supervisor.listing`). Read from a sample of rows by id,
        not a pass over the table; None where there is nothing to divide.
        """
        try:
            with self._lock:
                (top,) = self.db.conn.execute("SELECT max(id) FROM messages").fetchone()
                if not isinstance(top, int) or top < sample:
                    return None
                ids = [1 + i * (top - 1) // (sample - 1) for i in range(sample)]
                found = sorted(
                    t
                    for (t,) in self.db.conn.execute(
                        "SELECT thread_id FROM messages WHERE id IN "
                        "(SELECT value FROM json_each(?))",
                        (json.dumps(ids),),
                    )
                    if type(t) is str
                )
        except sqlite3.Error as exc:
            if is_decode_error(exc):  # an id that is not UTF-8: the whole listing reads it
                return None
            raise self.db.error(exc) from None
        middle = found[len(found) // 2] if found else None
        return middle if middle is not None and middle > found[0] else None

    def _kept_sorted(self) -> Iterator[ThreadSummary]:
        self.refresh()
        kept = sorted(self.threads(), key=thread_id_of)
        self.shape = (
            max((len(s.thread_id) for s in kept), default=0),
            max((s.messages for s in kept), default=0),
        )
        yield from kept

    def index_hint(self, rows: int | None = None) -> str | None:
        """Why `agent-supervisor index` would help, for a big database without our index.
        `rows`: how many message rows the file holds, when a streamed listing counted them
        (else the listing kept here counts them; a store that listed nothing says the
        file's size instead)."""
        if rows is None and self.reader.threads and self.scope.only is None:
            rows = sum(s.messages for s in self.reader.threads.values())
        if rows is None:
            size = self.path.stat().st_size
            if size <= INDEX_HINT_BYTES or self.has_thread_index():
                return None
            amount = f"{size / 1e6:,.0f} MB"
        else:
            if rows <= INDEX_HINT_ROWS or self.has_thread_index():
                return None
            amount = f"{rows:,} message rows"
        return (
            f"{amount} and no index on thread_id: reading one thread scans them all; "
            f"'agent-supervisor index {self.location}' adds one"
        )

    def has_thread_index(self) -> bool:
        """Some index on `messages` starts with thread_id (ours, or the host's own)."""
        with self._lock:
            for _, name, *_ in self.db.conn.execute("PRAGMA index_list(messages)").fetchall():
                first = self.db.conn.execute(f"PRAGMA index_info({quote(name)})").fetchone()
                if first is not None and first[2] == "thread_id":
                    return True
        return False

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def rows_checked(self) -> bool:
        """Every row's JSON has been validated (see `check_rows`)."""
        return self.reader.unchecked_through is None

    def threads(self) -> list[ThreadSummary]:
        return list(self.reader.threads.values())

    def get(self, thread_id: str) -> ThreadSummary | None:
        return self.reader.threads.get(thread_id)

    @property
    def cursor(self) -> float:
        """The highest message id read so far (`BEFORE_ANY_ROW`: none yet)."""
        return self.reader.cursor

    def transcript(self, thread_id: str, *, full: bool = False) -> Transcript:
        """One thread's rows; rows over `BIG_ROW` characters come as a preview unless `full`."""
        return self.texts.one(thread_id, full)

    def transcripts(self, thread_ids: Iterable[str], *, full: bool = False) -> Iterator[Transcript]:
        """Many threads' transcripts from one pass over the table (`Transcripts.many`),
        in thread-id order: a plan of every crashed thread, not a scan per thread."""
        return self.texts.many(thread_ids, full)

    def digests(self, thread_ids: Iterable[str]) -> Iterator[TranscriptDigest]:
        """What a plan reads of many threads' transcripts, from one pass over the table in
        its own order (`Transcripts.digests`), in thread-id order."""
        return self.texts.digests(thread_ids)

    def usage_rows(
        self,
        since: float | None = None,
        threads: Collection[str] | None = None,
        rows: tuple[int, int] | None = None,
        days: bool = False,
    ) -> tuple[list[UsageRow], set[tuple[str, str]]]:
        """Tokens of the assistant messages (since a time, of some threads), summed by
        thread, run, (`days`) day and model in one pass (`sqlite.usage`); and the runs
        forks copied from their sources."""
        from supervisor.sqlite.usage import copied_runs, usage_rows

        columns = self.scope.columns

        def read() -> tuple[list[UsageRow], set[tuple[str, str]]]:
            return usage_rows(
                self.db, columns["messages"], since, threads, rows, days
            ), copied_runs(self.db, columns)

        with self._lock:
            return self._reading(read, restart=False)

    def search(self, text: str) -> Found:
        """The threads with a message matching `text` (`supervisor.search`): by the side
        file's index when there is one (first brought up to date), else by a scan."""
        from supervisor.search import Found
        from supervisor.sqlite.search import SearchIndex, SearchIndexError, scan

        index = SearchIndex(self.path)

        def read() -> Found:
            if index.exists():
                index.catch_up(self.db.conn)
                return Found(frozenset(index.query(text)), True)
            return Found(frozenset(scan(self.db.conn, text)), False)

        with self._lock:
            try:
                return self._reading(read, restart=False)
            except SearchIndexError as exc:
                raise StoreError(str(exc)) from None

    def has_search_index(self) -> bool:
        from supervisor.sqlite.search import side_path

        return side_path(self.path).is_file()

    def thread_extra(self, thread_id: str) -> dict[str, Any]:
        if "extra_json" not in self.scope.columns.get("thread_extra", set()):
            return {}
        row = self._reading(
            lambda: self.db.conn.execute(
                "SELECT extra_json FROM thread_extra WHERE thread_id = ?", (thread_id,)
            ).fetchone(),
            restart=False,
        )
        extra = json_or_none(row[0]) if row else None
        return extra if isinstance(extra, dict) else {}

    def hitl_answer(self, thread_id: str, run_id: str | None, question_id: str) -> Any:
        if not {"run_id", "question_id", "answer_json"} <= self.scope.columns.get(
            "thread_hitl_answers", set()
        ):
            return None
        row = self._reading(
            lambda: self.db.conn.execute(
                "SELECT answer_json FROM thread_hitl_answers "
                "WHERE thread_id = ? AND run_id = ? AND question_id = ?",
                (thread_id, run_id or "", question_id),
            ).fetchone(),
            restart=False,
        )
        return None if row is None else json_or_none(row[0])

    def answers_given(self, thread_id: str, run_id: str) -> dict[str, float]:
        """When each of the run's stored answers was given, in unix seconds (the same
        clock as the transcript's times): one lookup by the answers table's key."""
        if not {"run_id", "question_id", "answered_at"} <= self.scope.columns.get(
            "thread_hitl_answers", set()
        ):
            return {}
        rows = self._reading(
            lambda: self.db.conn.execute(
                f"SELECT question_id, {unix_time_sql('answered_at')} FROM thread_hitl_answers "
                "WHERE thread_id = ? AND run_id = ?",
                (thread_id, run_id),
            ).fetchall(),
            restart=False,
        )
        return {str(q): float(at) for q, at in rows if isinstance(at, (int, float))}

    def close(self) -> None:
        """Close, leaving nothing behind: a preview's child stopped, the first read's
        readers too, `-wal`/`-shm` that opening created removed."""
        if self._early is not None:  # never asked for: stop the child
            self._early[0].cancel()
            self._early = None
        if self._first_read is not None:  # never taken: stop its readers
            self._first_read.cancel()
            self._first_read = None
        for stream in self._streams:
            stream.close()  # an unfinished `stream` lets go of its read transaction first
        self._streams.clear()
        self.db.close()
