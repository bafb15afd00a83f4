"""Actions on threads from the keyboard: resume, abort, prompt, marks, previews."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.location import open_store
from supervisor.states import State
from supervisor.ui.screens.confirm import ConfirmScreen
from supervisor.ui.screens.preview import BulkResumePreview, ResumePreview
from supervisor.ui.screens.prompt import PromptScreen
from tests.conftest import transcript_problems
from tests.ui.conftest import select, settle, spy_notify, state, table_rows, until


@pytest.mark.parametrize(
    "thread,answer",
    [
        ("job-02", "y"),  # mid_tool: preview, then resume
        ("job-03", "y"),
        ("job-04", None),  # after_tools: no question
        ("job-05", None),  # between_turns
        ("job-06", "y"),  # aborted: confirm the continue message
        ("job-07", "y"),  # error
    ],
)
async def test_r_resumes_each_state_to_finished(app_factory, thread: str, answer) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, thread)
        await pilot.press("r")
        await pilot.pause()
        if answer:
            assert isinstance(pilot.app.screen, (ConfirmScreen, ResumePreview))
            await pilot.press(answer)
        await settle(pilot)
        assert table_rows(pilot.app)[thread][1] == "✓ finished"
    assert state(thread) is State.FINISHED
    assert transcript_problems(Path("demo.db"), thread) == []


async def test_preview_names_calls_that_run_again_and_cancel_does_nothing(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-02")
        await pilot.press("r")
        await pilot.pause()
        preview = pilot.app.screen
        assert isinstance(preview, ResumePreview)
        [planned] = preview.plan.calls
        assert planned.call.arguments == {"item": "card-202"}
        assert planned.will_run and "started, never done" in planned.reason
        await pilot.press("n")
        await settle(pilot)
    assert state("job-02") is State.MID_TOOL


async def test_possibly_live_thread_asks_before_forcing(app_factory) -> None:
    app = app_factory(live_window=10**9)
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-05")
        notice = str(pilot.app.query_one("#detail-request").render())
        assert "May still be running elsewhere: no supervisor holds it." in notice
        assert "its run run" in notice.lower() and "is open and was last written 3m ago" in notice
        await pilot.press("r")
        await pilot.pause()
        await pilot.pause()
        assert isinstance(pilot.app.screen, ConfirmScreen)
        assert "may still be running in another process" in str(pilot.app.screen.body)
        await pilot.press("y")
        await settle(pilot)
    assert state("job-05") is State.FINISHED


async def test_one_dialog_carries_the_plan_and_the_live_warning(app_factory) -> None:
    """The preview, then "may be live elsewhere → Resume anyway": two dialogs for one
    resume. Now the preview says both, and its yes resumes."""
    app = app_factory(live_window=10**9)
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-02")  # mid_tool, its run open
        await pilot.press("r")
        assert await until(pilot, lambda: isinstance(pilot.app.screen, ResumePreview))
        preview = pilot.app.screen
        body = str(preview.query_one(".dialog-body").render())
        assert "may still be running in another process" in body
        assert "Resume anyway (y)" in str(preview.query_one("#yes").label)
        await pilot.press("y")
        await pilot.pause()
        assert not isinstance(pilot.app.screen, (ConfirmScreen, ResumePreview))  # no second
        await settle(pilot)
    assert state("job-02") is State.FINISHED


async def test_a_supervisor_seen_holding_a_thread_is_named_when_it_is_gone(app_factory) -> None:
    """Its writer was our own `prompt` (its lease seen a moment ago), not "a process that
    is not a supervisor"."""
    from supervisor.ui.messages import ThreadsRefreshed

    app = app_factory(live_window=10**9)
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-05")
        summary = app.table.summaries["job-05"]
        held = summary.copy()
        held.holder = {"pid": 4242, "host": "build-3", "since": 0.0}
        for seen in (held, summary.copy()):  # its lease, then none
            app.post_message(ThreadsRefreshed({"job-05": seen}, full=False))
            await settle(pilot)
        notice = str(app.query_one("#detail-request").render())
        assert "Its supervisor (pid 4242 on build-3) let go or died mid-run" in notice
        assert "not a supervisor" not in notice


async def test_r_on_finished_thread_explains(app_factory) -> None:
    app = app_factory()
    messages = spy_notify(app)
    async with app.run_test(size=(160, 45), notifications=True) as pilot:
        await settle(pilot)
        await select(pilot, "job-01")
        await pilot.press("r")
        await settle(pilot)
    assert any("nothing to resume" in m and "press p" in m for m in messages)


