"""`F` in the app: pick a run, read the ledger plan, fork; on a real agent's real thread."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from supervisor.agents import load_factory
from supervisor.ui.screens.fork import ForkScreen
from tests.crashes.test_fork import runs_of, three_orders
from tests.crashes.test_more_features import rows
from tests.ui.conftest import build_app, select, settle, spy_notify, table_rows, until


async def test_f_forks_after_the_picked_run_and_names_the_side_effect_it_would_repeat(
    tmp_path: Path, monkeypatch
) -> None:
    c = three_orders(tmp_path)  # three orders, killed inside the third one's mail
    monkeypatch.setenv("JOB_DIR", str(c.jobs))
    (first, _), (second, _), _ = runs_of(c.database, "src")
    source = rows(c, "src")
    app = build_app(
        c.database,
        jobs_dir=c.jobs,
        factory=load_factory(c.reference),
        agent_ref=c.reference,
    )
    async with app.run_test(size=(120, 40)) as pilot:
        said = spy_notify(pilot.app)
        await settle(pilot)
        await select(pilot, "src")
        await pilot.press("F")
        assert await until(pilot, lambda: isinstance(pilot.app.screen, ForkScreen))
        screen = pilot.app.screen
        await pilot.pause()
        assert screen.plan is not None and screen.plan.after_run == second  # newest first
        # After B: charge C reused; mail C may have happened (cut off, nothing stored).
        assert [c.call.name for c in screen.plan.repeats] == ["mail"]
        await pilot.press("k")  # up to the first run: mail B happened and has no marker
        await pilot.pause()
        assert screen.plan.after_run == first
        shown = str(screen.query_one("#fork-plan-text").render())
        assert "RUNS IT AGAIN" in shown and "! mail" in shown
        assert [c.call.name for c in screen.plan.repeats] == ["mail", "mail"]  # B, and C
        await pilot.press("enter")
        assert await until(pilot, lambda: "src-fork" in table_rows(pilot.app))
        await settle(pilot)
        assert any("forked src-fork from src; 2 side effects would repeat" in s for s in said)
        await select(pilot, "src-fork")
        await pilot.pause()
        title = str(pilot.app.query_one("#detail-title").render())
        assert f"forked from src after run {first}"[:40] in title
    assert rows(c, "src") == source
    with sqlite3.connect(c.database) as conn:
        (parent,) = conn.execute(
            "SELECT parent_thread_id FROM thread_extra WHERE thread_id = 'src-fork'"
        ).fetchone()
    assert parent == "src" and len(rows(c, "src-fork")) == 6


async def test_escape_forks_nothing_and_a_thread_without_a_completed_run_says_so(
    tmp_path: Path, monkeypatch
) -> None:
    c = three_orders(tmp_path)
    c.crash("lone", "order Z", "tool:mail:before:Z")  # its only run never completed
    monkeypatch.setenv("JOB_DIR", str(c.jobs))
    app = build_app(c.database, jobs_dir=c.jobs)
    async with app.run_test(size=(80, 24)) as pilot:
        said = spy_notify(pilot.app)
        await settle(pilot)
        await select(pilot, "src")
        await pilot.press("F")
        assert await until(pilot, lambda: isinstance(pilot.app.screen, ForkScreen))
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(pilot.app.screen, ForkScreen)
        await select(pilot, "lone")
        await pilot.press("F")
        assert await until(pilot, lambda: any("no completed run" in s for s in said))
        assert set(table_rows(pilot.app)) == {"src", "lone"}
