"""Where the threads live, and everything that comes with the place.

Every command takes a DB argument: a `postgresql://` or `postgres://` URL
selects the Postgres backend, anything else is a file path. `Location.parse`
is the one place that tells them apart; the value it returns opens what
belongs to the database (its store, leases, checkpointer, the watcher's
records, its job markers and their default place), so the CLI, the runner and
the UI never ask "file or URL" themselves.

The backends are imported only when something is opened: `list` on a file
never loads asyncpg, and `--help` stays fast.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor.urls import redact, with_settings, without_password

if TYPE_CHECKING:
    from supervisor.markers import Marker

#: Used when the app is started without a DB argument.
DSN_VARIABLE = "AGENT_SUPERVISOR_DSN"

_SCHEMES = ("postgresql://", "postgres://")

#: One markers client per URL and process: the detail pane reads markers on every selection.
_pg_markers: dict[str, Any] = {}


@dataclass(frozen=True)
class Location:
    """A database (or a jobs place): a SQLite file or directory, or a PostgreSQL URL."""

    #: As given: a path, or the URL with its password (never shown: see `shown`).
    text: str
    #: A `postgresql://` URL, not a path.
    server: bool

    @classmethod
    def parse(cls, value: str | os.PathLike[str] | Location) -> Location:
        """The location an argument names (the scheme decides, case-insensitively)."""
        if isinstance(value, Location):
            return value
        if isinstance(value, str) and value.lower().startswith(_SCHEMES):
            return cls(value, True)
        return cls(os.fspath(value), False)

    def __str__(self) -> str:
        return self.shown

    @property
    def path(self) -> Path:
        """The file or directory (a URL has none)."""
        if self.server:
            raise ValueError(f"{self.shown} is a URL, not a path")
        return Path(self.text)

    @property
    def shown(self) -> str:
        """For people: a path as it is, a URL without its password."""
        return redact(self.text) if self.server else self.text

    @property
    def for_children(self) -> str:
        """What may reach a child process: a URL without its password (the child takes
        it from $PGPASSWORD or ~/.pgpass), a path as it is."""
        return without_password(self.text) if self.server else self.text

    def argument(self) -> str | Path:
        """The value older interfaces take: the URL as a string, a file as a `Path`."""
        return self.text if self.server else Path(self.text)

    # -- what a database has -------------------------------------------------------

    def store(self, **options: Any) -> Any:
        """A `Store` on the database, connected and checked but not yet read (the app
        reads it in a worker); raises `StoreError` for one we cannot use. A server has
        no busy timeout: options other than `only` are the file's."""
        if self.server:
            from supervisor.pg.store import PostgresStore

            return PostgresStore(self.text, only=options.get("only"))
        from supervisor.sqlite.store import SQLiteStore

        return SQLiteStore(self.text, **options)

    def open_store(self, **options: Any) -> Any:
        """Open and fully read the database; raises `StoreError` for one we cannot read."""
        opened = self.store(**options)
        try:
            opened.refresh()
        except BaseException:
            opened.close()
            raise
        return opened

    def leases(self) -> Any:
        """Where the database's leases live: advisory locks on its server, or files
        beside it."""
        if self.server:
            from supervisor.pg.leases import PgLeaseBoard

            return PgLeaseBoard(self.text)
        from supervisor.leases import FileLeaseBoard, leases_dir

        return FileLeaseBoard(leases_dir(self.text))

    def add_indexes(self, busy_timeout: float) -> list[str]:
        """Add the indexes `agent-supervisor index` adds (it writes to the database: ask
        first); the names of those added. Raises `StoreError`."""
        from supervisor.store import StoreError

        if self.server:
            import asyncio

            from supervisor.pg.client import PgError, connect, describe
            from supervisor.pg.schema import add_indexes

            async def run() -> list[str]:
                conn = await connect(self.text, "index")
                try:
                    return await add_indexes(conn)
                finally:
                    await conn.close()

            try:
                return asyncio.run(run())
            except PgError as exc:
                raise StoreError(str(exc)) from None
            except Exception as exc:
                raise StoreError(describe(self.text, exc)) from None
        from supervisor.sqlite.files import INDEX_NAME, add_thread_index

        add_thread_index(self.path, busy_timeout)
        return [INDEX_NAME]

    def thread_remover(self, busy_timeout: float) -> Any:
        """What deletes whole threads, a batch per transaction (`supervisor.retention`)."""
        if self.server:
            from supervisor.pg.retention import PgRemover

            return PgRemover(self.text)
        from supervisor.sqlite.retention import SQLiteRemover

        return SQLiteRemover(self.path, busy_timeout)

    def checkpointer(self, settings: Mapping[str, str] | None = None) -> Any:
        """cubeloop's checkpointer for the database (not yet entered); on a server,
        `settings` for each of its sessions."""
        if self.server:
            from cubeloop.checkpointer.postgres import PostgresCheckpointer

            dsn = with_settings(self.text, dict(settings)) if settings else self.text
            return PostgresCheckpointer(dsn, min_pool_size=1, max_pool_size=4)
        from cubeloop.checkpointer import SQLiteCheckpointer

        # An absolute path: a file named like `file:x?mode=rwc` must stay a path,
        # never be read as a URI (reads and writes open the same file).
        return SQLiteCheckpointer(str(Path(self.text).resolve()))

    async def open_checkpointer(self) -> Any:
        """cubeloop's checkpointer, entered, for a run. On a server its sessions are kept
        (`pg.client.KEPT_SESSION`): a run's connections idle between turns and while a
        tool runs, and a server's `idle_session_timeout` ending one as a turn writes
        failed the turn (the thread left `error`)."""
        if not self.server:
            checkpointer = self.checkpointer()
            return await checkpointer.__aenter__()
        from supervisor.pg.client import PgError, describe, open_kept

        async def enter(settings: dict[str, str]) -> Any:
            return await self.checkpointer(settings).__aenter__()

        try:
            return await open_kept(enter)
        except Exception as exc:  # noqa: BLE001 - a server we cannot use: one line, never a traceback
            raise PgError(describe(self.text, exc)) from None

    def import_checkpointer(self) -> None:
        """Import the checkpointer's modules now: for a process about to fork children
        that would each import them again."""
        if self.server:
            import cubeloop.checkpointer.postgres  # noqa: F401
        else:
            import aiosqlite  # noqa: F401
            import cubeloop.checkpointer  # noqa: F401

    def attempts(self) -> Any:
        """Where the watcher counts its attempts: a file beside the database, or our table."""
        if self.server:
            from supervisor.pg.attempts import PgAttempts

            return PgAttempts(self.text)
        from supervisor.attempts import FileAttempts

        return FileAttempts(self.text)

    def jobs(
        self,
        explicit: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Location:
        """Where the database's job markers are: `--jobs-dir`, else `$JOB_DIR`, else beside
        the file (never /tmp: markers must outlive a reboot). "Beside" a Postgres database
        is the database itself: markers in our table there (`init-markers`)."""
        if explicit:
            return Location.parse(explicit)
        env = os.environ if environ is None else environ
        if env.get("JOB_DIR"):
            return Location(env["JOB_DIR"], False)
        if self.server:
            return self
        db = Path(self.text)
        return Location(str(db.with_name(db.name + ".jobs")), False)

    def missing_markers(self, named_by: str) -> str | None:
        """A warning for a resume of calls that may have run, or None: this jobs place
        was named (`--jobs-dir`, `$JOB_DIR`) and does not exist.

        No marker can be read there: a typo planned `rerun` for a call its marker
        recorded as done, and the resume charged a card a second time, with
        nothing said. It is a warning, not a refusal: a crash before any tool
        ran (a call awaiting a human's answer) leaves no directory yet.
        """
        if self.server or self.path.exists():
            return None
        return (
            f"{self.shown}: no such directory (named by {named_by}): no job marker can be "
            "read there, and a call a marker would have recorded as done runs again"
        )

    # -- what a jobs place holds ---------------------------------------------------

    def markers(self) -> Any:
        """The markers kept here: `JobMarkers` for a directory, the table for a URL."""
        if self.server:
            markers = _pg_markers.get(self.text)
            if markers is None:
                from supervisor.pg.markers import PostgresJobMarkers

                markers = _pg_markers[self.text] = PostgresJobMarkers(self.text)
            return markers
        from supervisor.markers import JobMarkers

        return JobMarkers(self.text)

    def read_markers(self) -> list[Marker]:
        """Every marker kept here, oldest first; a missing directory or table has none."""
        if self.server:
            return self.markers().read_all()
        from supervisor.markers import read_directory

        return read_directory(Path(self.text))


def shown_arguments(argv: Sequence[str]) -> list[str]:
    """A command line for people (a bundle's README): every URL in it, alone or as an
    option's `--name=URL`, without its password (`Location.shown`)."""
    shown = []
    for argument in argv:
        name, equals, value = argument.partition("=")
        if equals and name.startswith("-") and Location.parse(value).server:
            shown.append(f"{name}={Location.parse(value).shown}")
        else:
            shown.append(Location.parse(argument).shown)
    return shown


def close_markers() -> None:
    """Close the markers clients kept per URL (each holds a connection and its thread):
    for a process that goes on without them, before it forks."""
    while _pg_markers:
        _, markers = _pg_markers.popitem()
        markers.close()


def open_store(location: str | os.PathLike[str] | Location, **options: Any) -> Any:
    """Open and fully read a database named by a path or URL (`Location.open_store`)."""
    return Location.parse(location).open_store(**options)
