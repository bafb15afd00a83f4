"""A big database without the thread index is named on open, and `I` adds the index."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from supervisor.sqlite.files import INDEX_NAME
from supervisor.ui.screens.confirm import ConfirmScreen
from tests.ui.conftest import settle, spy_notify, until


def _indexes(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")]
    finally:
        conn.close()


async def test_an_unindexed_big_file_is_named_and_I_adds_the_index(
    app_factory, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = sqlite3.connect(workdir / "demo.db")
    (rows,) = conn.execute("SELECT count(*) FROM messages").fetchone()
    conn.close()
    monkeypatch.setattr("supervisor.sqlite.store.INDEX_HINT_ROWS", rows - 1)  # "big"
    assert INDEX_NAME not in _indexes(workdir / "demo.db")
    app = app_factory()
    async with app.run_test(size=(120, 40)) as pilot:
        said = spy_notify(app)
        line = app.screen.query_one("#index-hint")
        assert await until(pilot, lambda: line.display)
        shown = str(line.render())
        assert f"{rows:,} message rows and no index on thread_id" in shown and "I adds it" in shown
        await pilot.press("I")
        assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")  # asked first: nothing written without a yes
        await settle(pilot)
        assert INDEX_NAME not in _indexes(workdir / "demo.db") and line.display
        await pilot.press("I")
        assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        assert await until(pilot, lambda: not line.display)
        assert INDEX_NAME in _indexes(workdir / "demo.db")
        assert any(f"added index {INDEX_NAME}" in s for s in said)


async def test_a_small_or_indexed_file_shows_no_line(app_factory) -> None:
    app = app_factory()
    async with app.run_test(size=(120, 40)) as pilot:
        said = spy_notify(app)
        await settle(pilot)
        assert not app.screen.query_one("#index-hint").display
        await pilot.press("I")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert any("nothing to add" in s for s in said)
