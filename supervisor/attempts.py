"""How often the watcher has tried to bring each thread back, kept across its restarts.

A record per thread: attempts so far, the last failure, when the next
attempt may start (exponential backoff), and whether the thread is `held`
(it failed `--max-attempts` times; a person must `release` it). Records are
ours, never cubeloop's: for a SQLite database a small SQLite file beside it
(`DB.watch`), for Postgres a table in our schema (`agent_supervisor.attempts`,
made by `init-markers`). A thread's record is cleared when it finishes.

Looking never creates the file; only `watch` and `release` write it.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class Attempt:
    """One thread's record."""

    thread_id: str
    attempts: int
    last_error: str | None = None
    #: Unix time before which the watcher does not try again (backing off).
    next_at: float | None = None
    held: bool = False
    updated_at: float | None = None

    @property
    def parked(self) -> bool:
        """A watcher stopped this thread's run at its own shutdown (`parked`): the next
        watcher resumes it, whatever state the stop left."""
        return (self.last_error or "").startswith(PARKED)

    def to_json(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "last_error": self.last_error,
            "next_at": self.next_at,
            "held": self.held,
        }


class AttemptLedger(Protocol):
    """Where attempt records live; one per database."""

    def all(self) -> dict[str, Attempt]:
        """Every record (few: only threads the watcher tried and did not finish)."""
        ...

    def failed(
        self, thread_id: str, error: str, next_at: float | None, max_attempts: int
    ) -> Attempt:
        """Count a failed attempt; held once it is the `max_attempts`-th. Returns the record."""
        ...

    def succeeded(self, thread_id: str) -> None:
        """The thread finished (or waits for a human): its record goes."""
        ...

    def hold(self, thread_id: str, reason: str) -> Attempt:
        """Hold the thread now, with the reason (`watch --budget`); attempts are kept."""
        ...

    #: Where the records are, for people (a file's path, or our table's URL).
    shown: str

    def require(self) -> None:
        """Raise if the place for records is missing and must be made by a person
        (`init-markers` on a server); a file is made when first written."""
        ...

    def check(self) -> None:
        """Raise if records cannot be kept (checked before a watcher starts)."""
        ...

    def parked(self, thread_id: str) -> None:
        """The watcher stopped the thread's run as it shut down: not a failure, and the
        next watcher takes it up again (attempts are kept)."""
        ...

    def release(self, thread_ids: list[str]) -> list[str]:
        """Clear held threads' records (they become eligible again); the ones there were."""
        ...

    def close(self) -> None: ...


def finite(value: Any) -> float | None:
    """A stored time, or None for one that is not a finite number (an older watcher could
    write `inf`: every reader then failed on it)."""
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


#: How a parked thread's record begins (`Attempt.parked`).
PARKED = "parked: "
PARKED_TEXT = PARKED + "its run was stopped by a watcher shutting down (SIGTERM, systemctl restart)"


def backoff_delay(attempts: int, initial: float, longest: float) -> float:
    """Seconds to wait after the `attempts`-th failure: initial, doubling, at most `longest`."""
    return min(longest, initial * 2 ** max(0, attempts - 1))


def attempts_path(database: str | os.PathLike[str]) -> Path:
    db = Path(database)
    return db.with_name(db.name + ".watch")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    thread_id TEXT PRIMARY KEY,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    next_at REAL,
    held INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
)
"""


class FileAttempts:
    """Records in a SQLite file beside a SQLite database; safe for two watchers at once."""

    def __init__(self, database: str | os.PathLike[str]) -> None:
        self.path = attempts_path(database)
        self.shown = str(self.path)
        self._conn: sqlite3.Connection | None = None

    def _write(self) -> sqlite3.Connection:
        if self._conn is None:
            # Written from worker threads (one at a time): not tied to the first one.
            self._conn = sqlite3.connect(
                self.path, timeout=10, isolation_level=None, check_same_thread=False
            )
            self._conn.execute(_SCHEMA)
        return self._conn

    def all(self) -> dict[str, Attempt]:
        if not self.path.exists():
            return {}
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=2)
        except sqlite3.Error:
            return {}
        try:
            rows = conn.execute(
                "SELECT thread_id, attempts, last_error, next_at, held, updated_at FROM attempts"
            ).fetchall()
        except sqlite3.Error:
            return {}
        finally:
            conn.close()
        return {r[0]: Attempt(r[0], r[1], r[2], finite(r[3]), bool(r[4]), r[5]) for r in rows}

    def failed(
        self, thread_id: str, error: str, next_at: float | None, max_attempts: int
    ) -> Attempt:
        with self._counting(thread_id) as (conn, before):
            attempts = before + 1
            held = attempts >= max_attempts
            conn.execute(
                "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?)",
                (thread_id, attempts, error, None if held else next_at, int(held), time.time()),
            )
        return Attempt(thread_id, attempts, error, None if held else next_at, held)

    def hold(self, thread_id: str, reason: str) -> Attempt:
        with self._counting(thread_id) as (conn, before):
            conn.execute(
                "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, NULL, 1, ?)",
                (thread_id, before, reason, time.time()),
            )
        return Attempt(thread_id, before, reason, None, True)

    def require(self) -> None:
        """Nothing to require: the file is made when first written."""

    def check(self) -> None:
        """Open the file for writing (making it if needed): a read-only or foreign file
        fails here, before the watcher starts, not at its first failed run."""
        self._write().execute("SELECT count(*) FROM attempts").fetchone()

    def succeeded(self, thread_id: str) -> None:
        if self.path.exists():
            self._write().execute("DELETE FROM attempts WHERE thread_id = ?", (thread_id,))

    def parked(self, thread_id: str) -> None:
        with self._counting(thread_id) as (conn, before):
            conn.execute(
                "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, NULL, 0, ?)",
                (thread_id, before, PARKED_TEXT, time.time()),
            )

    @contextlib.contextmanager
    def _counting(self, thread_id: str) -> Iterator[tuple[sqlite3.Connection, int]]:
        """A write transaction that has read the thread's count of failed attempts (another
        watcher sharing the file counts in turn, never over the same number)."""
        conn = self._write()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT attempts FROM attempts WHERE thread_id = ?", (thread_id,)
            ).fetchone()
            yield conn, row[0] if row else 0
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def release(self, thread_ids: list[str]) -> list[str]:
        if not self.path.exists():
            return []
        conn = self._write()
        found = [
            t
            for t in thread_ids
            if conn.execute("DELETE FROM attempts WHERE thread_id = ?", (t,)).rowcount
        ]
        return found

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
