"""What cubeloop's small Postgres tables add to the summaries the listing made.

`cubepi_runs` (whether a thread's newest run is open, whether its last
tool result's run ended on purpose), `cubepi_threads` (forks' sources,
children's parent links, pending requests with `cubepi_hitl_answers`), the
advisory leases and the watcher's records. `SideTables` owns what it read of
each at the last refresh, so a refresh says only what changed; the summaries
stay the store's and are passed in (a streamed listing replaces them for
every batch). The SQLite store's counterpart is `supervisor.sqlite.side_tables`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from supervisor.attempts import Attempt, finite
from supervisor.hitl import parse_request
from supervisor.pg import sql
from supervisor.pg.client import SyncClient
from supervisor.pg.leases import PgLeaseBoard
from supervisor.pg.schema import ATTEMPTS_TABLE
from supervisor.states import ThreadSummary, may_be_child
from supervisor.store import (
    HeldLeases,
    fold_attempts,
    fold_fork,
    fold_holders,
    fold_parents,
    fold_requests,
)

Threads = dict[str, ThreadSummary]


@dataclass(frozen=True)
class Only:
    """The threads a scoped store reads (None: every thread), as SQL: `where` narrows a
    query to them by its first parameter, which `args` gives."""

    threads: list[str] | None = None

    def where(self, column: str, extra: str = "") -> str:
        clauses = [f"{column} = ANY($1::text[])"] if self.threads is not None else []
        if extra:
            clauses.append(extra)
        return " WHERE " + " AND ".join(clauses) if clauses else ""

    def args(self) -> list[Any]:
        return [self.threads] if self.threads is not None else []


@dataclass(frozen=True)
class Extras:
    """What the small tables say of every thread, read once before a streamed listing
    (its connection is then busy reading ahead) and folded into each batch."""

    newest_runs: dict[str, bool]
    requests: dict[str, tuple[Any, bool]]
    live: dict[str, dict[str, Any]]
    attempts: dict[str, Attempt]
    parents: dict[str, str]
    forks: dict[str, tuple[Any, Any]]


NO_EXTRAS = Extras({}, {}, {}, {}, {}, {})


class SideTables:
    """The small tables, read into a store's summaries."""

    def __init__(self, client: SyncClient, leases: PgLeaseBoard, only: Only) -> None:
        self.client, self.leases, self.only = client, leases, only
        #: Threads with a pending request / watcher records at the last refresh.
        self.pending: set[str] = set()
        self.attempted: set[str] = set()
        #: Threads whose lease a live supervisor held, and the live leases last folded.
        self.held = HeldLeases()

    def reset(self) -> None:
        """Forget everything read (the listing starts over)."""
        self.pending, self.attempted = set(), set()
        self.held.forget()

    # -- runs ---------------------------------------------------------------

    def runs_changed_since(self, since: Any) -> set[str]:
        """Threads with a run claimed or completed since the last look."""
        args = [*self.only.args(), since]
        n = len(args)
        return {
            r["thread_id"]
            for r in self.client.fetch(
                "SELECT DISTINCT thread_id FROM cubepi_runs"
                + self.only.where("thread_id", f"(claimed_at > ${n} OR completed_at > ${n})"),
                *args,
            )
        }

    def read_runs(self, threads: Threads, among: set[str] | None) -> set[str]:
        """Whether each thread's newest run (of these, or of all) is still open; the
        threads where that changed."""
        if among is None:
            where, args = self.only.where("thread_id"), self.only.args()
        elif not among:
            return set()
        else:
            where, args = " WHERE thread_id = ANY($1::text[])", [sorted(among)]
        return fold_runs(threads, self.client.fetch(sql.RUNS_SQL.format(where=where), *args))

    def read_run_done(self, threads: Threads, among: set[str]) -> set[str]:
        """Whether the run of each thread's last message is complete, for threads whose last
        message is a tool result (the only ones it decides); the threads that changed."""
        wanted = {
            t: threads[t].last_run_id
            for t in among
            if t in threads and threads[t].last_role == "tool_result" and threads[t].last_run_id
        }
        for t in among:
            if t in threads and t not in wanted:
                threads[t].run_done = False
        if not wanted:
            return set()
        done = {
            r[0]
            for r in self.client.fetch(
                "SELECT r.thread_id FROM cubepi_runs r "
                "JOIN unnest($1::text[], $2::text[]) AS w(thread_id, run_id) "
                "ON r.thread_id = w.thread_id AND r.run_id = w.run_id "
                "WHERE r.completed_at IS NOT NULL",
                list(wanted),
                list(wanted.values()),
            )
        }
        changed = set()
        for thread_id in wanted:
            if threads[thread_id].run_done != (thread_id in done):
                threads[thread_id].run_done = thread_id in done
                changed.add(thread_id)
        return changed

    # -- the threads table ----------------------------------------------------

    def read_forks(self, threads: Threads, among: set[str] | None) -> set[str]:
        """Forks' sources (`fold_fork`), of every thread or of these (new) ones."""
        if among is not None and not among:
            return set()
        if among is None:
            rows = self.client.fetch(sql.FORKS_SQL.format(where=""))
        else:
            rows = self.client.fetch(
                sql.FORKS_SQL.format(where=" AND thread_id = ANY($1::text[])"), sorted(among)
            )
        return {r[0] for r in rows if r[0] in threads and fold_fork(threads[r[0]], r[1], r[2])}

    def read_parents(self, threads: Threads, among: set[str]) -> set[str]:
        """The parent links (`supervisor.children`) of the threads `among` whose state a link
        could change (`may_be_child`): few, looked up by id. Returns those that changed."""
        every = self.only.threads is not None
        wanted = sorted(t for t in among if t in threads and (every or may_be_child(threads[t])))
        if not wanted:
            return set()
        found: dict[str, str | None] = dict.fromkeys(wanted)
        for r in self.client.fetch(sql.PARENTS_SQL, wanted):
            if isinstance(r[1], str):
                found[r[0]] = r[1]
        return fold_parents(threads, found)

    def read_pending_requests(self, threads: Threads) -> set[str]:
        """Who waits for a human, with what request, and whether it was answered."""
        found = self.pending_found()
        changed = fold_requests(threads, self.pending, found)
        self.pending = set(found)
        return changed

    def pending_found(self) -> dict[str, tuple[Any, bool]]:
        found = {}
        for r in self.client.fetch(
            "SELECT t.thread_id, t.pending_request::text AS request, t.run_id, EXISTS ("
            "  SELECT 1 FROM cubepi_hitl_answers a WHERE a.thread_id = t.thread_id"
            "  AND a.run_id = coalesce(t.run_id, '')"
            "  AND a.question_id = t.pending_request->>'question_id') AS stored "
            "FROM cubepi_threads t"
            + self.only.where("t.thread_id", "t.pending_request IS NOT NULL"),
            *self.only.args(),
        ):
            found[r["thread_id"]] = (parse_request(r["request"], r["run_id"]), r["stored"])
        return found

    # -- leases and the watcher's records ------------------------------------

    def read_leases(self, threads: Threads) -> set[str]:
        """Threads whose advisory lease a live supervisor holds are `running`."""
        return self.held.fold(threads, self.leases.live())

    def read_attempts(self, threads: Threads) -> set[str]:
        """The watcher's records folded in; the threads whose record changed."""
        found = self.attempts_found()
        changed = fold_attempts(threads, self.attempted, found)
        self.attempted = set(found)
        return changed

    def attempts_found(self) -> dict[str, Attempt]:
        """The watcher's records, when our table exists."""
        if not self.client.fetchval(f"SELECT to_regclass('{ATTEMPTS_TABLE}') IS NOT NULL"):
            return {}
        rows = self.client.fetch(
            "SELECT thread_id, attempts, last_error, next_at, held, updated_at "
            f"FROM {ATTEMPTS_TABLE}" + self.only.where("thread_id"),
            *self.only.args(),
        )
        return {r[0]: Attempt(r[0], r[1], r[2], finite(r[3]), bool(r[4]), r[5]) for r in rows}

    # -- a streamed listing ------------------------------------------------------

    def extras(self) -> Extras:
        """What the small tables say of every thread (few threads each, read once)."""
        runs = self.client.fetch(sql.RUNS_SQL.format(where=""))
        return Extras(
            {r[0]: r[1] for r in runs},
            self.pending_found(),
            self.leases.live(),
            self.attempts_found(),
            {r[0]: r[1] for r in self.client.fetch(sql.ALL_PARENTS_SQL) if isinstance(r[1], str)},
            {r[0]: (r[1], r[2]) for r in self.client.fetch(sql.FORKS_SQL.format(where=""))},
        )


