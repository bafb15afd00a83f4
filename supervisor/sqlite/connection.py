"""The one object that owns a store's SQLite connection, and what a crashed writer leaves.

A writer killed mid-commit leaves a hot journal that blocks every read-only
reader; a WAL database read read-only leaves `-wal`/`-shm` behind; another
writer may have stored text that is not UTF-8. Each is handled here, once,
for every read of the store: the listing, the refreshes, the transcripts.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from supervisor.sqlite.files import (
    check_database_path,
    connect_readonly,
    describe_sqlite_error,
    is_decode_error,
    open_read_write_briefly,
    tolerant_text,
)
from supervisor.store import StoreError

T = TypeVar("T")

#: The cubeloop tables a store reads, and whose columns it looks up once.
TABLES = ("messages", "thread_extra", "thread_pending_request", "thread_hitl_answers", "runs")


class Connection:
    """A read-only connection to a checkpoint file that recovers from a dead writer.

    `conn` is replaced when a hot journal is rolled back: readers go through
    this object, never keep the `sqlite3.Connection` itself.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        busy_timeout: float,
        wal_existed: dict[str, bool] | None = None,
    ) -> None:
        self.path = check_database_path(path)
        self.busy_timeout = busy_timeout
        #: One-line messages for the user about what opening had to do
        #: (a hot journal rolled back); the CLI prints them, the app notifies.
        self.notices: list[str] = []
        #: Whether `-wal`/`-shm` were there before we opened (`close` removes what we
        #: made); a split listing passes what it saw before its first store opened.
        self.wal_existed = wal_existed or {
            s: Path(f"{self.path}{s}").exists() for s in ("-wal", "-shm")
        }
        #: Text that is not UTF-8 was met: it is decoded with replacements from now on.
        self.tolerant = False
        self.conn = connect_readonly(self.path, busy_timeout)

    def error(self, exc: sqlite3.Error) -> StoreError:
        """The error as one line for the user."""
        return StoreError(describe_sqlite_error(self.path, exc, self.busy_timeout))

    def recovering(self, read: Callable[[], T]) -> T:
        """Run a read; if a dead writer's hot journal blocks it, roll that back and retry.

        A writer killed inside a commit leaves `DB-journal`; only a
        read-write open rolls it back, as every SQLite writer does at its
        next open. Nothing committed is lost: the journal holds the pages of
        the unfinished transaction only.
        """
        try:
            return read()
        except sqlite3.OperationalError as exc:
            if "readonly" not in str(exc) or not Path(f"{self.path}-journal").exists():
                raise
        self._roll_back_hot_journal()
        self._reconnect()
        return read()

    def reading(self, read: Callable[[], T], on_tolerant: Callable[[], None] | None = None) -> T:
        """Every read: hot journals rolled back, bad UTF-8 tolerated, errors in one line.

        The first text that is not UTF-8 switches the connection to the
        tolerant decoder for good; `on_tolerant` then runs before the read is
        tried again (the listing starts over: rows read before the switch may
        have been skipped).
        """
        try:
            return self.recovering(read)
        except sqlite3.Error as exc:
            if self.tolerant or not is_decode_error(exc):
                raise self.error(exc) from None
        self.become_tolerant()
        if on_tolerant is not None:
            on_tolerant()
        return self.reading(read, on_tolerant)

    def become_tolerant(self) -> None:
        """Some text is not valid UTF-8: never raise on it again."""
        self.tolerant = True
        self.conn.text_factory = tolerant_text

    def read_schema(self) -> dict[str, set[str]]:
        """The columns of each cubeloop table the file has; refuses a file that is not one."""
        tables: dict[str, set[str]] = {}
        names = [
            r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        for name in names:
            if name in TABLES:
                tables[name] = {r[1] for r in self.conn.execute(f"PRAGMA table_info({name})")}
        messages = tables.get("messages")
        if messages is None or not {"id", "thread_id", "message_json"} <= messages:
            raise StoreError(
                f"{self.path}: not a CubeLoop checkpoint database "
                "(no 'messages' table with thread_id and message_json)"
            )
        return tables

    def take_notices(self) -> list[str]:
        notices, self.notices = self.notices, []
        return notices

    def close(self) -> None:
        """Close, leaving nothing behind: `-wal`/`-shm` that opening created are removed.

        Reading a WAL database read-only creates them and cannot remove them;
        the last connection to close a WAL database does, and a brief
        read-write open does exactly that when we are the last. If a writer
        is still connected, the files are its and stay.
        """
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()
        created = [s for s, existed in self.wal_existed.items() if not existed]
        if created and any(Path(f"{self.path}{s}").exists() for s in created):
            with contextlib.suppress(sqlite3.Error, OSError):
                open_read_write_briefly(self.path, 0.2)

    def _roll_back_hot_journal(self) -> None:
        try:
            open_read_write_briefly(self.path, self.busy_timeout)
        except sqlite3.Error as exc:
            raise StoreError(
                f"{self.path}: a writer died mid-commit and its journal must be rolled back, "
                f"which needs write access ({exc})"
            ) from None
        self.notices.append(
            f"{self.path}: rolled back a transaction that a writer left unfinished when it "
            "died mid-commit (hot journal); nothing committed was lost"
        )

    def _reconnect(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()
        self.conn = connect_readonly(self.path, self.busy_timeout)
        if self.tolerant:
            self.conn.text_factory = tolerant_text
