"""`resume --processes N`: threads spread over real worker processes, each once."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supervisor.leases import leases_dir, live_leases
from supervisor.shards import split
from tests.conftest import cli, effects, insert_rows, run_demo_child, user_json

THREADS = [f"b{i}" for i in range(4)]


@pytest.fixture
def waiting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A database with four threads between turns, two demo items each."""
    db, jobs = tmp_path / "jobs.db", tmp_path / "jobs"
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND", "0")
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOOL_SECONDS", "0")
    assert run_demo_child(db, "seed", jobs, prompt="Process items s-1") == 0
    insert_rows(db, [(t, user_json(f"Process items {t}-1, {t}-2")) for t in THREADS])
    return db, jobs


def start_resume(db: Path, jobs: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "supervisor", "resume", str(db), "--all", "--jobs-dir", str(jobs)]
        + list(extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def holders_until_all_run(db: Path, proc: subprocess.Popen[str]) -> dict[str, int]:
    """The pid holding each thread's lease, watched until every thread has been held."""
    holders: dict[str, int] = {}
    deadline = time.monotonic() + 30
    while len(holders) < len(THREADS) and time.monotonic() < deadline and proc.poll() is None:
        for thread_id, holder in live_leases(leases_dir(db)).items():
            holders[thread_id] = holder["pid"]
        time.sleep(0.02)
    return holders


def states(db: Path) -> dict[str, str]:
    listed = cli("list", str(db), "--json")
    assert listed.returncode == 0, listed.stderr
    return {t["thread_id"]: t["state"] for t in json.loads(listed.stdout)}


def test_threads_are_dealt_to_workers_within_the_concurrency_limit() -> None:
    assert split(["t0", "t1", "t2", "t3", "t4"], 2, 3) == [
        (["t0", "t2", "t4"], 2),
        (["t1", "t3"], 1),
    ]
    assert split(["t0", "t1"], 8, 10) == [(["t0"], 5), (["t1"], 5)]  # no idle workers
    assert split(["t0", "t1", "t2"], 4, 1) == [(["t0", "t1", "t2"], 1)]  # one run at a time


def test_resume_spreads_threads_over_worker_processes_each_once(
    waiting: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, jobs = waiting
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOOL_SECONDS", "0.4")
    proc = start_resume(db, jobs, "--processes", "2", "--max-concurrent", "4")
    holders = holders_until_all_run(db, proc)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "uses a rollback journal" in err  # the advice to switch to WAL
    assert sorted(holders) == THREADS
    pids = set(holders.values())
    assert len(pids) == 2 and proc.pid not in pids  # two workers, neither the parent
    assert {t: s for t, s in states(db).items() if t in THREADS} == dict.fromkeys(
        THREADS, "finished"
    )
    done = effects(jobs)
    assert len(done) == len(set(done)) == 1 + 2 * len(THREADS)  # every item once, the seed's too
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines and all(line.split()[0] in THREADS for line in lines)  # whole, prefixed lines


def test_ctrl_c_aborts_every_worker_gracefully(
    waiting: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, jobs = waiting
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOOL_SECONDS", "60")
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
    conn.close()
    proc = start_resume(db, jobs, "--processes", "2", "--max-concurrent", "4")
    assert sorted(holders_until_all_run(db, proc)) == THREADS
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=40)
    assert proc.returncode == 1  # the threads did not finish
    assert err.count("interrupt: aborting gracefully") == 2, err  # one per worker
    assert "Traceback" not in err and "rollback journal" not in err
    assert live_leases(leases_dir(db)) == {}
    assert len(effects(jobs)) == 1  # the seed's item: none of an aborted thread's
    assert not {s for t, s in states(db).items() if t in THREADS} & {"running", "finished"}
