"""Faults around recovery that must not take the supervisor down (each with the real fault)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.location import open_store
from supervisor.states import State
from tests.conftest import ROOT, cli, insert_rows, transcript_problems, user_json

HOT_WRITER = """
import os, signal, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA cache_size=10")
conn.execute("BEGIN IMMEDIATE")
for i in range(2000):
    conn.execute(
        "INSERT INTO messages (thread_id, message_json) VALUES (?, ?)",
        ("uncommitted", '{"role": "user", "content": [{"type": "text", "text": "%s"}]}' % ("x" * 900)),
    )
os.kill(os.getpid(), signal.SIGKILL)
"""


def kill_writer_mid_commit(db: Path) -> None:
    """A real writer SIGKILLed with a spilled transaction: it leaves a hot journal."""
    done = subprocess.run([sys.executable, "-c", HOT_WRITER, str(db)], timeout=60)
    assert done.returncode == -signal.SIGKILL
    journal = Path(f"{db}-journal")
    assert journal.exists() and journal.stat().st_size > 0, "no hot journal was left"


def test_hot_journal_is_rolled_back_and_said_once(demo_db: Path) -> None:
    before = {s.thread_id: (s.messages, str(s.state)) for s in open_store(demo_db).threads()}
    kill_writer_mid_commit(demo_db)
    out = cli("list", str(demo_db), "--json")
    assert out.returncode == 0, out.stderr
    notes = [line for line in out.stderr.splitlines() if "rolled back" in line]
    assert len(notes) == 1 and "hot journal" in notes[0]
    after = {t["thread_id"]: (t["messages"], t["state"]) for t in json.loads(out.stdout)}
    assert after == before  # nothing committed lost, nothing uncommitted shown
    assert not Path(f"{demo_db}-journal").exists()
    again = cli("list", str(demo_db))
    assert again.returncode == 0 and "rolled back" not in again.stderr


@pytest.mark.parametrize("command", ["show", "resume"])
def test_hot_journal_does_not_lock_out_show_or_resume(demo_db: Path, command: str) -> None:
    kill_writer_mid_commit(demo_db)
    extra = ["--force"] if command == "resume" else []
    out = cli(command, str(demo_db), "job-05", *extra)
    assert out.returncode == 0, out.stderr
    assert "rolled back" in out.stderr


def unloadable_rows() -> list[tuple[str, str]]:
    """Threads cubeloop cannot load, each in its own way; valid JSON to SQLite."""
    call = {"type": "tool_call", "name": "process_item", "arguments": {"item": "Z"}}
    deep: object = {"item": "Z"}
    for _ in range(900):
        deep = {"x": deep}
    rows = []
    for thread, message in [
        ("no-call-id", {"role": "assistant", "content": [call], "stop_reason": "tool_use"}),
        (
            "bad-metadata",
            {"role": "user", "content": [{"type": "text", "text": "hi"}], "metadata": 7},
        ),
        (
            "deep-arguments",
            {
                "role": "assistant",
                "content": [{**call, "id": "c1", "arguments": deep}],
                "stop_reason": "tool_use",
            },
        ),
    ]:
        rows += [(thread, user_json("Process items Z")), (thread, json.dumps(message))]
    return rows


def add_invalid_utf8_thread(db: Path) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "INSERT INTO messages (thread_id, message_json) VALUES (?, CAST(? AS TEXT))",
            ("bad-utf8", b'{"role": "user", "content": [{"type": "text", "text": "\xff\xfe"}]}'),
        )
    conn.close()


def test_threads_cubeloop_cannot_load_are_refused_and_the_rest_finish(
    demo_db: Path, fast_demo: None
) -> None:
    insert_rows(demo_db, unloadable_rows())
    add_invalid_utf8_thread(demo_db)
    listed = cli("list", str(demo_db), "--json")
    assert listed.returncode == 0, listed.stderr
    # Nested past 500 levels is too deep for us too (rows/MAX_NESTING): corrupt, never tried.
    deep = next(t for t in json.loads(listed.stdout) if t["thread_id"] == "deep-arguments")
    assert deep["state"] == "corrupt" and "nested too deeply" in deep["corrupt_reason"]
    out = cli("resume", str(demo_db), "--all", "--force")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr + out.stdout
    refused = [line for line in out.stderr.splitlines() if line.startswith("refused:")]
    for thread in ("no-call-id", "bad-metadata", "bad-utf8"):
        assert any(thread in line and "cubeloop" in line for line in refused), out.stderr
    assert not any("deep-arguments" in line for line in out.stderr.splitlines())
    store = open_store(demo_db)
    for thread in ("job-02", "job-03", "job-04", "job-05", "job-06", "job-07"):
        assert store.get(thread).state is State.FINISHED, thread  # type: ignore[union-attr]
        assert transcript_problems(demo_db, thread) == []


def add_corrupt_rows(db: Path) -> None:
    deep = '{"role": "assistant", "content": ' + "[" * 1500 + "]" * 1500 + "}"
    insert_rows(
        db,
        [
            ("deep-json", user_json("hi")),
            ("deep-json", deep),
            ("not-a-list", user_json("hi")),
            (
                "not-a-list",
                json.dumps({"role": "assistant", "content": "plain text", "stop_reason": "stop"}),
            ),
        ],
    )
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "INSERT INTO messages (thread_id, message_json) VALUES (CAST(? AS TEXT), ?)",
            (b"thread-\xff", user_json("hello")),
        )
    conn.close()


def test_one_odd_row_affects_only_its_thread(demo_db: Path) -> None:
    before = {s.thread_id: str(s.state) for s in open_store(demo_db).threads()}
    add_corrupt_rows(demo_db)
    out = cli("list", str(demo_db), "--json")
    assert out.returncode == 0, out.stderr
    states = {t["thread_id"]: t for t in json.loads(out.stdout)}
    assert {t: states[t]["state"] for t in before} == before
    assert states["deep-json"]["state"] == "corrupt"
    assert "nested too deeply" in states["deep-json"]["corrupt_reason"]
    assert states["not-a-list"]["state"] == "finished"
    [bad] = [t for t in states if t.startswith("thread-")]
    assert states[bad]["state"] == "corrupt" and "UTF-8" in states[bad]["corrupt_reason"]
    for thread in ("deep-json", "not-a-list"):
        shown = cli("show", str(demo_db), thread)
        assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
        as_json = cli("show", str(demo_db), thread, "--json")
        assert as_json.returncode == 0 and json.loads(as_json.stdout)["thread_id"] == thread


def test_a_thread_id_that_is_not_utf8_beside_one_that_is_a_blob_is_read(demo_db: Path) -> None:
    """Each alone was read; together, the exact pass met the bad text with its statement
    open, the listing's table could not be dropped after it, and SQLite's "table is
    locked" was told as another process holding the file."""
    conn = sqlite3.connect(demo_db)
    with conn:
        conn.execute(
            "INSERT INTO messages (thread_id, message_json) VALUES (CAST(? AS TEXT), ?)",
            (b"u\xff", user_json("go")),
        )
        conn.execute(
            "INSERT INTO messages (thread_id, message_json) VALUES (?, ?)", (b"bl", user_json("go"))
        )
    conn.close()
    for command in (["list"], ["resume", "--all", "--dry-run"]):
        out = cli(*command[:1], str(demo_db), *command[1:], "--json", "--busy-timeout", "1")
        assert out.returncode == 0 and "locked" not in out.stderr, out.stderr
        assert json.loads(out.stdout), command


