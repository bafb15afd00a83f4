"""The listing pass: `messages` read into thread summaries, mostly inside SQLite.

`MessageReader` owns the summaries and how far it has read. The first
listing is one aggregate pass in SQL (`read_all`, or `listed` a chunk at a
time for a stream); later refreshes fold the rows above the cursor
(`read_new_messages`); a thread the fast path cannot take is folded again row
by row, every row checked (`refold`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from supervisor.sqlite.connection import Connection
from supervisor.sqlite.rows import (
    NotPlain,
    noting_threads,
    odd_id,
    odd_thread_id,
    parse_message,
)
from supervisor.sqlite.sql import ACTIVITY, KINDS, Scope, in_order_sql, unix_time_sql
from supervisor.states import Row, ThreadSummary, fold_rows
from supervisor.store import BEFORE_ANY_ROW, summarise_assistant


class MessageReader:
    """Thread summaries folded from `messages`, read incrementally by row id."""

    def __init__(self, db: Connection, scope: Scope) -> None:
        self.db = db
        self.scope = scope
        self.threads: dict[str, ThreadSummary] = {}
        #: The highest message id read so far (`BEFORE_ANY_ROW`: none yet).
        self.cursor: float = BEFORE_ANY_ROW
        #: Rows up to this id were listed from their start only (`check_rows`); None: none.
        self.unchecked_through: int | None = None
        #: The assistant row parsed for each thread (parsed again only when it changes).
        self.parsed_assistant: dict[str, int] = {}
        #: What the last refresh read: message rows folded, threads whose runs
        #: were looked at. A refresh must cost what changed (tests check these).
        self.work: dict[str, int] = {"rows": 0, "run_threads": 0}

    def reset(self) -> None:
        """Forget everything read: the next read starts from the first row."""
        self.threads.clear()
        self.parsed_assistant.clear()
        self.cursor = BEFORE_ANY_ROW

    @property
    def has_read(self) -> bool:
        """Whether a first read was made (later ones fold the rows above the cursor)."""
        return self.cursor != BEFORE_ANY_ROW

    def summary(self, thread_id: str) -> ThreadSummary:
        summary = self.threads.get(thread_id)
        if summary is None:
            summary = self.threads[thread_id] = ThreadSummary(thread_id)
        return summary

    def newest_row(self) -> int | None:
        """The highest message id in the file now (None: no messages)."""
        (top,) = self.db.conn.execute("SELECT max(id) FROM messages").fetchone()
        return top if isinstance(top, int) else None

    def read_all(self) -> set[str]:
        """The first listing: one aggregate pass in SQL, then each thread's tail.

        Folding 2M rows in Python took seconds; SQLite groups them itself
        (`PRAGMA threads` lets its sorter use a second core) into a temp
        table. Each row contributes its role, read from the start of its
        text; per thread come back the count, the newest row and its role,
        the newest assistant and tool-result rows. The rows a state depends
        on (the last assistant message and the tool results after it) are
        then joined to that table inside SQLite: Python sees one row per
        thread. A thread with a row whose start is not one we know is
        folded row by row (`_refold`), as are threads `check_rows` later
        finds a broken row in.
        """
        top = self.aggregate("first")
        if top is None:
            return set()
        try:
            for _ in self.listed(top, chunk=None):
                pass
            return set(self.threads)
        except NotPlain:
            # Thread ids that are not plain text (blobs, NULL, bad UTF-8) are
            # named row by row (`odd_thread_id`): take the exact path.
            self.threads.clear()
            self.parsed_assistant.clear()
            self.cursor, self.unchecked_through = (
                BEFORE_ANY_ROW,
                None,
            )  # the exact path checks every row
            touched = self.read_new_messages()
            self.refold(self.fill_tails(touched))
            return touched
        finally:
            self.db.conn.execute("DROP TABLE IF EXISTS temp.listing")

    def aggregate(self, order: str, top: int | None = None) -> int | None:
        """`temp.listing`, its rows in `order` ("first" row or "thread_id"); the top row id.

        None for a database without messages. `top`: read the rows up to it
        (a split first read's halves read the same rows), else up to the newest.
        """
        conn = self.db.conn
        if top is None:
            top = self.newest_row()
        if top is None:
            return None
        bottom = BEFORE_ANY_ROW if self.scope.newest is None else top - self.scope.newest
        conn.execute("DROP TABLE IF EXISTS temp.listing")
        sql = self.scope.aggregate_sql(order == "first") + f" ORDER BY {order}"
        conn.execute(sql, (bottom, top, *self.scope.range_args))
        self._exact_activity(bottom, top)
        return top

    def listed(
        self, top: int, chunk: int | None, runs: bool = False
    ) -> Iterator[dict[str, ThreadSummary]]:
        """Summaries of `temp.listing`'s threads in its row order, with tails, a chunk at a time.

        `chunk` None: one chunk, built in `self.threads` (the kept listing).
        Otherwise new dicts of that many threads, each complete once handed
        out and not kept (`stream`). `runs`: whether each thread's run is
        open or done comes from `temp.open_runs` and `temp.done_runs`.
        Raises `NotPlain`, having handed out nothing, on a thread id that is
        not plain text (bad UTF-8 read by the tolerant decoder).
        """
        conn = self.db.conn
        if conn.execute(
            "SELECT 1 FROM temp.listing WHERE typeof(thread_id) != 'text' LIMIT 1"
        ).fetchone():
            raise NotPlain
        keep = chunk is None
        if not keep and any(
            type(t) is not str for (t,) in conn.execute("SELECT thread_id FROM temp.listing")
        ):  # found now, before any chunk is handed out
            raise NotPlain
        self.cursor = top
        self.unchecked_through = top
        run = "l.run_id" if "run_id" in self.scope.columns["messages"] else "NULL"
        run_open = "t.thread_id IN temp.open_runs" if runs else "0"
        run_done = "t.thread_id IN temp.done_runs" if runs else "0"
        rows = conn.execute(
            f"SELECT t.thread_id, t.count, t.last, {ACTIVITY}, t.assistant, t.strange, "
            f"{run_open}, {run_done}, "
            # A parsed row is validated by the parse; only the others need json_valid.
            f"{run}, t.last >> 3 = t.assistant OR json_valid(l.message_json), a.message_json, "
            # A thread whose newest tool result follows its last assistant row: the
            # rows after that one, the tail whose results answer its calls.
            "CASE WHEN t.strange IS NULL AND t.result > coalesce(t.assistant, 0) "
            "THEN t.others END, coalesce(t.assistant, 0) "
            "FROM temp.listing t JOIN messages l ON l.id = t.last >> 3 "
            "LEFT JOIN messages a ON a.id = t.assistant ORDER BY t.rowid"
        )
        threads = self.threads if keep else {}
        odd: set[str] = set()
        tail: list[int] = []
        try:  # the cursor closed on every way out: an open one keeps the database read-locked
            for (
                thread_id,
                count,
                last,
                activity,
                assistant,
                strange,
                open_run,
                done_run,
                run_id,
                valid,
                text,
                others,
                after,
            ) in rows:
                if type(thread_id) is not str:
                    raise NotPlain
                s = threads.get(thread_id)
                if s is None:
                    s = threads[thread_id] = ThreadSummary(thread_id)
                s.messages = count
                s.last_row = last >> 3
                s.last_role = KINDS[last & 7]
                s.last_activity = activity
                s.last_assistant_row = assistant
                s.last_run_id = run_id
                if open_run:
                    s.run_open = True
                if done_run:
                    s.run_done = True
                if strange is not None or (not valid and s.bad_row is None):
                    odd.add(thread_id)
                if assistant is not None and self.parsed_assistant.get(thread_id) != assistant:
                    self._parse_last_assistant(s, assistant, text, remember=keep)
                if others is not None:
                    tail += [row for row in map(int, others.split(",")) if row > after]
                if not keep and len(threads) >= chunk:  # type: ignore[operator]
                    yield self._settle(threads, odd, self._read_tails(tail))
                    threads, odd, tail = {}, set(), []
            yield self._settle(threads, odd, self._read_tails(tail))
        finally:
            rows.close()

    def _settle(
        self,
        threads: dict[str, ThreadSummary],
        odd: set[str],
        answered: tuple[dict[str, set[str]], set[str]],
    ) -> dict[str, ThreadSummary]:
        """Give these threads their answered calls; fold again those the fast pass cannot take."""
        found, broken = answered
        few, many = (found, threads) if len(found) < len(threads) else (threads, found)
        for thread_id in few:
            if thread_id in many:
                threads[thread_id].answered = found[thread_id]
        odd |= {t for t in broken if t in threads}
        if odd and threads is self.threads:
            self.refold(odd)
        elif odd:  # a streamed chunk: fold them where `_refold` looks, then take them back
            for thread_id in odd:
                self.threads[thread_id] = threads[thread_id]
            self.refold(odd)
            for thread_id in odd:
                threads[thread_id] = self.threads.pop(thread_id)
                self.parsed_assistant.pop(thread_id, None)
        return threads

    def _read_tails(self, rows: list[int]) -> tuple[dict[str, set[str]], set[str]]:
        """These rows (the tails after threads' last assistant rows), read by id and
        grouped by thread: the tool_call_ids they answer, and the threads where one
        of them is not valid JSON or needs a full parse (they are refolded, row by row).
        """
        found: dict[str, set[str]] = {}
        refold: set[str] = set()
        if not rows:
            return found, refold
        self.work["tail_rows"] = self.work.get("tail_rows", 0) + len(rows)
        sql = self.scope.answered_sql(
            "FROM messages m WHERE m.id IN (SELECT value FROM json_each(?))"
        )
        for thread_id, calls, broken, unsure in self.db.conn.execute(sql, (json.dumps(rows),)):
            if broken or unsure:
                refold.add(thread_id)
            if calls is not None:
                found[thread_id] = set(json.loads(calls))
        return found, refold

    def read_only(self, thread_ids: set[str]) -> set[str]:
        """The scoped first read: these threads, folded exactly; unknown ones left out."""
        (top,) = self.db.conn.execute("SELECT max(id) FROM messages").fetchone()
        self.cursor = BEFORE_ANY_ROW if top is None else top
        self.refold(thread_ids)
        known = set()
        if "thread_extra" in self.scope.columns:
            known = {
                str(t)
                for (t,) in self.db.conn.execute(
                    "SELECT thread_id FROM thread_extra WHERE thread_id IN "
                    "(SELECT value FROM json_each(?))",
                    (json.dumps(sorted(thread_ids)),),
                )
            }
        for thread_id in thread_ids:
            if self.threads[thread_id].messages == 0 and thread_id not in known:
                del self.threads[thread_id]
        return set(self.threads)

    def refold(self, thread_ids: set[str]) -> None:
        """Fold these threads again row by row, every row checked: the exact, slower path."""
        for thread_id in thread_ids:
            self.threads[thread_id] = ThreadSummary(thread_id)
            self.parsed_assistant.pop(thread_id, None)
        rows = self.db.conn.execute(
            self.scope.threads_sql,
            (BEFORE_ANY_ROW, self.cursor, json.dumps(sorted(thread_ids))),
        )
        fold_rows(self.threads, self._checked(rows))
        self.fill_tails(thread_ids)

    def read_new_messages(self) -> set[str]:
        """The one pass over rows above the cursor, mostly inside SQLite.

        SQLite validates each row's JSON and recognises its role (and a tool
        result's tool_call_id) from the start of the text, so Python never
        parses a whole message here. (Splitting the range across threads
        was measured slower: the GIL serialises building the rows.)
        """
        top = self.newest_row()
        if top is None or top <= self.cursor:
            return set()
        before = self.cursor
        if self.scope.only is None:
            rows = self.db.conn.execute(self.scope.listing_sql, (before, top))
        else:
            rows = self.db.conn.execute(
                self.scope.threads_sql, (before, top, json.dumps(sorted(self.scope.only)))
            )
        touched: set[str] = set()
        try:
            fold_rows(self.threads, noting_threads(self._checked(rows), touched, self.work))
        finally:
            # An error mid-pass (the first text that is not UTF-8) leaves the statement
            # open, and the listing's table could not be dropped after it: SQLite's "table
            # is locked" then hid the error the reading recovers from.
            rows.close()
        self.cursor = top
        return touched  # the threads these rows belong to: no walk over every thread

    def _exact_activity(self, bottom: float, top: int) -> None:
        """`temp.listing.exact`: the newest time of the threads whose stored times do not
        convert in order (text, or unix seconds mixed with julian days), in a second
        pass over their rows. A database our checkpointer wrote has none of them."""
        conn = self.db.conn
        if (
            "created_at" not in self.scope.columns["messages"]
            or not conn.execute(
                f"SELECT 1 FROM temp.listing WHERE NOT {in_order_sql()} LIMIT 1"
            ).fetchone()
        ):
            return
        conn.execute(
            "UPDATE temp.listing SET exact = x.t FROM (SELECT thread_id, "
            f"max({unix_time_sql('created_at')}) AS t FROM messages WHERE id > ? AND id <= ? "
            f"AND thread_id IN (SELECT thread_id FROM temp.listing WHERE NOT {in_order_sql()}) "
            "GROUP BY thread_id) AS x WHERE x.thread_id = listing.thread_id",
            (bottom, top),
        )

    def _checked(self, rows: Iterable[Row]) -> Iterator[Row]:
        """Pass rows on, sending the few SQL could not read to `_resolve_row`."""
        for row in rows:
            role = row[3]
            if role == "?" or (role == "tool_result" and odd_id(row[4])):
                row = self._resolve_row(row)
            if type(row[1]) is not str:
                row = odd_thread_id(row)
            yield row

    def _resolve_row(self, row: Row) -> Row:
        """The slow path: parse a row in full when its start was not enough.

        Taken by rows another serialiser wrote in another field order, and
        by tool_call_ids holding escapes or longer than `ID_CHARS`.
        """
        row_id, thread_id, activity, _, _ = row
        (text,) = self.db.conn.execute(
            "SELECT message_json FROM messages WHERE id = ?", (row_id,)
        ).fetchone()
        message, error = parse_message(text)
        if message is None:
            return (row_id, thread_id, activity, None, error)
        call_id = message.get("tool_call_id")
        detail = call_id if isinstance(call_id, str) else None
        return (row_id, thread_id, activity, message["role"], detail)

    def fill_tails(self, touched: Iterable[str]) -> set[str]:
        """Read what the one pass skipped, for touched threads only.

        The last assistant message is parsed in full (stop reason, tool
        calls, text), once per new assistant row; the run id comes from
        the thread's newest row. Returns the threads whose newest row is
        not valid JSON but was not yet found corrupt (the first listing
        reads rows by their start only): `_refold` settles those. One
        statement reads every row wanted, joined with a temp table of ids.
        """
        assistants: dict[int, ThreadSummary] = {}
        last_rows: dict[int, ThreadSummary] = {}
        for thread_id in touched:
            s = self.threads[thread_id]
            if s.last_row:
                last_rows[s.last_row] = s
            row = s.last_assistant_row
            if row is not None and self.parsed_assistant.get(thread_id) != row:
                assistants[row] = s
        if not last_rows and not assistants:
            return set()
        run = "m.run_id" if "run_id" in self.scope.columns["messages"] else "NULL"
        self.db.conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS wanted (id INTEGER PRIMARY KEY, parse INTEGER)"
        )
        self.db.conn.execute("DELETE FROM temp.wanted")
        self.db.conn.executemany(
            "INSERT INTO temp.wanted VALUES (?, ?)",
            ((i, i in assistants) for i in last_rows.keys() | assistants),
        )
        broken = set()
        for row_id, run_id, valid, text in self.db.conn.execute(
            # A parsed row is validated by the parse; only the others need json_valid.
            f"SELECT m.id, {run}, w.parse OR json_valid(m.message_json), "
            "CASE w.parse WHEN 1 THEN m.message_json END "
            "FROM temp.wanted w JOIN messages m ON m.id = w.id"
        ):
            s = last_rows.get(row_id)
            if s is not None:
                s.last_run_id = run_id
                if not valid and s.bad_row is None:
                    broken.add(s.thread_id)
            s = assistants.get(row_id)
            if s is not None:
                self._parse_last_assistant(s, row_id, text)
        self.db.conn.execute("DELETE FROM temp.wanted")
        return broken

    def _parse_last_assistant(
        self, s: ThreadSummary, row_id: int, text: Any, remember: bool = True
    ) -> None:
        message, error = parse_message(text)
        if message is not None:
            s.set_last_assistant(*summarise_assistant(message))
            s.bad_tail = None
        else:  # valid to SQLite, not to Python (nesting, UTF-8)
            s.set_last_assistant(None, (), "", None)
            s.bad_tail = (row_id, error)
        if remember:  # a streamed summary is not kept, nor is what was parsed for it
            self.parsed_assistant[s.thread_id] = row_id

    def listing_shape(self) -> tuple[int, int]:
        """(longest thread id, most messages) of `temp.listing`: a streamed table's widths."""
        longest, most = self.db.conn.execute(
            "SELECT max(length(thread_id)), max(count) FROM temp.listing"
        ).fetchone()
        if "thread_extra" in self.scope.columns:
            (extra,) = self.db.conn.execute(
                "SELECT max(length(thread_id)) FROM thread_extra"
            ).fetchone()
            longest = max(longest or 0, extra or 0)
        return longest or 0, most or 0
