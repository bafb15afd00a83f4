"""Rows we did not write: generated messages and mutations of them never take a reader down.

Hypothesis builds checkpoint rows — valid messages, and the same with wrong
types, missing keys, deep nesting, bad UTF-8, huge text, unknown roles — and
writes them into a real checkpoint database beside one healthy thread. The
store, `list`'s JSON, `show`'s lines, the plan and the app's transcript
rendering must never raise; a corrupt row may only ever affect its own
thread; and reading in two steps (a refresh) must agree with one full read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from supervisor.location import open_store
from supervisor.plan import MarkerIndex, plan_thread
from supervisor.report import entry_json, entry_lines, thread_hint, thread_json
from supervisor.sqlite.sql import unix_time_sql
from supervisor.sqlite.store import SQLiteStore
from supervisor.states import ThreadSummary
from supervisor.ui.render import transcript_entry

HEALTHY = "healthy"
PALETTE = {"error": "red", "primary": "blue", "secondary": "cyan", "success": "green"}


def healthy_rows() -> list[str]:
    call = {"type": "tool_call", "id": "c1", "name": "send_mail", "arguments": {"to": "a@b"}}
    return [
        json.dumps({"role": "user", "content": [{"type": "text", "text": "mail a@b"}]}),
        json.dumps({"role": "assistant", "content": [call], "stop_reason": "tool_use"}),
        json.dumps(
            {"role": "tool_result", "tool_call_id": "c1", "tool_name": "send_mail", "content": []}
        ),
    ]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty database in the checkpointer's own schema."""
    from cubeloop.checkpointer import SQLiteCheckpointer

    path = tmp_path_factory.mktemp("prop") / "empty.db"

    async def create() -> None:
        async with SQLiteCheckpointer(str(path)):
            pass

    asyncio.run(create())
    return path


anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
texts = st.text(max_size=40) | st.sampled_from(["[@click=app.quit]x[/]", "\x1b[2J", "[bold red]"])
blocks = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, texts),
    st.builds(
        lambda i, n, a: {"type": "tool_call", "id": i, "name": n, "arguments": a},
        st.sampled_from(["c1", "c2", "c3"]),
        st.sampled_from(["send_mail", "charge"]),
        st.dictionaries(
            st.sampled_from(["to", "amount", "path"]), texts | st.integers(), max_size=3
        ),
    ),
)
messages = st.one_of(
    st.builds(lambda c: {"role": "user", "content": c}, st.lists(blocks, max_size=3)),
    st.builds(
        lambda c, s: {"role": "assistant", "content": c, "stop_reason": s},
        st.lists(blocks, max_size=3),
        st.sampled_from(["stop", "tool_use", "aborted", "error", "length"]),
    ),
    st.builds(
        lambda i, e: {
            "role": "tool_result",
            "tool_call_id": i,
            "tool_name": "x",
            "content": [],
            "is_error": e,
        },
        st.sampled_from(["c1", "c2", "c3", 'odd"id\\']),
        st.booleans(),
    ),
)


def _nest(depth: int) -> str:
    return '{"role": "assistant", "content": ' + "[" * depth + "]" * depth + "}"


@st.composite
def stored(draw: st.DrawFn) -> str | bytes:
    """One message_json value: valid, or mutated the ways real databases are."""
    message: dict[str, Any] = draw(messages)
    kind = draw(
        st.sampled_from(
            [
                "valid",
                "wrong type",
                "missing key",
                "deep",
                "bad utf-8",
                "huge",
                "unknown role",
                "not json",
                "not an object",
                "field order",
            ]
        )
    )
    if kind == "wrong type":
        message[draw(st.sampled_from(sorted(message) + ["metadata"]))] = draw(anything)
    elif kind == "missing key":
        message.pop(draw(st.sampled_from(sorted(message))), None)
    elif kind == "deep":
        return _nest(draw(st.sampled_from([10, 900, 1200, 1600])))
    elif kind == "bad utf-8":
        return json.dumps(message).encode()[:-1] + b'\xff"}'[: 1 + draw(st.integers(0, 2))]
    elif kind == "huge":
        message["content"] = [
            {"type": "text", "text": "x" * draw(st.sampled_from([10, 1_200_000]))}
        ]
    elif kind == "unknown role":
        message["role"] = draw(st.sampled_from(["system", "", None, 3]))
    elif kind == "not json":
        return draw(st.sampled_from(["", "{", "null", "nan", '{"role": "user"'])) + draw(texts)
    elif kind == "not an object":
        return json.dumps(draw(anything))
    elif kind == "field order":
        return json.dumps(dict(reversed(list(message.items()))))
    return json.dumps(message)


PLAIN_IDS = ["t0", "t1", "[@click=app.quit]t2[/]", "t\x1b[31m3", "ünï"]
thread_ids = st.sampled_from(PLAIN_IDS) | st.binary(min_size=1, max_size=4).map(
    lambda b: b"t" + b + b"\xff"
)


#: `created_at` as writers leave it: the checkpointer's julian days (None: its default,
#: now), unix seconds, text timestamps, text that is no time at all.
times = st.none() | st.sampled_from(
    [2461372.0, 2461371.5, 1795780800.0, 1795780000, "2026-11-27 12:00:00", "2026-11-28", "soon"]
)


