"""Postgres faults an operator meets: a lease connection the server ends, a restart.

A lease is an advisory lock held by a connection, and servers end connections
on their own (`idle_session_timeout`, `pg_terminate_backend`, a restart). A
lost lease must not let a second supervisor run the same call: the holder
keeps its lease connection alive, takes a lost lease back before its next
tool call, and writes nothing more if another process took it meanwhile.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from supervisor.location import open_store
from supervisor.pg.leases import LEASE_CLASS, PgLeaseBoard
from tests.conftest import effects
from tests.test_postgres_runs import machine, supervisor, wait_for_tool

pytestmark = pytest.mark.postgres


def admin(dsn: str, sql: str, *args: object) -> object:
    async def run() -> object:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def holder_over(board: PgLeaseBoard, thread: str, seconds: float) -> list[object]:
    """Who holds the thread's lease, sampled every 0.1 s for `seconds`."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        holder = board.held_elsewhere(thread)
        seen.append(None if holder is None else holder["pid"])
        time.sleep(0.1)
    return seen


def test_an_idle_session_timeout_never_ends_a_lease(pg_demo: tuple[str, Path]) -> None:
    dsn, ledger = pg_demo
    database = dsn.rsplit("/", 1)[1]
    # 50 ms: every idle spell of every connection ends it. The lease connection must keep
    # its lease, and the run's checkpointer connections must not be ended as a turn writes
    # (they were: the turn failed with "connection was closed in the middle of operation").
    admin(dsn, f'ALTER DATABASE "{database}" SET idle_session_timeout = 50')
    args = ["resume", dsn, "job-04", "--force", "--jobs-dir", dsn]
    run = supervisor(args, machine("host-a", ledger, 4))
    board = PgLeaseBoard(dsn)
    try:
        wait_for_tool(run)
        seen = holder_over(board, "job-04", 2.0)  # the lease connection idles all along
        assert set(seen) == {run.pid}, seen
        second = supervisor(args, machine("host-b", ledger, 0))
        out, err = second.communicate(timeout=60)
        assert second.returncode == 1 and "running" in out + err, out + err
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, out + err
    finally:
        board.close()
        run.kill()
    assert all(n == 1 for n in Counter(effects(ledger)).values())


def test_a_terminated_lease_connection_is_taken_back_before_anyone_else_runs_it(
    pg_demo: tuple[str, Path],
) -> None:
    dsn, ledger = pg_demo
    args = ["resume", dsn, "job-04", "--force", "--jobs-dir", dsn]
    run = supervisor(args, machine("host-a", ledger, 4))
    board = PgLeaseBoard(dsn)
    try:
        wait_for_tool(run)
        backend = board.held_elsewhere("job-04")["backend"]
        assert admin(dsn, "SELECT pg_terminate_backend($1)", backend)
        taken_back = time.monotonic()
        while (holder := board.held_elsewhere("job-04")) is None or holder["backend"] == backend:
            assert time.monotonic() - taken_back < 5, "the lost lease was not taken back"
            time.sleep(0.05)
        assert holder["pid"] == run.pid
        second = supervisor(args, machine("host-b", ledger, 0))
        out, err = second.communicate(timeout=60)
        assert second.returncode == 1 and "running" in out + err, out + err
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, out + err
        assert "lease lost" in out and "lease taken back" in out
    finally:
        board.close()
        run.kill()
    assert all(n == 1 for n in Counter(effects(ledger)).values())


def test_a_lease_another_process_took_while_it_was_lost_stops_the_run_without_a_write(
    pg_demo: tuple[str, Path],
) -> None:
    dsn, ledger = pg_demo
    args = ["resume", dsn, "job-04", "--force", "--jobs-dir", dsn]
    run = supervisor(args, machine("host-a", ledger, 4))
    board = PgLeaseBoard(dsn)

    async def steal() -> asyncpg.Connection:
        """End the holder's lease connection and take the lock at once, as a second
        supervisor would, on a connection kept open."""
        thief = await asyncpg.connect(dsn)
        backend = board.held_elsewhere("job-04")["backend"]
        await thief.fetchval("SELECT pg_terminate_backend($1)", backend)
        await thief.fetchval("SELECT pg_advisory_lock($1, hashtext($2))", LEASE_CLASS, "job-04")
        return thief

    try:
        wait_for_tool(run)
        before = open_store(dsn)
        rows = before.get("job-04").messages
        before.close()
        loop = asyncio.new_event_loop()
        thief = loop.run_until_complete(steal())
        out, err = run.communicate(timeout=60)
        assert "lease taken by" in out + err and "writes nothing more" in out + err
        after = open_store(dsn)
        assert after.get("job-04").messages == rows  # not one message more
        after.close()
        loop.run_until_complete(thief.close())
        loop.close()
    finally:
        board.close()
        run.kill()
    assert effects(ledger).count('process_item:{"item":"mail-402"}') <= 1


