"""The first listing at fleet size: an aggregate in SQL that must agree with a row-by-row reading.

The store lists a database by one GROUP BY pass plus each thread's tail
(see `SQLiteStore._read_all`). These tests hold it to an independent
oracle, `summary_from_dicts` (the runner's view, fed each thread's parsed
messages), on interleaved databases shaped like many concurrent agents
leave them; and check the pieces that make big databases usable: the row
check, commands scoped to one thread, and the index.
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.leases import acquire, leases_dir
from supervisor.location import open_store
from supervisor.report import thread_json
from supervisor.sqlite.files import INDEX_NAME
from supervisor.sqlite.store import SQLiteStore
from supervisor.states import State
from supervisor.store import summary_from_dicts
from tests.conftest import ROOT, cli, insert_rows, run_demo_child


def user(text: str) -> dict:
    return {"role": "user", "content": [{"type": "text", "text": text}], "timestamp": 1.0}


def assistant(calls: list[str], stop: str) -> dict:
    content = [{"type": "text", "text": "thinking"}]
    content += [
        {"type": "tool_call", "id": c, "name": "work", "arguments": {"c": c}} for c in calls
    ]
    return {"role": "assistant", "content": content, "stop_reason": stop, "timestamp": 2.0}


def result(call: str) -> dict:
    return {
        "role": "tool_result",
        "tool_call_id": call,
        "tool_name": "work",
        "content": [{"type": "text", "text": "ok"}],
        "timestamp": 3.0,
    }


def script(rng: random.Random, n: int) -> list[dict]:
    """A conversation cut at a random point: every resume state a crash can leave."""
    out = [user("go")]
    turn = 0
    while len(out) < rng.randrange(1, 14):
        turn += 1
        calls = [f"t{n}-{turn}-{i}" for i in range(rng.choice([0, 1, 2, 3]))]
        out.append(assistant(calls, "tool_use" if calls else rng.choice(["stop", "error"])))
        out += [result(c) for c in calls if rng.random() < 0.8]
        if not calls:
            out.append(user("more"))
    return out[: rng.randrange(1, len(out) + 1)]


def interleaved_db(path: Path, threads: int, seed: int) -> dict[str, list[dict]]:
    """Write threads' messages interleaved at random, as concurrent writers do."""
    run_demo_child(path, "seed", path.parent / "seed-jobs")  # cubeloop's own schema
    rng = random.Random(seed)
    scripts = {f"w{n:04d}": script(rng, n) for n in range(threads)}
    queue = [t for t, msgs in scripts.items() for _ in msgs]
    rng.shuffle(queue)
    position = dict.fromkeys(scripts, 0)
    rows = []
    for thread_id in queue:
        rows.append((thread_id, json.dumps(scripts[thread_id][position[thread_id]])))
        position[thread_id] += 1
    insert_rows(path, rows)
    return scripts


def add_mid_tool_threads(db: Path, count: int) -> list[str]:
    """`count` threads stopped mid-tool (a prompt, a tool call, no result), as one commit."""
    threads = [f"t{n:05d}" for n in range(count)]
    rows = [(t, json.dumps(m)) for t in threads for m in (user("go"), assistant(["c"], "tool_use"))]
    insert_rows(db, rows)
    return threads


def assert_agrees_with_oracle(store: SQLiteStore, scripts: dict[str, list[dict]]) -> None:
    for thread_id, messages in scripts.items():
        got = store.get(thread_id)
        want = summary_from_dicts(thread_id, messages)
        assert got is not None, thread_id
        assert (got.state, got.messages, got.pending_tool_calls) == (
            want.state,
            want.messages,
            want.pending_tool_calls,
        ), thread_id


@pytest.mark.parametrize("threads", [40, 400])
def test_aggregate_listing_agrees_with_reading_every_message(tmp_path: Path, threads: int) -> None:
    # 40 threads, and 400 whose tails are long and interleaved: either way each
    # tail is read by its rows' ids.
    db = tmp_path / "fleet.db"
    scripts = interleaved_db(db, threads, seed=threads)
    store = open_store(db)
    states = {s.state for s in store.threads() if s.thread_id in scripts}
    assert {State.MID_TOOL, State.AFTER_TOOLS, State.BETWEEN_TURNS, State.FINISHED} <= states
    assert_agrees_with_oracle(store, scripts)
    # The order of first appearance, as the row-by-row pass gave it.
    first_rows = [s.thread_id for s in store.threads() if s.messages]
    assert first_rows == sorted(first_rows, key=lambda t: store.transcript(t).entries[0].row_id)


