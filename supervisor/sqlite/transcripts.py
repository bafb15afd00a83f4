"""Transcripts read from a SQLite file: one thread's, or many threads' in one pass.

Without the thread index (`agent-supervisor index`) a thread's rows are found
by scanning the whole messages table. A plan of every crashed thread read each
transcript on its own: 5,000 threads were 5,000 scans (220 s for a file `list`
read in 0.3 s). `Transcripts.many` scans once: the wanted threads' rows are
copied, in thread order, into a table of the connection's private temporary
database, and read back from there a batch at a time; the file is locked
only for the copy, not while the caller works through the transcripts.

A plan reads little of most messages: the role of a user message, the call
id of a tool result, the calls of an assistant message. Asked for a sketch,
SQLite reads those from each row (`_sketch`) and hands over the whole text
only of the rows a plan must parse: tool results that carry a human's
decision or our own note, and rows it cannot read so. Parsing every message
of 60,000 crashed threads in Python was most of a plan's time.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from supervisor.priority import at_low_priority
from supervisor.sqlite.connection import Connection
from supervisor.sqlite.rows import number, parse_message, text_or_none
from supervisor.sqlite.sql import unix_time_sql
from supervisor.store import BIG_PREVIEW, BIG_ROW, DETAILS_KEY, Transcript, TranscriptEntry

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

    def _sketch_rows(self) -> str:
        """The wanted threads' rows as sketches, in (thread, id) order: thread, id, the
        sketch, time, run. The sketch is one expression, worked out once per row: a blob
        for a row a sketch stands for (`u` a user message, `a` an assistant message without
        calls, `r` and the call id a plain tool result), else the text, to be parsed (a
        stored blob after a zero byte)."""
        cols = self._columns()
        created = unix_time_sql("created_at") if "created_at" in cols else "NULL"
        run = "run_id" if "run_id" in cols else "NULL"
        return (
            f"SELECT thread_id AS t, id, {_sketch('message_json')}, {created}, {run} "
            "FROM messages WHERE thread_id IN temp.plan_threads ORDER BY thread_id, id"
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

    def many(
        self, thread_ids: Iterable[str], full: bool, sketch: bool = False
    ) -> Iterator[Transcript]:
        """Each wanted thread's transcript, in thread-id order, from one pass over the
        table (a thread with no rows gives an empty transcript). `sketch` (`full` only):
        each message as far as a plan reads it (`Transcript.sketch`)."""
        wanted = sorted(set(thread_ids))
        if not wanted:
            return
        sketch = sketch and full
        spans = self._reading(lambda: self._copy(wanted, full, sketch))
        try:
            batch: list[tuple[str, int, int]] = []
            rows = 0
            for span in spans:
                batch.append(span)
                rows += span[2] - span[1] + 1
                if rows >= BATCH_ROWS:
                    yield from self._read_back(batch, full, sketch)
                    batch, rows = [], 0
            yield from self._read_back(batch, full, sketch)
        finally:
            with self.lock:
                self.db.conn.execute("DROP TABLE IF EXISTS temp.plan_rows")

    def _copy(self, wanted: list[str], full: bool, sketch: bool) -> list[tuple[str, int, int]]:
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
            rows = (
                self._sketch_rows()
                if sketch
                else f"SELECT thread_id AS t, {self._select(full)} FROM messages "
                "WHERE thread_id IN temp.plan_threads ORDER BY thread_id, id"
            )
            at_low_priority(lambda: conn.execute(f"CREATE TEMP TABLE plan_rows AS {rows}"))
            found = {
                t: (lo, hi)
                for t, lo, hi in conn.execute(
                    "SELECT t, min(rowid), max(rowid) FROM temp.plan_rows GROUP BY t"
                )
            }
            conn.execute("DROP TABLE temp.plan_threads")
        return [(t, *found.get(t, (0, -1))) for t in wanted]

    def _read_back(
        self, spans: list[tuple[str, int, int]], full: bool, sketch: bool
    ) -> Iterator[Transcript]:
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
            out = Transcript(thread_id, sketch=sketch)
            count = max(0, hi - lo + 1)
            if sketch:
                out.entries.extend(_sketched(row[1:]) for row in rows[at : at + count])
            else:
                out.entries.extend(_entry(row[1:], full) for row in rows[at : at + count])
            at += count
            yield out


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


def _sketch(text: str) -> str:
    """SQL: a row's sketch (see `_sketch_rows`), or its text where it must be parsed (not
    valid JSON, not one of the three roles, a tool result that carries a decision or our
    note or whose call id is not text, an assistant message whose content is not a list).

    Read with SQLite's JSON functions, which parse a row once and answer every
    path from that parse (escapes decoded, as a parser reads them); scanning the
    text for words instead cost three times as much.
    """
    value = f"json_extract({text}, '$.tool_call_id')"
    plain_result = (
        f"json_type({text}, '$.tool_call_id') = 'text' "
        f"AND json_type({text}, '$.details.hitl') IS NULL "
        f"AND json_type({text}, '$.details.{DETAILS_KEY}') IS NULL"
    )
    calls = (
        f"(SELECT json_group_array(json(value)) FROM json_each({text}, '$.content') "
        "WHERE CASE WHEN type = 'object' THEN json_extract(value, '$.type') END = 'tool_call')"
    )
    return (
        f"CASE WHEN typeof({text}) = 'blob' THEN X'00' || {text} "
        f"WHEN NOT json_valid({text}) THEN {text} "
        f"ELSE CASE json_extract({text}, '$.role') "
        "WHEN 'user' THEN X'75' "
        f"WHEN 'tool_result' THEN CASE WHEN {plain_result} "
        f"THEN CAST('r' || {value} AS BLOB) ELSE {text} END "
        f"WHEN 'assistant' THEN CASE WHEN json_type({text}, '$.content') = 'array' "
        f"THEN CAST('c' || {calls} AS BLOB) ELSE {text} END "
        f"ELSE {text} END END"
    )


def _sketched(row: Any) -> TranscriptEntry:
    """A sketch's entry: its role's few fields, or the parsed text where SQLite gave it."""
    row_id, sketch, created_at, run_id = row
    entry = TranscriptEntry(row_id, number(created_at), text_or_none(run_id), None)
    kind = sketch[:1] if type(sketch) is bytes else b"\0"
    if kind == b"u":
        entry.message = {"role": "user"}
    elif kind == b"r":
        entry.message = {"role": "tool_result", "tool_call_id": _text(sketch[1:])}
    elif kind == b"c":
        entry.message = {"role": "assistant", "content": json.loads(_text(sketch[1:]))}
    else:
        text = sketch[1:] if type(sketch) is bytes else sketch
        entry.message, entry.error = parse_message(text)
        if entry.error is not None:
            entry.raw = text if isinstance(text, str) else repr(text)
    return entry


def _text(value: bytes) -> str:
    """SQLite's UTF-8 as Python reads it; a lone surrogate from a JSON escape kept as one."""
    return value.decode("utf-8", "surrogatepass")
