"""A run held by another supervisor: shown with its holder, stopped with `a`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from supervisor.ui.screens.confirm import ConfirmScreen
from tests.test_headless import start_slow_resume
from tests.test_other_supervisors import wait_for_tool
from tests.ui.conftest import FIXED_NOW, HINT, build_app, select, settle, table_rows
from tests.ui.test_live import watching_app
from tests.ui.test_snapshots import WIDE, select_before

#: Holds a thread's lease with a fixed record, as a supervisor elsewhere would.
HOLDER = """
import fcntl, json, os, sys, time
from supervisor.leases import lease_path, leases_dir
directory = leases_dir(sys.argv[1]); directory.mkdir(exist_ok=True)
fd = os.open(lease_path(directory, sys.argv[2]), os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
record = {"thread_id": sys.argv[2], "pid": 4242, "host": "build-3", "since": float(sys.argv[3])}
os.ftruncate(fd, 0); os.write(fd, json.dumps(record).encode())
print("held", flush=True)
time.sleep(60)
"""


def hold(db: Path, thread: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db), thread, str(FIXED_NOW - 120)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


async def wait_until(pilot, condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        await pilot.pause(0.05)
    assert condition()


async def test_a_run_elsewhere_shows_its_holder_and_a_stops_it(workdir: Path) -> None:
    app = watching_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-05")
        proc = start_slow_resume(workdir / "demo.db", "job-05")
        try:
            wait_for_tool(proc)
            await wait_until(pilot, lambda: table_rows(app)["job-05"][1] == "▶ running")
            assert f"held by pid {proc.pid}" in table_rows(app)["job-05"][HINT]
            notice = str(app.query_one("#detail-request").render())
            assert "Running in another supervisor" in notice and f"pid {proc.pid}" in notice
            await pilot.press("a")
            await pilot.pause()
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
            await wait_until(pilot, lambda: proc.poll() is not None)
            await wait_until(pilot, lambda: table_rows(app)["job-05"][1] == "■ aborted")
        finally:
            proc.kill()
            proc.wait()


async def test_a_holder_that_dies_stops_showing_running(workdir: Path) -> None:
    app = watching_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        proc = hold(workdir / "demo.db", "job-04")
        try:
            await wait_until(pilot, lambda: table_rows(app)["job-04"][1] == "▶ running")
        finally:
            proc.kill()  # the kernel frees the lock; no file changes
            proc.wait()
        await wait_until(pilot, lambda: table_rows(app)["job-04"][1] == "◑ after_tools")


async def test_a_holder_only_a_refresh_saw_is_seen_to_die(workdir: Path, monkeypatch) -> None:
    """A refresh a write set off folds a holder the lease poll never saw (it lived between
    two looks, or a look slow to end came after newer ones); when it dies, the next look
    must still refresh: it compares with what the list folded, not with its own last look."""
    app = watching_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        looks = app.reader.poll_leases_work
        paused = [True]
        monkeypatch.setattr(app.reader, "poll_leases_work", lambda: None if paused[0] else looks())
        await pilot.pause(1.0)  # a look under way has ended
        proc = hold(workdir / "demo.db", "job-04")
        try:
            app.request_refresh()  # as a write to the database would
            await wait_until(pilot, lambda: table_rows(app)["job-04"][1] == "▶ running")
        finally:
            proc.kill()
            proc.wait()
        paused[0] = False
        await wait_until(pilot, lambda: table_rows(app)["job-04"][1] == "◑ after_tools")


def test_thread_held_elsewhere(workdir: Path, snap_compare) -> None:
    proc = hold(workdir / "demo.db", "job-04")
    try:
        assert snap_compare(build_app(), terminal_size=WIDE, run_before=select_before("job-04"))
    finally:
        proc.kill()
        proc.wait()


async def test_the_app_clears_lease_files_dead_holders_left_and_keeps_live_ones(
    workdir: Path,
) -> None:
    """Lease files nobody holds (an older version's emptied ones, a SIGKILLed holder's) are
    read on every look at the leases: the app removes them once; a live lease stays, shown."""
    from supervisor.leases import lease_path, leases_dir

    directory = leases_dir(workdir / "demo.db")
    directory.mkdir(mode=0o700, exist_ok=True)
    for i in range(300):
        lease_path(directory, f"gone-{i}").write_text("" if i % 3 else '{"thread_id": "x"}')
    proc = hold(workdir / "demo.db", "job-04")
    try:
        app = watching_app()
        async with app.run_test(size=(160, 45)) as pilot:
            await settle(pilot)
            await wait_until(pilot, lambda: len(list(directory.glob("*.lock"))) == 1)
            await wait_until(pilot, lambda: table_rows(app)["job-04"][1] == "▶ running")
    finally:
        proc.kill()
        proc.wait()
    assert [p.name for p in directory.glob("*.lock")] == [lease_path(directory, "job-04").name]


async def test_leases_that_change_while_refreshes_fail_ask_again_only_after_a_wait(
    workdir: Path, monkeypatch
) -> None:
    """A locked database fails every refresh; a holder that came meanwhile keeps the live
    leases unlike those the last good refresh folded. The lease poll asks for one refresh,
    not one a look (twice a second), until `AFTER_A_FAILURE` has passed."""
    import sqlite3

    from supervisor.ui import reading

    monkeypatch.setattr(reading, "AFTER_A_FAILURE", 3.0)  # 5 s: a shorter test
    app = watching_app(busy_timeout=0.1)
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        tries: list[float] = []
        real = app.store.refresh

        def counted() -> set[str]:
            tries.append(time.monotonic())
            return real()

        app.store.refresh = counted
        locker = sqlite3.connect(workdir / "demo.db", isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # a rollback-journal file: readers are kept out
        proc = hold(workdir / "demo.db", "job-04")
        try:
            await wait_until(pilot, lambda: len(tries) >= 1)
            await pilot.pause(reading.AFTER_A_FAILURE - 0.5)
            # A look under way as the first refresh failed may have asked once more;
            # one a look would be five by now.
            assert len(tries) <= 2, tries
            locker.execute("ROLLBACK")
            await wait_until(pilot, lambda: table_rows(app)["job-04"][1] == "▶ running")
            assert len(tries) <= 3 and tries[-1] - tries[0] >= reading.AFTER_A_FAILURE, tries
        finally:
            locker.close()
            proc.kill()
            proc.wait()
