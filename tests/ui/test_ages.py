"""Ages on screen keep time: a row written seconds ago counts its seconds.

Repainted every 15 s, "18s ago" sat beside "33s ago" for threads written a
second apart, and the detail's notice kept "last written 0s ago" for a
minute. Read from the app's real screen (a pseudo-terminal), real clock.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from cubeloop.checkpointer import SQLiteCheckpointer
from cubeloop.providers.base import TextContent, UserMessage

from tests.ui.pty_screen import PtyScreen


def written_now(db: Path) -> None:
    async def write() -> None:
        async with SQLiteCheckpointer(str(db)) as cp:
            await cp.append("fresh", [UserMessage(content=[TextContent(text="hello")])])

    asyncio.run(write())


def seconds_shown(text: str) -> int | None:
    found = re.search(r"between_turns\s+fresh\s.*?(\d+)s ago", text)  # the list's row
    return int(found.group(1)) if found else None


def test_a_row_written_seconds_ago_counts_its_seconds(tmp_path: Path) -> None:
    db = tmp_path / "ages.db"
    written_now(db)
    term = PtyScreen(tmp_path, str(db), "--no-watch")
    try:
        assert term.wait_for(lambda text: seconds_shown(text) is not None, 60), term.text()
        first = seconds_shown(term.text())
        assert first is not None
        # Nothing is written and nothing runs: only the age tick repaints the row.
        assert term.wait_for(lambda text: (seconds_shown(text) or 0) >= first + 3, 8), (
            first,
            term.text(),
        )
    finally:
        term.close()
