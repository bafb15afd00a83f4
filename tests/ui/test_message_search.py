"""`~words` in the filter: the threads whose messages say them, by the index or a scan."""

from __future__ import annotations

import asyncio
from pathlib import Path

from supervisor.location import Location
from supervisor.sqlite.search import SearchIndex
from supervisor.sqlite.store import SQLiteStore
from tests.ui.conftest import build_app, settle, spy_notify, table_rows, until


def oracle(db: Path, text: str) -> set[str]:
    with SQLiteStore(db) as store:
        return set(store.search(text).threads)


async def test_tilde_filters_by_message_text_and_keeps_up_with_new_messages(workdir) -> None:
    db = Path("demo.db")
    wanted = oracle(db, "card")
    app = build_app()
    async with app.run_test(size=(120, 40)) as pilot:
        said = spy_notify(pilot.app)
        await settle(pilot)
        every = set(table_rows(pilot.app))
        assert wanted and wanted < every  # the search narrows the list
        await pilot.press("slash", *"~card")

        def header() -> str:
            return str(pilot.app.query_one("#summary").render())

        # The whole word's search, not one for its first letters (on a loaded machine "~ca"
        # was answered first, with the same threads).
        assert await until(
            pilot,
            lambda: "messages with 'card'" in header() and set(table_rows(pilot.app)) == wanted,
        )
        assert any("searched by reading every message" in s for s in said)
        # A new thread that says it: the refresh runs the search again.
        checkpointer = Location.parse(str(db)).checkpointer()
        from cubeloop import TextContent
        from cubeloop.providers.base import UserMessage

        async with checkpointer:
            await checkpointer.append(
                "job-new", [UserMessage(content=[TextContent(text="a cardigan")])]
            )
        pilot.app.request_refresh()
        assert await until(pilot, lambda: "job-new" in table_rows(pilot.app))
        # Escape ends the search: every thread again.
        await pilot.press("escape")
        assert await until(pilot, lambda: set(table_rows(pilot.app)) == every | {"job-new"})
        assert "messages with" not in str(pilot.app.query_one("#summary").render())


async def test_with_the_index_the_search_says_nothing_about_scanning(workdir) -> None:
    db = Path("demo.db")
    import sqlite3

    source = sqlite3.connect(f"file:{db.resolve()}?mode=ro", uri=True)
    SearchIndex(db.resolve()).catch_up(source)
    source.close()
    wanted = oracle(db, "card")
    app = build_app()
    async with app.run_test(size=(80, 24)) as pilot:
        said = spy_notify(pilot.app)
        await settle(pilot)
        await pilot.press("slash", *"~card")
        assert await until(pilot, lambda: set(table_rows(pilot.app)) == wanted)
        await asyncio.sleep(0)
        assert not any("reading every message" in s for s in said)
