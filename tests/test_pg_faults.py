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
from supervisor.states import State
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
    """Every idle spell of every connection ends it: the database's timeout is 2 ms, and
    the URL the supervisor is given names 50 ms. The lease connection must keep its lease;
    the run's checkpointer connections must not be ended as a turn writes (they were:
    "connection was closed in the middle of operation", the thread left `error`); the
    listing's and the markers' connections must not fail a command (they did, now and
    then, at 30 ms)."""
    dsn, ledger = pg_demo
    database = dsn.rsplit("/", 1)[1]
    admin(dsn, f'ALTER DATABASE "{database}" SET idle_session_timeout = 2')
    url = dsn + "?idle_session_timeout=50"
    args = ["resume", url, "job-04", "--force", "--jobs-dir", url]
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
        listing = supervisor(["list", url, "--json"], machine("host-b", ledger, 0))
        out, err = listing.communicate(timeout=60)
        assert listing.returncode == 0 and '"job-04"' in out, err
        for _ in range(10):  # each a new store: its queries come with gaps past 2 ms
            store = open_store(url)
            try:
                assert store.get("job-04").state is State.FINISHED
            finally:
                store.close()
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


def test_a_client_whose_connection_the_server_ended_connects_again_for_the_next_query(
    pg_dsn: str,
) -> None:
    """Ended while idle, and asked at once (the server's goodbye may not have closed the
    connection on our side yet: asyncpg then says "another operation is in progress"):
    the query runs on a new connection, said once; its session is kept like the first's."""
    from supervisor.pg.client import SyncClient

    database = pg_dsn.rsplit("/", 1)[1]
    admin(pg_dsn, f'ALTER DATABASE "{database}" SET idle_session_timeout = 60000')
    client = SyncClient(pg_dsn, "store")
    try:
        assert client.fetchval("SHOW idle_session_timeout") == "0"
        for _ in range(3):
            backend = client.fetchval("SELECT pg_backend_pid()")
            assert admin(pg_dsn, "SELECT pg_terminate_backend($1)", backend)
            assert client.fetchval("SELECT pg_backend_pid()") != backend
            notices = client.take_notices()
            assert [n.split(": ", 1)[1] for n in notices] == [
                "lost the connection; connecting again",
                "connected again",
            ], notices
        assert client.fetchval("SHOW idle_session_timeout") == "0"
    finally:
        client.close()