def tail_rows(scripts: dict[str, list[dict]]) -> int:
    """Rows after each thread's last assistant message, in threads whose newest tool
    result comes after it: what a listing must read to know which calls are answered."""
    total = 0
    for messages in scripts.values():
        roles = [m["role"] for m in messages]
        assistant = max((i for i, r in enumerate(roles) if r == "assistant"), default=-1)
        result = max((i for i, r in enumerate(roles) if r == "tool_result"), default=-1)
        if result > assistant:
            total += len(roles) - assistant - 1
    return total


@pytest.mark.parametrize("chunk", [None, 7])
def test_a_listing_reads_the_tails_and_no_other_row_twice(
    tmp_path: Path, chunk: int | None
) -> None:
    # 400 threads interleaved at random: each tail is spread over the whole table,
    # yet only its rows are read again (by id, grouped by thread), kept or streamed
    # seven threads at a time in thread-id order.
    db = tmp_path / "fleet.db"
    scripts = interleaved_db(db, 400, seed=5)
    store = SQLiteStore(db)
    if chunk is None:
        store.refresh()
        listed = store.threads()
    else:
        listed = list(store.stream(chunk=chunk))
        assert [s.thread_id for s in listed] == sorted(s.thread_id for s in listed)
    store.close()
    assert store.work["tail_rows"] == tail_rows(scripts) > 100
    by_id = {s.thread_id: s for s in listed}
    for thread_id, messages in scripts.items():
        want = summary_from_dicts(thread_id, messages)
        got = by_id[thread_id]
        assert (got.state, got.messages, got.pending_tool_calls) == (
            want.state,
            want.messages,
            want.pending_tool_calls,
        ), thread_id
    assert {State.MID_TOOL, State.AFTER_TOOLS} <= {s.state for s in listed}


