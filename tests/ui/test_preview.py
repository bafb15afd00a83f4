"""The bulk preview of many threads: each plan when they are few, the side effects and
counts when they are many (60,000 plans, one line each, took the screen minutes)."""

from __future__ import annotations

from textual.app import App
from textual.containers import VerticalScroll

from supervisor.plan import PlannedCall, ThreadPlan, Verdict
from supervisor.states import State, ToolCallInfo
from supervisor.ui.screens.preview import LISTED, BulkResumePreview

CHAT = "call the model to answer the last user message"
RESULTS = "call the model with the tool results"


def fleet(threads: int, with_calls: int) -> list[ThreadPlan]:
    """Plans as `R` gets them at a fleet's size: a few threads with a call that runs
    again, the rest between turns or after tools."""
    plans = []
    for i in range(threads):
        name = f"thread-{i:05d}"
        if i < with_calls:
            call = ToolCallInfo(f"call-{i}", "charge_card", {"order": i})
            planned = PlannedCall(call, Verdict.RERUN, reason="no job marker found")
            plans.append(ThreadPlan(name, State.MID_TOOL, "finish the calls", calls=(planned,)))
        elif i % 3:
            plans.append(ThreadPlan(name, State.BETWEEN_TURNS, CHAT))
        else:
            plans.append(ThreadPlan(name, State.AFTER_TOOLS, RESULTS))
    return plans


async def shown(plans: list[ThreadPlan]) -> tuple[str, str]:
    """The preview's intro and plan text, as drawn, and it scrolls to the end."""
    app = App()
    async with app.run_test(size=(120, 40)) as pilot:
        preview = BulkResumePreview("Resume every crashed thread", plans, {}, "Continue")
        await app.push_screen(preview)
        await pilot.pause()
        body = str(preview.query_one(".plan-call").render())
        intro = str(preview.query_one(".dialog-body").render())
        scroll = preview.query_one("#bulk-plans", VerticalScroll)
        await pilot.press("end")
        await pilot.pause()
        assert scroll.scroll_y == scroll.max_scroll_y > 0
    return intro, body


async def test_a_fleet_preview_lists_the_side_effects_and_counts_the_rest() -> None:
    plans = fleet(60_000, with_calls=LISTED + 50)
    intro, body = await shown(plans)
    assert "60,000 threads; 250 tool calls will really run again." in intro
    assert f"{LISTED + 50} threads with unanswered calls:" in body
    assert "charge_card" in body and "thread-00000  mid_tool" in body
    assert f"thread-{LISTED - 1:05d}  mid_tool" in body  # the first LISTED, each with its calls
    assert f"thread-{LISTED:05d}" not in body
    assert "… and 50 more threads with calls" in body
    between = sum(p.state is State.BETWEEN_TURNS for p in plans)
    after = len(plans) - LISTED - 50 - between
    assert f"{between:,} threads  between_turns  → {CHAT}" in body
    assert f"{after:,} threads  after_tools  → {RESULTS}" in body
    assert f"… {between - 3:,} more" in body
    assert len(body.splitlines()) < 5 * LISTED  # not a line or more per thread


async def test_a_short_preview_lists_every_plan() -> None:
    plans = fleet(LISTED, with_calls=2)
    _, body = await shown(plans)
    for p in plans:
        assert f"{p.thread_id}  {p.state}" in body
    assert "more" not in body
