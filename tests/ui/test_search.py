"""`/` searches the full-screen transcript and the detail's tabs: marked, counted, n/N."""

from __future__ import annotations

from textual.widgets import RichLog

from supervisor.ui.screens.transcript import TranscriptScreen
from supervisor.ui.widgets.reflow_log import MATCH, ReflowLog
from supervisor.ui.widgets.search_box import SearchBox
from tests.ui.conftest import select, settle, until


def _marked_lines(log: ReflowLog) -> list[int]:
    """Lines drawn with a marked stretch, among those in view."""
    found = []
    for y in range(log.scrollable_content_region.height):
        strip = log.render_line(y)
        if any(seg.style is not None and seg.style.reverse for seg in strip):
            found.append(round(log.scroll_y) + y)
    return found


async def test_the_full_transcript_finds_marks_and_steps_through_matches(app_factory) -> None:
    app = app_factory()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await select(pilot, "job-10")  # finished: 11 messages, items named in many
        await pilot.press("f")
        assert await until(pilot, lambda: isinstance(app.screen, TranscriptScreen))
        log = app.screen.query_one(ReflowLog)
        assert await until(pilot, lambda: len(log.lines) > 5)
        await pilot.press("/", *"process_item")  # typed at once, as a burst
        box = app.screen.query_one(SearchBox)
        assert await until(pilot, lambda: box.border_title is not None)
        total = len(box.matches)
        assert total >= 2 and box.border_title == f"1/{total}"
        assert MATCH.reverse and _marked_lines(log)
        await pilot.press("enter")  # the next match; the keys go back to the log
        assert box.border_title == f"2/{total}" and app.focused is log
        await pilot.press("N")
        assert box.border_title == f"1/{total}"
        await pilot.press("N")  # round the start
        assert box.border_title == f"{total}/{total}"
        await pilot.press("escape")  # leaves the search, not the screen
        assert isinstance(app.screen, TranscriptScreen) and not box.active
        assert log.query == "" and not _marked_lines(log)
        await pilot.press("/", *"no such words anywhere")
        assert await until(pilot, lambda: box.border_title == "no match")
        await pilot.press("escape")
        # Enter in an empty box closes it (left open without the keys, what was typed
        # next went to the screen: `o` opened the pager).
        await pilot.press("/", "enter")
        await pilot.pause()
        assert not box.active and app.focused is log


async def test_slash_in_the_detail_searches_its_tab_and_in_the_list_filters(app_factory) -> None:
    app = app_factory()
    # Wide enough for the whole transcript to show: a search starts at the first match
    # in view, and a log scrolled to its end (a narrower pane) starts further down.
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-10")
        await pilot.press("2")  # the transcript tab
        await settle(pilot)
        await pilot.press("tab")  # the keys go to the detail
        await pilot.pause()
        await pilot.press("/", *"item")
        box = app.detail.search
        assert await until(pilot, lambda: bool(box.matches))
        assert box.border_title == f"1/{len(box.matches)}"
        assert not app.screen.query_one("#filter").has_class("visible")  # not the filter
        await pilot.press("enter", "n")
        assert box.border_title == f"{min(3, len(box.matches))}/{len(box.matches)}"
        await pilot.press("escape")
        assert not box.active
        log = app.query_one("#transcript-log", RichLog)
        assert app.focused is log
