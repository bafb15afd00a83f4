"""Transcripts read from a SQLite file: one thread's, or many threads' in one pass.

Without the thread index (`agent-supervisor index`) a thread's rows are found
by scanning the whole messages table. A plan of every crashed thread read each
transcript on its own: 5,000 threads were 5,000 scans (220 s for a file `list`
read in 0.3 s). `Transcripts.many` scans once: the wanted threads' rows are
copied, in thread order, into a table of the connection's private temporary
database, and read back from there a batch at a time; the file is locked
only for the copy, not while the caller works through the transcripts.

A plan of every crashed thread needs less than each whole transcript: its
digest (`supervisor.digest`). `Transcripts.digests` reads the wanted threads'
rows in the order the table stores them, a batch at a time, and folds each
into its thread's digest: no copy and no sort (at 100,000 threads the copy
of 1,200,000 rows sorted by thread took 14 s, 5 of them writing to disk).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from supervisor.digest import TranscriptDigest
from supervisor.priority import at_low_priority
from supervisor.sqlite.connection import Connection
from supervisor.sqlite.rows import number, parse_message, text_or_none
from supervisor.sqlite.sql import unix_time_sql
from supervisor.store import BIG_PREVIEW, BIG_ROW, Transcript, TranscriptEntry

T = TypeVar("T")

#: Rows read back from the copy per query (and per hold of the store's lock).
BATCH_ROWS = 5_000


class Transcripts:
    """The transcript reads of one store (its connection, lock and message columns)."""

    def __init__(
        self,
        db: Connection,
        lock: threading.RLock,
        columns: Callable[[], set[str]],
        reading: Callable[[Callable[[], T]], T],
    ) -> None:
        self.db = db
        self.lock = lock
        self._columns = columns
        self._reading = reading

    def _select(self, full: bool) -> str:
        """The columns of a transcript row: id, size, text (a preview when big), time, run."""
        cols = self._columns()
        created = unix_time_sql("created_at") if "created_at" in cols else "NULL"
        run = "run_id" if "run_id" in cols else "NULL"
        limit = 2**62 if full else BIG_ROW
        return (
            f"id, length(message_json), "
            f"CASE WHEN length(message_json) > {limit} "
            f"THEN substr(message_json, 1, {BIG_PREVIEW}) ELSE message_json END, "
            f"{created}, {run}"
        )

    def one(self, thread_id: str, full: bool) -> Transcript:
        sql = f"SELECT {self._select(full)} FROM messages WHERE thread_id = ? ORDER BY id"

        def read() -> list[Any]:
            # Without the thread index this scans the whole table: seconds of a core
            # that the screen must be able to take back (`supervisor.priority`).
            with self.lock:
                return at_low_priority(lambda: self.db.conn.execute(sql, (thread_id,)).fetchall())

        out = Transcript(thread_id)
        out.entries.extend(_entry(row, full) for row in self._reading(read))
        return out

    def many(self, thread_ids: Iterable[str], full: bool) -> Iterator[Transcript]:
        """Each wanted thread's transcript, in thread-id order, from one pass over the
        table (a thread with no rows gives an empty transcript)."""
        wanted = sorted(set(thread_ids))
        if not wanted:
            return
        spans = self._reading(lambda: self._copy(wanted, full))
        try:
            batch: list[tuple[str, int, int]] = []
            rows = 0
            for span in spans:
                batch.append(span)
                rows += span[2] - span[1] + 1
                if rows >= BATCH_ROWS:
                    yield from self._read_back(batch, full)
                    batch, rows = [], 0
            yield from self._read_back(batch, full)
        finally:
            with self.lock:
                self.db.conn.execute("DROP TABLE IF EXISTS temp.plan_rows")

    def digests(self, thread_ids: Iterable[str]) -> Iterator[TranscriptDigest]:
        """Each wanted thread's digest, in thread-id order, from its rows read in the
        table's own order (rows added after the pass began are not read)."""
        wanted = sorted(set(thread_ids))
        if not wanted:
            return
        digests = {t: TranscriptDigest(t, again=_again) for t in wanted}
        conn = self.db.conn
        # The row as `_entry` reads it, after its thread: id, no size (read whole), text, time, run.
        cols = self._columns()
        created = unix_time_sql("created_at") if "created_at" in cols else "NULL"
        run = "run_id" if "run_id" in cols else "NULL"
        # `+`: never the thread index, whose order the batches would sort again each time.
        # The first batch starts at the lowest id (a foreign writer's may be 0 or negative),
        # each next one after the last id of the one before.
        sql = (
            f"SELECT thread_id, id, NULL, message_json, {created}, {run} FROM messages "
            "WHERE id {} ? AND id <= ? AND +thread_id IN temp.plan_threads ORDER BY id LIMIT ?"
        )
        first, then = sql.format(">="), sql.format(">")

        def start() -> int:
            with self.lock:
                conn.execute("DROP TABLE IF EXISTS temp.plan_threads")
                conn.execute(
                    "CREATE TEMP TABLE plan_threads (thread_id TEXT PRIMARY KEY) WITHOUT ROWID"
                )
                conn.executemany("INSERT INTO temp.plan_threads VALUES (?)", ((t,) for t in wanted))
                return conn.execute("SELECT min(id), max(id) FROM messages").fetchone()

        try:
            low, top = self._reading(start)
            after = None
            while low is not None:

                def read(after: int | None = after) -> list[Any]:
                    query, bound = (first, low) if after is None else (then, after)
                    with self.lock:
                        return at_low_priority(
                            lambda: conn.execute(query, (bound, top, BATCH_ROWS)).fetchall()
                        )

                rows = self._reading(read)
                for row in rows:
                    digest = digests.get(row[0])
                    if digest is not None:  # always, unless SQLite and Python compare ids apart
                        digest.fold(parse_message(row[3])[0], row)
                if len(rows) < BATCH_ROWS:
                    break
                after = rows[-1][1]
        finally:
            with self.lock:
                conn.execute("DROP TABLE IF EXISTS temp.plan_threads")
        for t in wanted:
            yield digests.pop(t)  # let go of each once the caller has it

    def _copy(self, wanted: list[str], full: bool) -> list[tuple[str, int, int]]:
        """The wanted threads' rows copied into `temp.plan_rows` in (thread, id) order;
        each wanted thread with its first and last rowid there (0, -1: no rows)."""
        conn = self.db.conn
        with self.lock:
            conn.execute("DROP TABLE IF EXISTS temp.plan_rows")
            conn.execute("DROP TABLE IF EXISTS temp.plan_threads")
            # WITHOUT ROWID: each row's `IN` test is one B-tree search, not an index's and
            # then the table's (at 100,000 threads, 1.7 s against 2.8 s over 2,000,000 rows).
            conn.execute(
                "CREATE TEMP TABLE plan_threads (thread_id TEXT PRIMARY KEY) WITHOUT ROWID"
            )
            conn.executemany("INSERT INTO temp.plan_threads VALUES (?)", ((t,) for t in wanted))
            at_low_priority(
                lambda: conn.execute(
                    f"CREATE TEMP TABLE plan_rows AS SELECT thread_id AS t, {self._select(full)} "
                    "FROM messages WHERE thread_id IN temp.plan_threads ORDER BY thread_id, id"
                )
            )
            found = {
                t: (lo, hi)
                for t, lo, hi in conn.execute(
                    "SELECT t, min(rowid), max(rowid) FROM temp.plan_rows GROUP BY t"
                )
            }
            conn.execute("DROP TABLE temp.plan_threads")
        return [(t, *found.get(t, (0, -1))) for t in wanted]

    def _read_back(self, spans: list[tuple[str, int, int]], full: bool) -> Iterator[Transcript]:
        filled = [s for s in spans if s[2] >= s[1]]
        rows: list[Any] = []
        if filled:

            def read() -> list[Any]:
                with self.lock:
                    return self.db.conn.execute(
                        "SELECT * FROM temp.plan_rows WHERE rowid BETWEEN ? AND ? ORDER BY rowid",
                        (filled[0][1], filled[-1][2]),
                    ).fetchall()

            rows = self._reading(read)
        at = 0
        for thread_id, lo, hi in spans:
            out = Transcript(thread_id)
            count = max(0, hi - lo + 1)
            out.entries.extend(_entry(row[1:], full) for row in rows[at : at + count])
            at += count
            yield out


def _again(row: tuple[Any, ...]) -> TranscriptEntry:
    """A row of `digests` (its thread first) read whole into its entry."""
    return _entry(row[1:], True)


def _entry(row: Any, full: bool) -> TranscriptEntry:
    row_id, size, text, created_at, run_id = row
    limit = 2**62 if full else BIG_ROW
    entry = TranscriptEntry(row_id, number(created_at), text_or_none(run_id), None)
    if isinstance(size, int) and size > limit:
        entry.size, entry.raw = size, str(text)
    else:
        entry.message, entry.error = parse_message(text)
        if entry.error is not None:
            entry.raw = text if isinstance(text, str) else repr(text)
    return entry
