"""Database text is data: markup shows literally, control characters are stripped."""

from __future__ import annotations

import json
import sqlite3

from textual.widgets import RichLog

from supervisor.ui.widgets.thread_table import ThreadTable
from tests.ui.conftest import build_app, settle, table_rows

EVIL_ID = "[@click=app.quit]quit[/]"
EVIL_TEXT = "[bold red]x\x1b[2J\x07 and [link=https://e.x]y[/link]"


def add_evil_thread() -> None:
    message = {"role": "user", "content": [{"type": "text", "text": EVIL_TEXT}]}
    conn = sqlite3.connect("demo.db")
    with conn:
        conn.execute(
            "INSERT INTO messages (thread_id, message_json) VALUES (?, ?)",
            (EVIL_ID, json.dumps(message)),
        )
    conn.close()


async def test_markup_and_control_characters_are_shown_as_text(workdir) -> None:
    add_evil_thread()
    app = build_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        row = table_rows(app)[EVIL_ID]
        assert row[2] == EVIL_ID  # the id, literally, as a cell
        table = app.query_one("#threads", ThreadTable)
        table.move_to(EVIL_ID)
        await pilot.press("2")
        await settle(pilot)
        lines = [str(line.text) for line in app.query_one("#transcript-log", RichLog).lines]
        text = "\n".join(lines)
        assert "[bold red]x[2J and [link=https://e.x]y[/link]" in text
        assert "\x1b" not in text and "\x07" not in text
        # Clicking the row where the fake [@click] sits must not quit the app.
        await pilot.click("#threads", offset=(25, table.index_of(EVIL_ID) + 1))
        await pilot.pause()
        assert app.is_running
        summary = str(app.query_one("#detail-title").render())
        assert EVIL_ID in summary
