"""The app's first read split between two forked readers (`supervisor.first_read`).

A driver in a child process (the readers are forked: no pytest threads in
the way) lowers the size threshold so a small database is split, reads the
file the way `agent-supervisor DB` does, and prints every summary field.
Each split read is compared with the same file read by one process.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from supervisor.leases import acquire, leases_dir
from tests.conftest import ROOT, insert_rows
from tests.test_listing_scale import assistant, result, user
from tests.test_split_listing import fleet_db  # noqa: F401 - the fixture

#: Reads DB as the app does; `whole`: one process. Prints the summaries (every field,
#: in order), the cursor and the recently open runs, then the same after `more` rows.
#: stderr says whether the readers' halves were used.
#: The clock of every read here: the two reads of a test (split, whole) must agree on
#: which open runs are recent, however long apart they run on a loaded machine.
NOW = time.time()

DRIVER = """
import json, os, signal, sqlite3, sys, time
frozen = float(os.environ["AGENT_SUPERVISOR_TEST_NOW"])
time.time = lambda: frozen  # both reads of a test judge "recent" runs by one clock
from supervisor import split
from supervisor.first_read import FirstRead
from supervisor.states import summary_fields
from supervisor.sqlite.store import SQLiteStore
mode, db = sys.argv[1], sys.argv[2]
split.SPLIT_ABOVE_BYTES = 1 << 62 if mode.startswith("whole") else 0

def written(statements):
    conn = sqlite3.connect(db)
    with conn:
        for sql, args in statements:
            conn.execute(sql, args)
    conn.close()

def shown(value):
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, dict):  # a lease's holder: each copy's lease was taken apart
        return sorted((k, v) for k, v in value.items() if k != "since")
    return repr(value)

def state(store):
    return {
        "threads": [[shown(v) for v in summary_fields(s)] for s in store.threads()],
        "cursor": store.cursor,
        "open_runs": sorted(store.side.open_runs),
    }

def say_if_left_running(pids):
    for pid in pids:
        try:
            os.kill(pid, 0)
            print("reader left running", file=sys.stderr)
        except ProcessLookupError:
            pass

took = []
take = SQLiteStore._take_halves
def taking(self):
    found = take(self)
    took.append(found is not None)
    return found
SQLiteStore._take_halves = taking

first = FirstRead.start(db, 5.0)
pids = [pid for pid, _ in first._readers] if first else []
if mode == "reader-dies":
    os.kill(pids[1], signal.SIGKILL)
if mode in ("written-meanwhile", "whole-after"):
    written(json.loads(sys.argv[3]))
store = SQLiteStore(db)
if first is not None:
    store.read_first_from(first)
if mode == "closed-unread":
    store.close()
    say_if_left_running(pids)
    sys.exit(0)
if mode == "stopped":  # the app quitting mid-read, from another thread than the refresh's
    store.stop_first_read()
    try:
        store.refresh()
    except Exception as exc:
        print(type(exc).__name__, exc, file=sys.stderr)
    print("read", len(store.threads()), file=sys.stderr)
    store.close()
    say_if_left_running(pids)
    sys.exit(0)
store.refresh()
before = state(store)
written(json.loads(sys.argv[4] if len(sys.argv) > 4 else "[]"))
store.refresh()
print(json.dumps({"first": before, "then": state(store)}))
store.close()
print("started" if first else "not started", "halves" if any(took) else "one process",
      file=sys.stderr)
