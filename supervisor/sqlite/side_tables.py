"""What cubeloop's small tables add to the summaries the listing pass made.

`thread_extra` (threads with no messages yet, and the parent links of
children), `thread_pending_request` with `thread_hitl_answers` (who waits
for a human, and whether the answer is stored), `runs` (whether a thread's
run is open, or ended on purpose), the lease files and the watcher's records.
`SideTables` owns how far it has read each, so a refresh costs what changed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from supervisor.attempts import FileAttempts
from supervisor.hitl import PendingRequest, parse_request
from supervisor.leases import FileLeaseBoard
from supervisor.sqlite.connection import Connection
from supervisor.sqlite.messages import MessageReader
from supervisor.sqlite.rows import plain_id
from supervisor.sqlite.sql import Scope
from supervisor.states import PARENT_KEY, ThreadSummary, may_be_child
from supervisor.store import (
    HeldLeases,
    fold_attempts,
    fold_fork,
    fold_holders,
    fold_parents,
    fold_requests,
)

#: Open runs of threads written to within this many seconds are looked at again (to
#: see them close) every `RUN_SWEEP_SECONDS`; older ones only when their thread
#: changes. An open run matters while it may be live: `plan.live_reason`'s window.
RUN_RECHECK_SECONDS = 120.0
RUN_SWEEP_SECONDS = 5.0


class SideTables:
    """The small tables, read into the reader's summaries."""

    def __init__(
        self,
        db: Connection,
        scope: Scope,
        reader: MessageReader,
        leases: FileLeaseBoard,
        attempts: FileAttempts,
    ) -> None:
        self.db, self.scope, self.reader = db, scope, reader
        #: Who runs which thread: `flock` files beside the database.
        self.leases = leases
        #: The watcher's records, in a file of ours beside the database (read only).
        self.attempts = attempts
        self.attempted: set[str] = set()
        #: The last `thread_extra` rowid read.
        self.extra_cursor = 0
        #: Threads with a pending request / a live lease at the last refresh.
        self.pending: set[str] = set()
        self.held = HeldLeases()
        #: Threads whose newest run is open, and the last `runs` rowid read.
        self.open_runs: set[str] = set()
        self.runs_cursor = 0
        self.runs_swept_at = time.monotonic()

    def reset(self) -> None:
        """Forget everything read (the listing starts over)."""
        self.extra_cursor = self.runs_cursor = 0
        self.pending.clear()
        self.held.forget()
        self.open_runs.clear()

    def skip_extra(self) -> None:
        """Take `thread_extra` as read up to now (a store scoped to named threads)."""
        (self.extra_cursor,) = self.db.conn.execute(
            "SELECT coalesce(max(rowid), 0) FROM thread_extra"
            if "thread_extra" in self.scope.columns
            else "SELECT 0"
        ).fetchone()

    def read_attempts(self) -> set[str]:
        """The watcher's records folded in; the threads whose record changed."""
        found = self.attempts.all()
        touched = fold_attempts(self.reader.threads, self.attempted, found)
        self.attempted = set(found)
        return touched

    def read_new_extra(self) -> set[str]:
        """Threads known only from `thread_extra` are listed as empty; a fork's row names
        its source (read once: cubeloop writes it when it makes the fork)."""
        if "thread_extra" not in self.scope.columns or self.scope.newest is not None:
            return set()
        touched: set[str] = set()
        for rowid, thread_id, source, after in self.db.conn.execute(
            f"SELECT rowid, thread_id, {self._fork_columns} FROM thread_extra "
            "WHERE rowid > ? ORDER BY rowid",
            (self.extra_cursor,),
        ):
            self.extra_cursor = rowid
            thread_id = str(thread_id)
            if self.scope.only is not None and thread_id not in self.scope.only:
                continue
            if thread_id not in self.reader.threads:
                self.reader.summary(thread_id)
                touched.add(thread_id)
            if source is not None and fold_fork(self.reader.threads[thread_id], source, after):
                touched.add(thread_id)
        return touched

    @property
    def _fork_columns(self) -> str:
        """`thread_extra`'s fork source and the run the fork ends with (NULLs where the
        file's schema predates forks)."""
        columns = self.scope.columns.get("thread_extra", set())
        if "parent_thread_id" not in columns:
            return "NULL, NULL"
        after = (
            "CASE WHEN parent_thread_id IS NOT NULL AND json_valid(extra_json) "
            "THEN json_extract(extra_json, '$.fork.after_run_id') END"
            if "extra_json" in columns
            else "NULL"
        )
        return f"parent_thread_id, {after}"

    def fold_forks(self, among: Iterable[str]) -> set[str]:
        """The lineage of these threads (a store scoped to them skips `read_new_extra`)."""
        threads = self.reader.threads
        return {
            t
            for t, (source, after) in self.forks().items()
            if t in among and t in threads and fold_fork(threads[t], source, after)
        }

    def forks(self) -> dict[str, tuple[Any, Any]]:
        """Every fork's (source, run it ends with), by thread: a streamed listing's."""
        if "parent_thread_id" not in self.scope.columns.get("thread_extra", set()):
            return {}
        return {
            str(thread_id): (source, after)
            for thread_id, source, after in self.db.conn.execute(
                f"SELECT thread_id, {self._fork_columns} FROM thread_extra "
                "WHERE parent_thread_id IS NOT NULL"
            )
        }

    def read_parents(self, threads: dict[str, ThreadSummary], among: Iterable[str]) -> set[str]:
        """The parent links (`supervisor.children`) of the threads `among` whose state a link
        could change (`may_be_child`), looked up by id; returns those whose link changed.

        Reading every `extra` for a link took 80 ms at 100,000 threads; a link
        matters only to a thread a resume would start from, and those are few. A
        store opened for named threads (`show`, `resume THREAD`) reads all of theirs.
        """
        if "extra_json" not in self.scope.columns.get("thread_extra", set()):
            return set()
        every = self.scope.only is not None
        wanted = [t for t in among if t in threads and (every or may_be_child(threads[t]))]
        if not wanted:
            return set()
        found = dict.fromkeys(wanted)
        for thread_id, parent in self.db.conn.execute(
            "SELECT thread_id, CASE WHEN json_valid(extra_json) "
            f"THEN json_extract(extra_json, '$.{PARENT_KEY}.thread_id') END FROM thread_extra "
            "WHERE thread_id IN (SELECT value FROM json_each(?))",
            (json.dumps(wanted),),
        ):
            if thread_id in found and isinstance(parent, str):
                found[thread_id] = parent
        return fold_parents(threads, found)

    def read_pending_requests(self) -> set[str]:
        """Who waits for a human, with what request, and whether it was answered.

        The table holds one row per waiting thread, so it is read whole on
        every refresh; returns the threads whose request changed.
        """
        found = self.pending_found()
        for thread_id in found:
            self.reader.summary(thread_id)
        changed = fold_requests(self.reader.threads, self.pending, found)
        self.pending = set(found)
        return changed

    def pending_found(self) -> dict[str, tuple[PendingRequest, bool]]:
        """Each waiting thread's request, and whether its answer is stored."""
        cols = self.scope.columns.get("thread_pending_request")
        if not cols or not {"thread_id", "request_json"} <= cols:
            return {}
        run = "p.run_id" if "run_id" in cols else "NULL"
        answered = "0"
        answers = self.scope.columns.get("thread_hitl_answers", set())
        if {"thread_id", "run_id", "question_id"} <= answers:
            answered = (
                "EXISTS (SELECT 1 FROM thread_hitl_answers a WHERE a.thread_id = p.thread_id "
                f"AND a.run_id = coalesce({run}, '') AND a.question_id = "
                "CASE WHEN json_valid(p.request_json) "
                "THEN json_extract(p.request_json, '$.question_id') END)"
            )
        found: dict[str, tuple[PendingRequest, bool]] = {}
        for thread_id, text, run_id, stored in self.db.conn.execute(
            f"SELECT p.thread_id, p.request_json, {run}, {answered} FROM thread_pending_request p"
        ):
            thread_id = plain_id(thread_id)
            if self.scope.only is None or thread_id in self.reader.threads:
                found[thread_id] = (parse_request(text, run_id), bool(stored))
        return found

    def read_leases(self) -> set[str]:
        """Threads a live supervisor holds are `running`, with who holds them.

        Leases are files beside the database, read without creating
        anything; returns the threads whose holder changed.
        """
        return self.held.fold(self.reader.threads, self.leases.live())

    def read_run_done(self, touched: set[str]) -> set[str]:
        """Whether the run of each touched thread's last message is complete, for those
        whose last message is a tool result (the only ones it decides); returns the
        threads where that changed. A run marked complete after its last write is
        seen when `_read_open_runs` sees its newest run close."""
        cols = self.scope.columns.get("runs", set())
        if not {"thread_id", "run_id", "completed_at"} <= cols:
            return set()
        wanted = {}
        for thread_id in touched:
            s = self.reader.threads.get(thread_id)
            if s is None:
                continue
            if s.last_role == "tool_result" and s.last_run_id:
                wanted[thread_id] = s.last_run_id
            elif s.run_done:
                s.run_done = False
        if not wanted:
            return set()
        done = {
            t
            for (t,) in self.db.conn.execute(
                "SELECT r.thread_id FROM runs r JOIN json_each(?) j "
                "ON r.thread_id = j.key AND r.run_id = j.value WHERE r.completed_at IS NOT NULL",
                (json.dumps(wanted),),
            )
        }
        changed = set()
        for thread_id in wanted:
            s = self.reader.threads[thread_id]
            if s.run_done != (thread_id in done):
                s.run_done = thread_id in done
                changed.add(thread_id)
        return changed

    def read_open_runs(self, touched: set[str], everything: bool) -> set[str]:
        """Whether each thread's newest run is still open; returns threads where that changed.

        The whole table is read once; after that only threads with a new
        run row or new messages; and every `RUN_SWEEP_SECONDS`, those with
        an open run and a write in the last `RUN_RECHECK_SECONDS` (a run
        closes just after its last write; an open run matters only while it
        may be live, see `plan.live_reason`). A refresh costs what changed,
        not what exists.
        """
        cols = self.scope.columns.get("runs")
        if not cols or not {"thread_id", "completed_at"} <= cols:
            return set()
        recent = time.time() - RUN_RECHECK_SECONDS
        latest = "SELECT thread_id, completed_at IS NULL FROM runs WHERE rowid IN "
        since = self.runs_cursor
        (self.runs_cursor,) = self.db.conn.execute(
            "SELECT coalesce(max(rowid), 0) FROM runs"
        ).fetchone()
        partial = self.scope.only is not None or self.scope.newest is not None
        if everything and not partial:
            ranged = f"WHERE 1{self.scope.range_sql}"  # a split first read's half: its threads
            rows = self.db.conn.execute(
                latest + f"(SELECT max(rowid) FROM runs {ranged} GROUP BY thread_id)",
                self.scope.range_args,
            )
        else:
            wanted = set(touched)
            if time.monotonic() - self.runs_swept_at >= RUN_SWEEP_SECONDS:
                self.runs_swept_at = time.monotonic()
                wanted |= self.open_runs
            if not partial or since:  # a partial first read asks about its threads only
                wanted.update(
                    t
                    for (t,) in self.db.conn.execute(
                        "SELECT thread_id FROM runs WHERE rowid > ?", (since,)
                    )
                    if self.scope.only is None or t in self.scope.only
                )
            self.reader.work["run_threads"] = len(wanted)
            rows = self.db.conn.execute(
                latest + "(SELECT max(rowid) FROM runs WHERE thread_id IN "
                "(SELECT value FROM json_each(?)) GROUP BY thread_id)",
                (json.dumps(sorted(wanted)),),
            )
        changed = set()
        for thread_id, is_open in rows:
            s = self.reader.threads.get(plain_id(thread_id))
            if s is None:
                continue
            if s.run_open != bool(is_open):
                s.run_open = bool(is_open)
                changed.add(s.thread_id)
            if is_open and (s.last_activity or 0) >= recent:
                self.open_runs.add(s.thread_id)
            else:
                self.open_runs.discard(s.thread_id)
        # A crashed run stays open for ever: looking again only at the open runs
        # of threads written to lately keeps a refresh at the size of what changed.
        self.open_runs = {
            t for t in self.open_runs if (self.reader.threads[t].last_activity or 0) >= recent
        }
        return changed

    def list_open_runs(self) -> bool:
        """`temp.open_runs`: threads whose newest run has not completed, if there is a
        runs table. A stream reads it as a column of its listing: a set of 100,000
        thread ids in Python was a tenth of a listing's memory."""
        cols = self.scope.columns.get("runs")
        if not cols or not {"thread_id", "completed_at"} <= cols:
            return False
        self.db.conn.execute("DROP TABLE IF EXISTS temp.open_runs")
        self.db.conn.execute("CREATE TEMP TABLE open_runs (thread_id TEXT PRIMARY KEY)")
        self.db.conn.execute(
            "INSERT OR IGNORE INTO temp.open_runs SELECT thread_id FROM runs "
            "WHERE completed_at IS NULL AND thread_id IS NOT NULL AND rowid IN "
            f"(SELECT max(rowid) FROM runs WHERE 1{self.scope.range_sql} GROUP BY thread_id)",
            self.scope.range_args,
        )
        # Done runs matter only where they decide a state: threads whose last row is a
        # tool result (stopped, or after_tools). Few; made here, before the listing's
        # statement runs (a table made while it runs aborts it).
        self.db.conn.execute("DROP TABLE IF EXISTS temp.done_runs")
        if {"run_id"} <= cols and "run_id" in self.scope.columns["messages"]:
            self.db.conn.execute(
                "CREATE TEMP TABLE done_runs AS SELECT t.thread_id FROM temp.listing t "
                "JOIN messages l ON l.id = t.last >> 3 JOIN runs r "
                "ON r.thread_id = t.thread_id AND r.run_id = l.run_id "
                "WHERE t.last & 7 = 3 AND r.completed_at IS NOT NULL"
            )
        else:
            self.db.conn.execute("CREATE TEMP TABLE done_runs (thread_id TEXT)")
        return True

    def mark_open_runs(self, threads: dict[str, ThreadSummary]) -> None:
        """Open runs of threads the listing has no rows of (from `temp.open_runs`)."""
        for (thread_id,) in self.db.conn.execute(
            "SELECT thread_id FROM temp.open_runs WHERE thread_id IN "
            "(SELECT value FROM json_each(?))",
            (json.dumps(list(threads)),),
        ):
            threads[thread_id].run_open = True

    def threads_without_messages(
        self, pending: dict[str, tuple[PendingRequest, bool]]
    ) -> dict[str, ThreadSummary]:
        """Threads known from `thread_extra` or a pending request only, listed as empty."""
        ids = set(pending)
        if "thread_extra" in self.scope.columns:
            ids.update(
                plain_id(t)
                for (t,) in self.db.conn.execute(
                    # The range in SQL for text ids (most of them are the other half's);
                    # an odd id is named by `plain_id` and ranged by that name below.
                    "SELECT thread_id FROM thread_extra WHERE thread_id NOT IN "
                    "(SELECT thread_id FROM temp.listing) AND "
                    f"(typeof(thread_id) != 'text' OR (1{self.scope.range_sql}))",
                    self.scope.range_args,
                )
            )
        if ids and pending:
            listed = {
                t
                for (t,) in self.db.conn.execute(
                    "SELECT thread_id FROM temp.listing WHERE thread_id IN "
                    "(SELECT value FROM json_each(?))",
                    (json.dumps(sorted(pending)),),
                )
            }
            ids -= listed
        return {t: ThreadSummary(t) for t in sorted(ids) if self.scope.in_range(t)}

    def fold_small(
        self,
        threads: dict[str, ThreadSummary],
        pending: dict[str, tuple[PendingRequest, bool]],
        live: dict[str, Any],
        attempts: dict[str, Any],
        forks: dict[str, tuple[Any, Any]],
    ) -> dict[str, ThreadSummary]:
        """A chunk with what the small tables say of it, and the links of its children."""
        fold_requests(threads, set(), {t: v for t, v in pending.items() if t in threads})
        fold_holders(threads, set(), {t: h for t, h in live.items() if t in threads})
        fold_attempts(threads, set(), {t: a for t, a in attempts.items() if t in threads})
        for thread_id, (source, after) in forks.items():
            if thread_id in threads:
                fold_fork(threads[thread_id], source, after)
        self.read_parents(threads, threads)
        return threads

    def small_tables(
        self,
    ) -> tuple[
        dict[str, tuple[PendingRequest, bool]],
        dict[str, Any],
        dict[str, Any],
        dict[str, tuple[Any, Any]],
    ]:
        """What `stream` folds into every chunk: requests, leases, watcher records, forks."""
        return self.pending_found(), self.leases.live(), self.attempts.all(), self.forks()
