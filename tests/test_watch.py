"""The watcher: resumes crashed threads by policy, backs off, holds, and never doubles work."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from supervisor.agents import load_factory
from supervisor.attempts import FileAttempts
from supervisor.location import open_store
from supervisor.runner import Runner, RunnerConfig
from supervisor.states import State
from supervisor.watch import Policy, Watcher
from tests.conftest import ROOT, cli, crash, effects, run_demo_child, transcript_problems


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_a_crash_loop_backs_off_as_configured_then_is_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, jobs = tmp_path / "loop.db", tmp_path / "jobs"
    run_demo_child(db, "t", jobs, fail_turn=1)  # the first model call fails: `error`
    monkeypatch.setenv("JOB_DIR", str(jobs))
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND", "0")
    clock = Clock(time.time() + 3600)  # an hour on: the thread is long quiet
    lines: list[str] = []
    config = RunnerConfig(
        database=db, factory=load_factory("tests.agents.crashloop:agent"), jobs_dir=jobs
    )
    store, ledger = open_store(db), FileAttempts(db)
    policy = Policy(max_attempts=3, backoff=(10.0, 15.0), quiet=5.0)
    started_at: list[float] = []
    async with Runner(config) as runner:
        watcher = Watcher(store, runner, ledger, policy, clock=clock, log=lines.append)
        for _ in range(60):  # one look every 0.5 s of the fake clock
            if await watcher.step():
                started_at.append(clock.now)
                await runner.wait_all()
                assert await watcher.step() == []  # the failure is counted now: backing off
            clock.now += 0.5
    # attempt 1 at once; 2 after 10 s; 3 after 15 s (10 doubled, capped at 15); then held
    assert [round(b - a, 1) for a, b in zip(started_at, started_at[1:], strict=False)] == [
        10.0,
        15.0,
    ]
    assert store.get("t").state is State.HELD
    assert store.get("t").attempt.attempts == 3
    assert "provider down (HTTP 503)" in store.get("t").attempt.last_error
    assert any("backing off until" in line for line in lines)
    assert any("held after 3 attempt(s): provider down" in line for line in lines)
    listed = json.loads(cli("list", str(db), "--json").stdout)
    assert listed[0]["state"] == "held" and listed[0]["attempts"]["attempts"] == 3
    assert "held after 3 attempt(s)" in cli("list", str(db)).stdout

    released = cli("release", str(db), "t", "nope")
    assert released.returncode == 2 and "no thread 'nope'" in released.stderr
    released = cli("release", str(db), "t")
    assert released.returncode == 0 and "t: released" in released.stdout
    async with Runner(config) as runner:
        watcher = Watcher(store, runner, ledger, policy, clock=clock, log=lines.append)
        assert await watcher.step() == ["t"]  # eligible again
        await runner.wait_all()
    store.close()
    ledger.close()


def test_a_held_thread_is_still_resumable_by_hand(tmp_path: Path) -> None:
    db, jobs = tmp_path / "h.db", tmp_path / "jobs"
    run_demo_child(db, "t", jobs, fail_turn=1)
    ledger = FileAttempts(db)
    ledger.failed("t", "boom", None, max_attempts=1)
    ledger.close()
    store = open_store(db)
    summary = store.get("t")
    assert summary.state is State.HELD and summary.resume_state is State.ERROR
    store.close()
    out = cli("resume", str(db), "t", "--jobs-dir", str(jobs), "--force")
    assert out.returncode == 0, out.stdout + out.stderr
    assert open_store(db).get("t").state is State.FINISHED  # no longer held: it finished


def watch_process(
    db: Path | str, jobs: Path, *extra: str, host: str = "", tool_seconds: float = 0.0
) -> subprocess.Popen:
    env = {
        **os.environ,
        "JOB_DIR": str(jobs),
        "AGENT_SUPERVISOR_DEMO_TOOL_SECONDS": str(tool_seconds),
        "AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND": "0",
    }
    if host:
        env["AGENT_SUPERVISOR_HOST"] = host
    return subprocess.Popen(
        [sys.executable, "-m", "supervisor", "watch", str(db), "--poll", "0.2", *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def state(db: Path, thread: str) -> State | None:
    store = open_store(db)
    try:
        s = store.get(thread)
        return s.state if s else None
    finally:
        store.close()


def test_a_thread_killed_by_another_process_is_finished_once_after_the_quiet(
    tmp_path: Path,
) -> None:
    db, jobs = tmp_path / "w.db", tmp_path / "jobs"
    run_demo_child(db, "done", jobs, prompt="Process items P..Q")  # finished: never touched
    watcher = watch_process(db, jobs, "--quiet", "2")
    try:
        crash(db, "t", jobs, kill_at_marker="after_start:B")  # a real SIGKILL, mid-tool
        crashed_rows = len(open_store(db).transcript("t").entries)
        wait_for(lambda: state(db, "t") is State.FINISHED)
        # Not before the quiet period, by the database's own clock: the resume's first row
        # came at least --quiet seconds after the crashed run's last one.
        times = [e.created_at for e in open_store(db).transcript("t").entries]
        assert times[crashed_rows] - times[crashed_rows - 1] >= 2
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    assert "t: resumed from mid_tool (attempt 1)" in out and "t: finished" in out
    assert "done:" not in out
    assert Counter(effects(jobs)) == Counter(
        f'process_item:{{"item":"{i}"}}' for i in ("P", "Q", "A", "B", "C")
    )  # each side effect once
    assert transcript_problems(db, "t") == []


def test_a_thread_still_being_written_is_not_touched(tmp_path: Path) -> None:
    db, jobs = tmp_path / "live.db", tmp_path / "jobs"
    run_demo_child(db, "seed", jobs)
    watcher = watch_process(db, jobs, "--quiet", "3")
    try:
        # A live writer that is no supervisor: 1 s tools, so it writes every second.
        code = run_demo_child(db, "live", jobs, tool_seconds=1.0, prompt="Process items A..D")
        assert code == 0
        time.sleep(1)
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, _ = watcher.communicate(timeout=30)
    assert "live:" not in out  # mid_tool and after_tools between writes, never quiet for 3 s
    assert state(db, "live") is State.FINISHED


def test_two_watchers_never_run_one_thread_twice_and_one_finishes_what_the_other_dropped(
    demo_db: Path,
) -> None:
    jobs = demo_db.with_name("demo.db.jobs")
    before = Counter(effects(jobs))
    a = watch_process(demo_db, jobs, "--quiet", "1", host="host-a", tool_seconds=1.5)
    b = watch_process(demo_db, jobs, "--quiet", "1", host="host-b", tool_seconds=1.5)
    killed = None
    try:
        for line in a.stdout:  # kill watcher A mid-run: a thread of its stays behind
            if ": resumed from" in line:
                killed = line.split()[2].rstrip(":")
                a.send_signal(signal.SIGKILL)
                break
        assert killed is not None
        wait_for(
            lambda: all(
                state(demo_db, t) is State.FINISHED
                for t in ("job-02", "job-03", "job-04", "job-05", "job-07", "job-12")
            ),
            timeout=120,
        )
    finally:
        a.kill()
        b.send_signal(signal.SIGTERM)
        out_b, err_b = b.communicate(timeout=30)
        a.communicate(timeout=30)
    assert b.returncode == 0, err_b
    assert f"{killed}: resumed from" in out_b  # B finished what A dropped
    assert state(demo_db, killed) is State.FINISHED
    new = Counter(effects(jobs)) - before
    assert new and all(n == 1 for n in Counter(effects(jobs)).values())  # nothing twice


def test_sigterm_aborts_runs_gracefully_and_threads_stay_resumable(demo_db: Path) -> None:
    jobs = demo_db.with_name("demo.db.jobs")
    watcher = watch_process(demo_db, jobs, "--quiet", "0", "--abort-grace", "2", tool_seconds=600)
    for line in watcher.stdout:
        if ": resumed from" in line:
            break
    time.sleep(0.5)  # its tools are running now
    watcher.send_signal(signal.SIGTERM)
    out, err = watcher.communicate(timeout=60)  # its 600 s tools were not waited for
    assert watcher.returncode == 0, err
    assert "stopping: aborting" in out and "stopped" in out
    store = open_store(demo_db)
    try:
        for s in store.threads():
            assert s.state is not State.RUNNING
        records = [s.attempt for s in store.threads() if s.attempt is not None]
        assert records and all(a.parked and a.attempts == 0 for a in records)  # no failure
        parked = [s.thread_id for s in store.threads() if s.attempt is not None]
        assert any(store.get(t).state is State.ABORTED for t in parked)
    finally:
        store.close()
    # systemctl restart: the next watcher takes the threads the last one stopped up again,
    # aborted ones included (its --states leave aborted alone otherwise).
    before = Counter(effects(jobs))
    again = watch_process(demo_db, jobs, "--quiet", "0", tool_seconds=0)
    try:
        wait_for(lambda: all(state(demo_db, t) is State.FINISHED for t in parked), timeout=120)
    finally:
        again.send_signal(signal.SIGTERM)
        out, err = again.communicate(timeout=30)
    assert again.returncode == 0, err
    assert all(f"{t}: resumed from" in out for t in parked), out
    assert all(n == 1 for n in Counter(effects(jobs)).values())  # nothing twice
    assert Counter(effects(jobs)) - before  # and the stopped work was done


def test_a_running_watcher_is_seen_by_other_processes(demo_db: Path) -> None:
    from supervisor.location import Location

    jobs = demo_db.with_name("demo.db.jobs")
    board = Location.parse(demo_db).leases()
    assert board.watchers() == []
    watcher = watch_process(demo_db, jobs, "--quiet", "3600", host="watch-box")
    try:
        for line in watcher.stdout:
            if line.split(" ", 2)[-1].startswith("watching"):
                break
        wait_for(lambda: board.watchers() != [], timeout=10)
        [seen] = board.watchers()
        assert seen["pid"] == watcher.pid and seen["host"] == "watch-box"
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.communicate(timeout=30)
    assert board.watchers() == []
    assert not [p for p in board.directory.glob("*.lock") if "watch" in p.read_text()]


def test_bad_watch_options_are_one_line() -> None:
    for args, says in [
        (["--states", "awaiting_input"], "never resumes awaiting_input"),
        (["--backoff", "10"], "INITIAL,MAX"),
        (["--backoff", "20,10"], "INITIAL <= MAX"),
        (["--quiet", "-1"], "must be between 0 and"),
    ]:
        out = cli("watch", "x.db", *args)
        assert out.returncode == 2 and says in out.stderr, (args, out.stderr)
        assert out.stderr.count("\n") <= 2 and "Traceback" not in out.stderr


async def test_a_running_watcher_tries_a_released_thread_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, jobs = tmp_path / "r.db", tmp_path / "jobs"
    run_demo_child(db, "t", jobs, fail_turn=1)
    monkeypatch.setenv("JOB_DIR", str(jobs))
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND", "0")
    clock = Clock(time.time() + 3600)
    config = RunnerConfig(
        database=db, factory=load_factory("tests.agents.crashloop:agent"), jobs_dir=jobs
    )
    store, ledger = open_store(db), FileAttempts(db)
    policy = Policy(max_attempts=1, backoff=(1.0, 1.0), quiet=0.0)
    async with Runner(config) as runner:
        watcher = Watcher(store, runner, ledger, policy, clock=clock, log=lambda _line: None)
        assert await watcher.step() == ["t"]
        await runner.wait_all()
        clock.now += 10
        assert await watcher.step() == []  # failed once: held
        assert await watcher.step() == []
        assert store.get("t").state is State.HELD
        assert cli("release", str(db), "t").returncode == 0  # another process releases it
        clock.now += 10
        assert await watcher.step() == ["t"]  # the same watcher takes it up again
        await runner.wait_all()
    store.close()
    ledger.close()


def test_a_lock_held_past_the_busy_timeout_is_waited_out_not_fatal(tmp_path: Path) -> None:
    """A VACUUM (any writer holding its lock) longer than --busy-timeout: the watcher says
    so once, backs off, and carries on; the crashed thread is finished once the lock goes."""
    db, jobs = tmp_path / "w.db", tmp_path / "jobs"
    run_demo_child(db, "done", jobs, prompt="Process items P..Q")
    watcher = watch_process(db, jobs, "--quiet", "0", "--busy-timeout", "0.2")
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        for line in watcher.stdout:
            if "watching" in line:
                break
        holder.execute("BEGIN EXCLUSIVE")
        crash_after = time.monotonic() + 3
        while time.monotonic() < crash_after:
            time.sleep(0.1)
        holder.execute("COMMIT")
        crash(db, "t", jobs, kill_at_marker="after_start:B")
        wait_for(lambda: state(db, "t") is State.FINISHED)
    finally:
        holder.close()
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err + out
    assert out.count("look failed") == 1 and "locked" in out, out
    assert "looking again" in out and "t: finished" in out


async def test_an_idle_look_does_not_go_over_threads_that_cannot_be_due_yet(
    demo_db: Path, monkeypatch: pytest.MonkeyPatch, fast_demo: None
) -> None:
    """A thread found too recent (or backing off) is not weighed again before its time:
    an idle watcher over thousands of crashed threads cost 1.4% of a core weighing each
    every second. It is still started the moment it is due."""
    from tests.test_runner import config

    store, ledger = open_store(demo_db), FileAttempts(demo_db)
    newest = max(s.last_activity or 0.0 for s in store.threads())
    clock = Clock(newest + 1.0)
    policy = Policy(quiet=60.0, max_concurrent=20)
    weighed: list[str] = []
    real_due = Watcher._due

    def due(self: Watcher, s, now: float) -> bool:
        weighed.append(s.thread_id)
        return real_due(self, s, now)

    monkeypatch.setattr(Watcher, "_due", due)
    async with Runner(config(demo_db)) as runner:
        watcher = Watcher(store, runner, ledger, policy, clock=clock, log=lambda _line: None)
        assert await watcher.step() == []
        candidates = set(weighed)
        assert len(candidates) >= 5  # mid_tool, after_tools, between_turns, error, answered
        for _ in range(30):  # half a minute of looks
            clock.now += 1.0
            weighed.clear()
            assert await watcher.step() == []
            assert weighed == []
        clock.now = newest + 61.0  # every one is quiet enough now
        started = await watcher.step()
        assert set(started) == candidates
        await runner.wait_all()
    store.close()
    ledger.close()
