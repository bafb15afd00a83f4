"""Search by message text: what a message's text is, what a query matches, one rule for all.

A query matches a message when every word of the query is a word of the
message's text, the last one as a prefix (`refund 90` finds "refund order
9001"). Words are runs of letters and digits (Unicode categories L*, N*
and Co: what SQLite's FTS5 `unicode61` tokenizer keeps, diacritics kept),
compared case-insensitively. A thread matches when one of its messages does.

A message's text is every string and number in it (user and assistant
text, tool names, arguments, results, errors), except what describes the
message rather than says something (`SKIP_KEYS`, `usage`, `metadata`).

The index itself is the backend's (`sqlite.search`: an FTS5 table in a side
file; `pg.search`: a table of ours with a GIN index): both are made with
consent (`agent-supervisor index DB --search`), and without one a search
scans, and says so.
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: Keys whose values describe a message rather than say something.
SKIP_KEYS = frozenset(
    {
        "role",
        "type",
        "id",
        "tool_call_id",
        "stop_reason",
        "provider_id",
        "model_id",
        "run_id",
        "timestamp",
        "api",
        "signature",
        "is_error",
        "response_id",
        "tokens_in",
        "context_window",
        "retry_after",
        "status_code",
    }
)
#: Top-level keys whose whole value is left out.
SKIP_SUBTREES = frozenset({"usage", "metadata"})


@dataclass(frozen=True)
class Found:
    """The threads a search matched, and how it was answered."""

    threads: frozenset[str]
    #: True: answered by the index; False: by reading every message (slow at fleet size).
    indexed: bool


def _is_word_char(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category[0] in "LN" or category == "Co"


def words(text: str) -> list[str]:
    """The words of a text, case-folded as the index folds them."""
    found, current = [], []
    for ch in text:
        if ch.isascii():
            if ch.isalnum():
                current.append(ch.lower())
                continue
        elif _is_word_char(ch):
            current.append(_fold(ch))
            continue
        if current:
            found.append("".join(current))
            current = []
    if current:
        found.append("".join(current))
    return found


#: Each non-ASCII letter met, folded as SQLite's FTS5 folds it.
_FOLDS: dict[str, str] = {}
_FOLDER: list[Any] = []
_FOLDING = threading.Lock()


def _fold(ch: str) -> str:
    """A letter's case folded the way the SQLite index folds it: Unicode 6.1's simple
    case folding (`µ`→`μ`, `ſ`→`s`; `İ` and letters newer than 6.1 kept as they are),
    asked of SQLite itself once per letter, so the index and every other reading
    agree to the letter."""
    folded = _FOLDS.get(ch)
    if folded is None:
        single = ch.casefold()
        folded = _FOLDS[ch] = ch if single == ch else _sqlite_fold(ch)
    return folded


def _sqlite_fold(ch: str) -> str:
    with _FOLDING:
        return _ask_sqlite(ch)


def _ask_sqlite(ch: str) -> str:
    import sqlite3

    if not _FOLDER:
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        conn.execute(
            "CREATE VIRTUAL TABLE f USING fts5(b, tokenize='unicode61 remove_diacritics 0')"
        )
        conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(f, 'row')")
        _FOLDER.append(conn)
    conn = _FOLDER[0]
    conn.execute("DELETE FROM f")
    conn.execute("INSERT INTO f (b) VALUES (?)", (ch,))
    row = conn.execute("SELECT term FROM v").fetchone()
    return row[0] if row and len(row[0]) == 1 else ch


def query_words(query: str) -> list[str]:
    """The query's words; empty when it has none (nothing to search)."""
    return words(query)


def fts_query(query: str) -> str | None:
    """The query as FTS5 MATCH syntax: every word quoted, the last a prefix; None if empty."""
    found = query_words(query)
    if not found:
        return None
    quoted = [f'"{w}"' for w in found]
    return " ".join(quoted) + "*"


def matches(text: str, query: str) -> bool:
    """The rule itself, on one message's text (the scan's last word, and the tests')."""
    wanted = query_words(query)
    if not wanted:
        return False
    have = words(text)
    if any(w not in have for w in wanted[:-1]):
        return False
    last = wanted[-1]
    return any(h.startswith(last) for h in have)


def message_text(message: Any) -> str:
    """What a message says, as one text: every string and number, in order, but those
    under `SKIP_KEYS` and the top-level `SKIP_SUBTREES` (SQLite's `json_tree` form of
    the same rule is in `sqlite.search`)."""
    parts: list[str] = []

    def walk(value: Any, key: Any, top: bool) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if top and k in SKIP_SUBTREES:
                    continue
                walk(v, k, False)
        elif isinstance(value, list):
            for v in value:
                walk(v, None, False)
        elif isinstance(value, bool) or value is None:
            return
        elif isinstance(value, str | int | float) and key not in SKIP_KEYS:
            parts.append(str(value))

    walk(message, None, True)
    return " ".join(parts)


def threads_matching(rows: Iterable[tuple[str, str]], query: str) -> set[str]:
    """The threads of the (thread id, message text) rows whose text matches."""
    return {thread for thread, text in rows if matches(text, query)}
