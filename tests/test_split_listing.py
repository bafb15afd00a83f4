"""`list` split between two processes (`supervisor.listing.list_split`).

The real CLI runs in a child process with the size threshold lowered, so a
small database is split; every listing is compared with the one-process
listing of the same file, byte for byte.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor import usage
from supervisor.leases import acquire, leases_dir
from supervisor.sqlite.store import SQLiteStore
from tests.conftest import ROOT, insert_rows
from tests.test_listing_scale import script, user

#: Runs `agent-supervisor list` with a fixed clock; says on stderr whether it was split.
#: `child-dies`: the second process is killed as it starts writing its half.
DRIVER = """
import os, signal, sys, time
time.time = lambda: 1_900_000_000.0
from supervisor import cli, listing, split as splitting
mode, args = sys.argv[1], sys.argv[2:]
splitting.SPLIT_ABOVE_BYTES = 1 << 62 if mode == "whole" else 0
parent = os.getpid()
if mode == "child-dies":
    rows = listing.ListingWriter.rows
    def dying(self, threads):
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        rows(self, threads)
    listing.ListingWriter.rows = dying
split = listing.list_split
def reporting(*a, **k):
    outcome = split(*a, **k)
    print("split" if outcome is not None else "one process", file=sys.stderr)
    return outcome
