"""Screens, compared with saved SVGs (pytest-textual-snapshot).

Deterministic by construction: fixed database contents (see conftest.normalise),
a fixed clock, relative paths, no file watching, no cursor blink, fixed sizes.
"""

from __future__ import annotations

import json
import sqlite3

from supervisor.ui.widgets.thread_table import ThreadTable
from tests.ui.conftest import build_app, settle

WIDE = (160, 50)
NARROW = (80, 24)


async def ready(pilot) -> None:
    await settle(pilot)


def select_before(thread: str, *keys: str):
    async def run(pilot) -> None:
        await settle(pilot)
        table = pilot.app.query_one("#threads", ThreadTable)
        table.move_to(thread)
        await pilot.pause(0.2)  # the detail loads once the cursor rests
        await settle(pilot)
        await pilot.press(*keys)
        # Not settle(): a worker waiting on an open modal never completes.
        for _ in range(3):
            await pilot.pause()

    return run


def test_main_view(workdir, snap_compare) -> None:
    assert snap_compare(build_app(), terminal_size=WIDE, run_before=select_before("job-02"))


def test_events_tab_after_a_resume(workdir, snap_compare) -> None:
    async def run(pilot) -> None:
        await select_before("job-04", "r")(pilot)
        await settle(pilot)

    assert snap_compare(build_app(), terminal_size=WIDE, run_before=run)


def test_transcript_tab(workdir, snap_compare) -> None:
    assert snap_compare(build_app(), terminal_size=WIDE, run_before=select_before("job-02", "2"))


def test_markers_tab_mid_tool(workdir, snap_compare) -> None:
    assert snap_compare(build_app(), terminal_size=WIDE, run_before=select_before("job-02", "3"))


def test_resume_preview(workdir, snap_compare) -> None:
    assert snap_compare(build_app(), terminal_size=WIDE, run_before=select_before("job-02", "r"))


def test_prompt_modal(workdir, snap_compare) -> None:
    keys = ["p", *"Process items x-1, x-2"]
    assert snap_compare(build_app(), terminal_size=WIDE, run_before=select_before("job-01", *keys))


def test_help(workdir, snap_compare) -> None:
    assert snap_compare(build_app(), terminal_size=WIDE, run_before=select_before("job-01", "?"))


def test_narrow_terminal(workdir, snap_compare) -> None:
    assert snap_compare(build_app(), terminal_size=NARROW, run_before=select_before("job-03"))


def test_filtered_list(workdir, snap_compare) -> None:
    keys = ["slash", *"mid", "wait:400"]
    assert snap_compare(build_app(), terminal_size=WIDE, run_before=select_before("job-02", *keys))


def test_markup_in_database_text_shows_literally(workdir, snap_compare) -> None:
    evil_id = "[@click=app.quit]quit[/]"
    message = {
        "role": "user",
        "content": [{"type": "text", "text": "[bold red]x\x1b[2J and [link=https://e.x]y[/link]"}],
    }
    conn = sqlite3.connect("demo.db")
    with conn:
        conn.execute(
            "INSERT INTO messages (thread_id, message_json, created_at) VALUES (?, ?, ?)",
            (evil_id, json.dumps(message), 2461372.0),
        )
    conn.close()
    assert snap_compare(build_app(), terminal_size=WIDE, run_before=select_before(evil_id, "2"))


def test_answer_dialog_for_an_ask(workdir, snap_compare) -> None:
    assert snap_compare(build_app(), terminal_size=WIDE, run_before=select_before("job-11", "r"))


def test_waiting_thread_detail(workdir, snap_compare) -> None:
    assert snap_compare(build_app(), terminal_size=WIDE, run_before=select_before("job-09"))


def test_help_at_80x24_scrolls(workdir, snap_compare) -> None:
    assert snap_compare(build_app(), terminal_size=NARROW, run_before=select_before("job-01", "?"))
