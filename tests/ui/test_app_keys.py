"""The app driven by keys (Pilot) on a real database with the real demo agent."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from textual.widgets import DataTable, RichLog, TabbedContent

from supervisor.states import State
from supervisor.store import open_store
from supervisor.ui.screens.confirm import ConfirmScreen
from supervisor.ui.screens.preview import BulkResumePreview, ResumePreview
from supervisor.ui.screens.prompt import PromptScreen
from supervisor.ui.widgets.thread_table import ThreadTable
from tests.conftest import transcript_problems
from tests.ui.conftest import settle, table_rows


def state(thread: str) -> State:
    return open_store("demo.db").get(thread).state


async def select(pilot, thread: str) -> None:
    table = pilot.app.query_one("#threads", ThreadTable)
    table.focus()
    table.move_to(thread)
    await pilot.pause(0.2)  # the detail loads once the cursor rests
    await settle(pilot)


async def test_list_shows_every_thread_with_badges(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        rows = table_rows(pilot.app)
        assert len(rows) == 12
        assert rows["job-02"][1] == "◐ mid_tool"
        assert 'process_item({"item": "card-202"})' in rows["job-02"][5]
        assert rows["job-09"][1] == "? awaiting_input"
        assert rows["job-09"][5].startswith("approve refund(")
        assert rows["job-11"][5].startswith("ask: Which size")
        assert rows["job-12"][1] == "✎ answered"
        assert rows["job-08"][1] == "· empty"
        summary = str(pilot.app.query_one("#summary").render())
        assert "demo.db" in summary and "12 threads" in summary


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
        assert "May still be running in a process that is not a supervisor" in notice
        assert "its run run" in notice and "is open and was last written 3m ago" in notice
        await pilot.press("r")
        await pilot.pause()
        await pilot.pause()
        assert isinstance(pilot.app.screen, ConfirmScreen)
        assert "live elsewhere" in pilot.app.screen.title_text
        await pilot.press("y")
        await settle(pilot)
    assert state("job-05") is State.FINISHED


async def test_r_on_finished_thread_explains(app_factory) -> None:
    app = app_factory()
    async with app.run_test(size=(160, 45), notifications=True) as pilot:
        await settle(pilot)
        await select(pilot, "job-01")
        await pilot.press("r")
        await settle(pilot)
        messages = [n.message for n in pilot.app._notifications]
    assert any("nothing to resume" in m and "press p" in m for m in messages)


async def test_a_aborts_a_running_thread_and_leaves_it_resumable(app_factory, monkeypatch) -> None:
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOOL_SECONDS", "30")
    async with app_factory(abort_grace=1.0).run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-04")
        await pilot.press("r")
        for _ in range(100):
            await pilot.pause(0.05)
            if any(e.type == "tool_start" for e in pilot.app.events.get("job-04", ())):
                break
        assert table_rows(pilot.app)["job-04"][1] == "▶ running"
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(pilot.app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert "job-04" not in pilot.app.running_since
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


async def test_capital_r_resumes_every_crashed_thread(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await pilot.press("R")
        await pilot.pause(0.3)
        preview = pilot.app.screen
        assert isinstance(preview, BulkResumePreview)
        assert preview.title_text == "Resume every crashed thread (7)"
        body = str(preview.query_one(".plan-call").render())
        # The same plan a single resume shows, for every mid-tool thread …
        assert 'process_item({"item": "card-202"})' in body and "runs again" in body
        # … and the message that continues an aborted or failed one.
        assert "job-06  aborted  → continue with 'Continue where you left off.'" in body
        await pilot.press("y")
        await settle(pilot)
    states = {s.thread_id: s.state for s in open_store("demo.db").threads()}
    crashed = ["job-02", "job-03", "job-04", "job-05", "job-06", "job-07", "job-12"]
    assert {t: str(states[t]) for t in crashed} == dict.fromkeys(crashed, "finished")
    assert states["job-09"] is states["job-11"] is State.AWAITING_INPUT


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


async def test_slash_filters_and_escape_clears(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"mid")
        await pilot.pause()
        assert len(table_rows(pilot.app)) == 12  # applied once typing pauses
        await pilot.pause(0.3)
        assert sorted(table_rows(pilot.app)) == ["job-02", "job-03"]
        await pilot.press("enter")  # back to the list, filter kept
        assert sorted(table_rows(pilot.app)) == ["job-02", "job-03"]
        await pilot.press("escape")
        await pilot.pause()
        assert len(table_rows(pilot.app)) == 12
        await pilot.press("slash", *"job-1", "enter")  # enter applies at once
        assert sorted(table_rows(pilot.app)) == ["job-10", "job-11", "job-12"]


async def test_c_shows_only_threads_needing_attention(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await pilot.pause()
        assert sorted(table_rows(pilot.app)) == [
            "job-02",
            "job-03",
            "job-04",
            "job-05",
            "job-06",
            "job-07",
            "job-09",
            "job-11",
            "job-12",
        ]
        await pilot.press("c")
        await pilot.pause()
        assert len(table_rows(pilot.app)) == 12


async def test_number_keys_switch_tabs_and_enter_moves_focus(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-02")
        tabs = pilot.app.query_one("#detail-tabs", TabbedContent)
        for key, tab in [("2", "transcript"), ("3", "markers"), ("1", "events")]:
            await pilot.press(key)
            assert tabs.active == tab
        await pilot.press("2", "enter")
        assert pilot.app.focused is pilot.app.query_one("#transcript-log", RichLog)
        await pilot.press("enter")
        assert pilot.app.focused is pilot.app.query_one("#threads")
        below = pilot.app.shown[pilot.app.shown.index("job-02") + 1]
        await pilot.press("j")
        assert pilot.app.selected == below
        await pilot.press("k")
        assert pilot.app.selected == "job-02"


async def resume_until_a_tool_runs(pilot, thread: str) -> None:
    """Press r on a thread and wait until its first tool is running."""
    await select(pilot, thread)
    await pilot.press("r")
    for _ in range(100):
        await pilot.pause(0.05)
        if any(e.type == "tool_start" for e in pilot.app.events.get(thread, ())):
            return


async def test_q_with_running_agents_confirms_then_aborts_them(app_factory, monkeypatch) -> None:
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOOL_SECONDS", "30")
    app = app_factory(abort_grace=1.0)
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await resume_until_a_tool_runs(pilot, "job-05")
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        for _ in range(100):
            if not app.is_running:
                break
            await pilot.pause(0.05)
    assert not app.is_running
    assert state("job-05") is State.ABORTED
    assert transcript_problems(Path("demo.db"), "job-05") == []


async def test_ctrl_q_and_the_palette_quit_ask_like_q(app_factory, monkeypatch) -> None:
    """Textual's own Quit would cancel the agent mid-tool ("cancelled by user")."""
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOOL_SECONDS", "30")
    app = app_factory(abort_grace=1.0)
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
        for _ in range(100):
            if not app.is_running:
                break
            await pilot.pause(0.05)
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


