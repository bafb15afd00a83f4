"""Runs on Postgres: leases every "machine" sees, aborts across hosts, exactly once.

Two machines are two supervisor processes with different host names
(`AGENT_SUPERVISOR_HOST`) and nothing shared but the server: their file
lease directories would never see each other, the advisory locks do.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from supervisor.jobs import MARKERS_VARIABLE
from supervisor.leases import LeaseHeld
from supervisor.location import open_store
from supervisor.pg.leases import PgLeaseBoard
from supervisor.states import RESUMABLE, State
from tests.conftest import ROOT, effects, run_demo_child, transcript_problems
from tests.test_exactly_once import DISTINCT_CASES, resume_and_check

pytestmark = pytest.mark.postgres


def machine(host: str, ledger: Path, tool_seconds: float) -> dict[str, str]:
    """The environment of a supervisor on another machine."""
    return {
        **os.environ,
        "AGENT_SUPERVISOR_HOST": host,
        "JOB_DIR": str(ledger),
        "AGENT_SUPERVISOR_DEMO_TOOL_SECONDS": str(tool_seconds),
        "AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND": "0",
    }


def supervisor(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "supervisor", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_tool(proc: subprocess.Popen) -> None:
    for line in proc.stdout:
        if line.startswith("⚙"):
            return
    raise AssertionError(f"the resume ended early: {proc.stderr.read()}")


def test_two_machines_racing_run_each_thread_once(pg_demo: tuple[str, Path]) -> None:
    dsn, ledger = pg_demo
    before = open_store(dsn)
    resumable = {s.thread_id for s in before.threads() if s.state in RESUMABLE}
    before.close()
    effects_before = Counter(effects(ledger))
    # `--jobs-dir DSN`: markers in Postgres, where both machines see them.
    args = ["resume", dsn, "--all", "--force", "--jobs-dir", dsn]
    a = supervisor(args, machine("host-a", ledger, 0.3))
    b = supervisor(args, machine("host-b", ledger, 0.3))
    out_a, err_a = a.communicate(timeout=120)
    out_b, err_b = b.communicate(timeout=120)
    # A run starts (▶) once it holds the lease; a thread may be queued on both machines.
    ran_a = {line.split()[0] for line in (out_a + err_a).splitlines() if "  ▶ " in line}
    ran_b = {line.split()[0] for line in (out_b + err_b).splitlines() if "  ▶ " in line}
    assert not ran_a & ran_b, (out_a, out_b)  # no thread ran on both machines
    assert ran_a | ran_b == resumable, (out_a, err_a, out_b, err_b)
    assert "running in another supervisor" in out_a + err_a + out_b + err_b
    after = Counter(effects(ledger))
    assert all(n == 1 for n in after.values()), after  # no side effect twice
    assert after - effects_before  # and the resumed threads did do their work
    store = open_store(dsn)
    try:
        for thread in resumable:
            assert store.get(thread).state is State.FINISHED, thread
            assert transcript_problems(dsn, thread) == []
    finally:
        store.close()


def test_a_killed_holder_frees_the_lease_for_the_other_machine(
    pg_demo: tuple[str, Path],
) -> None:
    dsn, ledger = pg_demo
    args = ["resume", dsn, "job-04", "--force", "--jobs-dir", dsn]
    holder = supervisor(args, machine("host-a", ledger, 30))
    try:
        wait_for_tool(holder)
        board = PgLeaseBoard(dsn)
        seen = board.held_elsewhere("job-04")
        assert seen is not None and seen["pid"] == holder.pid and seen["host"] == "host-a"
        listed = json.loads(
            subprocess.run(
                [sys.executable, "-m", "supervisor", "list", dsn, "--json", "--state", "running"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                env=machine("host-b", ledger, 0),
                timeout=60,
            ).stdout
        )
        assert [(t["thread_id"], t["holder"]["host"]) for t in listed] == [("job-04", "host-a")]
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        deadline = time.monotonic() + 60  # a hang guard, not a timing
        while board.held_elsewhere("job-04") is not None:
            assert time.monotonic() < deadline, "the server kept a dead holder's lease"
            time.sleep(0.02)
        board.close()
    finally:
        holder.kill()
        holder.wait()
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=machine("host-b", ledger, 0),
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(n == 1 for n in Counter(effects(ledger)).values())


def test_abort_reaches_a_holder_on_another_machine(pg_demo: tuple[str, Path]) -> None:
    dsn, ledger = pg_demo
    holder = supervisor(
        ["resume", dsn, "job-05", "--force", "--jobs-dir", dsn], machine("host-a", ledger, 30)
    )
    try:
        wait_for_tool(holder)
        out = subprocess.run(
            [sys.executable, "-m", "supervisor", "abort", dsn, "job-05", "job-01"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=machine("host-b", ledger, 0),
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert f"job-05: stopped (pid {holder.pid} on host-a)" in out.stdout
        assert "job-01: not running" in out.stdout
        rest = holder.stdout.read()
        assert holder.wait(10) == 1  # it stopped without finishing
    finally:
        holder.kill()
        holder.wait()
    assert "abort requested by pid" in rest and "on host-b" in rest
    store = open_store(dsn)
    assert store.get("job-05").state in RESUMABLE
    store.close()


async def test_a_lease_taken_before_its_threads_first_row_shows_once_the_row_is_there(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new thread's run takes its lease before its first write: a look in between names
    nobody, and the thread must still show as held once its row exists (it never did)."""
    import asyncpg

    from supervisor.pg import leases as pg_leases

    monkeypatch.setattr(pg_leases, "NAME_AGAIN", 0.2)
    holder, viewer = PgLeaseBoard(pg_dsn), PgLeaseBoard(pg_dsn)
    lease = await holder.acquire("brand-new")
    try:
        assert await asyncio.to_thread(viewer.live) == {}
        conn = await asyncpg.connect(pg_dsn)
        await conn.execute("INSERT INTO cubepi_threads (thread_id) VALUES ('brand-new')")
        await conn.close()
        await asyncio.sleep(0.3)
        assert set(await asyncio.to_thread(viewer.live)) == {"brand-new"}
    finally:
        await holder.release(lease)
        holder.close()
        viewer.close()


