"""The CLI as a user runs it: output, JSON contract, exit codes, bad input."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import cli, insert_rows


def one_error_line(result) -> str:
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_list_table_shows_every_thread_with_state_and_stop_point(
    crash_db: Path,
) -> None:
    out = cli("list", str(crash_db))
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[1:] if line.strip()}
    assert "mid_tool" in rows["during-tool"]
    assert 'process_item({"item": "A"})' in rows["during-tool"]
    assert "between_turns" in rows["first-model-call"]
    assert "provider overloaded" in rows["error"]
    assert "8 thread(s)" in out.stdout


def test_list_json_contract(crash_db: Path) -> None:
    out = cli("list", str(crash_db), "--json")
    assert out.returncode == 0
    threads = {t["thread_id"]: t for t in json.loads(out.stdout)}
    assert len(threads) == 8
    partial = threads["batch-partial"]
    assert partial["state"] == "mid_tool"
    assert partial["pending_tool_calls"] == [
        {"id": "call-1-B", "name": "process_item", "arguments": {"item": "B"}}
    ]
    assert isinstance(partial["messages"], int)
    assert isinstance(partial["last_activity"], float)
    assert partial["corrupt_row"] is None


def test_list_state_filter(crash_db: Path) -> None:
    out = cli("list", str(crash_db), "--json", "--state", "mid_tool,aborted")
    ids = sorted(t["thread_id"] for t in json.loads(out.stdout))
    assert ids == ["aborted", "batch-partial", "during-tool", "turn2-calls"]


def test_show_prints_transcript(crash_db: Path) -> None:
    out = cli("show", str(crash_db), "batch-partial")
    assert out.returncode == 0
    assert "mid_tool" in out.stdout.splitlines()[0]
    assert 'call call-1-B: process_item({"item": "B"})' in out.stdout
    assert "tool_result for call-1-A" in out.stdout
    assert "[tool_use]" in out.stdout and " run " in out.stdout


def test_show_json(crash_db: Path) -> None:
    out = cli("show", str(crash_db), "error", "--json")
    data = json.loads(out.stdout)
    assert data["state"] == "error"
    roles = [m["role"] for m in data["transcript"]]
    assert roles[0] == "user" and roles[-1] == "assistant"
    assert data["transcript"][-1]["stop_reason"] == "error"
    assert all("row_id" in m for m in data["transcript"])


def test_corrupt_row_lists_with_a_warning(tmp_path: Path, crash_db: Path) -> None:
    db = tmp_path / "c.db"
    db.write_bytes(crash_db.read_bytes())
    insert_rows(db, [("broken", "{not json")])
    out = cli("list", str(db), "--json")
    assert out.returncode == 0
    threads = {t["thread_id"]: t for t in json.loads(out.stdout)}
    assert threads["broken"]["state"] == "corrupt"
    assert isinstance(threads["broken"]["corrupt_row"], int)
    assert threads["finished"]["state"] == "finished"
    assert f"rows {threads['broken']['corrupt_row']}" in out.stderr


def test_terminal_control_characters_are_stripped(tmp_path: Path, crash_db: Path) -> None:
    db = tmp_path / "c.db"
    db.write_bytes(crash_db.read_bytes())
    insert_rows(
        db,
        [
            (
                "evil\x1b[2J",
                json.dumps(
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "\x1b]0;pwned\x07hi"}],
                    }
                ),
            )
        ],
    )
    out = cli("list", str(db))
    show = cli("show", str(db), "evil\x1b[2J")
    assert "\x1b" not in out.stdout and "\x1b" not in show.stdout
    assert "evil[2J" in out.stdout
    assert "]0;pwnedhi" in show.stdout


# -- bad input: one line on stderr, exit 2, nothing created -----------------


def test_missing_path(tmp_path: Path) -> None:
    target = tmp_path / "nope.db"
    line = one_error_line(cli("list", str(target)))
    assert "no such file" in line
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_directory(tmp_path: Path) -> None:
    assert "is a directory" in one_error_line(cli("list", str(tmp_path)))


def test_not_sqlite(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("hello, this is not a database\n" * 20)
    assert "not a SQLite database" in one_error_line(cli("list", str(target)))
    assert target.read_text().startswith("hello")


def test_empty_file_has_no_tables(tmp_path: Path) -> None:
    target = tmp_path / "empty.db"
    target.touch()
    assert "not a CubeLoop checkpoint database" in one_error_line(cli("list", str(target)))
    assert target.stat().st_size == 0


def test_sqlite_without_checkpoint_tables(tmp_path: Path) -> None:
    target = tmp_path / "other.db"
    conn = sqlite3.connect(target)
    conn.execute("CREATE TABLE users (id INTEGER)")
    conn.close()
    before = target.read_bytes()
    line = one_error_line(cli("show", str(target), "x"))
    assert "not a CubeLoop checkpoint database" in line
    assert target.read_bytes() == before


def test_locked_database(tmp_path: Path, crash_db: Path) -> None:
    db = tmp_path / "l.db"
    db.write_bytes(crash_db.read_bytes())
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        line = one_error_line(cli("list", str(db), "--busy-timeout", "0.2"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "locked by another process" in line


def test_unknown_thread(crash_db: Path) -> None:
    assert "no thread 'ghost'" in one_error_line(cli("show", str(crash_db), "ghost"))


@pytest.mark.parametrize(
    "args,needle",
    [
        (["list", "x.db", "--state", "sleepy"], "unknown state 'sleepy'"),
        (["frobnicate"], "'frobnicate' is neither a command nor a file; commands: list, "),
        (["lsit", "x.db"], "'lsit' is neither a command nor a file; did you mean 'list'?"),
        (["nosuch.db"], "nosuch.db: no such file"),
        (["list"], "required"),
    ],
)
def test_bad_arguments(args: list[str], needle: str) -> None:
    assert needle in one_error_line(cli(*args))


def test_version_names_what_it_runs_with() -> None:
    out = cli("--version")
    assert out.returncode == 0
    assert out.stdout.startswith("agent-supervisor ") and "cubeloop " in out.stdout
    assert "Python " in out.stdout


def test_jobs_lists_markers_of_a_thread(tmp_path: Path) -> None:
    from tests.conftest import crash

    db, jobs = tmp_path / "j.db", tmp_path / "markers"
    crash(db, "t1", jobs, kill_at_marker="after_start:B")
    out = cli("jobs", str(db), "--jobs-dir", str(jobs), "--json")
    assert out.returncode == 0, out.stderr
    by_item = {m["arguments"]["item"]: m for m in json.loads(out.stdout)}
    assert by_item["A"]["status"] == "done" and by_item["B"]["status"] == "started"
    assert by_item["A"]["thread_id"] == "t1"
    text = cli("jobs", str(db), "--jobs-dir", str(jobs), "--thread", "t1")
    assert "2 marker(s)" in text.stdout and "started" in text.stdout
    other = cli("jobs", str(db), "--jobs-dir", str(jobs), "--thread", "nope", "--json")
    assert other.returncode == 2 and other.stdout == ""
    assert other.stderr.strip().endswith("no thread 'nope'")


def test_jobs_dir_defaults_beside_the_database(tmp_path: Path, crash_db: Path) -> None:
    import shutil

    db = tmp_path / "x.db"
    shutil.copy(crash_db, db)
    out = cli("jobs", str(db))
    assert out.returncode == 0
    assert f"0 marker(s) in {tmp_path / 'x.db.jobs'}" in out.stdout
    assert list(tmp_path.iterdir()) == [db]  # looking created nothing


@pytest.mark.parametrize("kind", ["missing", "directory", "random bytes"])
def test_jobs_checks_its_database(tmp_path: Path, kind: str) -> None:
    db = tmp_path / "x.db"
    if kind == "directory":
        db.mkdir()
    elif kind == "random bytes":
        db.write_bytes(bytes(range(256)) * 8)
    out = cli("jobs", str(db))
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and "x.db" in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if kind == "missing" else ["x.db"])