"""


def read_as_app(mode: str, db: Path, meanwhile: list[Any] = (), then: list[Any] = ()) -> Any:
    """Read a copy of `db` (the driver writes to it) in its own directory (and leases)."""
    copy = db.parent / mode / db.name
    copy.parent.mkdir()
    shutil.copy(db, copy)
    lease = acquire(leases_dir(copy), "w611")  # a live lease in the second half
    try:
        return _driven(mode, copy, meanwhile, then)
    finally:
        lease.release()


def _driven(mode: str, db: Path, meanwhile: list[Any], then: list[Any]) -> Any:
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, mode, str(db), json.dumps(meanwhile), json.dumps(then)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "AGENT_SUPERVISOR_TEST_NOW": str(NOW)},
    )
    assert done.returncode == 0, done.stderr
    return done


def same(split: subprocess.CompletedProcess, whole: subprocess.CompletedProcess) -> None:
    """Both printed the same listing (the first difference named, not a diff of megabytes)."""
    a, b = json.loads(split.stdout), json.loads(whole.stdout)
    for when in ("first", "then"):
        for key in ("cursor", "open_runs"):
            assert a[when][key] == b[when][key], (when, key)
        mine, theirs = a[when]["threads"], b[when]["threads"]
        assert len(mine) == len(theirs), when
        pairs = enumerate(zip(mine, theirs, strict=True))
        differ = next((i for i, (x, y) in pairs if x != y), None)
        assert differ is None, (when, mine[differ], theirs[differ])


def rows(thread_id: str, message: dict[str, Any]) -> list[Any]:
    """A row written at a fixed time: the two copies compared are written apart."""
    sql = "INSERT INTO messages (thread_id, message_json, created_at) VALUES (?, ?, ?)"
    return [sql, [thread_id, json.dumps(message), 2_461_000.5]]


#: Written after the readers started, before the store's first refresh: rows in
#: each half (an assistant turn with a tool call, its result), a new thread, a
#: new open run, a thread known only from thread_extra.
MEANWHILE = [
    rows("w000", user("once more")),
    rows("w799", assistant(["late-1"], "tool_use")),
    rows("w3-new", user("a thread born meanwhile")),
    ["INSERT INTO runs (thread_id, run_id) VALUES (?, ?)", ["w400", "r-late"]],
    ["INSERT INTO thread_extra (thread_id) VALUES (?)", ["w5-new-extra"]],
]
#: Written after the first refresh: the next refresh folds them on as usual.
THEN = [
    rows("w799", result("late-1")),
    rows("w001", user("and again")),
]


def test_the_split_first_read_is_the_one_process_read(fleet_db: Path) -> None:  # noqa: F811
    whole = read_as_app("whole", fleet_db, then=THEN)
    split = read_as_app("split", fleet_db, then=THEN)
    assert whole.stderr.split() == ["not", "started", "one", "process"]
    assert split.stderr.split() == ["started", "halves"]
    same(split, whole)
    listed = json.loads(split.stdout)
    ids = [t[0] for t in listed["first"]["threads"]]
    assert {"'w000'", "'w799'", "'w2-only-extra'", "'w9-only-extra'"} <= set(ids)
    assert len(ids) == len(set(ids)) > 800


def test_rows_with_ids_of_zero_or_below_are_in_both_halves_reads(
    fleet_db: Path,  # noqa: F811
) -> None:
    conn = sqlite3.connect(fleet_db)
    with conn:  # another writer's ids: a thread below zero, and a row before w010's own
        conn.execute(
            "INSERT INTO messages (id, thread_id, message_json) VALUES (0, 'below', ?)",
            (json.dumps(user("from below")),),
        )
        conn.execute(
            "INSERT INTO messages (id, thread_id, message_json) VALUES (-9, 'w010', ?)",
            (json.dumps(user("an earlier start")),),
        )
        (w010,) = conn.execute("SELECT count(*) FROM messages WHERE thread_id = 'w010'").fetchone()
    conn.close()
    whole = read_as_app("whole", fleet_db, then=THEN)
    split = read_as_app("split", fleet_db, then=THEN)
    assert split.stderr.split() == ["started", "halves"]
    same(split, whole)
    by_id = {t[0]: t for t in json.loads(split.stdout)["first"]["threads"]}
    assert by_id["'below'"][1] == "1" and by_id["'w010'"][1] == str(w010)  # messages


def test_rows_written_while_the_readers_read_are_read_by_the_first_refresh(
    fleet_db: Path,  # noqa: F811
) -> None:
    split = read_as_app("written-meanwhile", fleet_db, meanwhile=MEANWHILE, then=THEN)
    assert split.stderr.split() == ["started", "halves"]
    # The same file, written before one process reads it.
    whole = read_as_app("whole-after", fleet_db, meanwhile=MEANWHILE, then=THEN)
    same(split, whole)
    by_id = {t[0]: t for t in json.loads(split.stdout)["first"]["threads"]}
    assert {"'w3-new'", "'w5-new-extra'"} <= set(by_id)


def test_when_a_reader_dies_the_store_reads_the_listing_itself(fleet_db: Path) -> None:  # noqa: F811
    whole = read_as_app("whole", fleet_db)
    dead = read_as_app("reader-dies", fleet_db)
    assert dead.stderr.split() == ["started", "one", "process"]
    same(dead, whole)


def test_thread_ids_only_the_whole_listing_names_are_read_by_one_process(
    fleet_db: Path,  # noqa: F811
) -> None:
    insert_rows(fleet_db, [(b"\xff\x00", json.dumps(user("hi")))])  # a blob id: the upper half
    whole = read_as_app("whole", fleet_db)
    split = read_as_app("split", fleet_db)
    assert split.stderr.split() == ["started", "one", "process"]
    same(split, whole)
    ids = [t[0] for t in json.loads(split.stdout)["first"]["threads"]]
    assert repr(repr(b"\xff\x00")) in ids


def test_closing_before_the_first_refresh_stops_the_readers_and_leaves_no_file(
    fleet_db: Path,  # noqa: F811
) -> None:
    conn = sqlite3.connect(fleet_db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    done = read_as_app("closed-unread", fleet_db)
    copy = fleet_db.parent / "closed-unread" / fleet_db.name
    assert not Path(f"{copy}-wal").exists() and not Path(f"{copy}-shm").exists()
    assert "reader left running" not in done.stderr


def test_a_small_file_or_a_bad_path_starts_no_reader(tmp_path: Path, demo_db: Path) -> None:
    from supervisor.first_read import FirstRead

    there = sorted(os.listdir(tmp_path))
    assert FirstRead.start(demo_db, 5.0) is None  # under the size threshold
    assert FirstRead.start(tmp_path / "missing.db", 5.0) is None  # the store says why
    assert sorted(os.listdir(tmp_path)) == there  # nothing created


def test_stopping_the_readers_ends_the_first_refresh_without_reading_it_here(
    fleet_db: Path,  # noqa: F811
) -> None:
    done = read_as_app("stopped", fleet_db)
    assert done.stderr.splitlines() == [
        "StoreError the database was closed while it was being read",
        "read 0",  # no fallback to a whole read in this process: the app is closing
    ]
