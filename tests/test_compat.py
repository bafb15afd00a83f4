"""Databases written by cubepi 0.13.x (the library's old name) read the same way.

The fixture was made by tests/fixtures/make_cubepi013.py running real cubepi
0.13.6 agents in a separate virtualenv, killed with SIGKILL where noted.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from supervisor.location import open_store
from supervisor.states import State
from tests.conftest import insert_rows, run_demo_child, user_json

FIXTURE = Path(__file__).parent / "fixtures" / "cubepi013.db"

EXPECTED = {
    "old-finished": State.FINISHED,
    "old-between-turns": State.BETWEEN_TURNS,
    "old-mid-tool": State.MID_TOOL,
    "old-partial-batch": State.MID_TOOL,
    "old-after-tools": State.AFTER_TOOLS,
    "old-error": State.ERROR,
}


def test_cubepi_013_database_classifies_like_cubeloop() -> None:
    store = open_store(FIXTURE)
    assert {s.thread_id: s.state for s in store.threads()} == EXPECTED
    partial = store.get("old-partial-batch")
    assert [c.id for c in partial.pending_tool_calls] == ["old-2"]
    assert partial.last_activity is not None and partial.last_activity > 1.7e9


def test_cubepi_013_transcript_reads() -> None:
    entries = open_store(FIXTURE).transcript("old-finished").entries
    assert [e.message["role"] for e in entries] == [
        "user",
        "assistant",
        "tool_result",
        "tool_result",
        "assistant",
    ]


@pytest.mark.parametrize(
    "created_at,expected",
    [
        (2461372.0, (2461372.0 - 2440587.5) * 86400),  # julianday, as written
        ("2026-11-27 12:00:00", 1795780800.0),  # text from another writer
        (1795780800.0, 1795780800.0),  # unix seconds from another writer
    ],
)
def test_created_at_forms(tmp_path: Path, created_at, expected) -> None:
    db = tmp_path / "t.db"
    run_demo_child(db, "base", tmp_path / "j")
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "INSERT INTO messages (thread_id, message_json, created_at) VALUES (?, ?, ?)",
            ("t", user_json("x"), created_at),
        )
    conn.close()
    assert open_store(db).get("t").last_activity == pytest.approx(expected, abs=1e-3)


def test_message_without_optional_fields(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    run_demo_child(db, "base", tmp_path / "j")
    insert_rows(db, [("bare", json.dumps({"role": "assistant", "content": []}))])
    assert open_store(db).get("bare").state is State.FINISHED
