"""Live updates: other processes' writes appear; themes; the app command's checks."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supervisor.agents import load_factory
from supervisor.runner import RunnerConfig
from supervisor.sqlite.store import SQLiteStore
from supervisor.ui.app import make_app
from tests.conftest import ROOT, cli
from tests.ui.conftest import FIXED_NOW, build_app, settle, table_rows, until

WRITER = """
import asyncio, sys
from cubeloop.checkpointer import SQLiteCheckpointer
from cubeloop import UserMessage, TextContent
async def main():
    async with SQLiteCheckpointer(sys.argv[1]) as cp:
        await cp.append("from-elsewhere", [UserMessage(content=[TextContent(text="hello")])])
asyncio.run(main())
"""


def watching_app(**store: float):
    config = RunnerConfig(
        database=Path("demo.db"),
        factory=load_factory("supervisor.demo:demo_agent"),
        jobs_dir=Path("demo.db.jobs"),
        live_window=0,
    )
    return make_app(
        SQLiteStore("demo.db", **store),
        config,
        clock=lambda: FIXED_NOW,
        watch=True,
        cursor_blink=False,
    )


async def test_a_thread_written_by_another_process_appears_within_a_second(workdir) -> None:
    app = watching_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await pilot.pause(0.3)  # the watcher is up
        asked: list[str] = []
        real = app.request_refresh
        app.request_refresh = lambda: asked.append("refresh") or real()  # type: ignore[method-assign]
        subprocess.run([sys.executable, "-c", WRITER, "demo.db"], cwd=workdir, check=True)
        deadline = time.monotonic() + 30  # a hang guard, not a timing
        while "from-elsewhere" not in table_rows(app) and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert table_rows(app)["from-elsewhere"][1] == "○ between_turns"
        # Seen because the file changed: the watcher asked for the refresh that found it
        # (nothing else in the test did).
        assert asked, "the write was found without the file watcher asking"


async def test_a_write_before_the_watch_is_in_place_is_found(workdir, monkeypatch) -> None:
    """The watch starts after the agent's import, when the first read is done: a write
    in between told nobody, and a thread that started waiting for its person stayed off
    the list until the next write (a CI flake of the bell tests). The write is made here
    exactly in that window: after the first read, before the watcher registers."""
    import asyncio

    import watchfiles

    real_awatch = watchfiles.awatch
    app = watching_app()

    async def awatch_after_a_write(*args, **kwargs):
        while "job-05" not in table_rows(app) or app.reader.running:  # the first read is done
            await asyncio.sleep(0.02)
        write = [sys.executable, "-c", WRITER, "demo.db"]
        await asyncio.to_thread(subprocess.run, write, cwd=workdir, check=True)
        async for changes in real_awatch(*args, **kwargs):
            yield changes

    monkeypatch.setattr(watchfiles, "awatch", awatch_after_a_write)
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        deadline = time.monotonic() + 30  # a hang guard, not a timing
        while "from-elsewhere" not in table_rows(app) and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert table_rows(app)["from-elsewhere"][1] == "○ between_turns"


async def test_marker_written_elsewhere_updates_the_markers_tab(workdir) -> None:
    from supervisor.jobs import JobMarkers, job_key

    app = watching_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        table = app.query_one("#threads")
        table.move_to("job-02")
        await pilot.press("3")
        await settle(pilot)
        assert "runs again" in str(app.query_one("#pending-calls").render())
        JobMarkers(Path("demo.db.jobs")).finish(
            job_key("process_item", {"item": "card-202"}), {"text": "Processed card-202."}
        )
        for _ in range(60):
            await pilot.pause(0.05)
            if "already done" in str(app.query_one("#pending-calls").render()):
                break
        assert "already done — done marker: its result is reused" in str(
            app.query_one("#pending-calls").render()
        )


async def test_bundled_themes_are_registered_and_selectable(workdir) -> None:
    from tests.ui.conftest import build_app

    app = build_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert {"harbor", "paper"} <= set(app.available_themes)
        assert app.theme == "harbor"
        app.theme = "paper"
        await pilot.pause()
        assert app.current_theme.dark is False
        assert app.palette["error"] == "#B3123A"
        assert table_rows(app)["job-07"][1] == "✗ error"


def test_unknown_theme_is_a_clear_error(workdir) -> None:
    out = cli("demo.db", "--theme", "neon-dream", cwd=workdir)
    assert out.returncode == 2
    assert "unknown theme 'neon-dream'" in out.stderr and "harbor" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_app_on_a_bad_database_is_a_clear_error(tmp_path: Path) -> None:
    out = cli(str(tmp_path / "missing.db"), cwd=ROOT)
    assert out.returncode == 2
    assert out.stderr.strip() == f"agent-supervisor: error: {tmp_path / 'missing.db'}: no such file"
    assert list(tmp_path.iterdir()) == []


def test_help_lists_commands_and_app_options() -> None:
    out = cli("--help")
    assert out.returncode == 0
    for word in ("--theme", "--agent", "--jobs-dir", "list", "resume", "demo"):
        assert word in out.stdout


async def test_new_threads_take_their_place_and_respect_the_filter(workdir) -> None:
    """A new thread sorts where it belongs (it needs attention and is newest: first).

    The cursor stays on its thread and a filter still holds.
    """
    app = build_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"job", "enter")
        await pilot.pause(0.5)
        table = app.query_one("#threads")
        await pilot.press("j")
        await pilot.pause(0.2)
        before = list(table_rows(app))
        cursor = table.current_thread
        conn = sqlite3.connect("demo.db")
        with conn:
            conn.executemany(
                "INSERT INTO messages (thread_id, message_json) VALUES (?, ?)",
                [
                    (t, '{"role": "user", "content": [{"type": "text", "text": "hi"}]}')
                    for t in ("other-new", "job-new")
                ],
            )
        conn.close()
        app.request_refresh()
        await until(pilot, lambda: "job-new" in table_rows(app))
        assert list(table_rows(app)) == ["job-new", *before]
        assert "other-new" not in app.shown
        assert table.current_thread == cursor
        await pilot.press("escape")
        await pilot.pause(0.5)
        assert set(list(table_rows(app))[:2]) == {"other-new", "job-new"}


def inotify_watches() -> int:
    """Directories this process has the kernel watch (Linux: each fd's `inotify wd:` lines)."""
    count = 0
    for info in Path("/proc/self/fdinfo").iterdir():
        try:
            count += info.read_text().count("inotify wd:")
        except OSError:  # an fd closed meanwhile
            continue
    return count


@pytest.mark.skipif(not Path("/proc/self/fdinfo").is_dir(), reason="Linux /proc only")
async def test_the_watcher_does_not_descend_into_the_databases_directory(workdir) -> None:
    """A database in a home directory: watching it recursively walked every file below."""
    for n in range(40):
        (workdir / f"project-{n}" / "src").mkdir(parents=True)
    before = inotify_watches()
    app = watching_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        assert await until(pilot, lambda: inotify_watches() > before, seconds=10)
        await pilot.pause(0.3)
        # The database's directory and the jobs directory: not the 80 below them.
        assert inotify_watches() - before <= 2


WRITE_THEN_LOCK = """
import asyncio, sqlite3, sys, time
from cubeloop.checkpointer import SQLiteCheckpointer
from cubeloop import UserMessage, TextContent
async def main():
    async with SQLiteCheckpointer(sys.argv[1]) as cp:
        await cp.append("from-elsewhere", [UserMessage(content=[TextContent(text="hello")])])
asyncio.run(main())
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN EXCLUSIVE")  # a backup, a VACUUM, another writer's long transaction
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
c.execute("ROLLBACK")  # nothing written: no file event after the lock goes
print("unlocked", flush=True)
"""


async def test_a_refresh_that_failed_is_tried_again_without_a_new_write(
    workdir, monkeypatch
) -> None:
    """A write's refresh met a lock held past the busy timeout, and nothing was written
    after it: no file event, no lease change. The list said "trying again" and never
    did; the thread written stayed off it for good."""
    from supervisor.ui import reading

    monkeypatch.setattr(reading, "AFTER_A_FAILURE", 1.5)  # 5 s: a shorter test
    app = watching_app(busy_timeout=0.3)
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        failures = []
        app.notify = lambda text, **kw: failures.append(text)  # what the person is told
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITE_THEN_LOCK, str(workdir / "demo.db"), "2.5"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout.readline().strip() == "locked"
            assert await until(pilot, lambda: any("locked" in f for f in failures), 5.0)
            assert "from-elsewhere" not in table_rows(app)
            unlocked = await asyncio.to_thread(proc.stdout.readline)
            assert unlocked.strip() == "unlocked"
        finally:
            proc.kill()
            proc.wait()
        assert await until(pilot, lambda: "from-elsewhere" in table_rows(app), 5.0)
