"""Message-text search for a SQLite file: an FTS5 index in a side file, or a scan.

The index lives in `DB.search`, a SQLite file of ours beside the database
(cubeloop's file is never written): a contentless FTS5 table of each
message's text (`supervisor.search` says what that is) and a table of which
thread each message row belongs to. It is made with consent (`index DB
--search`, or `I` in the app) and kept current from the message ids:
messages are append-only, so the rows past the last id indexed are exactly
what is new, and each search first indexes them (a few rows, usually).

Without the index a search reads every message: the rows whose raw JSON
holds every ASCII word of the query are picked by SQLite, and their text
checked in Python (`search.matches`).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from supervisor.search import SKIP_KEYS, SKIP_SUBTREES, fts_query, matches, query_words
from supervisor.sqlite.files import tolerant_text

#: The side file's name: the database's, and this.
SUFFIX = ".search"
#: Message rows indexed per transaction of the side file.
BATCH = 20_000
#: What the side file's layout is; a file of another version is made again.
VERSION = 1

_SKIPPED = ", ".join(f"'{k}'" for k in sorted(SKIP_KEYS))
_SUBTREES = " AND ".join(
    f"t.fullkey != '$.{k}' AND t.fullkey NOT LIKE '$.{k}.%'" for k in sorted(SKIP_SUBTREES)
)

#: Each message's text (the rule of `search.message_text`, in SQL), by row id.
TEXT_SQL = (
    "SELECT m.id, m.thread_id, (SELECT group_concat(t.atom, ' ') FROM json_tree(m.message_json) t "
    f"WHERE t.type IN ('text', 'integer', 'real') AND (t.key IS NULL OR t.key NOT IN ({_SKIPPED})) "
    f"AND {_SUBTREES}) FROM messages m WHERE {{where}} AND json_valid(m.message_json)"
)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value)",
    "CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, thread_id TEXT NOT NULL)",
    "CREATE VIRTUAL TABLE IF NOT EXISTS words USING fts5(body, content='', "
    "tokenize='unicode61 remove_diacritics 0')",
)


class SearchIndexError(Exception):
    """The side file cannot be used (one line for the user)."""


def side_path(database: Path) -> Path:
    return database.with_name(database.name + SUFFIX)


def _identity(database: Path) -> str:
    """Which file the index was made for: a database replaced since is indexed anew."""
    st = os.stat(database)
    return f"{st.st_dev}:{st.st_ino}"


class SearchIndex:
    """The side file of one database."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = side_path(database)

    def exists(self) -> bool:
        return self.path.is_file()

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 30000")
            for statement in _SCHEMA:
                conn.execute(statement)
        except sqlite3.Error as exc:
            raise SearchIndexError(f"{self.path}: cannot use the search index ({exc})") from None
        return conn

    def catch_up(self, source: sqlite3.Connection) -> int:
        """Index the messages written since the last look (all of them the first time);
        how many rows were added. `source` reads the database."""
        conn = self._open()
        added = 0
        try:
            identity = _identity(self.database)
            # From below the lowest row: another writer's ids may be 0 or negative.
            bottom, top = source.execute(
                "SELECT coalesce(min(id) - 1, 0), coalesce(max(id), 0) FROM messages"
            ).fetchone()
            while True:
                conn.execute("BEGIN IMMEDIATE")  # one indexer at a time
                try:
                    cursor = self._cursor(conn, identity, bottom, top)
                    if cursor >= top:
                        conn.execute("COMMIT")
                        return added
                    end = min(top, cursor + BATCH)
                    rows = source.execute(
                        TEXT_SQL.format(where="m.id > ? AND m.id <= ?"), (cursor, end)
                    ).fetchall()
                    conn.executemany(
                        "INSERT INTO rows (id, thread_id) VALUES (?, ?)",
                        ((i, _text(t)) for i, t, _ in rows),
                    )
                    conn.executemany(
                        "INSERT INTO words (rowid, body) VALUES (?, ?)",
                        ((i, _text(body) or "") for i, _, body in rows),
                    )
                    conn.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES ('cursor', ?)", (end,)
                    )
                    conn.execute("COMMIT")
                    added += len(rows)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise SearchIndexError(f"{self.path}: cannot update the search index ({exc})") from None
        finally:
            conn.close()

    def _cursor(self, conn: sqlite3.Connection, identity: str, bottom: int, top: int) -> int:
        """The last row indexed (`bottom` for a new index); the index starts over for another
        file, or one whose rows went back (a database restored from an older copy)."""
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        cursor = meta.get("cursor")
        if (
            meta.get("database") != identity
            or meta.get("version") != VERSION
            or not isinstance(cursor, int)
            or cursor > top
        ):
            # Made for another file (or another version): made again. A contentless
            # table cannot be emptied row by row; it is dropped and made anew.
            for table in ("rows", "words", "meta"):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("database", identity), ("version", VERSION), ("cursor", bottom)],
            )
            return bottom
        return cursor

    def query(self, text: str) -> set[str]:
        match = fts_query(text)
        if match is None:
            return set()
        conn = self._open()
        try:
            return {
                _text(t) or ""
                for (t,) in conn.execute(
                    "SELECT DISTINCT r.thread_id FROM words w JOIN rows r ON r.id = w.rowid "
                    "WHERE words MATCH ?",
                    (match,),
                )
            }
        except sqlite3.Error as exc:
            raise SearchIndexError(f"{self.path}: cannot search ({exc})") from None
        finally:
            conn.close()

    def remove(self) -> bool:
        """Delete the side file; whether there was one."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise SearchIndexError(
                f"{self.path}: not a search index this command removes ({exc.strerror})"
            ) from None
        for suffix in ("-journal", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        return True


def scan(source: sqlite3.Connection, text: str) -> set[str]:
    """The threads whose messages match, read without an index: every row's raw JSON
    tested in SQLite for the query's ASCII words, the survivors' text checked here."""
    wanted = query_words(text)
    if not wanted:
        return set()
    # The longest few ASCII words pick the rows (each is a test in SQLite's expression
    # tree, which has a depth limit); every word is then checked here.
    ascii_words = sorted({w for w in wanted if w.isascii()}, key=len, reverse=True)[:16]
    # Raw JSON holds an ASCII word as it is (non-ASCII text may be escaped as \\uXXXX).
    where = " AND ".join(["1", *("instr(lower(m.message_json), ?) > 0" for _ in ascii_words)])
    rows = source.execute(TEXT_SQL.format(where=where), ascii_words)
    return {_text(t) or "" for _, t, body in rows if matches(_text(body) or "", text)}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return tolerant_text(value) if isinstance(value, bytes) else str(value)
