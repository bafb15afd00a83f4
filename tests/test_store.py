"""The SQLite store: one pass, incremental refresh, read-only, robust to bad rows."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.location import open_store
from supervisor.report import thread_json
from supervisor.sqlite.store import SQLiteStore
from supervisor.states import State
from supervisor.store import StoreError
from tests.conftest import ROOT, crash, insert_rows, run_demo_child, user_json


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.db"
    run_demo_child(path, "done", tmp_path / "j1")
    return path


def listing(store: SQLiteStore) -> list[dict]:
    return [thread_json(s) for s in store.threads()]


def test_refresh_reads_only_new_rows_and_matches_a_full_scan(db: Path, tmp_path: Path) -> None:
    store = open_store(db)
    cursor = store.cursor
    assert store.refresh() == set()  # nothing new
    crash(db, "later", tmp_path / "j2", kill_at_marker="after_start:B")
    insert_rows(db, [("done", user_json("Process items X..Y"))])
    touched = store.refresh()
    assert touched == {"later", "done"}
    assert store.cursor > cursor
    assert store.get("done").state is State.BETWEEN_TURNS
    assert store.get("later").state is State.MID_TOOL
    assert listing(store) == listing(open_store(db))


def test_listing_never_writes_to_the_database(db: Path) -> None:
    before = {
        p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in db.parent.iterdir() if p.is_file()
    }
    store = open_store(db)
    store.transcript("done")
    store.refresh()
    store.close()
    after = {
        p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in db.parent.iterdir() if p.is_file()
    }
    assert after == before


def test_read_only_connection_refuses_writes(db: Path) -> None:
    store = open_store(db)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store.db.conn.execute("CREATE TABLE x (a)")


def test_corrupt_row_marks_only_its_thread(db: Path) -> None:
    insert_rows(db, [("bad", user_json("hi")), ("bad", '{"role": "user", "content": [')])
    insert_rows(db, [("good", user_json("hello"))])
    store = open_store(db)
    bad_row = store.get("bad").last_row
    assert store.get("bad").state is State.CORRUPT
    assert store.get("bad").corrupt_row == bad_row
    assert store.get("good").state is State.BETWEEN_TURNS
    assert store.get("done").state is State.FINISHED
    entries = store.transcript("bad").entries
    assert entries[0].message is not None
    assert entries[1].message is None and entries[1].raw.startswith('{"role"')


def test_unknown_role_is_corrupt_with_its_reason(db: Path) -> None:
    insert_rows(db, [("odd", json.dumps({"role": "system", "content": []}))])
    summary = open_store(db).get("odd")
    assert summary.state is State.CORRUPT
    assert "unknown role 'system'" in summary.corrupt_reason


def test_other_field_order_is_parsed_in_full(db: Path) -> None:
    insert_rows(
        db,
        [
            (
                "reordered",
                json.dumps({"content": [{"type": "text", "text": "x"}], "role": "user"}),
            )
        ],
    )
    assert open_store(db).get("reordered").state is State.BETWEEN_TURNS


def test_tool_call_id_with_quotes_survives_the_fast_path(db: Path) -> None:
    assistant = {
        "role": "assistant",
        "content": [{"type": "tool_call", "id": 'a"b', "name": "x", "arguments": {}}],
        "stop_reason": "tool_use",
    }
    result = {
        "role": "tool_result",
        "tool_call_id": 'a"b',
        "tool_name": "x",
        "content": [],
    }
    insert_rows(db, [("q", user_json("go")), ("q", json.dumps(assistant))])
    store = open_store(db)
    assert store.get("q").state is State.MID_TOOL
    insert_rows(db, [("q", json.dumps(result))])
    store.refresh()
    assert store.get("q").answered == {'a"b'}
    assert store.get("q").state is State.AFTER_TOOLS


def test_extra_only_thread_is_empty_and_pending_request_awaits(db: Path) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("INSERT INTO thread_extra (thread_id, extra_json) VALUES ('fresh', '{}')")
        conn.execute(
            "INSERT INTO thread_pending_request (thread_id, request_json) VALUES ('done', '{}')"
        )
    conn.close()
    store = open_store(db)
    assert store.get("fresh").state is State.EMPTY
    # 'done' is finished: no call of its last turn waits, so the request is settled.
    assert store.get("done").pending_request and store.get("done").state is State.FINISHED


def test_pending_request_cleared_on_refresh(db: Path, tmp_path: Path) -> None:
    run_demo_child(db, "mid", tmp_path / "j2", kill_at_marker="after_start:A")
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "INSERT INTO thread_pending_request (thread_id, request_json) VALUES ('mid', '{}')"
        )
    store = open_store(db)
    assert store.get("mid").state is State.AWAITING_INPUT
    with conn:
        conn.execute("DELETE FROM thread_pending_request")
    conn.close()
    store.refresh()
    assert store.get("mid").state is State.MID_TOOL


def test_locked_database_is_a_clear_error(db: Path) -> None:
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked by another process"):
            open_store(db, busy_timeout=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


WRITER = """
import asyncio, sys, time
from cubeloop.checkpointer import SQLiteCheckpointer
from cubeloop.providers.base import UserMessage, TextContent
async def main(db, seconds):
    async with SQLiteCheckpointer(db) as cp:
        end, n = time.monotonic() + seconds, 0
        print("ready", flush=True)
        while time.monotonic() < end:
            n += 1
            await cp.append(f"w{n % 7}", [UserMessage(content=[TextContent(text="x" * (n % 900))])])
            # An agent writes between model calls. Without a pause a reader of this
            # rollback-journal file can wait out the whole run for a gap (a slow CI
            # machine saw none in 2.5 s); a few ms between messages is still a busy writer.
            await asyncio.sleep(0.005)
        print(n, flush=True)
asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


def test_lists_while_another_process_writes(db: Path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), "2.5"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline().strip() == "ready"
    store = open_store(db)
    seen = []  # the writer's messages each refresh saw, while it was still writing
    while writer.poll() is None:
        store.refresh()
        open_store(db).close()
        seen.append(sum(s.messages for s in store.threads() if s.thread_id.startswith("w")))
    written = int(writer.stdout.readline())
    assert writer.wait(timeout=30) == 0
    store.refresh()
    # Reads went on between the writes (neither side waited for the other to finish):
    # refreshes saw the count grow at least twice while the writer ran.
    assert len(set(seen)) >= 3 and written > 50
    assert sum(s.messages for s in store.threads() if s.thread_id.startswith("w")) == written
    assert listing(store) == listing(open_store(db))


def test_a_closed_store_is_freed_with_its_listing(db: Path) -> None:
    """Nothing of ours keeps a store (and its 100,000 summaries) once its user lets go."""
    import gc
    import weakref

    store = SQLiteStore(db)
    for _ in store.stream():
        pass
    kept = SQLiteStore(db)
    kept.refresh()
    kept.close()
    refs = [weakref.ref(store), weakref.ref(kept)]
    store.close()
    del store, kept
    gc.collect()
    assert [ref() for ref in refs] == [None, None]
