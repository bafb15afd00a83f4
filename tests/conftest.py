"""Shared fixtures: real databases made by real agents in child processes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.demo_db import child_arguments, run_child_process, run_children

ROOT = Path(__file__).resolve().parent.parent

# Times on screen are local wall-clock times: pin the zone so snapshots match anywhere.
os.environ["TZ"] = "UTC"
time.tzset()


def run_demo_child(db: Path, thread: str, jobs: Path, **options: object) -> int:
    """Run the demo agent in a child process (supervisor.demo_db child); its exit code."""
    return run_child_process(db, thread, jobs, **options)


def crash(db: Path, thread: str, jobs: Path, **options: object) -> None:
    """Like run_demo_child, but insist the child really died by SIGKILL."""
    code = run_demo_child(db, thread, jobs, **options)
    assert code == -signal.SIGKILL, f"expected SIGKILL, child exited {code}"


@pytest.fixture(autouse=True)
def _no_markers_client_left() -> Iterator[None]:
    """A test's Postgres markers clients are closed after it: each holds a thread, and a
    fork in a later test of the same worker is refused while threads run (`split`)."""
    yield
    from supervisor.location import close_markers

    close_markers()


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed CLI as a user would, in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard: `demo` on Postgres took 51 s on a loaded 2-core machine
    )


def insert_rows(db: Path, rows: list[tuple[str, str]]) -> None:
    """Append raw (thread_id, message_json) rows, as a foreign writer would."""
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany("INSERT INTO messages (thread_id, message_json) VALUES (?, ?)", rows)
    conn.close()


def user_json(text: str) -> str:
    return json.dumps({"role": "user", "content": [{"type": "text", "text": text}]})


@pytest.fixture
def jobs(tmp_path: Path) -> Path:
    return tmp_path / "jobs"


@pytest.fixture(scope="session")
def crash_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One database holding a thread in every state a real crash can leave.

    Event numbers refer to `python -m supervisor.demo_db child --list-events` for the
    prompt 'Process items A..C' (two calls in turn 1, one in turn 2).
    """
    base = tmp_path_factory.mktemp("crashdb")
    db, jobs = base / "jobs.db", base / "jobs"
    make_crashes(db, lambda name: jobs / name)
    return db


#: (thread, child options, killed?) for every state a real crash can leave.
CRASHES: list[tuple[str, dict[str, object], bool]] = [
    ("finished", {}, False),
    ("first-model-call", {"kill_at_event": 5}, True),
    ("during-tool", {"kill_at_marker": "after_start:A"}, True),
    ("batch-partial", {"kill_at_event": 11}, True),
    ("model-after-tools", {"kill_at_event": 17}, True),
    ("turn2-calls", {"kill_at_event": 18}, True),
    ("aborted", {"abort_at_event": 7, "tool_seconds": 0.5}, False),
    ("error", {"fail_turn": 2}, False),
]


def make_crashes(db: Path | str, jobs_of, **extra: object) -> None:
    """Run every `CRASHES` case into one database (a file or a Postgres URL), in turn."""
    codes = run_children(
        [
            child_arguments(db, thread, jobs_of(thread), **options, **extra)
            for thread, options, _ in CRASHES
        ]
    )
    for (thread, _, killed), code in zip(CRASHES, codes, strict=True):
        if killed:
            assert code == -signal.SIGKILL, f"{thread}: expected SIGKILL, child exited {code}"
        else:
            assert code == 0, f"{thread}: child exited {code}"


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo database (threads in every state), built once per session."""
    from supervisor.demo_db import build_demo_db

    base = tmp_path_factory.mktemp("demo")
    return build_demo_db(base / "demo.db")


@pytest.fixture
def demo_db(demo_template: Path, tmp_path: Path) -> Path:
    """A private copy of the demo database and its job markers."""
    import shutil

    db = tmp_path / "demo.db"
    shutil.copy(demo_template, db)
    shutil.copytree(demo_template.with_name("demo.db.jobs"), tmp_path / "demo.db.jobs")
    return db


@pytest.fixture
def fast_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo agent without its deliberate slowness."""
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOOL_SECONDS", "0")
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND", "0")


def transcript_problems(db: Path | str, thread: str) -> list[str]:
    """Every tool call must have exactly one result, before the next assistant turn."""
    from supervisor.location import open_store

    store = open_store(db)
    try:
        entries = store.transcript(thread).entries
    finally:
        store.close()
    problems: list[str] = []
    open_calls: dict[str, int] = {}

    def close_turn() -> None:
        for call_id, n in open_calls.items():
            if n != 1:
                problems.append(f"call {call_id} has {n} results")
        open_calls.clear()

    for e in entries:
        m = e.message
        assert m is not None, e.error
        if m["role"] == "assistant":
            close_turn()
            for b in m["content"]:
                if b.get("type") == "tool_call":
                    open_calls[b["id"]] = 0
        elif m["role"] == "tool_result":
            if m["tool_call_id"] not in open_calls:
                problems.append(f"result for unknown call {m['tool_call_id']}")
            else:
                open_calls[m["tool_call_id"]] += 1
    close_turn()
    return problems


def effects(jobs: Path) -> list[str]:
    """Side effects that really happened (the demo ledger), one entry each."""
    from supervisor.demo import Ledger

    return Ledger(jobs).effects()


# -- PostgreSQL ------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server for the session (initdb + pg_ctl), stopped at the end.

    When none can be started the Postgres tests skip, saying why.
    """
    from tests.pg_server import NoServer, Server, memory_scratch

    server = Server(memory_scratch())
    try:
        server.start()
    except NoServer as exc:
        server.stop()
        pytest.skip(f"no PostgreSQL server: {exc}")
    yield server
    server.stop()


@pytest.fixture
def pg_dsn(pg_server) -> Iterator[str]:
    """A fresh database on the session's server, with cubeloop's schema; dropped after."""
    dsn = pg_server.new_database()
    yield dsn
    pg_server.drop_database(dsn)


@pytest.fixture(scope="session")
def pg_demo_template(pg_server, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A Postgres database holding the demo threads (markers in its table), built once,
    and the directory of its ledger."""
    from supervisor.demo_db import build_demo_db

    dsn = pg_server.new_database(schema=False)
    ledger = tmp_path_factory.mktemp("pg-demo-ledger")
    build_demo_db(dsn, ledger_dir=ledger)
    return dsn, ledger


@pytest.fixture
def pg_demo(
    pg_server, pg_demo_template: tuple[str, Path], tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    """A private copy of the Postgres demo database (dropped after), and of its ledger."""
    import shutil

    template, template_ledger = pg_demo_template
    dsn = pg_server.copy_database(template)
    ledger = tmp_path / "ledger"
    shutil.copytree(template_ledger, ledger)
    yield dsn, ledger
    pg_server.drop_database(dsn)
