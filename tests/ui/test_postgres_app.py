"""The app on a Postgres database: the same list, the same keys, markers from our table."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable

from supervisor.agents import load_factory
from supervisor.demo_db import DEMO_THREADS
from supervisor.location import Location, open_store
from supervisor.runner import RunnerConfig
from supervisor.states import State
from supervisor.ui.app import make_app
from supervisor.ui.screens.preview import ResumePreview
from supervisor.ui.widgets.detail import DetailPane
from tests.conftest import effects, transcript_problems
from tests.ui.conftest import FIXED_NOW, select, settle, table_rows

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_app(pg_demo: tuple[str, Path], monkeypatch: pytest.MonkeyPatch):
    dsn, ledger = pg_demo
    monkeypatch.setenv("JOB_DIR", str(ledger))
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOOL_SECONDS", "0")
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND", "0")

    def build(**options):
        config = RunnerConfig(
            database=dsn,
            factory=load_factory("supervisor.demo:demo_agent"),
            agent_ref="supervisor.demo:demo_agent",
            jobs_dir=dsn,
            live_window=0,
            stopwatch=lambda: 0.0,
        )
        return make_app(
            Location.parse(dsn).store(),
            config,
            clock=lambda: FIXED_NOW,
            cursor_blink=False,
            **options,
        )

    return dsn, ledger, build


async def test_the_list_shows_every_demo_state(pg_app) -> None:
    dsn, _, build = pg_app
    async with build(watch=False).run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        rows = table_rows(pilot.app)
        assert set(rows) == {t.thread_id for t in DEMO_THREADS}
        assert rows["job-04"][1].endswith("after_tools")
        assert "secret" not in str(pilot.app.screen.query_one("#summary").render())


async def test_r_resumes_a_mid_tool_thread_with_markers_from_postgres(pg_app) -> None:
    dsn, ledger, build = pg_app
    async with build(watch=False).run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-02")
        detail = pilot.app.query_one(DetailPane)
        assert "2 marker(s) in postgresql://" in str(detail.query_one("#pending-calls").render())
        markers = detail.query_one("#marker-table", DataTable)
        statuses = sorted(str(markers.get_row_at(i)[0]) for i in range(markers.row_count))
        assert statuses == ["! started", "✓ done"]  # from our table in Postgres
        await pilot.press("r")
        await pilot.pause()
        preview = pilot.app.screen
        assert isinstance(preview, ResumePreview)
        [planned] = preview.plan.calls
        assert planned.call.arguments == {"item": "card-202"} and planned.will_run
        await pilot.press("y")
        await settle(pilot)
        assert table_rows(pilot.app)["job-02"][1] == "✓ finished"
    listing = open_store(dsn)
    assert listing.get("job-02").state is State.FINISHED
    listing.close()
    assert transcript_problems(dsn, "job-02") == []
    assert effects(ledger).count('process_item:{"item":"card-202"}') == 1


async def test_a_server_is_polled_for_what_others_write(pg_app) -> None:
    import asyncio

    from supervisor import demo
    from supervisor.location import Location

    dsn, _, build = pg_app
    async with build(watch=True).run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        async with Location.parse(dsn).checkpointer() as cp:
            agent = demo.build_demo_agent(
                cp, "late", tools=demo.demo_tools(seconds=0), tokens_per_second=None
            )
            await agent.prompt("Process items Z")
        # The app looks every second; a look taken while the agent wrote may
        # show it mid-run, and the next one shows where it ended.
        for _ in range(50):
            await asyncio.sleep(0.1)
            if table_rows(pilot.app).get("late", [None, None])[1] == "✓ finished":
                break
        assert table_rows(pilot.app)["late"][1] == "✓ finished"


async def test_a_costly_look_at_the_server_spaces_out_the_next(pg_app, monkeypatch) -> None:
    """Without `index URL`'s indexes each look scans every message: an open app kept a
    server core busy. A look that took long spaces out the next (`look_wait`)."""
    import asyncio
    import time

    import asyncpg

    import supervisor.ui.reading as reading

    # A look at this small database took 0.46 s in a CI run with every core busy, past the
    # 0.15 s a look may take for free, and the next waited 18 s. The rule is the same with
    # a wider free margin: cheap looks here stay cheap on a loaded machine; the locked
    # look below (over a second) is still held back.
    monkeypatch.setattr(reading, "POLL_FREE", 0.8)
    POLL_FREE, look_wait = reading.POLL_FREE, reading.look_wait

    dsn, _, build = pg_app
    async with build(watch=True).run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        reader = pilot.app.reader
        seen = reader._last_refresh
        for _ in range(40):  # cheap looks, one a second
            await asyncio.sleep(0.1)
            if reader._last_refresh != seen:
                break
        assert reader._last_refresh != seen and reader._last_refresh[1] < 1.0
        assert look_wait(POLL_FREE) == look_wait(0.0) == 1.0  # a cheap look: the next in 1 s
        # Another session holds the messages table: the next look waits over a second.
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                await conn.execute("LOCK TABLE cubepi_messages IN ACCESS EXCLUSIVE MODE")
                await asyncio.sleep(2.5)  # a look starts within a second of the lock
        finally:
            await conn.close()
        for _ in range(50):
            await asyncio.sleep(0.1)
            if reader._last_refresh[1] >= 1.0:
                break
        ended, took = reader._last_refresh
        assert took >= 1.0
        await asyncio.sleep(3.0)  # three ticks of the timer: none looks again
        assert reader._last_refresh == (ended, took)
        assert not reader.poll_due(time.monotonic())
        # A second and more, 0.2 s past the free margin set above: the next ten seconds and
        # more later (a look that began late in the lock took 1.1 s on a loaded machine).
        assert look_wait(took) >= 10
        assert reader.poll_due(ended + look_wait(took))