async def test_a_aborts_a_running_thread_and_leaves_it_resumable(app_factory, monkeypatch) -> None:
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOOL_SECONDS", "30")
    async with app_factory(abort_grace=1.0).run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-04")
        await pilot.press("r")
        await until(
            pilot, lambda: any(e.type == "tool_start" for e in pilot.app.events.get("job-04", ()))
        )
        assert table_rows(pilot.app)["job-04"][1] == "▶ running"
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(pilot.app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        # The run's end reaches the list as an event after the worker ends: on a loaded
        # machine, some turns of the loop later.
        assert await until(pilot, lambda: "job-04" not in pilot.app.running_since)
    assert state("job-04") in {State.ABORTED, State.AFTER_TOOLS}
    assert transcript_problems(Path("demo.db"), "job-04") == []


async def test_p_prompts_a_finished_thread(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-01")
        await pilot.press("p")
        await pilot.pause()
        assert isinstance(pilot.app.screen, PromptScreen)
        await pilot.press(*"Process items q-1")
        await pilot.press("enter")
        await settle(pilot)
    entries = open_store("demo.db").transcript("job-01").entries
    users = [e.message["content"][0]["text"] for e in entries if e.message["role"] == "user"]
    assert users[-1] == "Process items q-1"
    assert state("job-01") is State.FINISHED


async def test_prompt_escape_cancels(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-01")
        await pilot.press("p", "x", "escape")
        await settle(pilot)
        assert not isinstance(pilot.app.screen, PromptScreen)
    assert open_store("demo.db").get("job-01").messages == 7


async def bulk_preview(pilot) -> BulkResumePreview:
    """`R` pressed on a settled app: the preview of every crashed thread."""
    await settle(pilot)
    await pilot.press("R")
    await pilot.pause(0.3)
    preview = pilot.app.screen
    assert isinstance(preview, BulkResumePreview)
    return preview


async def test_capital_r_resumes_every_crashed_thread(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        preview = await bulk_preview(pilot)
        assert preview.title_text == "Resume every crashed thread (6)"
        body = str(preview.query_one(".plan-call").render())
        # The same plan a single resume shows, for every mid-tool thread …
        assert 'process_item({"item": "card-202"})' in body and "runs again" in body
        # … and the message that continues a failed one.
        assert "job-07  error  → continue with 'Continue where you left off.'" in body
        # A thread a person aborted is left alone, as `watch` leaves it, and said so.
        assert "job-06" not in body
        intro = str(preview.query_one(".dialog-body").render())
        assert "1 aborted thread(s) are left out" in intro
        await pilot.press("y")
        await settle(pilot)
    states = {s.thread_id: s.state for s in open_store("demo.db").threads()}
    crashed = ["job-02", "job-03", "job-04", "job-05", "job-07", "job-12"]
    assert {t: str(states[t]) for t in crashed} == dict.fromkeys(crashed, "finished")
    assert states["job-06"] is State.ABORTED
    assert states["job-09"] is states["job-11"] is State.AWAITING_INPUT


async def test_the_header_says_while_a_preview_is_planned_and_a_second_r_waits(
    app_factory, monkeypatch
) -> None:
    """At 100,000 threads the plans of every crashed one take tens of seconds: that time
    passed with nothing on screen, and each further `R` planned them all once more."""
    import threading

    from supervisor.ui.actions import ThreadActions

    gate, asked = threading.Event(), []
    real = ThreadActions._plans

    def held(self, threads):  # the real plans, once the test lets them go
        asked.append(len(threads))
        gate.wait(30)
        return real(self, threads)

    monkeypatch.setattr(ThreadActions, "_plans", held)
    app = app_factory()
    said = spy_notify(app)

    def header() -> str:
        return str(app.query_one("#summary").render())

    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await pilot.press("R")
        assert await until(pilot, lambda: "planning 6 threads for the preview" in header())
        await pilot.press("R")
        assert await until(pilot, lambda: any("still being planned" in m for m in said))
        gate.set()
        assert await until(pilot, lambda: isinstance(app.screen, BulkResumePreview))
        assert "planning" not in header()
        await pilot.press("n")
        await settle(pilot)
        assert not isinstance(app.screen, BulkResumePreview)  # one preview, not two
    assert asked == [6]


async def test_the_keys_scroll_a_plan_longer_than_the_dialog_at_80x24(app_factory) -> None:
    """The plans of every crashed thread do not fit at 80x24; the yes button has the
    focus, and the scroll keys still move the plan (they did nothing: the button took them)."""
    from textual.containers import VerticalScroll

    async with app_factory().run_test(size=(80, 24)) as pilot:
        preview = await bulk_preview(pilot)
        plans = preview.query_one("#bulk-plans", VerticalScroll)
        assert plans.max_scroll_y > 0  # longer than its room: there is something to scroll
        await pilot.press("pagedown")
        await pilot.pause()
        assert plans.scroll_y > 0
        await pilot.press("end")
        await pilot.pause()
        assert plans.scroll_y == plans.max_scroll_y
        await pilot.press("home", "j")
        await pilot.pause()
        assert plans.scroll_y == 1
        await pilot.press("n")


async def test_space_marks_rows_and_r_acts_on_them(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-04")
        below = pilot.app.shown[pilot.app.shown.index("job-04") + 1]
        await pilot.press("space")  # marks job-04, moves down a row
        assert pilot.app.selected == below
        await select(pilot, "job-05")
        await pilot.press("space")  # marks job-05
        assert pilot.app.marked == {"job-04", "job-05"}
        assert table_rows(pilot.app)["job-04"][0] == "●"
        await pilot.press("r")
        await pilot.pause(0.3)
        assert isinstance(pilot.app.screen, BulkResumePreview)
        assert pilot.app.screen.title_text == "Resume marked threads (2)"
        await pilot.press("y")
        await settle(pilot)
        assert pilot.app.marked == set()
    assert state("job-04") is State.FINISHED and state("job-05") is State.FINISHED
    assert state("job-03") is State.MID_TOOL


async def test_w_turns_on_auto_resume_which_finishes_crashed_threads(app_factory) -> None:
    from tests.ui.conftest import table_rows as rows

    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await pilot.press("w")
        await settle(pilot)
        assert "auto-resume on" in str(pilot.app.query_one("#summary").render())
        for _ in range(40):  # one look a second; runs take a moment each
            await pilot.pause(0.25)
            shown = rows(pilot.app)
            crashed = ("job-02", "job-03", "job-04", "job-05", "job-07", "job-12")
            if all(shown[t][1] == "✓ finished" for t in crashed):
                break
        await settle(pilot)
        await pilot.press("w")
        await settle(pilot)
        assert "auto-resume on" not in str(pilot.app.query_one("#summary").render())
    for thread in ("job-02", "job-03", "job-04", "job-05", "job-07", "job-12"):
        assert state(thread) is State.FINISHED, thread
    assert state("job-06") is State.ABORTED  # a person stopped it: left alone
    assert state("job-09") is State.AWAITING_INPUT  # a human must answer


async def test_x_releases_a_held_thread(app_factory) -> None:
    from supervisor.attempts import FileAttempts

    ledger = FileAttempts("demo.db")
    ledger.failed("job-07", "provider down", None, max_attempts=1)
    ledger.close()
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        assert table_rows(pilot.app)["job-07"][1] == "⏸ held"
        await select(pilot, "job-07")
        assert "Held by the watcher after 1 failed attempt(s)" in str(
            pilot.app.query_one("#detail-request").render()
        )
        await pilot.press("x")
        await settle(pilot)
        await pilot.pause(0.3)
        await settle(pilot)
        assert table_rows(pilot.app)["job-07"][1] == "✗ error"
    assert FileAttempts("demo.db").all() == {}


async def test_an_empty_database_says_how_to_start_and_p_starts_a_thread(
    workdir: Path,
) -> None:
    """A database with no threads showed blank panes, and p did nothing (no row)."""
    import sqlite3

    from supervisor.ui.screens.prompt import NewThreadScreen
    from tests.ui.conftest import build_app

    conn = sqlite3.connect(workdir / "demo.db")  # cubeloop's schema, every row gone
    with conn:
        for table in ("messages", "thread_extra", "thread_pending_request", "runs"):
            conn.execute(f"DELETE FROM {table}")
        conn.execute("DELETE FROM thread_hitl_answers")
    conn.close()
    app = build_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        notice = str(app.query_one("#detail-request").render())
        assert "This database holds no threads yet." in notice and "+ (or p)" in notice
        await pilot.press("p")
        assert await until(pilot, lambda: isinstance(app.screen, NewThreadScreen))
        app.screen.query_one("#new-thread-id").value = "first-one"
        await pilot.press(*"Process items A..B", "enter")
        assert await until(pilot, lambda: "first-one" in app.summaries, 30)
        await settle(pilot)
    assert open_store("demo.db").get("first-one").state is State.FINISHED


async def test_capital_r_names_live_threads_in_its_one_dialog(app_factory) -> None:
    """R on freshly crashed threads asked "may be live elsewhere" once more per thread."""
    app = app_factory(live_window=10**9)
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await pilot.press("R")
        assert await until(pilot, lambda: isinstance(pilot.app.screen, BulkResumePreview))
        intro = str(pilot.app.screen.query_one(".dialog-body").render())
        assert "may still be running in another process" in intro
        assert "Resume all anyway (y)" in str(pilot.app.screen.query_one("#yes").label)
        await pilot.press("y")
        await pilot.pause()
        assert not isinstance(pilot.app.screen, ConfirmScreen)  # no dialog per thread
        await settle(pilot)
    states = {s.thread_id: s.state for s in open_store("demo.db").threads()}
    assert states["job-02"] is states["job-04"] is State.FINISHED
