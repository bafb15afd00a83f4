"""A stored row parsed as the resume parses it; rows the fast path cannot take; the small
values a listing hands around."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from supervisor.sqlite.files import Undecodable, tolerant_text
from supervisor.states import ROLES, Row, ThreadSummary


@functools.cache
def _fast_decode() -> Callable[[str], Any]:
    """msgspec's JSON decoder, imported at the first row (20 ms every command paid)."""
    import msgspec

    return msgspec.json.Decoder().decode


#: Arrays and objects nested deeper than this are read as too deep, from any call depth.
#: Python's parsers stop where the interpreter's recursion limit does, which counts the
#: caller's own frames: the same row read from a deeper stack (the app's worker, a plan's
#: second look at a row) parsed at one depth and not at another. A limit well under
#: Python's makes the answer the row's alone. cubeloop's checkpointer cannot load rows
#: nested this deep anyway: its models refuse them past 300 or so.
MAX_NESTING = 500

#: A JSON string (skipped whole), or a bracket.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def nesting(text: str) -> int:
    """How deep a text's arrays and objects nest, brackets inside strings not counted."""
    depth = deepest = 0
    for token in _TOKENS.finditer(text):
        c = token.group()
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def _too_deep(text: str) -> bool:
    return len(text) > MAX_NESTING and nesting(text) > MAX_NESTING


def loads(text: str) -> Any:
    """`json.loads(text)`, read by msgspec wherever msgspec reads it at all.

    A plan of every crashed thread parses each of their rows: 1,200,000 at
    100,000 threads, where `json.loads` took about 7 us a row and msgspec
    takes under 2. Its answer must be the one `json.loads` gives, because
    that is how the resume (cubeloop's checkpointer) reads the same row. Where
    msgspec reads a text at all it agrees, types and float bits included: big
    integers stay exact, a repeated key keeps its last value in the first
    one's place (checked over millions of generated texts and numbers,
    `tests/test_rows.py`). What it refuses and `json.loads` takes (`NaN`,
    `1e400`, lone surrogates, text that is not UTF-8) goes to `json.loads`,
    so those rows read the same too, errors and their wording included.
    Nesting past `MAX_NESTING` raises `RecursionError`, whoever calls.
    """
    # A valid text nested past the limit has more brackets than it: the count is cheap,
    # and only texts that long are counted (an invalid one is told apart below).
    if (
        len(text) > 2 * MAX_NESTING
        and text.count("[") + text.count("{") > MAX_NESTING
        and _too_deep(text)
    ):
        raise RecursionError(f"nested deeper than {MAX_NESTING} levels")
    try:
        return _fast_decode()(text)
    except Exception:  # noqa: BLE001 - whatever msgspec refuses, `json` has the last word on
        pass
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        if _too_deep(text):  # where the parser gave up depends on the caller's depth
            raise RecursionError(f"nested deeper than {MAX_NESTING} levels") from None
        raise


def parse_message(text: Any) -> tuple[dict[str, Any] | None, str | None]:
    """A stored message as a dict, or (None, why it is corrupt)."""
    if isinstance(text, bytes):
        text = tolerant_text(text)
    if not isinstance(text, str):
        return None, "message_json is not text"
    if isinstance(text, Undecodable):
        return None, "message_json is not valid UTF-8"
    try:
        message = loads(text)
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


def json_or_none(text: Any) -> Any:
    """Stored JSON, or None when it does not parse."""
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return None


def noting_threads(rows: Iterable[Row], seen: set[str], work: dict[str, int]) -> Iterator[Row]:
    for row in rows:
        seen.add(row[1])
        work["rows"] += 1
        yield row


def thread_id_of(s: ThreadSummary) -> str:
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


class NotPlain(Exception):
    """A thread id the fast listing cannot name (not text, or not UTF-8): take the exact path."""


def plain_id(thread_id: Any) -> str:
    """A thread id from a side table, named as the listing names odd ones."""
    if type(thread_id) is str:  # nearly all: a side table read whole has 100,000
        return thread_id
    return odd_thread_id((0, thread_id, None, None, None))[1]


def odd_thread_id(row: Row) -> Row:
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


def number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def odd_id(call_id: str | None) -> bool:
    """A tool_call_id the prefix read cannot trust: missing, cut, or escaped."""
    return not call_id or "\\" in call_id


#: A tool_call_id longer than this is read by the slow path.
ID_CHARS = 200
