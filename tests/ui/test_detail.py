"""The detail pane: tabs, transcript and markers, the full-screen transcript, the event log."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable, RichLog, Static, TabbedContent

from tests.ui.conftest import select, settle


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


async def test_the_title_names_the_cursors_thread_in_the_turn_that_moved_it(app_factory) -> None:
    """No message in between: the row and the title are drawn in one frame (held `j`
    would otherwise wait two frames a key)."""
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        app = pilot.app
        table = app.table
        for _ in range(3):
            table.move_cursor(table.cursor + 1)  # no await: nothing may be left to a message
            assert app.selected == table.current_thread
            title = str(app.query_one("#detail-title", Static).render())
            assert title.startswith(table.current_thread)


async def test_a_notice_of_the_same_height_is_drawn_without_a_new_layout(app_factory) -> None:
    """A layout redraws the whole screen: held `j` over threads with notices must not
    ask for one a key, only when the notice box changes height."""
    app = app_factory()
    # The shown thread (job-12) was written under a minute before the fixed clock: the age
    # tick would put its own notice back each second between the notices set here.
    app._tick_ages = lambda: None
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        detail = pilot.app.detail
        box = detail.query_one("#detail-request", Static)
        layouts: list[bool] = []
        refresh = box.refresh

        def spy(*regions, **options):
            layouts.append(bool(options.get("layout")))
            return refresh(*regions, **options)

        box.refresh = spy
        detail.show_title("a", Text("crashed mid-tool: one line"))
        await pilot.pause()
        layouts.clear()
        detail.show_title("b", Text("crashed mid-tool: another line"))
        assert layouts == [False]  # same height: a repaint of the box alone
        detail.show_title("c", Text("crashed mid-tool: another line"))
        assert layouts == [False]  # the same notice: nothing at all
        detail.show_title("d", Text("a much longer notice " * 40))
        assert True in layouts[1:]  # taller: the screen is laid out again
        await pilot.pause()
        assert str(box.render()).startswith("a much longer notice")
        detail.show_title("e", None)
        assert not box.has_class("visible")


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


async def test_detail_loads_queued_behind_a_slow_one_give_way_to_the_newest(app_factory) -> None:
    """Without the thread index each load scans the table, one at a time: loads for
    threads the cursor passed while one ran are dropped, and the thread it rests on is
    the next one read (the fifth of five quick looks once came seconds late)."""
    app = app_factory()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        read: list[str] = []
        real = app.store.transcript

        def counted(thread_id: str, **kwargs):
            read.append(thread_id)
            return real(thread_id, **kwargs)

        app.store.transcript = counted  # type: ignore[method-assign]
        ids = list(app.summaries)[:5]
        with app.reader.lock:  # a scan in flight: the loads below queue behind it
            for thread_id in ids:
                app.detail.show(thread_id)
                await pilot.pause(0.05)
        await settle(pilot)
        assert read == [ids[-1]]
        assert app.detail.transcript is not None and app.detail.transcript.thread_id == ids[-1]


def _widest(log: RichLog) -> int:
    return max((strip.cell_length for strip in log.lines), default=0)


async def test_a_log_filled_while_its_tab_was_hidden_is_whole_when_shown(app_factory) -> None:
    """RichLog wraps a write at its width then: written under another tab (no width), each
    line was one character wide, and stayed so (the Events tab after a run watched from
    the Job markers tab; the Transcript tab after the cursor moved under another tab)."""
    from supervisor.runner import RunnerEvent

    app = app_factory()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        thread = "job-10"  # the row below it, job-01, has messages to show
        await select(pilot, thread)
        await pilot.press("3")  # the Job markers tab: Events and Transcript hidden
        await pilot.pause()
        message = "the refund tool raised: card declined by the issuer, try again later"
        app.detail.record(RunnerEvent(thread, "error", {"message": message}, 0.0))
        await pilot.press("j")  # another thread's transcript loads while hidden
        await pilot.pause(0.5)
        await settle(pilot)
        await pilot.press("1")
        await pilot.pause()
        events = app.query_one("#event-lines", RichLog)
        assert _widest(events) > 20
        await pilot.press("2")
        await pilot.pause()
        transcript = app.query_one("#transcript-log", RichLog)
        assert len(transcript.lines) > 0 and _widest(transcript) > 20
        await pilot.press("3", "k", "1")  # back to the first thread: its error, whole
        await pilot.pause(0.5)
        await settle(pilot)
        text = "\n".join(strip.text for strip in events.lines)
        assert "card declined by the issuer" in " ".join(text.split())
        assert _widest(events) > 20


async def test_a_thread_another_process_runs_shows_its_messages_as_they_land(app_factory) -> None:
    """It said "No events yet: this thread has not run in this session" while its
    transcript grew."""
    from supervisor.ui.messages import ThreadsRefreshed

    app = app_factory()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await select(pilot, "job-05")
        holder = {"pid": 4242, "host": "build-3", "since": 0.0}
        first = app.table.summaries["job-05"].copy()
        first.holder = holder
        app.post_message(ThreadsRefreshed({"job-05": first}, full=False))
        await settle(pilot)
        await pilot.press("1")
        log = app.query_one("#event-lines", RichLog)
        shown = lambda: " ".join(" ".join(s.text for s in log.lines).split())  # noqa: E731
        app.detail.show("job-05")
        await pilot.pause()
        assert "Running in another process (pid 4242 on build-3)" in shown()
        grown = first.copy()
        grown.messages += 1
        grown.last_role, grown.last_text = "assistant", "Processed the rest of the items."
        app.post_message(ThreadsRefreshed({"job-05": grown}, full=False))
        await settle(pilot)
        assert (
            "↻ 1 new message, the last assistant (written by pid 4242 on build-3): "
            "Processed the rest" in shown()
        )
