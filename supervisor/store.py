"""Reading a checkpoint database: listing threads and their resume state.

The `Store` protocol is what the CLI, the runner and the UI use; a backend
only has to fold rows into `ThreadSummary` objects and load one transcript.
`SQLiteStore` is the first backend. It opens the file read-only, lists every
thread in one pass over `messages` (never a per-thread `load()`: there is no
index on `thread_id`, so that is quadratic), and keeps an id cursor so a
refresh reads only rows added since the last one.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import json
import os
import pickle
import select
import signal
import sqlite3
import stat
import threading
import time
import urllib.parse
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from supervisor import collector
from supervisor.attempts import Attempt, FileAttempts
from supervisor.hitl import PendingRequest, parse_request
from supervisor.leases import FileLeaseBoard, leases_dir
from supervisor.priority import at_low_priority
from supervisor.states import (
    PARENT_KEY,
    ROLES,
    Row,
    ThreadSummary,
    ToolCallInfo,
    fold_rows,
    may_be_child,
)

T = TypeVar("T")

#: Seconds to wait for another process's write lock before giving up.
DEFAULT_BUSY_TIMEOUT = 5.0

#: Open runs of threads written to within this many seconds are looked at again (to
#: see them close) every `RUN_SWEEP_SECONDS`; older ones only when their thread
#: changes. An open run matters while it may be live: `plan.live_reason`'s window.
RUN_RECHECK_SECONDS = 120.0
RUN_SWEEP_SECONDS = 5.0

#: A database file bigger than this gets a preview of its newest rows first.
PREVIEW_ABOVE_BYTES = 100_000_000
#: How many of the newest rows a preview reads: a first screen's threads and more
#: (at 5,000 rows, 5,000 threads to place and draw cost the first frame 0.1 s).
PREVIEW_ROWS = 1_000
#: Threads per chunk of a streamed listing (`SQLiteStore.stream`).
STREAM_CHUNK = 2_000

#: A tool_call_id longer than this is read by the slow path.
_ID_CHARS = 200


_JULIAN_UNIX_EPOCH = 2440587.5


#: Rows bigger than this are not read whole into a transcript: a 50 MB message
#: would freeze whoever renders it. Their first `BIG_PREVIEW` characters are read.
BIG_ROW = 1_000_000
BIG_PREVIEW = 4_000


class StoreError(Exception):
    """A database we cannot read; the message is one line for the user."""


class Undecodable(str):
    """Text from a column that was not valid UTF-8, decoded with replacement characters."""


def tolerant_text(data: bytes) -> str:
    """A `text_factory` that never raises: bad UTF-8 becomes an `Undecodable`."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return Undecodable(data.decode("utf-8", "replace"))


def _is_decode_error(exc: sqlite3.Error) -> bool:
    return "decode" in str(exc).lower() and "utf-8" in str(exc).lower()


@dataclass
class TranscriptEntry:
    """One stored message row. `message` is None when the row is corrupt or too big.

    A row bigger than `BIG_ROW` is not parsed: `size` holds its length and
    `raw` its first `BIG_PREVIEW` characters (`agent-supervisor show --full`
    prints it whole).
    """

    row_id: int
    created_at: float | None
    run_id: str | None
    message: dict[str, Any] | None
    error: str | None = None
    raw: str = ""
    size: int | None = None

    @property
    def big(self) -> bool:
        return self.size is not None


@dataclass
class Transcript:
    thread_id: str
    entries: list[TranscriptEntry] = field(default_factory=list)

    def messages(self) -> list[dict[str, Any] | None]:
        return [e.message for e in self.entries]

    def tool_calls(self) -> list[ToolCallInfo]:
        """Every tool call the thread's assistant messages made, in order."""
        calls: list[ToolCallInfo] = []
        for m in self.messages():
            if isinstance(m, dict) and m.get("role") == "assistant":
                calls += summarise_assistant(m)[1]
        return calls


class Store(Protocol):
    """What a checkpoint backend offers the rest of the app.

    The CLI, the runner and the app take a `Store`: `SQLiteStore` here, and
    `supervisor.pg.store.PostgresStore`. `supervisor.location.Location` picks one.
    """

    #: What to show the user (a path, or a URL without its password).
    location: str
    #: The database's lease board (`leases.FileLeaseBoard` or the Postgres one).
    leases: Any
    #: Whether `check_rows` is cheap enough for the app to run in the background.
    checks_in_background: bool

    def refresh(self) -> set[str]:
        """Read what changed since the last call; return the touched thread ids."""
        ...

    def threads(self) -> list[ThreadSummary]:
        """Every known thread, in order of first appearance."""
        ...

    def get(self, thread_id: str) -> ThreadSummary | None: ...

    def transcript(self, thread_id: str, *, full: bool = False) -> Transcript: ...

    def thread_extra(self, thread_id: str) -> dict[str, Any]:
        """The thread's `extra` as cubeloop stored it ({} when none or unreadable)."""
        ...

    def hitl_answer(self, thread_id: str, run_id: str | None, question_id: str) -> Any:
        """The human's answer stored for a question of a run, or None."""
        ...

    def close(self) -> None: ...

    def take_notices(self) -> list[str]:
        """Things worth one line to the user (a rolled-back hot journal), once each."""
        ...

    def check_rows(self) -> set[str]:
        """Validate every row (the listing validates only those states depend on)."""
        ...

    @property
    def rows_checked(self) -> bool: ...

    def index_hint(self, above_rows: int) -> str | None:
        """A note for a database over `above_rows` rows that lacks the index we would add."""
        ...


def unix_time_sql(column: str) -> str:
    """SQL turning `created_at` into unix seconds, computed inside SQLite.

    The checkpointer writes julianday numbers; text timestamps and values
    already in unix seconds from other writers are understood too.
    """
    julian = f"(({column}) - {_JULIAN_UNIX_EPOCH}) * 86400.0"
    return (
        f"CASE typeof({column}) "
        f"WHEN 'text' THEN (julianday({column}) - {_JULIAN_UNIX_EPOCH}) * 86400.0 "
        f"WHEN 'null' THEN NULL "
        f"ELSE CASE WHEN {column} > 1e8 THEN {column} ELSE {julian} END END"
    )


# How `json.dumps(model.model_dump())` starts each kind of message: `role`
# first and, for tool results, `tool_call_id` second.
_USER = '{"role": "user",'
_ASSISTANT = '{"role": "assistant",'
_TOOL_RESULT = '{"role": "tool_result", "tool_call_id": "'


def _starts_as(text: str) -> dict[str, str]:
    """SQL tests that `text` starts as each role's message does, by role.

    The one place a row's role is read from its start: the first listing's
    aggregate and the row-by-row form both build on it.
    """
    # A range of text, not substr(): no copy of the start of each of 2,000,000 rows.
    # Every string from `start` up to `start` with its last character raised begins
    # with `start`; compared as bytes, whatever collation the column declares. The
    # most common kind first: half the rows of a busy database are tool results.
    starts = {"tool_result": _TOOL_RESULT, "assistant": _ASSISTANT, "user": _USER}
    return {
        role: f"({text} COLLATE BINARY >= '{start}' "
        f"AND {text} COLLATE BINARY < '{start[:-1]}{chr(ord(start[-1]) + 1)}')"
        for role, start in starts.items()
    }


def summarise_assistant(
    message: dict[str, Any],
) -> tuple[str | None, tuple[ToolCallInfo, ...], str, str | None]:
    """(stop_reason, tool_calls, first text, error message) of an assistant message."""
    calls: list[ToolCallInfo] = []
    text = ""
    content = message.get("content")
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "tool_call":
            calls.append(
                ToolCallInfo(
                    id=str(block.get("id", "")),
                    name=str(block.get("name", "")),
                    arguments=block.get("arguments", {}),
                )
            )
        elif kind == "text" and not text:
            text = str(block.get("text", ""))
    stop = message.get("stop_reason")
    error = message.get("error_message")
    return (
        stop if isinstance(stop, str) else None,
        tuple(calls),
        text,
        error if isinstance(error, str) else None,
    )