def test_a_broken_row_mid_thread_is_found_by_the_row_check(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    run_demo_child(db, "t", tmp_path / "jobs")
    insert_rows(db, [("t", '{"role": "user", "content": [ broken'), ("t", json.dumps(user("hi")))])
    store = open_store(db)
    # The listing reads each row's start; this one starts as a user message.
    assert store.get("t").state is State.BETWEEN_TURNS and not store.rows_checked
    assert store.check_rows() == {"t"}
    assert store.rows_checked and store.get("t").state is State.CORRUPT
    broken = store.get("t").corrupt_row
    listed = cli("list", str(db), "--check", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = [t for t in json.loads(listed.stdout) if t["thread_id"] == "t"]
    assert (row["state"], row["corrupt_row"]) == ("corrupt", broken)
    # Rows a refresh reads are checked as they arrive.
    insert_rows(db, [("u", '{"role": "user", "content": [ broken too')])
    assert "u" in store.refresh()
    assert store.get("u").state is State.CORRUPT


def test_a_command_about_one_thread_reads_only_that_thread(tmp_path: Path) -> None:
    db = tmp_path / "fleet.db"
    scripts = interleaved_db(db, 60, seed=5)
    whole = open_store(db)
    one = open_store(db, only=["w0007", "no-such-thread"])
    assert [s.thread_id for s in one.threads()] == ["w0007"]
    assert thread_json(one.get("w0007")) == thread_json(whole.get("w0007"))
    insert_rows(db, [("w0007", json.dumps(user("again"))), ("w0008", json.dumps(user("x")))])
    assert one.refresh() == {"w0007"}
    assert one.get("w0007").messages == len(scripts["w0007"]) + 1
    assert one.get("w0008") is None


def test_index_is_added_only_with_consent_and_used(tmp_path: Path) -> None:
    db = tmp_path / "fleet.db"
    interleaved_db(db, 20, seed=9)
    before = db.read_bytes()
    refused = subprocess.run(
        [sys.executable, "-m", "supervisor", "index", str(db)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert db.read_bytes() == before
    assert cli("index", str(db), "--yes").returncode == 0
    store = open_store(db)
    assert store.has_thread_index()
    plan = " ".join(
        str(row)
        for row in store.db.conn.execute(
            "EXPLAIN QUERY PLAN " + store.scope.threads_sql, (0, 10, '["w0001"]')
        )
    )
    assert INDEX_NAME in plan
    store.close()
    assert "already indexed" in cli("index", str(db), "--yes").stdout
    assert cli("index", str(db), "--drop").returncode == 0
    names = [r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master")]
    assert INDEX_NAME not in names


def test_a_big_database_without_an_index_gets_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "fleet.db"
    interleaved_db(db, 30, seed=3)
    conn = sqlite3.connect(db)
    with conn:  # ids no longer count the rows: the hint must count them
        conn.execute("DELETE FROM messages WHERE id % 3 = 0")
    (rows,) = conn.execute("SELECT count(*) FROM messages").fetchone()
    (top,) = conn.execute("SELECT max(id) FROM messages").fetchone()
    conn.close()
    assert top > rows
    monkeypatch.setattr("supervisor.sqlite.store.INDEX_HINT_ROWS", 10)
    from supervisor.cli import run

    assert run(["list", str(db)]) == 0
    err = capsys.readouterr().err
    assert f"{rows:,} message rows and no index on thread_id" in err
    assert f"'agent-supervisor index {db}' adds one" in err
    assert run(["list", str(db), "--state", "finished"]) == 0  # filtered: every row counted
    assert f"{rows:,} message rows and no index on thread_id" in capsys.readouterr().err
    cli("index", str(db), "--yes")
    assert run(["list", str(db)]) == 0
    assert "index" not in capsys.readouterr().err


def test_list_does_not_import_the_agent_stack(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    run_demo_child(db, "t", tmp_path / "jobs")
    # The agent stack, and what only planning a resume needs (a small listing's
    # start-up is a third of its time).
    heavy = ("cubeloop", "asyncio", "textual", "supervisor.plan", "supervisor.jobs", "tempfile")
    code = (
        f"import sys; HEAVY = {heavy!r}; from supervisor.cli import run; "
        "code = run(['list', sys.argv[1]]); "
        "heavy = sorted(m for m in HEAVY if m in sys.modules); "
        "print(heavy, file=sys.stderr); sys.exit(code)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(db)], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0 and out.stderr.strip() == "[]", out.stderr


def test_the_help_text_default_is_the_runners() -> None:
    from supervisor import runner
    from supervisor.cli import options

    assert options.DEFAULT_CONTINUE_TEXT == runner.DEFAULT_CONTINUE_TEXT


def test_a_refresh_costs_what_changed_not_what_exists(tmp_path: Path) -> None:
    """20,000 crashed threads (every run left open); ten new messages are ten rows of work."""
    db = tmp_path / "fleet.db"
    run_demo_child(db, "seed", tmp_path / "seed-jobs")
    threads = add_mid_tool_threads(db, 20_000)
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(  # crashed runs: never completed
            "INSERT INTO runs (thread_id, run_id) VALUES (?, 'r1')", [(t,) for t in threads]
        )
    conn.close()
    store = open_store(db)
    assert store.get("t00042").state is State.MID_TOOL and store.get("t00042").run_open
    insert_rows(db, [(threads[i * 997], json.dumps(result("c"))) for i in range(10)])
    touched = store.refresh()
    assert touched == {threads[i * 997] for i in range(10)}
    assert store.work["rows"] == 10
    # Runs are looked at again for the threads that changed; the open runs of
    # recently written threads only every few seconds, not on every refresh.
    assert store.work["run_threads"] == 10
    assert store.get(threads[0]).state is State.AFTER_TOOLS


def test_the_streamed_listing_is_the_kept_one_in_id_order(demo_db: Path) -> None:
    """`list` streams (SQLiteStore.stream): it must say what the kept listing says of every thread.

    The demo's real crashes (HITL requests, answers, open runs) plus interleaved
    threads in every state, a thread known only from `thread_extra`, a row of an
    unknown kind (refolded row by row inside a chunk) and a live lease; chunks of
    three, so folds and refolds meet chunk boundaries.
    """
    rng = random.Random(9)
    rows = [(f"w{n:03d}", json.dumps(m)) for n in range(40) for m in script(rng, n)]
    rows.append(("w007", json.dumps({"role": "system", "content": "from another writer"})))
    insert_rows(demo_db, rows)
    conn = sqlite3.connect(demo_db)
    with conn:
        conn.execute("INSERT INTO thread_extra (thread_id) VALUES ('only-extra')")
        conn.execute("INSERT INTO runs (thread_id, run_id) VALUES ('only-extra', 'r0')")
        conn.execute("INSERT INTO runs (thread_id, run_id) VALUES ('w003', 'r1')")
    conn.close()
    lease = acquire(leases_dir(demo_db), "w011")
    try:
        kept = open_store(demo_db)
        expected = [thread_json(s) for s in sorted(kept.threads(), key=lambda s: s.thread_id)]
        kept.close()
        store = SQLiteStore(demo_db)
        streamed = [thread_json(s) for s in store.stream(chunk=3)]
        assert store.threads() == []  # nothing kept
        store.close()
        listed = cli("list", str(demo_db), "--json")
    finally:
        lease.release()
    assert streamed == expected
    by_id = {t["thread_id"]: t for t in streamed}
    assert by_id["only-extra"]["state"] == "empty" and by_id["only-extra"]["run_open"]
    assert by_id["w003"]["run_open"] and not by_id["w004"]["run_open"]
    assert by_id["w011"]["state"] == "running" and by_id["w007"]["state"] == "corrupt"
    assert {"awaiting_input", "answered", "mid_tool", "after_tools"} <= {
        t["state"] for t in streamed
    }
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == json.dumps(expected, indent=2) + "\n"  # what json.dump wrote


def test_a_listing_stopped_early_lets_go_of_the_database(demo_db: Path) -> None:
    insert_rows(demo_db, [(f"m{n:04d}", json.dumps(user("go"))) for n in range(2000)])
    store = SQLiteStore(demo_db)
    streamed = store.stream(chunk=2)
    next(streamed)
    store.close()  # mid-stream
    conn = sqlite3.connect(demo_db, timeout=0.2)
    with conn:  # a writer commits at once: no read transaction was left open
        conn.execute("INSERT INTO thread_extra (thread_id) VALUES ('after')")
    conn.close()
    # A reader of the output that stops early (`| head`) gets no error either.
    piped = subprocess.run(
        f"'{sys.executable}' -m supervisor list '{demo_db}' | head -1",
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.stdout.startswith("THREAD") and piped.stderr == ""


def test_a_preview_started_early_is_read_in_a_child_and_handed_over(
    demo_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`preview_soon` (the app, before its imports): a forked child reads, `preview` takes it."""
    import os
    import signal
    import time

    from supervisor.sqlite import store as store_module

    monkeypatch.setattr(store_module, "PREVIEW_ABOVE_BYTES", 0)  # every database is "big"
    expected = [thread_json(s) for s in SQLiteStore(demo_db).preview(rows=20)]
    assert 0 < len(expected) < 12  # the newest rows' threads, not all of them

    store = SQLiteStore(demo_db)
    store.preview_soon(rows=20)
    child = store._early[0].pid
    assert child != os.getpid()
    assert [thread_json(s) for s in store.preview()] == expected
    with pytest.raises(ChildProcessError):
        os.waitpid(child, os.WNOHANG)  # reaped, no zombie left
    assert store.preview(rows=20) is not None  # and the next preview reads anew

    parent, real = os.getpid(), store._preview_now

    def stuck_in_the_child(rows: int):  # the child hangs until killed; here it reads
        while os.getpid() != parent:
            time.sleep(1)
        return real(rows)

    monkeypatch.setattr(store, "_preview_now", stuck_in_the_child)
    store.preview_soon(rows=20)  # a child killed before it could answer: read here instead
    assert not store.preview_ready()
    os.kill(store._early[0].pid, signal.SIGKILL)
    assert [thread_json(s) for s in store.preview()] == expected

    store.preview_soon(rows=20)  # never asked for: closing stops and reaps the child
    child = store._early[0].pid
    store.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(child, os.WNOHANG)


def test_a_small_database_starts_no_preview(demo_db: Path) -> None:
    store = SQLiteStore(demo_db)
    store.preview_soon()
    assert store._early is None and not store.preview_ready()
    assert store.preview() is None
    store.close()


def test_commands_that_read_threads_name_a_big_unindexed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`show` (and every command reading a thread) scans the file per thread without the
    index: it says so, by the file's size when it listed only its own thread."""
    db = tmp_path / "fleet.db"
    interleaved_db(db, 30, seed=3)
    monkeypatch.setattr("supervisor.sqlite.store.INDEX_HINT_BYTES", 0)
    from supervisor.cli import run

    thread = sqlite3.connect(db).execute("SELECT thread_id FROM messages LIMIT 1").fetchone()[0]
    assert run(["show", str(db), thread]) == 0
    err = capsys.readouterr().err
    assert "MB and no index on thread_id: reading one thread scans them all" in err
    cli("index", str(db), "--yes")
    assert run(["show", str(db), thread]) == 0
    assert "no index" not in capsys.readouterr().err