def insert(db: Path, rows: list[tuple[Any, ...]]) -> None:
    """Rows of (thread id, message text[, created_at])."""
    conn = sqlite3.connect(db)
    with conn:
        for thread_id, text, *when in rows:
            if when and when[0] is not None:
                conn.execute(
                    "INSERT INTO messages (thread_id, message_json, created_at) "
                    "VALUES (CAST(? AS TEXT), CAST(? AS TEXT), ?)",
                    (thread_id, text, when[0]),
                )
                continue
            conn.execute(
                "INSERT INTO messages (thread_id, message_json) VALUES (CAST(? AS TEXT), CAST(? AS TEXT))",
                (thread_id, text),
            )
    conn.close()


@contextlib.contextmanager
def python_recursion_limit(limit: int = 1000):
    """Hypothesis raises the recursion limit while it runs a test; users run with 1000.

    Without this, JSON nested 1,600 deep (valid to SQLite, up to 2,000)
    would parse here and fail on every user's machine.
    """
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def newest_times(db: Path) -> dict[str, float | None]:
    """Each plain thread's newest time in unix seconds, row by row: what listings must say."""
    conn = sqlite3.connect(db)
    marks = ",".join("?" * len(PLAIN_IDS))
    newest = dict(
        conn.execute(
            f"SELECT thread_id, max({unix_time_sql('created_at')}) FROM messages "
            f"WHERE thread_id IN ({marks}, '{HEALTHY}') GROUP BY thread_id",
            PLAIN_IDS,
        )
    )
    conn.close()
    return newest


def by_id(summary: ThreadSummary) -> str:
    return summary.thread_id


def read_everything(store: SQLiteStore, jobs: Path) -> dict[str, dict[str, Any]]:
    """Everything a user can ask of each thread; returns what `list --json` says."""
    index = MarkerIndex(jobs, [])
    listed = {}
    for summary in store.threads():
        listed[summary.thread_id] = thread_json(summary)
        json.dumps(listed[summary.thread_id])
        thread_hint(summary)
        transcript = store.transcript(summary.thread_id)
        for entry in transcript.entries:
            entry_lines(entry, 100)
            entry_lines(entry, None)
            json.dumps(entry_json(entry), default=str)
            transcript_entry(entry, PALETTE)
        plan = plan_thread(summary, index, messages=transcript.messages())
        json.dumps(plan.to_json(), default=str)
    return listed


DEEP = '{"role": "assistant", "content": ' + "[" * 1500 + "]" * 1500 + "}"
FINE = '{"role": "assistant", "content": [], "stop_reason": "stop"}'


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    before=st.lists(st.tuples(thread_ids, stored(), times), max_size=6),
    after=st.lists(st.tuples(thread_ids, stored(), times), max_size=6),
)
# Cases Hypothesis once found, kept so they run every time: a tail Python
# cannot parse, then replaced by a good one; the reverse; and such a tail
# before a row SQLite itself rejects (the earlier row is the one reported).
@example(before=[("t1", DEEP)], after=[("t1", FINE)])
@example(before=[("t1", FINE)], after=[("t1", DEEP)])
@example(before=[("t0", DEEP)], after=[("t0", '{"content": []}')])
# Times of every form in one thread: its newest, in unix seconds, whatever each row holds.
@example(
    before=[("t0", FINE, 2461372.0), ("t0", FINE, "2026-11-28"), ("t0", FINE, 1795780000)],
    after=[("t0", FINE, "soon"), ("t1", FINE, 1795780800.0), ("t1", FINE, 2461371.5)],
)
# An assistant message whose content is not a list, before the plan's turn.
@example(
    before=[],
    after=[
        ("t0", '{"role": "user", "content": []}'),
        ("t0", '{"role": "assistant", "content": true, "stop_reason": "aborted"}'),
    ],
)
def test_generated_rows_never_break_a_reader(template: Path, before, after) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "p.db"
        shutil.copy(template, db)
        healthy = [(HEALTHY, text) for text in healthy_rows()]
        insert(db, healthy[:1] + before + healthy[1:2])
        with python_recursion_limit():
            incremental = open_store(db)
            incremental.check_rows()  # every row validated, as a row-by-row reading does
            read_everything(incremental, Path(tmp) / "jobs")
        insert(db, after + healthy[2:])
        with python_recursion_limit():
            incremental.refresh()
            stepwise = read_everything(incremental, Path(tmp) / "jobs")
            incremental.close()
            whole = open_store(db)
            unchecked = [thread_json(s) for s in sorted(whole.threads(), key=by_id)]
            whole.check_rows()
            listed = read_everything(whole, Path(tmp) / "jobs")
            whole.close()
            streaming = SQLiteStore(db)  # `list`: handed out two threads at a time, none kept
            streamed = [thread_json(s) for s in streaming.stream(chunk=2)]
            streaming.close()
        assert streamed == unchecked  # the same threads, states and details, in id order
        newest = newest_times(db)
        for thread_id, when in newest.items():
            assert listed[thread_id]["last_activity"] == pytest.approx(when)
        assert listed[HEALTHY]["state"] == "after_tools"
        assert listed[HEALTHY]["messages"] == 3 and listed[HEALTHY]["corrupt_row"] is None
        assert stepwise == listed
