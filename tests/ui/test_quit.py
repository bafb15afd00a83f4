"""Leaving the app: at once when nothing runs, after asking when agents run."""

from __future__ import annotations

from pathlib import Path

from supervisor.location import open_store
from supervisor.states import State
from supervisor.ui.screens.confirm import ConfirmScreen
from tests.conftest import transcript_problems
from tests.ui.conftest import select, settle, state, until


async def resume_until_a_tool_runs(pilot, thread: str) -> None:
    """Press r on a thread and wait until its first tool is running."""
    await select(pilot, thread)
    await pilot.press("r")
    assert await until(
        pilot, lambda: any(e.type == "tool_start" for e in pilot.app.events.get(thread, ()))
    )


async def test_q_with_running_agents_confirms_then_aborts_them(app_factory, monkeypatch) -> None:
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOOL_SECONDS", "30")
    app = app_factory()  # the default grace: 1 s ran out on a loaded machine, mid-abort
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await resume_until_a_tool_runs(pilot, "job-05")
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        body = str(app.screen.body)
        assert "Quitting stops them" in body and "job-05" in body  # said plainly
        assert "agent-supervisor watch demo.db" in body  # and where agents outlive a window
        await pilot.press("y")
        assert await until(pilot, lambda: not app.is_running)  # it quit by itself
    assert state("job-05") is State.ABORTED
    assert transcript_problems(Path("demo.db"), "job-05") == []
    # Parked, as a stopping watcher parks its own: the next watcher takes it up again
    # (a person's abort it leaves alone).
    attempt = open_store("demo.db").get("job-05").attempt
    assert attempt is not None and attempt.parked


async def test_ctrl_q_and_the_palette_quit_ask_like_q(app_factory, monkeypatch) -> None:
    """Textual's own Quit would cancel the agent mid-tool ("cancelled by user")."""
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOOL_SECONDS", "30")
    app = app_factory()  # the default grace: 1 s ran out on a loaded machine, mid-abort
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await resume_until_a_tool_runs(pilot, "job-05")
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and app.is_running
        await pilot.press("n")
        await pilot.press("ctrl+p", *"quit")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and app.is_running
        await pilot.press("y")
        assert await until(pilot, lambda: not app.is_running)  # it quit by itself
    assert state("job-05") is State.ABORTED
    assert transcript_problems(Path("demo.db"), "job-05") == []


async def test_q_without_running_agents_quits_at_once(app_factory) -> None:
    app = app_factory()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()
        # q asked the app to exit (return code set); leaving run_test alone would not.
        assert app.return_code == 0