def test_a_server_restart_mid_run_doubles_nothing_and_the_watcher_carries_on(
    pg_server, pg_demo: tuple[str, Path]
) -> None:
    """`pg_ctl stop -m immediate` and start again while a watcher's run is inside a tool:
    the watcher keeps running (one line for the outage), every thread ends finished, each
    side effect once."""
    from supervisor.states import State
    from supervisor.watch import DEFAULT_STATES
    from tests.test_watch import wait_for

    dsn, ledger = pg_demo
    store = open_store(dsn)
    crashed = [s.thread_id for s in store.threads() if s.state in DEFAULT_STATES]
    store.close()
    before = Counter(effects(ledger))
    watcher = supervisor(
        ["watch", dsn, "--quiet", "0", "--poll", "0.2", "--jobs-dir", dsn],
        machine("host-a", ledger, 2),
    )
    try:
        wait_for_tool_line(watcher)
        pg_server.restart(down=1.0)

        def all_finished() -> bool:
            try:
                s = open_store(dsn)
            except Exception:
                return False
            try:
                return all(s.get(t).state is State.FINISHED for t in crashed)
            finally:
                s.close()

        wait_for(all_finished, timeout=150)
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, out + err
    assert "Traceback" not in out + err
    after = Counter(effects(ledger))
    assert all(n == 1 for n in after.values()), after - before
    assert after - before


def wait_for_tool_line(proc) -> None:
    for line in proc.stdout:
        if "resumed from" in line:
            time.sleep(0.5)  # its tool is running now
            return
    raise AssertionError(proc.stderr.read())


def test_a_server_that_stops_answering_does_not_keep_watch_past_sigterm(
    pg_demo: tuple[str, Path],
) -> None:
    """Every backend of the database stopped (SIGSTOP) under a watcher mid-tool: SIGTERM
    still ends the watcher within its abort grace and the shutdown margin, saying why; once
    the server answers again, nothing ran twice and no lease is left held."""
    import os

    from supervisor.cli.watch import SHUTDOWN_MARGIN

    dsn, ledger = pg_demo
    database = dsn.rsplit("/", 1)[1]
    before = Counter(effects(ledger))
    watcher = supervisor(
        ["watch", dsn, "--quiet", "0", "--poll", "0.2", "--abort-grace", "0.5", "--jobs-dir", dsn],
        machine("host-a", ledger, 3),
    )
    frozen: list[int] = []
    try:
        wait_for_tool_line(watcher)
        backends = [
            int(pid)
            for pid in admin(
                dsn,
                "SELECT string_agg(pid::text, ',') FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            ).split(",")
        ]
        for pid in backends:
            os.kill(pid, signal.SIGSTOP)
            frozen.append(pid)
        time.sleep(0.5)
        asked = time.monotonic()
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=60)
        took = time.monotonic() - asked
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        watcher.kill()
    assert took < 0.5 + SHUTDOWN_MARGIN + 5, took
    assert watcher.returncode == 128 + signal.SIGTERM, out + err
    assert "does the database answer?" in out, out + err
    assert "Traceback" not in out + err
    board = PgLeaseBoard(dsn)
    try:
        deadline = time.monotonic() + 30  # the server sees the dead client's connection go
        while any(board.held_elsewhere(f"job-{i:02d}") for i in range(1, 13)):
            assert time.monotonic() < deadline, "a lease outlived its holder"
            time.sleep(0.2)
    finally:
        board.close()
    after = Counter(effects(ledger))
    assert all(n == 1 for n in after.values()), after - before