listing.list_split = reporting
sys.exit(cli.run(["list", *args]))
"""


def run_list(
    mode: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", DRIVER, mode, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def fleet_db(demo_db: Path) -> Path:
    """The demo's real crashes plus 800 interleaved threads in every state (enough rows
    for a split point), a thread known only from `thread_extra` in each half, an open run, a row of a
    kind no one knows, a corrupt row and a pending request in the upper half."""
    rng = random.Random(3)
    rows = [(f"w{n:03d}", json.dumps(m)) for n in range(800) for m in script(rng, n)]
    rng.shuffle(rows)
    rows.append(("w107", json.dumps({"role": "system", "content": "from another writer"})))
    rows.append(("w650", "{not json"))
    insert_rows(demo_db, rows)
    conn = sqlite3.connect(demo_db)
    with conn:
        conn.execute("INSERT INTO thread_extra (thread_id) VALUES ('w2-only-extra')")
        conn.execute("INSERT INTO thread_extra (thread_id) VALUES ('w9-only-extra')")
        conn.execute("INSERT INTO runs (thread_id, run_id) VALUES ('w2-only-extra', 'r0')")
        conn.execute("INSERT INTO runs (thread_id, run_id) VALUES ('w003', 'r1')")
        conn.execute(
            "INSERT INTO thread_pending_request (thread_id, request_json, run_id) "
            "VALUES ('w690', '{\"questions\": []}', 'r9')"
        )
    conn.close()
    return demo_db


@pytest.mark.parametrize(
    "flags",
    [
        [],
        ["--json"],
        ["--state", "mid_tool", "--state", "corrupt"],
        ["--usage"],
        ["--usage", "--json"],
    ],
)
def test_a_split_listing_is_the_one_process_listing(fleet_db: Path, flags: list[str]) -> None:
    lease = acquire(leases_dir(fleet_db), "w611")  # a live lease in the second half
    try:
        whole = run_list("whole", str(fleet_db), *flags)
        split = run_list("split", str(fleet_db), *flags)
    finally:
        lease.release()
    assert whole.returncode == 0 and split.returncode == 0, split.stderr
    assert whole.stderr.startswith("one process") and split.stderr.startswith("split")
    assert split.stdout == whole.stdout
    # Both halves are in it, and what each folds in from the small tables.
    if flags == ["--json"]:
        by_id = {t["thread_id"]: t for t in json.loads(split.stdout)}
        assert {"w000", "w799", "w2-only-extra", "w9-only-extra"} <= set(by_id)
        assert by_id["w9-only-extra"]["state"] == "empty"
        assert by_id["w611"]["state"] == "running"
        assert by_id["w2-only-extra"]["run_open"] and by_id["w003"]["run_open"]
        assert by_id["w650"]["state"] == "corrupt" and by_id["w107"]["state"] == "corrupt"
    if flags == []:
        assert "w000" in split.stdout and "w799" in split.stdout
    if flags == ["--usage"]:  # the second process writes its half's tokens too
        assert split.stdout.splitlines()[0].split()[3:5] == ["TOKENS", "COST"]
        tokens = {line.split()[0]: line.split()[3] for line in split.stdout.splitlines()[1:-2]}
        assert any(n != "0" for n in tokens.values()), tokens
    if flags == ["--usage", "--json"]:
        by_id = {t["thread_id"]: t for t in json.loads(split.stdout)}
        spent = [t for t in by_id.values() if t["usage"] and t["usage"]["output_tokens"] > 0]
        assert spent, "no thread with tokens"
    assert split.stderr.splitlines()[1:] == whole.stderr.splitlines()[1:]  # the warnings


def test_when_the_second_process_dies_the_first_lists_its_half(fleet_db: Path) -> None:
    whole = run_list("whole", str(fleet_db), "--json")
    dead = run_list("child-dies", str(fleet_db), "--json")
    assert dead.returncode == 0, dead.stderr
    assert dead.stderr.startswith("split")
    assert dead.stdout == whole.stdout


@pytest.mark.parametrize(
    "odd_id",
    ["X'ff00'", "CAST(X'2180ff' AS TEXT)"],
    ids=["blob, second half", "not UTF-8, first half"],
)
def test_thread_ids_only_the_whole_listing_reads_are_listed_by_one_process(
    fleet_db: Path, odd_id: str
) -> None:
    conn = sqlite3.connect(fleet_db)
    with conn:
        conn.execute(
            f"INSERT INTO messages (thread_id, message_json) VALUES ({odd_id}, ?)",
            (json.dumps(user("hi")),),
        )
    conn.close()
    whole = run_list("whole", str(fleet_db))
    split = run_list("split", str(fleet_db))
    assert split.returncode == 0, split.stderr
    assert split.stderr.startswith("one process")
    assert split.stdout == whole.stdout and "thread(s)" in split.stdout


def test_a_split_listing_leaves_no_file_behind(fleet_db: Path, tmp_path: Path) -> None:
    conn = sqlite3.connect(fleet_db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()  # the last connection: -wal and -shm are removed
    assert not Path(f"{fleet_db}-wal").exists()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    split = run_list("split", str(fleet_db), env={"TMPDIR": str(scratch)})
    assert split.returncode == 0 and split.stderr.startswith("split"), split.stderr
    assert not Path(f"{fleet_db}-wal").exists() and not Path(f"{fleet_db}-shm").exists()
    assert list(scratch.iterdir()) == []  # the second process's lines: an unnamed file


def test_a_reader_that_stops_early_stops_both_processes(fleet_db: Path) -> None:
    piped = subprocess.run(
        f"'{sys.executable}' -c '{DRIVER}' split '{fleet_db}' | head -1",
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.stdout.startswith("THREAD")
    assert "Traceback" not in piped.stderr and "Error" not in piped.stderr
    left = subprocess.run(["pgrep", "-f", str(fleet_db)], capture_output=True, text=True)
    assert left.stdout == ""  # the second process was stopped and reaped, not left running


def test_the_split_point_divides_the_rows_about_in_half(fleet_db: Path) -> None:
    store = SQLiteStore(fleet_db)
    try:
        pivot = store.split_point()
    finally:
        store.close()
    assert pivot is not None
    conn = sqlite3.connect(fleet_db)
    below, total = conn.execute(
        "SELECT sum(thread_id < ?), count(*) FROM messages", (pivot,)
    ).fetchone()
    # A thread id not UTF-8 in the sample: no split point (the whole listing reads it).
    conn.execute(
        "UPDATE messages SET thread_id = CAST(X'77ff' AS TEXT) WHERE id = "
        "(SELECT max(id) FROM messages)"
    )
    conn.commit()
    conn.close()
    assert 0.4 < below / total < 0.6
    store = SQLiteStore(fleet_db)
    try:
        assert store.split_point() is None
    finally:
        store.close()


def test_a_small_database_has_no_split_point(demo_db: Path) -> None:
    store = SQLiteStore(demo_db)  # a few hundred rows: fewer than the sample
    try:
        assert store.split_point() is None
    finally:
        store.close()


def test_rows_with_ids_of_zero_or_below_are_listed_searched_and_counted(
    fleet_db: Path,
) -> None:
    """cubeloop's ids start at 1; another writer may store 0 or negative ones. Every
    listing started its cursor at 0 and left their threads out, or short of rows."""
    reply = {
        "role": "assistant",
        "content": [{"type": "text", "text": "answered below zero"}],
        "stop_reason": "stop",
        "model_id": "m-1",
        "usage": {"input_tokens": 7, "output_tokens": 5},
    }
    conn = sqlite3.connect(fleet_db)
    with conn:
        rows = [
            (-3, "below", user("zzyzx question")),  # a thread with no other rows
            (0, "below", reply),
            (-100, "w010", user("an earlier start")),  # before a thread's own rows
        ]
        conn.executemany(
            "INSERT INTO messages (id, thread_id, message_json) VALUES (?, ?, ?)",
            [(i, t, json.dumps(m)) for i, t, m in rows],
        )
        stored = dict(conn.execute("SELECT thread_id, count(*) FROM messages GROUP BY 1"))
    conn.close()
    whole = run_list("whole", str(fleet_db), "--usage", "--json")
    split = run_list("split", str(fleet_db), "--usage", "--json")
    assert split.stderr.startswith("split") and split.stdout == whole.stdout, split.stderr
    by_id = {t["thread_id"]: t for t in json.loads(whole.stdout)}
    assert by_id["below"]["messages"] == 2 and by_id["below"]["state"] == "finished"
    assert by_id["below"]["usage"]["output_tokens"] == 5
    assert by_id["w010"]["messages"] == stored["w010"]
    kept = SQLiteStore(fleet_db)
    kept.refresh()
    assert {s.thread_id: s.messages for s in kept.threads()} == {
        t: s["messages"] for t, s in by_id.items()
    }
    # The app's TOKENS column: a running tally from the first row on.
    tally = usage.UsageTally(usage.load_or_shipped()[0]).read(kept)
    assert tally["below"][0] == 7 + 5
    kept.close()
    index = subprocess.run(
        [sys.executable, "-m", "supervisor", "index", str(fleet_db), "--search", "--yes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert index.returncode == 0, index.stderr
    found = run_list("whole", str(fleet_db), "--grep", "zzyzx", "--json")
    assert [t["thread_id"] for t in json.loads(found.stdout)] == ["below"], found.stderr
