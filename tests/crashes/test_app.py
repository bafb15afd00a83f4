"""The same crashes resumed from the app (Pilot): `r` shows what the agent's policy says, then does it."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.agents import load_factory
from supervisor.location import open_store
from supervisor.runner import RunnerConfig
from supervisor.sqlite.store import SQLiteStore
from supervisor.ui.app import make_app
from supervisor.ui.screens.preview import BulkResumePreview, ResumePreview
from supervisor.ui.widgets.thread_table import ThreadTable
from tests.crashes.agents import LEDGER_VAR
from tests.crashes.harness import Case, effect
from tests.ui.conftest import select, spy_notify, until


async def pick(pilot, thread: str) -> None:
    """Select a thread once the list shows it (a loaded machine draws it late)."""
    table = pilot.app.query_one("#threads", ThreadTable)
    assert await until(pilot, lambda: thread in table.shown)
    await select(pilot, thread)
    assert await until(pilot, lambda: pilot.app.selected == thread)


@pytest.fixture
def crashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("JOB_DIR", str(tmp_path / "jobs"))
    monkeypatch.setenv(LEDGER_VAR, str(tmp_path / "jobs"))

    def make(agent: str, prompt: str, kill: str) -> tuple[Case, object]:
        case = Case(str(tmp_path / "a.db"), tmp_path / "jobs", agent)
        case.crash("t", prompt, kill)
        config = RunnerConfig(
            database=Path(case.database),
            factory=load_factory(f"tests.crashes.agents:{agent}"),
            agent_ref=f"tests.crashes.agents:{agent}",
            jobs_dir=case.jobs,
            live_window=0,
        )
        app = make_app(SQLiteStore(case.database), config, watch=False, cursor_blink=False)
        return case, app

    return make


def preview_text(app) -> str:
    screen = app.screen
    assert isinstance(screen, ResumePreview), type(screen)
    return " ".join(str(s.render()) for s in screen.query("Static"))


def state(case: Case) -> str:
    store = open_store(case.database)
    try:
        return str(store.get("t").state)
    finally:
        store.close()


async def test_r_on_a_vetoed_turn_says_not_run_and_closes_it(crashed) -> None:
    case, app = crashed("veto_stop", "wire 5000", "message_end:assistant:1")
    async with app.run_test(size=(140, 40)) as pilot:
        await pick(pilot, "t")
        await pilot.press("r")
        assert await until(pilot, lambda: isinstance(app.screen, ResumePreview))
        text = preview_text(app)
        assert "1 not run (the agent's policy or a human)" in text
        assert "0 will really run again" in text
        await pilot.press("y")
        assert await until(pilot, lambda: state(case) == "stopped")
    assert case.effects() == {}


async def test_r_on_an_approval_crashed_before_asking_asks_then_answer_runs_it_once(
    crashed,
) -> None:
    case, app = crashed("approval", "refund 9001 420", "message_end:assistant:1")
    async with app.run_test(size=(140, 40)) as pilot:
        await pick(pilot, "t")
        await pilot.press("r")
        assert await until(pilot, lambda: isinstance(app.screen, ResumePreview))
        assert "1 wait for a human's answer first" in preview_text(app)
        await pilot.press("y")
        assert await until(pilot, lambda: state(case) == "awaiting_input")
    assert case.effects() == {}
    out = case.answer("t", "--approve")
    assert out.returncode == 0, out.stdout + out.stderr
    assert case.effects() == {effect("refund", order="9001", amount_eur=420): 1}


async def test_r_on_a_child_names_its_parent_and_resume_all_leaves_it_to_the_parent(
    crashed,
) -> None:
    case, app = crashed("parent", "delegate write-report", "tool:child_effect:before")
    said = spy_notify(app)
    async with app.run_test(size=(140, 40), notifications=True) as pilot:
        await pick(pilot, "t/child")
        await pilot.press("r")
        assert await until(pilot, lambda: any("driven by its parent" in n for n in said))
        await pilot.press("R")
        assert await until(pilot, lambda: isinstance(app.screen, BulkResumePreview))
        assert [p.thread_id for p in app.screen.plans] == ["t"]
        await pilot.press("y")
        assert await until(pilot, lambda: state(case) == "finished")
    assert case.effects() == {effect("child_effect", task="write-report"): 1}


async def test_r_with_the_demo_agent_taken_for_want_of_one_is_refused_before_a_preview(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app opened on a user's database without `--agent`: `r` says the resume is refused
    (the demo agent has none of the thread's tools), where its preview offered to run the
    calls as "skip" and the run answered them "not found"."""
    monkeypatch.setenv(LEDGER_VAR, str(tmp_path / "jobs"))
    case = Case(str(tmp_path / "a.db"), tmp_path / "jobs", "veto_stop")
    case.crash("t", "wire 50", "tool:wire:after")
    config = RunnerConfig(
        database=Path(case.database),
        factory=load_factory("supervisor.demo:demo_agent"),
        agent_ref="supervisor.demo:demo_agent",
        agent_named=False,
        jobs_dir=case.jobs,
        live_window=0,
    )
    app = make_app(SQLiteStore(case.database), config, watch=False, cursor_blink=False)
    said = spy_notify(app)
    async with app.run_test(size=(160, 45)) as pilot:
        await pick(pilot, "t")
        await pilot.press("r")
        assert await until(pilot, lambda: any("resume refused" in m for m in said))
        assert not isinstance(app.screen, ResumePreview)
    assert "the built-in demo agent has no tool 'wire'" in " ".join(said)
    assert state(case) == "mid_tool" and case.effects() == {
        effect("wire", order="w1", amount_eur=50): 1
    }