async def test_transcript_and_markers_tabs_show_the_thread(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-02")
        await pilot.press("2")  # a RichLog renders once it is shown
        await settle(pilot)
        transcript = "\n".join(
            str(line.text) for line in pilot.app.query_one("#transcript-log", RichLog).lines
        )
        assert "Process items card-201" in transcript
        assert "call-1-card-202" in transcript
        pending = str(pilot.app.query_one("#pending-calls").render())
        assert 'process_item({"item": "card-202"})' in pending and "runs again" in pending
        markers = pilot.app.query_one("#marker-table", DataTable)
        statuses = sorted(str(markers.get_row_at(i)[0]) for i in range(markers.row_count))
        assert statuses == ["! started", "✓ done"]


async def test_threads_written_by_another_process_appear(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        conn = sqlite3.connect("demo.db")
        with conn:
            conn.execute(
                "INSERT INTO messages (thread_id, message_json) VALUES (?, ?)",
                (
                    "outside",
                    json.dumps({"role": "user", "content": [{"type": "text", "text": "hi"}]}),
                ),
            )
        conn.close()
        pilot.app.request_refresh()
        await settle(pilot)
        assert table_rows(pilot.app)["outside"][1] == "○ between_turns"


async def test_one_key_table_feeds_bindings_help_and_palette(app_factory) -> None:
    from supervisor.ui.keys import KEYS, help_rows

    app = app_factory()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        bound = {(b.key, b.action) for b in app.BINDINGS}
    helped = dict(help_rows())
    for key in KEYS:
        assert (key.keys, key.action) in bound
        if key.keys != "escape":
            assert helped[key.shown or key.keys] == key.help
        assert not key.command or key.command in titles
    for title in ("Resume thread", "Abort thread", "Full-screen transcript", "Theme", "Quit"):
        assert title in titles


async def test_a_palette_command_runs_its_action(app_factory) -> None:
    app = app_factory()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p", *"Show job markers")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert app.query_one("#detail-tabs", TabbedContent).active == "markers"


async def test_f_shows_the_transcript_full_screen(app_factory) -> None:
    from supervisor.ui.screens.transcript import TranscriptScreen

    app = app_factory()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-02")
        await pilot.press("f")
        await pilot.pause(0.5)
        screen = app.screen
        assert isinstance(screen, TranscriptScreen)
        log = screen.query_one(RichLog)
        text = "\n".join(strip.text for strip in log.lines)
        assert "Process items card-201, card-202, card-203, card-204" in text
        assert '"item": "card-202"' in text  # arguments pretty-printed
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, TranscriptScreen)


async def test_event_log_follows_the_tail_unless_scrolled_up(app_factory) -> None:
    from rich.text import Text

    from supervisor.ui.widgets.event_log import EventLog

    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        log = pilot.app.query_one(EventLog)
        for i in range(120):
            log.write(Text(f"line {i}"))
        await pilot.pause()
        lines = log.lines
        assert lines.max_scroll_y > 0 and lines.scroll_offset.y == lines.max_scroll_y
        lines.scroll_to(y=0, animate=False)
        await pilot.pause()
        log.write(Text("a new line while reading"))
        await pilot.pause()
        assert lines.scroll_offset.y == 0  # the reader keeps their place
        lines.scroll_end(animate=False)
        await pilot.pause()
        log.write(Text("and another at the tail"))
        await pilot.pause()
        assert lines.scroll_offset.y == lines.max_scroll_y
