"""Runs held by other supervisor processes: seen with their holder, stopped on request."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from supervisor import leases
from supervisor.location import open_store
from supervisor.states import RESUMABLE, State
from tests.conftest import cli
from tests.test_headless import start_slow_resume


def wait_for_tool(proc) -> None:
    """Read the child's events until its first tool starts (the lease is held by then)."""
    for line in proc.stdout:
        if line.startswith("⚙"):
            return
    raise AssertionError(f"the resume ended early: {proc.stderr.read()}")


def test_list_names_the_holder_and_abort_stops_it_gracefully(demo_db: Path) -> None:
    proc = start_slow_resume(demo_db, "job-04")
    try:
        wait_for_tool(proc)
        (listed,) = json.loads(cli("list", str(demo_db), "--json", "--state", "running").stdout)
        assert listed["thread_id"] == "job-04"
        assert listed["holder"]["pid"] == proc.pid and listed["holder"]["host"]
        text = cli("list", str(demo_db)).stdout
        assert f"held by pid {proc.pid} on" in text

        out = cli("abort", str(demo_db), "job-04", "job-05")
        assert out.returncode == 0, out.stderr
        assert f"job-04: stopped (pid {proc.pid} on" in out.stdout
        assert "job-05: not running" in out.stdout
        rest = proc.stdout.read()
        assert proc.wait(10) == 1  # the resume did not finish: it was aborted
    finally:
        proc.kill()
        proc.wait()
    assert "abort requested by pid" in rest and "■ aborted (aborted" in rest
    state = open_store(demo_db).get("job-04").state
    assert state in RESUMABLE  # the thread stays resumable


def test_a_dead_holder_is_simply_not_running(demo_db: Path) -> None:
    proc = start_slow_resume(demo_db, "job-04")
    try:
        wait_for_tool(proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    out = cli("abort", str(demo_db), "job-04")
    assert out.returncode == 0 and out.stdout.strip() == "job-04: not running"
    assert not list(leases.leases_dir(demo_db).glob("*.abort"))  # nothing left behind


def test_abort_of_an_unknown_thread_is_bad_input(demo_db: Path) -> None:
    out = cli("abort", str(demo_db), "nope")
    assert out.returncode == 2 and "no thread 'nope'" in out.stderr


def test_a_request_for_an_earlier_holder_never_aborts_a_later_run(tmp_path: Path) -> None:
    first = leases.acquire(tmp_path, "t")
    stale = {"pid": os.getpid(), "since": first.since - 50, "by": {"pid": 1, "host": "h"}}
    leases.abort_path(first.path).write_text(json.dumps(stale))
    assert leases.abort_requested(first) is None  # meant for someone else: ignored
    leases.abort_path(first.path).write_text(json.dumps({**stale, "since": first.since}))
    first.release()  # released before it looked: the request dies with the lease
    second = leases.acquire(tmp_path, "t")
    try:
        assert not leases.abort_path(second.path).exists()
        assert leases.abort_requested(second) is None
    finally:
        second.release()
    assert leases.request_abort(tmp_path, "t") is None  # nobody holds it: nothing written
    assert not leases.abort_path(second.path).exists()


def test_running_elsewhere_is_a_state_with_a_holder_in_the_store(demo_db: Path) -> None:
    proc = start_slow_resume(demo_db, "job-05")
    try:
        wait_for_tool(proc)
        store = open_store(demo_db)
        summary = store.get("job-05")
        assert summary.state is State.RUNNING and summary.holder["pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait()
    store.refresh()
    assert store.get("job-05").holder is None and store.get("job-05").state is not State.RUNNING
    store.close()