def test_big_message_is_previewed_and_shown_whole_on_request(demo_db: Path) -> None:
    text = "word " * 1_700_000  # 8.5 MB
    insert_rows(demo_db, [("big", user_json(text))])
    short = cli("show", str(demo_db), "big")
    assert short.returncode == 0 and len(short.stdout) < 10_000
    assert "MB more" in short.stdout and "show --full" in short.stdout
    full = cli("show", str(demo_db), "big", "--full")
    assert full.returncode == 0 and text.strip() in full.stdout


def test_a_path_that_looks_like_a_uri_is_a_path_for_reads_and_writes(
    demo_db: Path, tmp_path: Path, fast_demo: None
) -> None:
    odd = tmp_path / "file:x?mode=rwc"
    shutil.copy(demo_db, odd)
    shutil.copytree(Path(f"{demo_db}.jobs"), Path(f"{odd}.jobs"))
    out = subprocess.run(
        [sys.executable, "-m", "supervisor", "resume", odd.name, "job-05", "--force"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "x").exists()
    assert open_store(odd).get("job-05").state is State.FINISHED  # type: ignore[union-attr]


def test_looking_at_a_wal_database_leaves_no_files(demo_db: Path) -> None:
    conn = sqlite3.connect(demo_db)
    assert conn.execute("PRAGMA journal_mode=wal").fetchone() == ("wal",)
    conn.close()
    siblings = sorted(p.name for p in demo_db.parent.iterdir())
    assert f"{demo_db.name}-wal" not in siblings  # a clean close removed them
    for command in (["list", str(demo_db)], ["show", str(demo_db), "job-01"]):
        assert cli(*command).returncode == 0
        assert sorted(p.name for p in demo_db.parent.iterdir()) == siblings


def test_a_refused_resume_does_not_touch_the_file(demo_db: Path) -> None:
    conn = sqlite3.connect(demo_db)
    with conn:
        conn.execute("ALTER TABLE messages DROP COLUMN run_id")  # as an older writer left it
    conn.close()
    before = demo_db.read_bytes()
    for thread in ("job-09", "job-08"):  # awaiting a human; empty
        out = cli("resume", str(demo_db), thread)
        assert out.returncode == 1 and f"refused: {thread}" in out.stderr, out.stderr
    assert demo_db.read_bytes() == before


@pytest.mark.parametrize("kind", ["missing", "directory", "random bytes"])
def test_show_and_resume_refuse_bad_databases(tmp_path: Path, kind: str) -> None:
    db = tmp_path / "x.db"
    if kind == "directory":
        db.mkdir()
    elif kind == "random bytes":
        db.write_bytes(os.urandom(4096))
    for command in (["show", str(db), "t"], ["resume", str(db), "t"]):
        out = cli(*command)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if kind == "missing" else ["x.db"])