async def test_a_lease_never_blocks_cubeloops_own_writes(pg_dsn: str) -> None:
    from cubeloop import TextContent
    from cubeloop.providers.base import UserMessage

    from supervisor.location import Location

    board = PgLeaseBoard(pg_dsn)
    lease = await board.acquire("t")
    try:
        with pytest.raises(LeaseHeld):
            await board.acquire("t")
        async with Location.parse(pg_dsn).checkpointer() as cp:
            message = UserMessage(content=[TextContent(text="hello")], timestamp=0)
            await asyncio.wait_for(cp.append("t", [message]), 5)  # cubeloop's xact lock
            await asyncio.wait_for(cp.append("other", [message]), 5)
    finally:
        await board.release(lease)
        board.close()
    again = PgLeaseBoard(pg_dsn)
    lease = await again.acquire("t")  # freed on release
    await again.release(lease)
    again.close()


# -- the kill matrix, on Postgres with markers in Postgres -----------------------------


@pytest.mark.parametrize("kill", DISTINCT_CASES)
async def test_crash_then_resume_is_exactly_once_on_postgres(
    pg_server, tmp_path: Path, kill: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from supervisor.pg.client import connect
    from supervisor.pg.schema import create_markers_table

    dsn, ledger = await asyncio.to_thread(pg_server.new_database), tmp_path / "ledger"
    conn = await connect(dsn)
    await create_markers_table(conn)
    await conn.close()
    code = await asyncio.to_thread(run_demo_child, dsn, "t", dsn, ledger_dir=str(ledger), **kill)
    assert code == -signal.SIGKILL, code

    monkeypatch.setenv("JOB_DIR", str(ledger))
    monkeypatch.setenv(MARKERS_VARIABLE, dsn)
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOOL_SECONDS", "0")
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND", "0")
    await resume_and_check(dsn, dsn, ledger)


def test_answer_prompt_and_show_take_a_url(pg_demo: tuple[str, Path]) -> None:
    dsn, ledger = pg_demo
    env = machine("host-a", ledger, 0)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "supervisor", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    asked = run("answer", dsn, "job-09", "--json")
    assert asked.returncode == 0 and json.loads(asked.stdout)["kind"] == "approve"
    answered = run("answer", dsn, "job-09", "--approve", "--force")
    assert answered.returncode == 0, answered.stdout + answered.stderr
    prompted = run("prompt", dsn, "job-01", "Process items X", "--force")
    assert prompted.returncode == 0, prompted.stdout + prompted.stderr
    shown = run("show", dsn, "job-01", "--json")
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["state"] == "finished"
    store = open_store(dsn)
    try:
        assert store.get("job-09").state is State.FINISHED
        assert store.get("job-01").messages > 7
    finally:
        store.close()
    assert effects(ledger).count('refund:{"amount_eur":420,"order":"9001"}') == 1


def test_a_watcher_on_postgres_finishes_crashed_threads_and_holds_in_our_table(
    pg_demo: tuple[str, Path],
) -> None:
    from supervisor.location import Location

    dsn, ledger = pg_demo
    watcher = supervisor(
        ["watch", dsn, "--quiet", "0", "--poll", "0.2"], machine("host-w", ledger, 0)
    )
    board = Location.parse(dsn).leases()
    try:
        deadline = time.monotonic() + 60
        while True:
            store = open_store(dsn)
            states = {s.thread_id: s.state for s in store.threads()}
            store.close()
            if all(states[t] is State.FINISHED for t in ("job-02", "job-04", "job-07")):
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.2)
        assert [w["host"] for w in board.watchers()] == ["host-w"]
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=30)
        board.close()
    assert watcher.returncode == 0, err
    assert states["job-09"] is State.AWAITING_INPUT  # a human's question is never answered for them
    assert "job-06:" not in out  # aborted by a person: not resumed unless --states says so
    assert all(n == 1 for n in Counter(effects(ledger)).values())
    attempts = Location.parse(dsn).attempts()
    attempts.failed("job-06", "boom", None, max_attempts=1)
    store = open_store(dsn)
    assert store.get("job-06").state is State.HELD
    store.close()
    assert attempts.release(["job-06", "job-01"]) == ["job-06"]
    attempts.close()
