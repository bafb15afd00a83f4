"""The thread list: its order, sorting, jumping, filtering on where threads stopped, copying."""

from __future__ import annotations

import gc
import json
import re
import sqlite3
from pathlib import Path

from textual import events

from supervisor.states import NEEDS_ATTENTION, ORDERS, State
from supervisor.ui.widgets.thread_table import ThreadTable
from tests.ui.conftest import AGE, HINT, select, settle, table_rows, until


def summary(app) -> str:
    return str(app.query_one("#summary").render())


async def test_default_order_is_attention_first_then_newest(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        app = pilot.app
        states = [app.state_of(t) for t in app.shown]
        needing = [s in NEEDS_ATTENTION for s in states]
        assert needing == sorted(needing, reverse=True)  # every one needing attention first
        first = [t for t in app.shown if app.state_of(t) in NEEDS_ATTENTION]
        times = [app.summaries[t].last_activity for t in first]
        assert times == sorted(times, reverse=True)  # newest first within the group
        assert list(table_rows(app)) == app.shown


async def test_s_cycles_the_order_and_the_cursor_stays_on_its_thread(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        app = pilot.app
        await select(pilot, "job-07")
        seen = []
        for _ in ORDERS:
            await pilot.press("s")
            await pilot.pause()
            seen.append(app.order)
            assert app.query_one("#threads", ThreadTable).current_thread == "job-07"
        assert seen == [*ORDERS[1:], ORDERS[0]]
        await pilot.press("s", "s", "s")  # by thread id
        await pilot.pause()
        assert app.order == "thread"
        assert list(table_rows(app)) == sorted(app.summaries)
        assert "[by thread]" in summary(app)


async def test_a_held_key_pauses_the_collector_until_the_cursor_rests(app_factory) -> None:
    """A full collection mid-hold is a missed frame; the pause must end when the key does."""
    assert gc.isenabled()
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        table = pilot.app.table
        for _ in range(3):  # closer together than a held key's repeat
            table.action_cursor_down()
        assert not gc.isenabled()
        assert await until(pilot, gc.isenabled, 5)  # the cursor rests: collections again
        table.action_cursor_down()
        assert gc.isenabled()  # one move after a rest is not a held key
        table.action_cursor_down()
        assert not gc.isenabled()
    assert gc.isenabled()  # quitting mid-hold leaves the collector on


async def test_the_header_says_where_the_cursor_is_in_place_of_a_scrollbar(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        table = pilot.app.table
        assert not table.show_vertical_scrollbar
        total = len(table)
        table.move_cursor(0)
        assert table.render_line(0).text.rstrip().endswith(f" 1/{total}")
        await pilot.press("G")
        assert table.render_line(0).text.rstrip().endswith(f" {total}/{total}")


async def test_rows_are_drawn_with_one_segment_per_run_of_a_style(app_factory) -> None:
    """Every segment costs its own colour codes on the wire; neighbours of one style merge."""
    app = app_factory()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        table = app.query_one("#threads", ThreadTable)
        for y in range(6):  # the header, the cursor's row and rows under it
            segments = list(table.render_line(y))
            assert all(a.style != b.style for a, b in zip(segments, segments[1:], strict=False))


async def test_a_narrow_header_keeps_the_position_and_a_short_label(app_factory) -> None:
    async with app_factory().run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        table = pilot.app.table
        table.move_cursor(2)
        header = table.render_line(0).text.rstrip()
        assert header.endswith(f" 3/{len(table)}") and "WHERE IT" not in header
        assert " WHERE▼ " in header


async def test_where_it_stopped_keeps_room_at_120_columns(app_factory) -> None:
    """The column a person scans the list for: at 55% of 120 columns it had ten characters
    ("provider …"); the list takes more of a medium screen (not so much that the detail's
    title, a long id with its state and count, is cut)."""
    async with app_factory().run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        table = pilot.app.table
        drawn = {t: table.render_line(i + 1).text for i, t in enumerate(table.shown) if i < 10}
        assert "provider overlo" in drawn["job-07"], drawn["job-07"]
        assert "user message no" in drawn["job-05"], drawn["job-05"]
        await select(pilot, "job-04")
        title = pilot.app.query_one("#detail-title")
        text = str(title.render())
        # A fleet's ids ("thread-00042") with the longest state and a count still fit.
        longest = text.replace("job-04", "thread-00042").replace("after_tools", "awaiting_input")
        assert "·  4 messages" in text and len(longest) <= title.content_size.width, (
            longest,
            title.content_size,
        )


async def test_clicking_a_header_sorts_by_it(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        app = pilot.app
        table = app.query_one("#threads", ThreadTable)
        x = table._widths()[:3]  # the MSGS header starts after mark, state and thread
        await pilot.click("#threads", offset=(sum(x) + 1, 0))
        await pilot.pause()
        assert app.order == "messages"
        counts = [app.summaries[t].messages for t in table_rows(app)]
        assert counts == sorted(counts, reverse=True)
        await pilot.click("#threads", offset=(1 + table._widths()[0], 0))  # STATE
        await pilot.pause()
        assert app.order == "state"


async def test_g_and_capital_g_jump_to_the_ends(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        app = pilot.app
        await pilot.press("G")
        await pilot.pause(0.2)
        assert app.selected == app.shown[-1]
        await pilot.press("g")
        await pilot.pause(0.2)
        assert app.selected == app.shown[0]
        await pilot.press("end")
        await pilot.pause(0.2)
        assert app.selected == app.shown[-1]


async def test_filter_matches_where_it_stopped_and_says_when_nothing_does(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        app = pilot.app
        await pilot.press("slash", *"overloaded", "enter")
        await pilot.pause()
        assert list(table_rows(app)) == ["job-07"]  # "provider overloaded (HTTP 529)"
        await pilot.press("escape", "slash", *"zzz-nothing", "enter")
        await pilot.pause()
        assert table_rows(app) == {}
        assert "no thread matches" in summary(app)
        assert "[filter 'zzz-nothing']" in summary(app)
        assert summary(app).startswith("12 threads (0 shown)")  # the counts first


async def test_y_copies_the_selected_thread_id(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-03")
        await pilot.press("y")
        assert pilot.app.clipboard == "job-03"


async def test_the_header_names_the_agent_and_the_jobs_directory(app_factory) -> None:
    app = app_factory()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        context = str(pilot.app.query_one("#context").render())
        assert context == "agent supervisor.demo:demo_agent  ·  jobs demo.db.jobs"


async def test_ages_never_go_back_after_a_rebuild(workdir) -> None:
    from tests.ui.conftest import FIXED_NOW, build_app

    now = [FIXED_NOW]
    app = build_app()
    app.clock = lambda: now[0]
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        assert table_rows(app)["job-01"][AGE] == "4m ago"
        now[0] += 600  # ten minutes on: the age tick shows it
        app._tick_ages()
        await pilot.pause()
        assert table_rows(app)["job-01"][AGE] == "14m ago"
        await pilot.press("s")  # a rebuild from cached rows
        await pilot.pause()
        assert table_rows(app)["job-01"][AGE] == "14m ago"


async def test_a_thread_that_writes_moves_to_its_place_without_a_rebuild(workdir) -> None:
    import sqlite3

    from tests.ui.conftest import build_app

    app = build_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await pilot.press("s")  # by activity: newest first
        await pilot.pause()
        await select(pilot, "job-03")
        assert app.shown[0] != "job-01"
        conn = sqlite3.connect("demo.db")
        with conn:
            conn.execute(
                "INSERT INTO messages (thread_id, message_json) VALUES ('job-01', ?)",
                ('{"role": "user", "content": [{"type": "text", "text": "again"}]}',),
            )
        conn.close()
        table = app.query_one("#threads", ThreadTable)
        table.rows_touched = 0
        app.request_refresh()
        await settle(pilot)
        assert list(table_rows(app))[0] == "job-01" == app.shown[0]
        assert table.current_thread == "job-03"  # the cursor stayed
        assert table.rows_touched == 1  # one thread changed: one row placed again
        assert "○ 2" in str(app.query_one("#summary").render())  # job-01 counted between turns


async def test_a_broken_row_mid_thread_shows_once_the_background_check_ends(workdir) -> None:
    import sqlite3

    from tests.ui.conftest import build_app

    conn = sqlite3.connect("demo.db")
    with conn:  # starts like a user message: the listing reads starts only
        (first,) = conn.execute(
            "SELECT min(id) FROM messages WHERE thread_id = 'job-01'"
        ).fetchone()
        conn.execute(
            "UPDATE messages SET message_json = ? WHERE id = ?",
            ('{"role": "user", "content": [ cut short', first),
        )
    conn.close()
    app = build_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        assert app.state_of("job-01") is State.CORRUPT
        assert app.table.counts[State.CORRUPT] == 1  # the header counts it too


async def test_a_big_database_shows_its_newest_threads_first(workdir, monkeypatch) -> None:
    from supervisor.sqlite import store as store_module
    from tests.ui.conftest import build_app

    monkeypatch.setattr(store_module, "PREVIEW_ABOVE_BYTES", 0)  # every database is "big"
    monkeypatch.setattr(store_module.SQLiteStore.preview, "__defaults__", (5,))
    app = build_app()
    seen: list[tuple[bool, int]] = []
    real = ThreadTable.replace_all

    def spy(table: ThreadTable, summaries) -> None:  # type: ignore[no-untyped-def]
        seen.append((app._reading, len(summaries)))
        real(table, summaries)

    monkeypatch.setattr(ThreadTable, "replace_all", spy)
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        assert seen[0][0] is True and 0 < seen[0][1] < 12  # the newest 5 rows' threads
        assert seen[1] == (False, 12)  # then the whole pass
        assert "reading the whole database" not in summary(app)
        assert len(app.shown) == 12


async def test_a_preview_read_before_the_app_opened_is_in_its_first_frame(
    workdir, monkeypatch
) -> None:
    """The CLI starts the preview before its imports (`preview_soon`): no loading screen."""
    import time

    from supervisor.sqlite import store as store_module
    from tests.ui.conftest import build_app

    monkeypatch.setattr(store_module, "PREVIEW_ABOVE_BYTES", 0)  # every database is "big"
    app = build_app()
    app.store.preview_soon(rows=5)
    deadline = time.monotonic() + 10
    while not app.store.preview_ready() and time.monotonic() < deadline:
        time.sleep(0.01)
    seen: list[object] = []
    real = ThreadTable.replace_all

    def spy(table: ThreadTable, summaries) -> None:  # type: ignore[no-untyped-def]
        seen.append((app._reading, len(summaries)))
        real(table, summaries)

    monkeypatch.setattr(ThreadTable, "replace_all", spy)
    refresh = app.request_refresh
    monkeypatch.setattr(app, "request_refresh", lambda: seen.append("refresh") or refresh())
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        provisional, first_refresh, whole = seen[:3]
        assert provisional[0] is True and 0 < provisional[1] < 12  # the newest 5 rows' threads
        assert first_refresh == "refresh"  # shown before the first refresh was even asked for
        assert whole == (False, 12)
        assert len(app.shown) == 12


async def test_at_20000_threads_a_refresh_touches_only_the_changed_rows(workdir) -> None:
    import json

    from tests.conftest import insert_rows
    from tests.test_listing_scale import add_mid_tool_threads, result
    from tests.ui.conftest import build_app

    threads = add_mid_tool_threads(Path("demo.db"), 20_000)
    app = build_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        table = app.query_one("#threads", ThreadTable)
        assert len(table) == 20_012
        cursor = table.current_thread
        table.rows_touched = 0
        changed = {threads[i * 1999] for i in range(10)}
        insert_rows("demo.db", [(t, json.dumps(result("c"))) for t in changed])
        app.request_refresh()
        await settle(pilot)
        assert table.rows_touched == 10  # ten rows placed again, not 20,012
        assert app.store.work["rows"] == 10
        assert {app.state_of(t) for t in changed} == {State.AFTER_TOOLS}
        assert table.current_thread == cursor
        assert table.counts[State.AFTER_TOOLS] == 10 + 1  # job-04 and the ten


async def test_list_shows_every_thread_with_badges(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        rows = table_rows(pilot.app)
        assert len(rows) == 12
        assert rows["job-02"][1] == "◐ mid_tool"
        assert 'process_item({"item": "card-202"})' in rows["job-02"][HINT]
        assert rows["job-09"][1] == "? awaiting_input"
        assert rows["job-09"][HINT].startswith("approve refund(")
        assert rows["job-11"][HINT].startswith("ask: Which size")
        assert rows["job-12"][1] == "✎ answered"
        assert rows["job-08"][1] == "· empty"
        summary = str(pilot.app.query_one("#summary").render())
        assert "demo.db" in summary and "12 threads" in summary


async def test_slash_filters_and_escape_clears(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"mid")
        # Applied once typing pauses (how soon is the machine's business, not the test's).
        await until(pilot, lambda: len(table_rows(pilot.app)) == 2)
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


async def test_the_view_follows_the_cursor_down_a_long_list(workdir) -> None:
    """Page down and `G` scroll the rows: the cursor's row is on screen, drawn as the cursor."""
    from tests.test_listing_scale import add_mid_tool_threads
    from tests.ui.conftest import build_app

    add_mid_tool_threads(Path("demo.db"), 500)
    app = build_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        table = app.query_one("#threads", ThreadTable)
        for keys, row in ((("pagedown",), None), (("G",), len(table) - 1)):
            await pilot.press(*keys)
            await pilot.pause(0.2)
            if row is not None:
                assert table.cursor == row
            top = round(table.scroll_y)
            assert top > 0
            assert top <= table.cursor < top + table.scrollable_content_region.height - 1
            drawn = "".join(s.text for s in table.render_line(table.cursor - top + 1))
            assert table.current_thread in drawn
        await pilot.press("g")
        await pilot.pause(0.2)
        assert round(table.scroll_y) == 0
        wheel = events.MouseScrollDown(table, 5, 5, 0, 1, 0, False, False, False)
        table.post_message(wheel)
        await pilot.pause(0.2)
        assert round(table.scroll_y) > 0  # the wheel scrolls the rows


async def test_the_cursor_row_stays_on_screen_when_the_terminal_shrinks(app_factory) -> None:
    """Shrunk with the cursor low in the list, the selected row stayed below the fold
    until the next key."""
    async with app_factory().run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        table = pilot.app.table
        table.focus()
        table.move_cursor(len(table) - 1)  # the last row: far down on a short screen
        await pilot.pause()
        await pilot.resize_terminal(80, 15)
        await pilot.pause(0.3)
        top = round(table.scroll_y)
        rows = table.size.height - 1  # the header row
        assert top <= table.cursor < top + rows, (top, table.cursor, rows)


async def test_capital_s_reverses_the_order_and_the_header_says_which_way(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        table = pilot.app.table
        table.focus()
        before = table.shown
        table.move_cursor(2)
        await pilot.pause()
        chosen = table.current_thread
        assert "WHERE IT STOPPED▼" in table.render_line(0).text
        await pilot.press("S")
        await pilot.pause()
        assert table.shown == before[::-1]
        assert table.current_thread == chosen  # the cursor stays on its thread
        assert table.thread_at(0) == before[-1]
        assert "WHERE IT STOPPED▲" in table.render_line(0).text
        assert "reversed" in summary(pilot.app)
        await pilot.press("s")  # the next order reads the natural way again
        await pilot.pause()
        assert not table.reversed and "ACTIVITY▼" in table.render_line(0).text


async def test_a_long_thread_id_gives_way_to_the_columns_after_it(workdir, app_factory) -> None:
    """A 40-character id at 80 columns pushed TOKENS, ACTIVITY and WHERE off the screen."""
    long_id = "customer-support-escalation-" + "x" * 12
    message = {"role": "user", "content": [{"type": "text", "text": "hello"}]}
    conn = sqlite3.connect("demo.db")
    with conn:
        conn.execute(
            "INSERT INTO messages (thread_id, message_json, created_at) VALUES (?, ?, ?)",
            (long_id, json.dumps(message), 2461372.0),
        )
    conn.close()
    async with app_factory().run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = pilot.app.table
        header = table.render_line(0).text
        assert "TOKENS" in header and "ACTIVITY" in header
        row = next(
            table.render_line(y).text
            for y in range(1, table.size.height)
            if "cust" in table.render_line(y).text
        )
        # The id is cut in the middle (its start and its end show)…
        assert long_id not in row and re.search(r" cust[a-z-]*…x{6,} ", row), row
        assert "ago" in row and "user message" in row.split("ago")[-1]  # …the rest shows


async def test_ids_cut_to_fit_keep_their_ends_and_tell_threads_apart(workdir, app_factory) -> None:
    """Ids longer than the thread column has room for, that differ at the end, were all
    `customer-…`, every row alike. Cut in the middle, each row names its thread."""
    ids = [f"customer-thread-{n:05d}" for n in (1, 2, 31)]
    message = {"role": "user", "content": [{"type": "text", "text": "hello"}]}
    conn = sqlite3.connect("demo.db")
    with conn:
        conn.executemany(
            "INSERT INTO messages (thread_id, message_json, created_at) VALUES (?, ?, ?)",
            [(t, json.dumps(message), 2461372.0) for t in ids],
        )
    conn.close()
    async with app_factory().run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        table = pilot.app.table
        lines = [table.render_line(y).text for y in range(1, table.size.height)]
        shown = [re.search(r" (cu\S*…\S+) ", line) for line in lines]
        cut = sorted(m.group(1) for m in shown if m)
    assert len(cut) == len(ids) and len(set(cut)) == len(ids), cut
    assert [c[-4:] for c in cut] == [t[-4:] for t in sorted(ids)]
