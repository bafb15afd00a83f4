"""`D`: old finished threads removed from the app, the database and the jobs directory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from supervisor.location import Location
from supervisor.ui.screens.prune import PruneScreen
from tests.ui.conftest import build_app, settle, spy_notify, table_rows, until


async def test_d_removes_old_finished_threads_after_saying_which(workdir) -> None:
    app = build_app()
    async with app.run_test(size=(120, 40)) as pilot:
        said = spy_notify(pilot.app)
        await settle(pilot)
        before = table_rows(pilot.app)
        finished = {
            t for t, cells in before.items() if "finished" in cells[1] or "stopped" in cells[1]
        }
        assert finished
        await pilot.press("D")
        assert await until(pilot, lambda: isinstance(pilot.app.screen, PruneScreen))
        screen = pilot.app.screen
        summary = lambda: str(screen.query_one("#prune-summary").render())  # noqa: E731
        assert "0 threads" in summary()  # nothing in the demo is 30 days old
        await pilot.press(*["backspace"] * 5, *"1x")
        await pilot.pause()
        assert "not an age" in summary()
        await pilot.press("backspace", "s")  # older than a second before the app's clock
        await pilot.pause()
        going = {c.thread_id for c in screen.chosen if c.remove}
        assert going == finished and f"{len(going)} threads" in summary()
        await pilot.press("enter")
        assert await until(pilot, lambda: set(table_rows(pilot.app)) == set(before) - going)
        assert any(s.startswith(f"removed {len(going)} threads") for s in said), said
    with sqlite3.connect("demo.db") as conn:
        left = {
            t
            for table in ("messages", "thread_extra", "thread_pending_request", "runs")
            for (t,) in conn.execute(f"SELECT DISTINCT thread_id FROM {table}")
        }
    assert not left & going and left == set(before) - going
    markers = Location.parse("demo.db.jobs").read_markers()
    assert not {m.thread_id for m in markers} & going


async def test_escape_removes_nothing(workdir) -> None:
    size = Path("demo.db").read_bytes()
    app = build_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("D")
        assert await until(pilot, lambda: isinstance(pilot.app.screen, PruneScreen))
        await pilot.press(*["backspace"] * 5, *"1s", "escape")
        await settle(pilot)
    assert Path("demo.db").read_bytes() == size