def summary_from_dicts(thread_id: str, messages: list[dict[str, Any]]) -> ThreadSummary:
    """Classify a thread from messages already loaded (the runner's view).

    Rows are numbered by position; times come from each message's own
    `timestamp`. Same rules as the listing, so both always agree.
    """
    rows: list[Row] = []
    last_assistant: dict[str, Any] | None = None
    for i, m in enumerate(messages, start=1):
        role = m.get("role")
        stamp = m.get("timestamp")
        stamp = float(stamp) if isinstance(stamp, int | float) else None
        if role not in ROLES:
            rows.append((i, thread_id, stamp, None, f"unknown role {role!r}"))
            continue
        call_id = m.get("tool_call_id") if role == "tool_result" else None
        rows.append((i, thread_id, stamp, role, call_id if isinstance(call_id, str) else None))
        if role == "assistant":
            last_assistant = m
    summary = ThreadSummary(thread_id)
    fold_rows({thread_id: summary}, rows)
    run_id = messages[-1].get("run_id") if messages else None
    summary.last_run_id = run_id if isinstance(run_id, str) else None
    if last_assistant is not None:
        summary.set_last_assistant(*summarise_assistant(last_assistant))
    return summary


def check_database_path(path: str | os.PathLike[str]) -> Path:
    """Refuse paths that are not an existing regular file, without creating one."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise StoreError(f"{p}: no such file") from None
    except PermissionError:
        raise StoreError(f"{p}: permission denied") from None
    except OSError as exc:
        raise StoreError(f"{p}: cannot open ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise StoreError(f"{p}: is a directory, not a database file")
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"{p}: not a regular file")
    if not os.access(p, os.R_OK):
        raise StoreError(f"{p}: permission denied")
    return p


def connect_readonly(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """Open with `mode=ro`: looking at a database must never write to it."""
    uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
    try:
        conn = sqlite3.connect(
            uri,
            uri=True,
            timeout=busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        # Let SQLite's sorter use a second core: the listing's GROUP BY sorts every row.
        conn.execute("PRAGMA threads = 2")
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open ({exc})") from None
    return conn


def describe_sqlite_error(path: Path, exc: sqlite3.Error, busy_timeout: float) -> str:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return (
            f"{path}: database is locked by another process "
            f"(waited {busy_timeout:g}s; try again, or raise --busy-timeout)"
        )
    if "not a database" in text or "malformed" in text or "encrypted" in text:
        return f"{path}: not a SQLite database ({text})"
    return f"{path}: cannot read ({text})"


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
        self.path = check_database_path(path)
        #: Read only these threads (a command about one thread need not list
        #: 100,000): each is folded row by row, every row checked.
        self._only = None if only is None else set(only)
        #: Read only the newest this many rows (a preview; see `preview`).
        self._newest = newest
        #: (from, before): `stream` lists only thread ids in [from, before), None
        #: an open end. A split listing's two processes each take one range.
        self._range = thread_range
        self.location = str(self.path)
        #: Who runs which thread: `flock` files beside the database.
        self.leases = FileLeaseBoard(leases_dir(self.path))
        #: `check_rows` runs inside SQLite (it releases the GIL): the app may run it.
        self.checks_in_background = True
        #: The watcher's records, in a file of ours beside the database (read only).
        self._attempts = FileAttempts(self.path)
        self._attempted: set[str] = set()
        self.busy_timeout = busy_timeout
        #: One-line messages for the user about what opening had to do
        #: (a hot journal rolled back); the CLI prints them, the app notifies.
        self.notices: list[str] = []
        #: Whether `-wal`/`-shm` were there before we opened (`close` removes what we
        #: made); a split listing passes what it saw before its first store opened.
        self._wal_existed = wal_existed or {
            s: Path(f"{self.path}{s}").exists() for s in ("-wal", "-shm")
        }
        self._tolerant = False
        self._conn = connect_readonly(self.path, busy_timeout)
        if thread_range is not None:
            # Each of a split listing's processes has a core: a sorter thread of its own
            # would take the other's.
            self._conn.execute("PRAGMA threads = 0")
        self._threads: dict[str, ThreadSummary] = {}
        self._cursor = 0
        self._extra_cursor = 0
        self._parsed_assistant: dict[str, int] = {}
        #: Threads with a pending request / a live lease at the last refresh.
        self._pending: set[str] = set()
        self._held: set[str] = set()
        #: Threads whose newest run is open, and the last `runs` rowid read.
        self._open_runs: set[str] = set()
        self._runs_cursor = 0
        self._runs_swept_at = time.monotonic()
        #: Rows up to this id were listed from their start only (`check_rows`).
        self._unchecked_through = 0
        #: What the last refresh read: message rows folded, threads whose runs
        #: were looked at. A refresh must cost what changed (tests check these).
        self.work = {"rows": 0, "run_threads": 0}
        #: (Longest thread id, most messages) of what `stream` hands out, once it has begun.
        self.shape = (0, 0)
        self._streams: list[Generator[ThreadSummary, None, None]] = []
        #: The forked readers of a split first read (`read_first_from`), until it is taken.
        self._first_read: Any = None
        #: (child pid, pipe, rows) of a preview `preview_soon` started.
        self._early_preview: tuple[int, int, int] | None = None
        #: Held while summaries change: `check_rows` runs on another thread.
        self._lock = threading.RLock()
        try:
            self._columns = self._recovering(self._read_schema)
        except sqlite3.Error as exc:
            self.close()
            raise StoreError(describe_sqlite_error(self.path, exc, busy_timeout)) from None
        except StoreError:
            self.close()
            raise

    # -- faults a crashed writer leaves -----------------------------------

    def _recovering(self, read: Callable[[], T]) -> T:
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

    def _open_read_write_briefly(self, timeout: float) -> None:
        """Open read-write, read one row, close: what SQLite's own writers do on opening.

        That rolls back a hot journal, and as the last connection to close a
        WAL database it removes `-wal`/`-shm`. Nothing is written.
        """
        uri = "file:" + urllib.parse.quote(str(self.path.resolve())) + "?mode=rw"
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()

    def _roll_back_hot_journal(self) -> None:
        try:
            self._open_read_write_briefly(self.busy_timeout)
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
            self._conn.close()
        self._conn = connect_readonly(self.path, self.busy_timeout)
        if self._tolerant:
            self._conn.text_factory = tolerant_text

    def _become_tolerant(self, restart: bool) -> None:
        """Some text is not valid UTF-8: never raise on it again (and read the listing anew)."""
        self._tolerant = True
        self._conn.text_factory = tolerant_text
        if restart:
            self._threads.clear()
            self._parsed_assistant.clear()
            self._cursor = self._extra_cursor = self._runs_cursor = 0
            self._pending.clear()
            self._held.clear()
            self._open_runs.clear()

    def take_notices(self) -> list[str]:
        notices, self.notices = self.notices, []
        return notices

    # -- schema ---------------------------------------------------------

    def _read_schema(self) -> dict[str, set[str]]:
        tables: dict[str, set[str]] = {}
        names = [
            r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        for name in names:
            if name in (
                "messages",
                "thread_extra",
                "thread_pending_request",
                "thread_hitl_answers",
                "runs",
            ):
                cols = {r[1] for r in self._conn.execute(f"PRAGMA table_info({name})")}
                tables[name] = cols
        messages = tables.get("messages")
        if messages is None or not {"id", "thread_id", "message_json"} <= messages:
            raise StoreError(
                f"{self.path}: not a CubeLoop checkpoint database "
                "(no 'messages' table with thread_id and message_json)"
            )
        return tables

    # -- Store protocol -------------------------------------------------

    def _reading(self, read: Callable[[], T], restart: bool) -> T:
        """Every read: hot journals rolled back, bad UTF-8 tolerated, errors in one line.

        The first text that is not UTF-8 switches the connection to the
        tolerant decoder for good; `restart` re-reads the listing from the
        start, as rows read before the switch may have been skipped.
        """
        try:
            return self._recovering(read)
        except sqlite3.Error as exc:
            if self._tolerant or not _is_decode_error(exc):
                raise StoreError(describe_sqlite_error(self.path, exc, self.busy_timeout)) from None
        self._become_tolerant(restart)
        return self._reading(read, restart)

    def refresh(self) -> set[str]:
        return self._reading(self._refresh, restart=True)

    def _refresh(self) -> set[str]:
        with self._lock:
            self.work = {"rows": 0, "run_threads": 0}
            self._conn.execute("BEGIN")
            try:
                first = self._cursor == 0
                runs_read = False  # each thread's newest run is known already
                if first and self._only is not None:
                    touched = self._read_only(self._only)
                elif first and (halves := self._take_halves()) is not None:
                    touched = self._read_since()  # the rows after theirs
                    runs_read = True
                elif first:
                    touched = self._read_all()  # tails included
                else:
                    touched = self._read_since()
                touched |= self._read_new_extra()
                touched |= self._read_pending_requests()
                touched |= self._read_parents(self._threads, touched)
                if runs_read:  # only what changed since the readers looked, as a refresh
                    touched |= self._read_open_runs(touched, everything=False) | halves
                else:
                    touched |= self._read_open_runs(touched, everything=first)
                touched |= self._read_leases()
                touched |= self._read_run_done(touched)
            finally:
                self._conn.execute("COMMIT")
            found = self._attempts.all()
            touched |= fold_attempts(self._threads, self._attempted, found)
            self._attempted = set(found)
        return touched

    def _read_since(self) -> set[str]:
        """The rows after the cursor folded on, tails and all; returns their threads."""
        touched = self._read_new_messages()
        broken = self._fill_tails(touched)
        if broken:
            self._refold(broken)
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
        with collector.paused():
            merged = heapq.merge(*(zip(h.firsts, h.threads.values(), strict=True) for h in halves))
            self._threads = {s.thread_id: s for _, s in merged}
        for half in halves:
            self._parsed_assistant.update(half.parsed)
            self._open_runs |= half.open_runs
        self._cursor = self._unchecked_through = first_read.top
        # Runs rows after the earlier of the two readers' looks are read again.
        self._runs_cursor = min(half.runs_cursor for half in halves)
        return set(self._threads)

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
        through = self._unchecked_through
        if through <= 0:
            return set()
        try:
            bad = at_low_priority(lambda: self._invalid_threads(through))
        except sqlite3.Error as exc:
            raise StoreError(describe_sqlite_error(self.path, exc, self.busy_timeout)) from None
        with self._lock:
            self._unchecked_through = 0
            bad = {t for t in bad if t in self._threads}
            if bad:
                try:
                    self._reading(lambda: self._refold(bad), restart=False)
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
                _plain_id(thread_id)
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
        if self._early_preview is not None:
            return self._early_result()
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
        """Start `preview` now in a child process; the next `preview()` returns its result.

        The app calls this before it imports Textual and the agent stack
        (half a second of Python). A thread would share the interpreter's
        lock with those imports, and each SQLite step hands the lock back
        and waits for it again: in a thread the 0.06 s read took 0.5 s.
        A forked child reads on its own connection and core, and hands the
        summaries over a pipe. Called before the process starts threads.
        """
        if self._early_preview is not None or self.path.stat().st_size < PREVIEW_ABOVE_BYTES:
            return
        reading, writing = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: read, hand over, and leave without running any cleanup
            try:
                os.close(reading)
                try:
                    found: tuple[str, Any] = ("ok", self._preview_now(rows))
                except StoreError as exc:
                    found = ("error", str(exc))
                with os.fdopen(writing, "wb") as out:
                    pickle.dump(found, out, protocol=pickle.HIGHEST_PROTOCOL)
            finally:
                os._exit(0)
        os.close(writing)
        self._early_preview = (pid, reading, rows)

    def preview_ready(self) -> bool:
        """Whether `preview_soon`'s child has its result: `preview()` returns it at once."""
        if self._early_preview is None:
            return False
        readable, _, _ = select.select([self._early_preview[1]], [], [], 0)
        return bool(readable)

    def _early_result(self) -> list[ThreadSummary] | None:
        """The child's preview; read here if the child died without one."""
        pid, reading, rows = self._early_preview  # type: ignore[misc]
        self._early_preview = None
        with os.fdopen(reading, "rb") as pipe:
            data = pipe.read()
        os.waitpid(pid, 0)
        try:
            status, found = pickle.loads(data)
        except (pickle.UnpicklingError, EOFError, ValueError):
            return self._preview_now(rows)
        if status == "error":
            raise StoreError(found)
        return found

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
        if self._cursor or self._only is not None or self._newest is not None:
            if self._range is not None:
                raise CannotSplit
            yield from self._kept_sorted()
            return
        with self._lock:
            self._tolerant = True
            self._conn.text_factory = tolerant_text
            listed: Iterable[dict[str, ThreadSummary]] = []
            try:
                self._conn.execute("BEGIN")
                try:
                    top = self._recovering(lambda: self._aggregate("thread_id"))
                    self.shape = (0, 0) if top is None else self._listing_shape()
                    runs = self._list_open_runs()
                    listed = [] if top is None else self._listed(top, chunk, runs)
                    small = self._small_tables()
                    empty = self._threads_without_messages(small[0])
                    if runs:
                        self._mark_open_runs(empty)
                    folded = (s for part in listed for s in self._fold_small(part, *small).values())
                    with collector.paused():
                        if empty:  # threads with no rows are merged in by id
                            folded = heapq.merge(
                                folded, self._fold_small(empty, *small).values(), key=_thread_id
                            )
                        yield from folded
                except _NotPlain:
                    if self._range is not None:
                        raise CannotSplit from None
                else:
                    return
                finally:
                    if isinstance(listed, Generator):
                        listed.close()  # its cursor reads the table dropped next
                    self._conn.execute("DROP TABLE IF EXISTS temp.listing")
                    self._conn.execute("DROP TABLE IF EXISTS temp.open_runs")
                    self._conn.execute("DROP TABLE IF EXISTS temp.done_runs")
                    self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(describe_sqlite_error(self.path, exc, self.busy_timeout)) from None
        yield from self._kept_sorted()

    def newest_row(self) -> int | None:
        """The highest message id in the file now (None: no messages)."""
        (top,) = self._conn.execute("SELECT max(id) FROM messages").fetchone()
        return top if isinstance(top, int) else None

    def first_read_half(self, top: int) -> KeptHalf:
        """This store's range of the first listing, up to row `top`: what one forked reader
        of a split first read hands back (`supervisor.first_read`). Raises `CannotSplit`
        on thread ids only the whole listing can name."""
        if self._range is None or self._cursor:
            raise CannotSplit
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                if self._aggregate("first", top) is None:
                    return KeptHalf({}, [], {})
                rows = self._conn.execute("SELECT first FROM temp.listing ORDER BY rowid")
                firsts = [f for (f,) in rows]
                with collector.paused():
                    for _ in self._listed(top, chunk=None):
                        pass
                self._read_open_runs(set(), everything=True)
            except _NotPlain:
                raise CannotSplit from None
            finally:
                self._conn.execute("DROP TABLE IF EXISTS temp.listing")
                self._conn.execute("COMMIT")
        return KeptHalf(
            self._threads, firsts, self._parsed_assistant, self._open_runs, self._runs_cursor
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
        self._wal_existed = halves.wal_existed

    def split_point(self, sample: int = 2049) -> str | None:
        """A thread id that about half the rows sort before: where a listing split between
        two processes divides (`supervisor.listing`). Read from a sample of rows by id,
        not a pass over the table; None where there is nothing to divide.
        """
        try:
            with self._lock:
                (top,) = self._conn.execute("SELECT max(id) FROM messages").fetchone()
                if not isinstance(top, int) or top < sample:
                    return None
                ids = [1 + i * (top - 1) // (sample - 1) for i in range(sample)]
                found = sorted(
                    t
                    for (t,) in self._conn.execute(
                        "SELECT thread_id FROM messages WHERE id IN "
                        "(SELECT value FROM json_each(?))",
                        (json.dumps(ids),),
                    )
                    if type(t) is str
                )
        except sqlite3.Error as exc:
            if _is_decode_error(exc):  # an id that is not UTF-8: the whole listing reads it
                return None
            raise StoreError(describe_sqlite_error(self.path, exc, self.busy_timeout)) from None
        middle = found[len(found) // 2] if found else None
        return middle if middle is not None and middle > found[0] else None

    def _kept_sorted(self) -> Iterator[ThreadSummary]:
        self.refresh()
        kept = sorted(self.threads(), key=_thread_id)
        self.shape = (
            max((len(s.thread_id) for s in kept), default=0),
            max((s.messages for s in kept), default=0),
        )
        yield from kept

    def _listing_shape(self) -> tuple[int, int]:
        """(longest thread id, most messages) of `temp.listing`: a streamed table's widths."""
        longest, most = self._conn.execute(
            "SELECT max(length(thread_id)), max(count) FROM temp.listing"
        ).fetchone()
        if "thread_extra" in self._columns:
            (extra,) = self._conn.execute(
                "SELECT max(length(thread_id)) FROM thread_extra"
            ).fetchone()
            longest = max(longest or 0, extra or 0)
        return longest or 0, most or 0

    def _small_tables(
        self,
    ) -> tuple[dict[str, tuple[PendingRequest, bool]], dict[str, Any], dict[str, Any]]:
        """What `stream` folds into every chunk: requests, leases, watcher records."""
        return self._pending_found(), self.leases.live(), self._attempts.all()

    def _list_open_runs(self) -> bool:
        """`temp.open_runs`: threads whose newest run has not completed, if there is a
        runs table. A stream reads it as a column of its listing: a set of 100,000
        thread ids in Python was a tenth of a listing's memory."""
        cols = self._columns.get("runs")
        if not cols or not {"thread_id", "completed_at"} <= cols:
            return False
        self._conn.execute("DROP TABLE IF EXISTS temp.open_runs")
        self._conn.execute("CREATE TEMP TABLE open_runs (thread_id TEXT PRIMARY KEY)")
        self._conn.execute(
            "INSERT OR IGNORE INTO temp.open_runs SELECT thread_id FROM runs "
            "WHERE completed_at IS NULL AND thread_id IS NOT NULL AND rowid IN "
            f"(SELECT max(rowid) FROM runs WHERE 1{self._range_sql} GROUP BY thread_id)",
            self._range_args,
        )
        # Done runs matter only where they decide a state: threads whose last row is a
        # tool result (stopped, or after_tools). Few; made here, before the listing's
        # statement runs (a table made while it runs aborts it).
        self._conn.execute("DROP TABLE IF EXISTS temp.done_runs")
        if {"run_id"} <= cols and "run_id" in self._columns["messages"]:
            self._conn.execute(
                "CREATE TEMP TABLE done_runs AS SELECT t.thread_id FROM temp.listing t "
                "JOIN messages l ON l.id = t.last >> 3 JOIN runs r "
                "ON r.thread_id = t.thread_id AND r.run_id = l.run_id "
                "WHERE t.last & 7 = 3 AND r.completed_at IS NOT NULL"
            )
        else:
            self._conn.execute("CREATE TEMP TABLE done_runs (thread_id TEXT)")
        return True

    def _mark_open_runs(self, threads: dict[str, ThreadSummary]) -> None:
        """Open runs of threads the listing has no rows of (from `temp.open_runs`)."""
        for (thread_id,) in self._conn.execute(
            "SELECT thread_id FROM temp.open_runs WHERE thread_id IN "
            "(SELECT value FROM json_each(?))",
            (json.dumps(list(threads)),),
        ):
            threads[thread_id].run_open = True

    def _threads_without_messages(
        self, pending: dict[str, tuple[PendingRequest, bool]]
    ) -> dict[str, ThreadSummary]:
        """Threads known from `thread_extra` or a pending request only, listed as empty."""
        ids = set(pending)
        if "thread_extra" in self._columns:
            ids.update(
                _plain_id(t)
                for (t,) in self._conn.execute(
                    # The range in SQL for text ids (most of them are the other half's);
                    # an odd id is named by `_plain_id` and ranged by that name below.
                    "SELECT thread_id FROM thread_extra WHERE thread_id NOT IN "
                    "(SELECT thread_id FROM temp.listing) AND "
                    f"(typeof(thread_id) != 'text' OR (1{self._range_sql}))",
                    self._range_args,
                )
            )
        if ids and pending:
            listed = {
                t
                for (t,) in self._conn.execute(
                    "SELECT thread_id FROM temp.listing WHERE thread_id IN "
                    "(SELECT value FROM json_each(?))",
                    (json.dumps(sorted(pending)),),
                )
            }
            ids -= listed
        return {t: ThreadSummary(t) for t in sorted(ids) if self._in_range(t)}

    def _fold_small(
        self,
        threads: dict[str, ThreadSummary],
        pending: dict[str, tuple[PendingRequest, bool]],
        live: dict[str, Any],
        attempts: dict[str, Any],
    ) -> dict[str, ThreadSummary]:
        """A chunk with what the small tables say of it, and the links of its children."""
        fold_requests(threads, set(), {t: v for t, v in pending.items() if t in threads})
        fold_holders(threads, set(), {t: h for t, h in live.items() if t in threads})
        fold_attempts(threads, set(), {t: a for t, a in attempts.items() if t in threads})
        self._read_parents(threads, threads)
        return threads

    def index_hint(self, above_rows: int) -> str | None:
        """Why `agent-supervisor index` would help, for a big database without our index."""
        if self.cursor <= above_rows or self.has_thread_index():
            return None
        return (
            f"{self.cursor:,} rows and no index on thread_id: reading one thread scans them "
            f"all; 'agent-supervisor index {self.location}' adds one"
        )

    def has_thread_index(self) -> bool:
        """Some index on `messages` starts with thread_id (ours, or the host's own)."""
        with self._lock:
            for _, name, *_ in self._conn.execute("PRAGMA index_list(messages)").fetchall():
                first = self._conn.execute(f"PRAGMA index_info({_quote(name)})").fetchone()
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
        return self._unchecked_through == 0

    def threads(self) -> list[ThreadSummary]:
        return list(self._threads.values())

    def get(self, thread_id: str) -> ThreadSummary | None:
        return self._threads.get(thread_id)

    @property
    def cursor(self) -> int:
        """The highest message id read so far."""
        return self._cursor

    def transcript(self, thread_id: str, *, full: bool = False) -> Transcript:
        """One thread's rows; rows over `BIG_ROW` characters come as a preview unless `full`."""
        return self._reading(lambda: self._transcript(thread_id, full), restart=False)

    def thread_extra(self, thread_id: str) -> dict[str, Any]:
        if "extra_json" not in self._columns.get("thread_extra", set()):
            return {}
        row = self._reading(
            lambda: self._conn.execute(
                "SELECT extra_json FROM thread_extra WHERE thread_id = ?", (thread_id,)
            ).fetchone(),
            restart=False,
        )
        extra = _json_or_none(row[0]) if row else None
        return extra if isinstance(extra, dict) else {}

    def hitl_answer(self, thread_id: str, run_id: str | None, question_id: str) -> Any:
        if not {"run_id", "question_id", "answer_json"} <= self._columns.get(
            "thread_hitl_answers", set()
        ):
            return None
        row = self._reading(
            lambda: self._conn.execute(
                "SELECT answer_json FROM thread_hitl_answers "
                "WHERE thread_id = ? AND run_id = ? AND question_id = ?",
                (thread_id, run_id or "", question_id),
            ).fetchone(),
            restart=False,
        )
        return None if row is None else _json_or_none(row[0])

    def answer_times(self, thread_id: str, run_id: str) -> tuple[dict[str, float], float | None]:
        """When each of the run's stored answers was given and when its newest tool result was
        saved, by the database's clock (as `runs.answer_times`)."""
        if (
            not {"run_id", "question_id", "answered_at"}
            <= self._columns.get("thread_hitl_answers", set())
            or "run_id" not in self._columns["messages"]
        ):
            return {}, None

        def read() -> tuple[dict[str, float], float | None]:
            rows = self._conn.execute(
                "SELECT question_id, answered_at FROM thread_hitl_answers "
                "WHERE thread_id = ? AND run_id = ?",
                (thread_id, run_id),
            ).fetchall()
            (newest,) = self._conn.execute(
                "SELECT max(created_at) FROM messages WHERE thread_id = ? AND run_id = ? "
                "AND json_valid(message_json) "
                "AND json_extract(message_json, '$.role') = 'tool_result'",
                (thread_id, run_id),
            ).fetchone()
            answered = {str(q): float(at) for q, at in rows if isinstance(at, (int, float))}
            return answered, newest if isinstance(newest, (int, float)) else None

        return self._reading(read, restart=False)

    def _transcript(self, thread_id: str, full: bool) -> Transcript:
        cols = self._columns["messages"]
        created = unix_time_sql("created_at") if "created_at" in cols else "NULL"
        run = "run_id" if "run_id" in cols else "NULL"
        limit = 2**62 if full else BIG_ROW
        out = Transcript(thread_id)
        sql = (
            f"SELECT id, length(message_json), "
            f"CASE WHEN length(message_json) > {limit} "
            f"THEN substr(message_json, 1, {BIG_PREVIEW}) ELSE message_json END, "
            f"{created}, {run} FROM messages WHERE thread_id = ? ORDER BY id"
        )
        # Without the thread index this scans the whole table: seconds of a core
        # that the screen must be able to take back (`supervisor.priority`).
        rows = at_low_priority(lambda: self._conn.execute(sql, (thread_id,)).fetchall())
        for row_id, size, text, created_at, run_id in rows:
            entry = TranscriptEntry(row_id, _number(created_at), _text_or_none(run_id), None)
            if isinstance(size, int) and size > limit:
                entry.size, entry.raw = size, str(text)
            else:
                entry.message, entry.error = parse_message(text)
                if entry.error is not None:
                    entry.raw = text if isinstance(text, str) else repr(text)
            out.entries.append(entry)
        return out

    def close(self) -> None:
        """Close, leaving nothing behind: `-wal`/`-shm` that opening created are removed."""
        if self._early_preview is not None:  # never asked for: stop the child
            pid, reading, _ = self._early_preview
            self._early_preview = None
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(reading)
        if self._first_read is not None:  # never taken: stop its readers
            self._first_read.cancel()
            self._first_read = None
        for stream in self._streams:
            stream.close()  # an unfinished `stream` lets go of its read transaction first
        self._streams.clear()
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        created = [s for s, existed in self._wal_existed.items() if not existed]
        if created and any(Path(f"{self.path}{s}").exists() for s in created):
            self._remove_wal_files()

    def _remove_wal_files(self) -> None:
        """Reading a WAL database read-only creates `-wal`/`-shm` and cannot remove them.

        The last connection to close a WAL database removes them; a brief
        read-write open does exactly that when we are the last. If a writer
        is still connected, the files are its and stay.
        """
        with contextlib.suppress(sqlite3.Error, OSError):
            self._open_read_write_briefly(0.2)

    # -- the listing pass -------------------------------------------------

    def _summary(self, thread_id: str) -> ThreadSummary:
        summary = self._threads.get(thread_id)
        if summary is None:
            summary = self._threads[thread_id] = ThreadSummary(thread_id)
        return summary

    def _read_all(self) -> set[str]:
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
        top = self._aggregate("first")
        if top is None:
            return set()
        try:
            with collector.paused():
                for _ in self._listed(top, chunk=None):
                    pass
            return set(self._threads)
        except _NotPlain:
            # Thread ids that are not plain text (blobs, NULL, bad UTF-8) are
            # named row by row (`_odd_thread_id`): take the exact path.
            self._threads.clear()
            self._parsed_assistant.clear()
            self._cursor = self._unchecked_through = 0  # the exact path checks every row
            touched = self._read_new_messages()
            self._refold(self._fill_tails(touched))
            return touched
        finally:
            self._conn.execute("DROP TABLE IF EXISTS temp.listing")

    def _aggregate(self, order: str, top: int | None = None) -> int | None:
        """`temp.listing`, its rows in `order` ("first" row or "thread_id"); the top row id.

        None for a database without messages. `top`: read the rows up to it
        (a split first read's halves read the same rows), else up to the newest.
        """
        conn = self._conn
        if top is None:
            top = self.newest_row()
        if top is None:
            return None
        bottom = 0 if self._newest is None else max(0, top - self._newest)
        conn.execute("DROP TABLE IF EXISTS temp.listing")
        sql = self._aggregate_sql(order == "first") + f" ORDER BY {order}"
        conn.execute(sql, (bottom, top, *self._range_args))
        self._exact_activity(bottom, top)
        return top

    def _listed(
        self, top: int, chunk: int | None, runs: bool = False
    ) -> Iterator[dict[str, ThreadSummary]]:
        """Summaries of `temp.listing`'s threads in its row order, with tails, a chunk at a time.

        `chunk` None: one chunk, built in `self._threads` (the kept listing).
        Otherwise new dicts of that many threads, each complete once handed
        out and not kept (`stream`). `runs`: whether each thread's run is
        open or done comes from `temp.open_runs` and `temp.done_runs`.
        Raises `_NotPlain`, having handed out nothing, on a thread id that is
        not plain text (bad UTF-8 read by the tolerant decoder).
        """
        conn = self._conn
        if conn.execute(
            "SELECT 1 FROM temp.listing WHERE typeof(thread_id) != 'text' LIMIT 1"
        ).fetchone():
            raise _NotPlain
        keep = chunk is None
        if not keep and any(
            type(t) is not str for (t,) in conn.execute("SELECT thread_id FROM temp.listing")
        ):  # found now, before any chunk is handed out
            raise _NotPlain
        self._cursor = top
        self._unchecked_through = top
        run = "l.run_id" if "run_id" in self._columns["messages"] else "NULL"
        run_open = "t.thread_id IN temp.open_runs" if runs else "0"
        run_done = "t.thread_id IN temp.done_runs" if runs else "0"
        rows = conn.execute(
            f"SELECT t.thread_id, t.count, t.last, {_ACTIVITY}, t.assistant, t.strange, "
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
        threads = self._threads if keep else {}
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
                    raise _NotPlain
                s = threads.get(thread_id)
                if s is None:
                    s = threads[thread_id] = ThreadSummary(thread_id)
                s.messages = count
                s.last_row = last >> 3
                s.last_role = _KINDS[last & 7]
                s.last_activity = activity
                s.last_assistant_row = assistant
                s.last_run_id = run_id
                if open_run:
                    s.run_open = True
                if done_run:
                    s.run_done = True
                if strange is not None or (not valid and s.bad_row is None):
                    odd.add(thread_id)
                if assistant is not None and self._parsed_assistant.get(thread_id) != assistant:
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
        if odd and threads is self._threads:
            self._refold(odd)
        elif odd:  # a streamed chunk: fold them where `_refold` looks, then take them back
            for thread_id in odd:
                self._threads[thread_id] = threads[thread_id]
            self._refold(odd)
            for thread_id in odd:
                threads[thread_id] = self._threads.pop(thread_id)
                self._parsed_assistant.pop(thread_id, None)
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
        sql = self._answered_sql("FROM messages m WHERE m.id IN (SELECT value FROM json_each(?))")
        for thread_id, calls, broken, unsure in self._conn.execute(sql, (json.dumps(rows),)):
            if broken or unsure:
                refold.add(thread_id)
            if calls is not None:
                found[thread_id] = set(json.loads(calls))
        return found, refold

    def _answered_sql(self, source: str) -> str:
        """Per thread, over the rows of `source` (FROM and WHERE over alias `m`): the
        tool_call_ids answered (a JSON array), whether a row is not valid JSON, and
        whether one needs the exact path (a start we do not know, an id cut or escaped).

        Grouped inside SQLite: Python sees a row per thread, not per message.
        """
        return (
            "SELECT thread_id, json_group_array(detail) FILTER "
            "(WHERE role = 'tool_result' AND detail IS NOT NULL), max(role IS NULL), "
            "max(role = '?' OR (role = 'tool_result' AND (coalesce(detail, '') = '' "
            "OR instr(detail, char(92)) > 0))) "
            f"FROM (SELECT {self._row_columns('m.', named=True)} {source}) GROUP BY thread_id"
        )

    def _read_only(self, thread_ids: set[str]) -> set[str]:
        """The scoped first read: these threads, folded exactly; unknown ones left out."""
        (top,) = self._conn.execute("SELECT max(id) FROM messages").fetchone()
        self._cursor = top or 0
        self._refold(thread_ids)
        known = set()
        if "thread_extra" in self._columns:
            known = {
                str(t)
                for (t,) in self._conn.execute(
                    "SELECT thread_id FROM thread_extra WHERE thread_id IN "
                    "(SELECT value FROM json_each(?))",
                    (json.dumps(sorted(thread_ids)),),
                )
            }
        for thread_id in thread_ids:
            if self._threads[thread_id].messages == 0 and thread_id not in known:
                del self._threads[thread_id]
        (self._extra_cursor,) = self._conn.execute(
            "SELECT coalesce(max(rowid), 0) FROM thread_extra"
            if "thread_extra" in self._columns
            else "SELECT 0"
        ).fetchone()
        return set(self._threads)

    def _refold(self, thread_ids: set[str]) -> None:
        """Fold these threads again row by row, every row checked: the exact, slower path."""
        for thread_id in thread_ids:
            self._threads[thread_id] = ThreadSummary(thread_id)
            self._parsed_assistant.pop(thread_id, None)
        rows = self._conn.execute(
            self._threads_sql, (0, self._cursor, json.dumps(sorted(thread_ids)))
        )
        fold_rows(self._threads, self._checked(rows))
        self._fill_tails(thread_ids)

    def _read_new_messages(self) -> set[str]:
        """The one pass over rows above the cursor, mostly inside SQLite.

        SQLite validates each row's JSON and recognises its role (and a tool
        result's tool_call_id) from the start of the text, so Python never
        parses a whole message here. (Splitting the range across threads
        was measured slower: the GIL serialises building the rows.)
        """
        top = self.newest_row()
        if top is None or top <= self._cursor:
            return set()
        before = self._cursor
        if self._only is None:
            rows = self._conn.execute(self._listing_sql, (before, top))
        else:
            rows = self._conn.execute(
                self._threads_sql, (before, top, json.dumps(sorted(self._only)))
            )
        touched: set[str] = set()
        fold_rows(self._threads, _noting_threads(self._checked(rows), touched, self.work))
        self._cursor = top
        return touched  # the threads these rows belong to: no walk over every thread

    def _row_columns(self, m: str = "", named: bool = False) -> str:
        """The listing's row form (id, thread, time, role, detail) over table alias `m`
        (`named`: as row_id, thread_id, activity, role, detail)."""
        cols = self._columns["messages"]
        created = unix_time_sql(f"{m}created_at") if "created_at" in cols else "NULL"
        text = f"{m}message_json"
        head = len(_TOOL_RESULT)  # a tool result's tool_call_id starts after this
        call_end = f"instr(substr({text}, {head + 1}, {_ID_CHARS}), '\"')"
        tests = _starts_as(text)
        roles = " ".join(f"WHEN {test} THEN '{role}'" for role, test in tests.items())
        names = iter(
            (" AS row_id", " AS thread_id", " AS activity", " AS role", " AS detail")
            if named
            else [""] * 5
        )
        return (
            f"{m}id{next(names)}, {m}thread_id{next(names)}, {created}{next(names)}, "
            f"CASE WHEN NOT json_valid({text}) THEN NULL {roles} ELSE '?' END{next(names)}, "
            f"CASE WHEN {tests['tool_result']} "
            f"THEN substr({text}, {head + 1}, {call_end} - 1) END{next(names)}"
        )

    @functools.cached_property
    def _listing_sql(self) -> str:
        return f"SELECT {self._row_columns()} FROM messages WHERE id > ? AND id <= ? ORDER BY id"

    def _aggregate_sql(self, first: bool) -> str:
        """Into `temp.listing`, per thread: count, (newest row << 3 | its kind), the
        newest and the earliest `created_at` as stored, newest assistant and
        tool-result rows, first row of an unknown kind, and the ids of the rows
        that are not assistant messages: those after the newest assistant row are
        the tail read for its answered calls, by id, with no second pass over the
        table. `first`: the first row too (the app's order).

        The kind is computed in a subquery SQLite does not flatten (`LIMIT
        -1`), so its sorter carries small numbers instead of whole messages.
        Kind 4 is a start we do not recognise: that thread is refolded.
        The time is grouped as stored and turned into unix seconds per thread
        (`_exact_activity`): per row, that conversion was a seventh of the pass.
        """
        cols = self._columns["messages"]
        created = "created_at" if "created_at" in cols else "NULL"
        tests = _starts_as("message_json").items()
        kinds = " ".join(f"WHEN {test} THEN {_KINDS.index(role)}" for role, test in tests)
        kind = f"CASE {kinds} ELSE 4 END"
        return (
            "CREATE TEMP TABLE listing AS SELECT thread_id, count(*) AS count, "
            + ("min(id) AS first, " if first else "")
            + "max(id * 8 + k) AS last, max(c) AS activity, min(c) AS earliest, "
            "NULL AS exact, "
            "max(id) FILTER (WHERE k = 2) AS assistant, "
            "max(id) FILTER (WHERE k = 3) AS result, "
            "min(id) FILTER (WHERE k = 4) AS strange, "
            "group_concat(id) FILTER (WHERE k != 2) AS others "
            f"FROM (SELECT id, thread_id, {created} AS c, {kind} AS k "
            f"FROM messages WHERE id > ? AND id <= ?{self._range_sql} LIMIT -1) "
            "GROUP BY thread_id"
        )

    def _exact_activity(self, bottom: int, top: int) -> None:
        """`temp.listing.exact`: the newest time of the threads whose stored times do not
        convert in order (text, or unix seconds mixed with julian days), in a second
        pass over their rows. A database our checkpointer wrote has none of them."""
        conn = self._conn
        if (
            "created_at" not in self._columns["messages"]
            or not conn.execute(
                f"SELECT 1 FROM temp.listing WHERE NOT {_in_order_sql()} LIMIT 1"
            ).fetchone()
        ):
            return
        conn.execute(
            "UPDATE temp.listing SET exact = x.t FROM (SELECT thread_id, "
            f"max({unix_time_sql('created_at')}) AS t FROM messages WHERE id > ? AND id <= ? "
            f"AND thread_id IN (SELECT thread_id FROM temp.listing WHERE NOT {_in_order_sql()}) "
            "GROUP BY thread_id) AS x WHERE x.thread_id = listing.thread_id",
            (bottom, top),
        )

    @functools.cached_property
    def _range_sql(self) -> str:
        """The `thread_range` test (parameters `_range_args`), compared as bytes: the
        order `stream` hands threads out in."""
        low, high = self._range or (None, None)
        return (" AND thread_id COLLATE BINARY >= ?" if low is not None else "") + (
            " AND thread_id COLLATE BINARY < ?" if high is not None else ""
        )

    @property
    def _range_args(self) -> tuple[str, ...]:
        return tuple(end for end in self._range or () if end is not None)

    def _in_range(self, thread_id: str) -> bool:
        low, high = self._range or (None, None)
        return (low is None or thread_id >= low) and (high is None or thread_id < high)

    @functools.cached_property
    def _threads_sql(self) -> str:
        """The listing's row form for some threads (a JSON array of ids) in an id range.

        With an index on `messages(thread_id, ...)` (`agent-supervisor
        index`) this reads those threads' rows only; without, one scan.
        """
        return self._listing_sql.replace(
            "WHERE id > ? AND id <= ?",
            "WHERE id > ? AND id <= ? AND thread_id IN (SELECT value FROM json_each(?))",
        )

    def _checked(self, rows: Iterable[Row]) -> Iterator[Row]:
        """Pass rows on, sending the few SQL could not read to `_resolve_row`."""
        for row in rows:
            role = row[3]
            if role == "?" or (role == "tool_result" and _odd_id(row[4])):
                row = self._resolve_row(row)
            if type(row[1]) is not str:
                row = _odd_thread_id(row)
            yield row

    def _resolve_row(self, row: Row) -> Row:
        """The slow path: parse a row in full when its start was not enough.

        Taken by rows another serialiser wrote in another field order, and
        by tool_call_ids holding escapes or longer than `_ID_CHARS`.
        """
        row_id, thread_id, activity, _, _ = row
        (text,) = self._conn.execute(
            "SELECT message_json FROM messages WHERE id = ?", (row_id,)
        ).fetchone()
        message, error = parse_message(text)
        if message is None:
            return (row_id, thread_id, activity, None, error)
        call_id = message.get("tool_call_id")
        detail = call_id if isinstance(call_id, str) else None
        return (row_id, thread_id, activity, message["role"], detail)

    def _read_new_extra(self) -> set[str]:
        """Threads known only from `thread_extra` are listed as empty."""
        if "thread_extra" not in self._columns or self._newest is not None:
            return set()
        touched: set[str] = set()
        for rowid, thread_id in self._conn.execute(
            "SELECT rowid, thread_id FROM thread_extra WHERE rowid > ? ORDER BY rowid",
            (self._extra_cursor,),
        ):
            self._extra_cursor = rowid
            thread_id = str(thread_id)
            if self._only is not None and thread_id not in self._only:
                continue
            if thread_id not in self._threads:
                self._summary(thread_id)
                touched.add(thread_id)
        return touched

    def _read_parents(self, threads: dict[str, ThreadSummary], among: Iterable[str]) -> set[str]:
        """The parent links (`supervisor.children`) of the threads `among` whose state a link
        could change (`may_be_child`), looked up by id; returns those whose link changed.

        Reading every `extra` for a link took 80 ms at 100,000 threads; a link
        matters only to a thread a resume would start from, and those are few. A
        store opened for named threads (`show`, `resume THREAD`) reads all of theirs.
        """
        if "extra_json" not in self._columns.get("thread_extra", set()):
            return set()
        every = self._only is not None
        wanted = [t for t in among if t in threads and (every or may_be_child(threads[t]))]
        if not wanted:
            return set()
        found = dict.fromkeys(wanted)
        for thread_id, parent in self._conn.execute(
            "SELECT thread_id, CASE WHEN json_valid(extra_json) "
            f"THEN json_extract(extra_json, '$.{PARENT_KEY}.thread_id') END FROM thread_extra "
            "WHERE thread_id IN (SELECT value FROM json_each(?))",
            (json.dumps(wanted),),
        ):
            if thread_id in found and isinstance(parent, str):
                found[thread_id] = parent
        return fold_parents(threads, found)

    def _fill_tails(self, touched: Iterable[str]) -> set[str]:
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
            s = self._threads[thread_id]
            if s.last_row:
                last_rows[s.last_row] = s
            row = s.last_assistant_row
            if row is not None and self._parsed_assistant.get(thread_id) != row:
                assistants[row] = s
        if not last_rows and not assistants:
            return set()
        run = "m.run_id" if "run_id" in self._columns["messages"] else "NULL"
        self._conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS wanted (id INTEGER PRIMARY KEY, parse INTEGER)"
        )
        self._conn.execute("DELETE FROM temp.wanted")
        self._conn.executemany(
            "INSERT INTO temp.wanted VALUES (?, ?)",
            ((i, i in assistants) for i in last_rows.keys() | assistants),
        )
        broken = set()
        for row_id, run_id, valid, text in self._conn.execute(
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
        self._conn.execute("DELETE FROM temp.wanted")
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
            self._parsed_assistant[s.thread_id] = row_id

    def _read_pending_requests(self) -> set[str]:
        """Who waits for a human, with what request, and whether it was answered.

        The table holds one row per waiting thread, so it is read whole on
        every refresh; returns the threads whose request changed.
        """
        found = self._pending_found()
        for thread_id in found:
            self._summary(thread_id)
        changed = fold_requests(self._threads, self._pending, found)
        self._pending = set(found)
        return changed

    def _pending_found(self) -> dict[str, tuple[PendingRequest, bool]]:
        """Each waiting thread's request, and whether its answer is stored."""
        cols = self._columns.get("thread_pending_request")
        if not cols or not {"thread_id", "request_json"} <= cols:
            return {}
        run = "p.run_id" if "run_id" in cols else "NULL"
        answered = "0"
        answers = self._columns.get("thread_hitl_answers", set())
        if {"thread_id", "run_id", "question_id"} <= answers:
            answered = (
                "EXISTS (SELECT 1 FROM thread_hitl_answers a WHERE a.thread_id = p.thread_id "
                f"AND a.run_id = coalesce({run}, '') AND a.question_id = "
                "CASE WHEN json_valid(p.request_json) "
                "THEN json_extract(p.request_json, '$.question_id') END)"
            )
        found: dict[str, tuple[PendingRequest, bool]] = {}
        for thread_id, text, run_id, stored in self._conn.execute(
            f"SELECT p.thread_id, p.request_json, {run}, {answered} FROM thread_pending_request p"
        ):
            thread_id = _plain_id(thread_id)
            if self._only is None or thread_id in self._threads:
                found[thread_id] = (parse_request(text, run_id), bool(stored))
        return found

    def _read_leases(self) -> set[str]:
        """Threads a live supervisor holds are `running`, with who holds them.

        Leases are files beside the database, read without creating
        anything; returns the threads whose holder changed.
        """
        live = {t: h for t, h in self.leases.live().items() if t in self._threads}
        changed = fold_holders(self._threads, self._held, live)
        self._held = set(live)
        return changed

    def _read_run_done(self, touched: set[str]) -> set[str]:
        """Whether the run of each touched thread's last message is complete, for those
        whose last message is a tool result (the only ones it decides); returns the
        threads where that changed. A run marked complete after its last write is
        seen when `_read_open_runs` sees its newest run close."""
        cols = self._columns.get("runs", set())
        if not {"thread_id", "run_id", "completed_at"} <= cols:
            return set()
        wanted = {}
        for thread_id in touched:
            s = self._threads.get(thread_id)
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
            for (t,) in self._conn.execute(
                "SELECT r.thread_id FROM runs r JOIN json_each(?) j "
                "ON r.thread_id = j.key AND r.run_id = j.value WHERE r.completed_at IS NOT NULL",
                (json.dumps(wanted),),
            )
        }
        changed = set()
        for thread_id in wanted:
            s = self._threads[thread_id]
            if s.run_done != (thread_id in done):
                s.run_done = thread_id in done
                changed.add(thread_id)
        return changed

    def _read_open_runs(self, touched: set[str], everything: bool) -> set[str]:
        """Whether each thread's newest run is still open; returns threads where that changed.

        The whole table is read once; after that only threads with a new
        run row or new messages; and every `RUN_SWEEP_SECONDS`, those with
        an open run and a write in the last `RUN_RECHECK_SECONDS` (a run
        closes just after its last write; an open run matters only while it
        may be live, see `plan.live_reason`). A refresh costs what changed,
        not what exists.
        """
        cols = self._columns.get("runs")
        if not cols or not {"thread_id", "completed_at"} <= cols:
            return set()
        recent = time.time() - RUN_RECHECK_SECONDS
        latest = "SELECT thread_id, completed_at IS NULL FROM runs WHERE rowid IN "
        since = self._runs_cursor
        (self._runs_cursor,) = self._conn.execute(
            "SELECT coalesce(max(rowid), 0) FROM runs"
        ).fetchone()
        partial = self._only is not None or self._newest is not None
        if everything and not partial:
            ranged = f"WHERE 1{self._range_sql}"  # a split first read's half: its threads
            rows = self._conn.execute(
                latest + f"(SELECT max(rowid) FROM runs {ranged} GROUP BY thread_id)",
                self._range_args,
            )
        else:
            wanted = set(touched)
            if time.monotonic() - self._runs_swept_at >= RUN_SWEEP_SECONDS:
                self._runs_swept_at = time.monotonic()
                wanted |= self._open_runs
            if not partial or since:  # a partial first read asks about its threads only
                wanted.update(
                    t
                    for (t,) in self._conn.execute(
                        "SELECT thread_id FROM runs WHERE rowid > ?", (since,)
                    )
                    if self._only is None or t in self._only
                )
            self.work["run_threads"] = len(wanted)
            rows = self._conn.execute(
                latest + "(SELECT max(rowid) FROM runs WHERE thread_id IN "
                "(SELECT value FROM json_each(?)) GROUP BY thread_id)",
                (json.dumps(sorted(wanted)),),
            )
        changed = set()
        for thread_id, is_open in rows:
            s = self._threads.get(_plain_id(thread_id))
            if s is None:
                continue
            if s.run_open != bool(is_open):
                s.run_open = bool(is_open)
                changed.add(s.thread_id)
            if is_open and (s.last_activity or 0) >= recent:
                self._open_runs.add(s.thread_id)
            else:
                self._open_runs.discard(s.thread_id)
        # A crashed run stays open for ever: looking again only at the open runs
        # of threads written to lately keeps a refresh at the size of what changed.
        self._open_runs = {
            t for t in self._open_runs if (self._threads[t].last_activity or 0) >= recent
        }
        return changed


def fold_requests(
    threads: dict[str, ThreadSummary],
    before: set[str],
    found: dict[str, tuple[PendingRequest, bool]],
) -> set[str]:
    """Give threads their pending request and whether it was answered; the threads that changed.

    Looks only at threads that waited before or wait now: few ever do.
    """
    changed = set()
    for thread_id in before | found.keys():
        s = threads.get(thread_id)
        if s is None:
            continue
        request, stored = found.get(thread_id, (None, False))
        if (request, stored) != (s.request, s.answer_stored):
            changed.add(thread_id)
        s.pending_request, s.request, s.answer_stored = request is not None, request, stored
    return changed


def fold_holders(
    threads: dict[str, ThreadSummary], before: set[str], live: dict[str, dict[str, Any]]
) -> set[str]:
    """Threads a live supervisor holds are `running`, with their holder; those that changed."""
    changed = set()
    for thread_id in before | live.keys():  # not every thread: few are held
        s = threads[thread_id]
        holder = live.get(thread_id)
        if holder != s.holder:
            changed.add(thread_id)
            s.holder, s.running = holder, holder is not None
    return changed


def fold_attempts(
    threads: dict[str, ThreadSummary], before: set[str], found: dict[str, Attempt]
) -> set[str]:
    """Give threads their watcher record (or none); the threads whose record changed.

    Looks only at threads that had a record before or have one now: a refresh
    must not walk 100,000 summaries to find the few the watcher tried.
    """
    changed = set()
    for thread_id in before | found.keys():
        s = threads.get(thread_id)
        if s is not None and s.attempt != found.get(thread_id):
            s.attempt = found.get(thread_id)
            changed.add(thread_id)
    return changed


def fold_parents(threads: dict[str, ThreadSummary], found: dict[str, str | None]) -> set[str]:
    """Give the threads looked up their parent link (or none); those whose link changed."""
    changed = set()
    for thread_id, parent in found.items():
        if threads[thread_id].parent != parent:
            threads[thread_id].parent = parent
            changed.add(thread_id)
    return changed


def parse_message(text: Any) -> tuple[dict[str, Any] | None, str | None]:
    """A stored message as a dict, or (None, why it is corrupt)."""
    if isinstance(text, bytes):
        text = tolerant_text(text)
    if not isinstance(text, str):
        return None, "message_json is not text"
    if isinstance(text, Undecodable):
        return None, "message_json is not valid UTF-8"
    try:
        message = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"message_json is not valid JSON ({exc.msg} at char {exc.pos})"
    except RecursionError:
        return None, "message_json is nested too deeply to parse"
    except ValueError as exc:
        return None, f"message_json is not valid JSON ({exc})"
    if not isinstance(message, dict):
        return None, "message_json is not an object"
    role = message.get("role")
    if role not in ROLES:
        return None, f"unknown role {role!r}"
    return message, None


def _json_or_none(text: Any) -> Any:
    """Stored JSON, or None when it does not parse."""
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return None


def _in_order_sql(t: str = "") -> str:
    """Whether a thread's stored times (`temp.listing` alias `t`) convert to unix seconds
    in order: all numbers of one scale (julian days, or unix seconds past 1e8), or none."""
    newest, earliest = f"{t}activity", f"{t}earliest"
    return (
        f"({newest} IS NULL OR (typeof({newest}) IN ('integer', 'real') "
        f"AND typeof({earliest}) IN ('integer', 'real') "
        f"AND ({earliest} > 1e8 OR {newest} <= 1e8)))"
    )


#: A thread's newest time in unix seconds, from `temp.listing t`.
_ACTIVITY = f"CASE WHEN {_in_order_sql('t.')} THEN {unix_time_sql('t.activity')} ELSE t.exact END"

#: Roles by the kind number `_aggregate_sql` gives each row.
_KINDS = (None, "user", "assistant", "tool_result", None, None, None, None)


def _noting_threads(rows: Iterable[Row], seen: set[str], work: dict[str, int]) -> Iterator[Row]:
    for row in rows:
        seen.add(row[1])
        work["rows"] += 1
        yield row


def _thread_id(s: ThreadSummary) -> str:
    return s.thread_id


@dataclass
class KeptHalf:
    """One range of a split first listing: its summaries in the order of their first
    rows (`firsts`, one per summary), which assistant row each has parsed, the
    recently written ones with an open run, and the last `runs` row read."""

    threads: dict[str, ThreadSummary]
    firsts: list[int]
    parsed: dict[str, int]
    open_runs: set[str] = field(default_factory=set)
    runs_cursor: int = 0


class CannotSplit(Exception):
    """A ranged `stream` found what only the whole kept listing reads (odd thread ids)."""


class _NotPlain(Exception):
    """A thread id the fast listing cannot name (not text, or not UTF-8): take the exact path."""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _plain_id(thread_id: Any) -> str:
    """A thread id from a side table, named as the listing names odd ones."""
    if type(thread_id) is str:  # nearly all: a side table read whole has 100,000
        return thread_id
    return _odd_thread_id((0, thread_id, None, None, None))[1]


def _odd_thread_id(row: Row) -> Row:
    """A row whose thread_id is not plain text is its own thread's corrupt row."""
    row_id, thread_id, activity, role, detail = row
    if isinstance(thread_id, Undecodable):
        return (row_id, thread_id, activity, None, "thread_id is not valid UTF-8")
    if isinstance(thread_id, str):
        return (row_id, str(thread_id), activity, role, detail)
    if isinstance(thread_id, bytes):
        return (row_id, repr(thread_id), activity, None, "thread_id is a blob, not text")
    if thread_id is None:
        return (row_id, "<NULL>", activity, None, "thread_id is NULL")
    return (row_id, str(thread_id), activity, role, detail)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _odd_id(call_id: str | None) -> bool:
    """A tool_call_id the prefix read cannot trust: missing, cut, or escaped."""
    return not call_id or "\\" in call_id


#: The index `agent-supervisor index` adds; cubeloop's `load()` uses it too.
INDEX_NAME = "agent_supervisor_messages_thread"


def add_thread_index(path: Path, busy_timeout: float) -> None:
    """Index `messages(thread_id, id)`: one thread's rows without a full-table scan."""
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        conn.execute(f"CREATE INDEX IF NOT EXISTS {INDEX_NAME} ON messages (thread_id, id)")
    except sqlite3.Error as exc:
        raise StoreError(describe_sqlite_error(path, exc, busy_timeout)) from None
    finally:
        conn.close()


def drop_thread_index(path: Path, busy_timeout: float) -> bool:
    """Drop our index (never one we did not add); False if it was not there."""
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        (found,) = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?", (INDEX_NAME,)
        ).fetchone()
        if found:
            conn.execute(f"DROP INDEX {INDEX_NAME}")
        return bool(found)
    except sqlite3.Error as exc:
        raise StoreError(describe_sqlite_error(path, exc, busy_timeout)) from None
    finally:
        conn.close()


def open_store(path: str | os.PathLike[str], **kwargs: Any) -> SQLiteStore:
    """Open and fully read a SQLite database (`Location.open_store` chooses the backend)."""
    store = SQLiteStore(path, **kwargs)
    try:
        store.refresh()
    except StoreError:
        store.close()
        raise
    return store
