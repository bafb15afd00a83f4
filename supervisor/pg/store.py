"""Listing threads from cubeloop's Postgres tables.

The listing is set-based: one aggregate over `cubepi_messages` gives every
thread's count, last row and its role (from the `role` column: no payload
decoded), its last assistant row and its first row with a role we do not
know. Then only the rows each state depends on are fetched with their
payloads by the `(thread_id, seq)` key: the last assistant message and what
came after it. A refresh asks which threads have rows newer than the last
look (by `created_at`, with a margin for transactions that committed late)
and runs the same two queries for those threads only.

Why polling `created_at` and not LISTEN/NOTIFY: a notification needs a
trigger on cubeloop's table, and the host owns that schema (Alembic). We
never run DDL on it; the store's connection is read-only
(`default_transaction_read_only`).

A row's number is its `seq` within the thread (Postgres has no global row
id), so "row 7" in a Postgres thread is its seventh message.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Collection, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from supervisor.digest import TranscriptDigest
from supervisor.pg import sql
from supervisor.pg.client import PgError, SyncClient, first_line
from supervisor.pg.leases import PgLeaseBoard
from supervisor.pg.payload import ROLE_NAMES, decode_payload, tool_call_id_of
from supervisor.pg.schema import CREATED_INDEX, EXISTING_SQL, INDEX_NAMES
from supervisor.pg.side_tables import NO_EXTRAS, Extras, Only, SideTables, fold_runs, with_extras
from supervisor.pg.thread_reads import ThreadReads
from supervisor.states import NONE_ANSWERED, ThreadSummary
from supervisor.store import (
    INDEX_HINT_ROWS,
    StoreError,
    Transcript,
    summarise_assistant,
)
from supervisor.urls import redact

if TYPE_CHECKING:
    from supervisor.search import Found
    from supervisor.usage import UsageRow

#: Rows whose transaction started up to this long before the last look, but
#: committed after it, are still found (cubeloop's appends are short).
COMMIT_MARGIN_SECONDS = 30.0

#: Up to this many threads are read with `= ANY(...)`; more, one probe each.
FEW_THREADS = 50

#: A database with more message rows than this gets a preview of its newest threads.
PREVIEW_ABOVE_ROWS = 200_000
#: How many threads a preview reads.
PREVIEW_THREADS = 500

#: Connections the first listing reads partitions on.
PARTITION_READERS = 2


class PostgresStore:
    """A read-only, incrementally refreshed view of cubeloop's Postgres tables."""

    busy_timeout = 0.0  # a SQLite file's setting: the server queues its own locks

    def __init__(self, dsn: str, *, only: Iterable[str] | None = None) -> None:
        self.dsn = dsn
        self.location = redact(dsn)
        self._only = Only(None if only is None else sorted(set(only)))
        self._threads: dict[str, ThreadSummary] = {}
        self._since: Any = None
        #: `check_rows` decodes every payload in Python: seconds of the GIL at fleet
        #: size, which a UI would feel. `list --check` runs it; the app does not.
        self.checks_in_background = False
        #: A server: nothing to watch (the app polls), and partitions come in no order.
        self.path = None
        self.streams = "unordered"
        self._checked = False
        #: The threads and message rows `stream_batches` saw (it keeps no summaries).
        self._streamed_ids: set[str] = set()
        self._streamed_rows = 0
        self._listing_extras = NO_EXTRAS
        self.work = {"rows": 0, "run_threads": 0}
        self._lock = threading.RLock()
        self._dsn = dsn
        try:
            self._client = SyncClient(dsn, "store", default_transaction_read_only="on")
        except PgError as exc:
            raise StoreError(str(exc)) from None
        self.leases = PgLeaseBoard(dsn, client=self._client)
        self.side = SideTables(self._client, self.leases, self._only)
        self._reads = ThreadReads(self._client, self.location)
        try:
            missing = self._client.fetchval("SELECT to_regclass('cubepi_messages') IS NULL")
        except Exception as exc:
            self.close()
            raise StoreError(f"{self.location}: {first_line(exc)}") from None
        if missing:
            self.close()
            raise StoreError(
                f"{self.location}: not a CubeLoop checkpoint database (no cubepi_messages table)"
            )

    # -- the Store interface ----------------------------------------------

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def threads(self) -> list[ThreadSummary]:
        return list(self._threads.values())

    def start_over(self) -> None:
        """As the SQLite store's: the next refresh reads every thread again."""
        with self._lock:
            self._threads = {}
            self._since = None
            self.side.reset()

    def get(self, thread_id: str) -> ThreadSummary | None:
        return self._threads.get(thread_id)

    def take_notices(self) -> list[str]:
        """A lost connection and its return (the client connects again by itself)."""
        return self._client.take_notices()

    def leases_folded(self) -> dict[str, dict[str, Any]] | None:
        return self.side.held.live

    @property
    def rows_checked(self) -> bool:
        return self._checked

    def close(self) -> None:
        self._client.close()

    def refresh(self) -> set[str]:
        """Read what changed since the last call; return the touched thread ids."""
        try:
            with self._lock:
                return self._refresh()
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"{self.location}: {first_line(exc)}") from None

    def thread_extra(self, thread_id: str) -> dict[str, Any]:
        return self._reads.thread_extra(thread_id)

    def hitl_answer(self, thread_id: str, run_id: str | None, question_id: str) -> Any:
        return self._reads.hitl_answer(thread_id, run_id, question_id)

    def answers_given(self, thread_id: str, run_id: str) -> dict[str, float]:
        return self._reads.answers_given(thread_id, run_id)

    def transcript(self, thread_id: str, *, full: bool = False) -> Transcript:
        return self._reads.transcript(thread_id, full=full)

    def usage_rows(
        self,
        since: float | None = None,
        threads: Collection[str] | None = None,
        rows: tuple[int, int] | None = None,
        days: bool = False,
    ) -> tuple[list[UsageRow], set[tuple[str, str]]]:
        """As the SQLite store's: tokens by thread, run, day and model (`pg.usage`). Rows
        have no single order here (`rows` is a file's): a tally asks by thread."""
        from supervisor.pg import usage

        if rows is not None:
            raise ValueError("a Postgres store reads usage by thread, not by row id")
        try:
            found = usage.usage_rows(self._client, since, threads, days)
            return found, usage.copied_runs(self._client)
        except PgError as exc:
            raise StoreError(str(exc)) from None

    def search(self, text: str) -> Found:
        """As the SQLite store's: by our table when there is one (`pg.search`), else a scan
        (this store's connection reads only; the table is written on one of its own)."""
        from supervisor.pg import search
        from supervisor.search import Found

        try:
            if search.search_index_exists(self._dsn, self._client):
                return Found(frozenset(search.search(self._dsn, text)), True)
            return Found(frozenset(search.scan(self._client, text)), False)
        except PgError as exc:
            raise StoreError(str(exc)) from None

    def has_search_index(self) -> bool:
        from supervisor.pg.search import search_index_exists

        return search_index_exists(self._dsn, self._client)

    def transcripts(self, thread_ids: Iterable[str], *, full: bool = False) -> Iterator[Transcript]:
        return self._reads.transcripts(thread_ids, full=full)

    def digests(self, thread_ids: Iterable[str]) -> Iterator[TranscriptDigest]:
        return (TranscriptDigest.of(t) for t in self._reads.transcripts(thread_ids, full=True))

    def check_rows(self) -> set[str]:
        """Decode every payload (the listing decodes only the rows states depend on).

        Reads partition by partition on a connection of its own and takes the
        store's lock only to record what it found: the app runs this in the
        background while refreshes go on.
        """
        client = SyncClient(self.dsn, "check", default_transaction_read_only="on")
        found: dict[str, tuple[int, str]] = {}
        try:
            for relation in sql.relations(client):
                for thread_id, seq, role, payload in client.fetch(
                    f"SELECT thread_id, seq, role, payload FROM {relation}"
                    + self._only.where("thread_id"),
                    *self._only.args(),
                ):
                    _, error = decode_payload(payload, role)
                    if error is not None and (thread_id not in found or seq < found[thread_id][0]):
                        found[thread_id] = (seq, error)
        finally:
            client.close()
        changed: set[str] = set()
        with self._lock:
            for thread_id, (seq, error) in found.items():
                s = self._threads.get(thread_id)
                if s is not None and (s.bad_row is None or seq < s.bad_row):
                    s.bad_row, s.bad_reason = seq, error
                    changed.add(thread_id)
            self._checked = True
        return changed

    def stream_batches(
        self, share: tuple[int, int] = (0, 1), *, without_messages: bool = True
    ) -> Iterator[list[ThreadSummary]]:
        """Every thread once, a partition's threads at a time, none of them kept (`list`).

        The batches come in no order (the partitions hash thread ids), the
        threads without messages last. The next partition is read while this
        one's batch is used: the server's work overlaps ours. The store keeps
        nothing but the ids and the count of rows it saw (for `index_hint`).
        A store scoped to some threads (`only`) cannot stream.

        `share` (i, n): partitions i, i + n, ... only, for a listing split
        between n processes (`supervisor.listing.postgres`); `without_messages`
        False leaves out the last batch, which needs every process's ids
        (`threads_without_messages`).
        """
        if self._only.threads is not None:
            raise ValueError("a scoped store cannot stream")
        with self._lock:
            self._streamed_ids, self._streamed_rows = set(), 0
            try:
                self._listing_extras = self.side.extras()
                relations = sql.relations(self._client)[share[0] :: share[1]]
                yield from self._stream(relations, self._listing_extras)
                if without_messages:
                    yield self._unlisted(self._streamed_ids, self._listing_extras)
            except StoreError:
                raise
            except Exception as exc:
                raise StoreError(f"{self.location}: {first_line(exc)}") from None
            finally:
                self._threads = {}

    def threads_without_messages(self, elsewhere: set[str], rows: int) -> list[ThreadSummary]:
        """The last batch of a split listing, after this store's `stream_batches`: the
        threads neither this process nor the other (which saw the threads `elsewhere`
        and `rows` message rows, counted for `index_hint`) listed."""
        with self._lock:
            self._streamed_ids |= elsewhere
            self._streamed_rows += rows
            try:
                return self._unlisted(self._streamed_ids, self._listing_extras)
            except Exception as exc:
                raise StoreError(f"{self.location}: {first_line(exc)}") from None
            finally:
                self._threads = {}

    @property
    def streamed(self) -> tuple[set[str], int]:
        """The thread ids and message rows the last `stream_batches` saw."""
        return self._streamed_ids, self._streamed_rows

    def _unlisted(self, listed: set[str], extras: Extras) -> list[ThreadSummary]:
        """The threads not in `listed` (every thread with messages): rare, so their
        ids are read only when the threads table says some exist."""
        client = self._client
        self._threads = {}
        if client.fetchval("SELECT count(*) FROM cubepi_threads") > len(listed):
            self._threads = {
                t: ThreadSummary(t)
                for (t,) in client.fetch("SELECT thread_id FROM cubepi_threads")
                if t not in listed
            }
        return with_extras(self._threads, extras)

    def _stream(self, relations: list[str], extras: Extras) -> Iterator[list[ThreadSummary]]:
        if not relations:
            return
        client = self._client
        soon = client.fetch_soon(sql.PARTITION_SQL.format(relation=relations[0]))
        try:
            for i in range(len(relations)):
                rows = soon.result()
                if i + 1 < len(relations):
                    soon = client.fetch_soon(sql.PARTITION_SQL.format(relation=relations[i + 1]))
                self._threads = {}
                self._fold_partition(rows)
                del rows
                self._streamed_ids.update(self._threads)
                self._streamed_rows += sum(s.messages for s in self._threads.values())
                yield with_extras(self._threads, extras)
        finally:  # a reader that stopped early: the read ahead ends before the next query
            with contextlib.suppress(Exception):
                soon.result()

    def index_hint(self, rows: int | None = None) -> str | None:
        """Why `agent-supervisor index` would help (`rows`: counted by a listing)."""
        if rows is None:
            rows = sum(s.messages for s in self._threads.values()) or self._streamed_rows
        if rows <= INDEX_HINT_ROWS:
            return None
        have = {r[0] for r in self._client.fetch(EXISTING_SQL, list(INDEX_NAMES))}
        missing = [name for name in INDEX_NAMES if name not in have]
        if not missing:
            return None
        return (
            f"{rows:,} rows and not our indexes ({', '.join(missing)}): each refresh (the "
            f"app's, every second) scans tables; 'agent-supervisor index {self.location}' "
            "adds them"
        )

    def preview_soon(self) -> None:
        """No head start needed: the preview is one query on the server."""

    def preview_ready(self) -> bool:
        return False

    def stop_first_read(self) -> None:
        """No forked first read on a server."""

    def preview(self, threads: int = PREVIEW_THREADS) -> list[ThreadSummary] | None:
        """The newest threads, read in a fraction of a second, for a first screen.

        None for a database small enough to list whole at once. The newest are
        those of the newest rows when our `created_at` index is there, else
        the newest-created threads. Read by a scratch store on its own
        connection: this one's state is untouched.
        """
        estimate = self._client.fetchval(
            "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'cubepi_messages'::regclass"
        )
        if estimate < PREVIEW_ABOVE_ROWS:
            return None
        if self._client.fetchval(f"SELECT to_regclass('{CREATED_INDEX}') IS NOT NULL"):
            sql = (
                "SELECT thread_id FROM (SELECT thread_id, created_at FROM cubepi_messages "
                f"ORDER BY created_at DESC LIMIT {threads * 20}) AS m "
                f"GROUP BY thread_id ORDER BY max(created_at) DESC LIMIT {threads}"
            )
        else:
            sql = f"SELECT thread_id FROM cubepi_threads ORDER BY created_at DESC LIMIT {threads}"
        newest = [r[0] for r in self._client.fetch(sql)]
        scratch = PostgresStore(self.dsn, only=newest)
        try:
            scratch.refresh()
            return scratch.threads()
        finally:
            scratch.close()

    # -- reading ------------------------------------------------------------

    def _refresh(self) -> set[str]:
        now = self._client.fetchval("SELECT statement_timestamp()")
        side = self.side
        first = self._since is None
        if first and self._only.threads is None:
            touched = self._first_listing()
        elif first:
            touched = self._read_threads(None)
            touched |= self._read_messages(set(self._threads))
            touched |= side.read_runs(self._threads, None)
        else:
            since = self._since
            touched = self._read_threads(since)
            changed = self._changed_since(since)
            touched |= self._read_messages(changed) if changed else set()
            runs = changed | side.runs_changed_since(since)
            if runs:
                self.work["run_threads"] = len(runs)
            touched |= side.read_runs(self._threads, runs)
        self._since = now - _margin()
        threads = self._threads
        touched |= side.read_forks(threads, None if first else touched)
        touched |= side.read_pending_requests(threads)
        touched |= side.read_parents(threads, touched)
        touched |= side.read_run_done(threads, touched)
        touched |= side.read_leases(threads)
        touched |= side.read_attempts(threads)
        return touched

    def _read_threads(self, since: Any) -> set[str]:
        """Threads (with or without messages) in order of creation; new ones when `since`."""
        args = self._only.args()
        extra = ""
        if since is not None:
            args.append(since)
            extra = f"created_at > ${len(args)}"
        rows = self._client.fetch(
            "SELECT thread_id FROM cubepi_threads"
            + self._only.where("thread_id", extra)
            + " ORDER BY created_at, thread_id",
            *args,
        )
        new = set()
        for r in rows:
            if r["thread_id"] not in self._threads:
                self._threads[r["thread_id"]] = ThreadSummary(r["thread_id"])
                new.add(r["thread_id"])
        return new

    def _changed_since(self, since: Any) -> set[str]:
        """Threads with a row newer than what the last look saw."""
        args = [*self._only.args(), since]
        rows = self._client.fetch(
            "SELECT thread_id, max(seq) AS last FROM cubepi_messages"
            + self._only.where("thread_id", f"created_at > ${len(args)}")
            + " GROUP BY thread_id",
            *args,
        )
        changed = set()
        for r in rows:
            s = self._threads.get(r["thread_id"])
            if s is None or r["last"] > s.last_row:
                changed.add(r["thread_id"])
        return changed

    def _read_messages(self, thread_ids: set[str]) -> set[str]:
        """Aggregate the threads' rows, then decode the tails their states depend on.

        A few threads are read with `thread_id = ANY(...)`; more, one LATERAL
        probe each (past about fifty the planner turns ANY into a scan of
        every partition).
        """
        ids = sorted(thread_ids)
        if len(ids) <= FEW_THREADS:
            query = sql.AGGREGATE_SQL.format(
                relation="cubepi_messages", where=" WHERE thread_id = ANY($1)"
            )
        else:
            query = sql.AGGREGATE_EACH_SQL
        rows = self._client.fetch(query, ids)
        self.work["rows"] = sum(r["n"] for r in rows)
        tails = {r["thread_id"]: self._fold_aggregate(r) for r in rows}
        if tails:
            self._read_tails(tails)
        return set(tails)

    def _fold_aggregate(self, r: Any) -> int:
        """A thread's summary from its aggregate row; returns the seq its tail starts at."""
        thread_id, n, last, assistant, bad, at = r[:6]
        fresh = ThreadSummary(thread_id, n, last, at)
        fresh.last_assistant_row = assistant
        s = self._threads.get(thread_id)
        if s is not None:  # what other tables said stays
            fresh.running, fresh.holder = s.running, s.holder
            fresh.pending_request, fresh.request = s.pending_request, s.request
            fresh.answer_stored, fresh.run_open = s.answer_stored, s.run_open
            fresh.run_done = s.run_done
            fresh.attempt = s.attempt
        if bad is not None:
            fresh.bad_row, fresh.bad_reason = bad, "unknown role in the role column"
        self._threads[thread_id] = fresh
        return assistant if assistant is not None else 1

    def _read_tails(self, tails: dict[str, int]) -> None:
        """The rows from each thread's last assistant message on, by the key."""
        ids = list(tails)
        if len(ids) <= FEW_THREADS:
            rows = self._client.fetch(
                "SELECT thread_id, seq, role, run_id, payload FROM cubepi_messages "
                "WHERE thread_id = ANY($1::text[]) AND seq >= $2",
                ids,
                min(tails.values()),
            )
        else:
            rows = self._client.fetch(sql.TAILS_EACH_SQL, ids, [tails[t] for t in ids])
        for r in rows:
            if r["seq"] >= tails[r["thread_id"]]:
                self._fold_tail(r)

    def _first_listing(self) -> set[str]:
        """Every thread: each partition aggregated and its tails joined, partitions in parallel.

        One query per partition keeps the partition in the server's cache
        between its aggregate and its join (a whole-table join reads the
        table twice), and a few connections use the server's cores. The
        thread and run tables are read alongside.
        """
        relations = sql.relations(self._client)
        threads, runs = self._client.run(self._read_partitions(relations))
        order = [r["thread_id"] for r in threads]
        for thread_id in order:
            if thread_id not in self._threads:
                self._threads[thread_id] = ThreadSummary(thread_id)
        listed = set(order)
        rest = [t for t in self._threads if t not in listed]
        self._threads = {t: self._threads[t] for t in (*order, *rest)}
        fold_runs(self._threads, runs)
        return set(self._threads)

    async def _read_partitions(self, relations: list[str]) -> tuple[list[Any], list[Any]]:
        from supervisor.pg.client import connect

        queue = list(reversed(relations))
        extra = [
            await connect(self.dsn, "store", default_transaction_read_only="on")
            for _ in range(PARTITION_READERS - 1)
        ]

        async def read(conn: Any) -> None:
            while queue:
                self._fold_partition(
                    await conn.fetch(sql.PARTITION_SQL.format(relation=queue.pop()))
                )

        async def tables(conn: Any) -> tuple[list[Any], list[Any]]:
            threads = await conn.fetch(
                "SELECT thread_id FROM cubepi_threads ORDER BY created_at, thread_id"
            )
            runs = await conn.fetch(sql.RUNS_SQL.format(where=""))
            await read(conn)
            return threads, runs

        try:
            found, *_ = await asyncio.gather(
                tables(self._client.conn), *(read(conn) for conn in extra)
            )
        finally:
            for conn in extra:
                await conn.close()
        return found

    def _fold_partition(self, rows: Iterable[Any]) -> None:
        """A partition's aggregate rows, each with a tail row of its thread and whether
        that row's run is complete (for a last row that is a tool result)."""
        started: set[str] = set()
        for r in rows:
            if r[0] not in started:
                started.add(r[0])
                self._fold_aggregate(r)
            self._fold_tail(r[:-1])
            if r[-1]:
                self._threads[r[0]].run_done = True

    def _fold_tail(self, r: Any) -> None:
        """One row at or after a thread's last assistant message."""
        thread_id, seq, role, run_id, payload = r[-5:]
        s = self._threads[thread_id]
        if seq == s.last_row:
            s.last_run_id = run_id
            s.last_role = ROLE_NAMES.get(role)
        if role == "tool":
            call_id, error = tool_call_id_of(payload)
            if error is None and call_id is not None:
                if s.answered is NONE_ANSWERED:
                    s.answered = set()
                s.answered.add(call_id)  # type: ignore[union-attr]
        elif role in ROLE_NAMES:
            message, error = decode_payload(payload, role)
            if seq == s.last_assistant_row:
                if message is not None:
                    s.set_last_assistant(*summarise_assistant(message))
                else:
                    s.set_last_assistant(None, (), "", None)
                    s.bad_tail = (seq, error or "")
                return
        else:
            return  # counted by the aggregate's `bad`
        if error is not None and (s.bad_row is None or seq < s.bad_row):
            s.bad_row, s.bad_reason = seq, error


def _margin() -> Any:
    import datetime

    return datetime.timedelta(seconds=COMMIT_MARGIN_SECONDS)
