"""Opening a SQLite file without writing to it, its errors as one line, our index."""

from __future__ import annotations

import os
import sqlite3
import stat
import urllib.parse
from pathlib import Path

from supervisor.store import StoreError

#: Seconds to wait for another process's write lock before giving up.
DEFAULT_BUSY_TIMEOUT = 5.0


class Undecodable(str):
    """Text from a column that was not valid UTF-8, decoded with replacement characters."""


def tolerant_text(data: bytes) -> str:
    """A `text_factory` that never raises: bad UTF-8 becomes an `Undecodable`."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return Undecodable(data.decode("utf-8", "replace"))


def is_decode_error(exc: sqlite3.Error) -> bool:
    return "decode" in str(exc).lower() and "utf-8" in str(exc).lower()


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


def open_read_write_briefly(path: Path, timeout: float) -> None:
    """Open read-write, read one row, close: what SQLite's own writers do on opening.

    That rolls back a hot journal, and as the last connection to close a
    WAL database it removes `-wal`/`-shm`. Nothing is written.
    """
    uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=rw"
    conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        conn.close()


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


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