def fold_runs(threads: Threads, rows: Iterable[Any]) -> set[str]:
    """Each thread's newest run open or not (`RUNS_SQL`'s rows); the threads that changed."""
    changed = set()
    for thread_id, is_open in rows:
        s = threads.get(thread_id)
        if s is not None and s.run_open != is_open:
            s.run_open = is_open
            changed.add(thread_id)
    return changed


def with_extras(threads: Threads, extras: Extras) -> list[ThreadSummary]:
    """A batch of a streamed listing with what the small tables say of its threads."""
    for thread_id in extras.parents.keys() & threads.keys():
        threads[thread_id].parent = extras.parents[thread_id]
    for thread_id in extras.forks.keys() & threads.keys():
        fold_fork(threads[thread_id], *extras.forks[thread_id])
    for thread_id in extras.newest_runs.keys() & threads.keys():
        # The newest run closed: the last message's is too. Open: the last message's
        # may still be complete (a prompt killed between claiming its run and writing),
        # which the partition's pass read for threads ending with a tool result.
        s = threads[thread_id]
        s.run_open = extras.newest_runs[thread_id]
        s.run_done = s.run_done or not s.run_open
    fold_requests(threads, set(), extras.requests)
    fold_holders(threads, set(), {t: h for t, h in extras.live.items() if t in threads})
    fold_attempts(threads, set(), extras.attempts)
    return list(threads.values())
