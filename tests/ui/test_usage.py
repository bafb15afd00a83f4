"""Tokens and cost at the end of a transcript: run by run, priced from the user's file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from textual.widgets import RichLog

from tests.crashes.test_fork import three_orders
from tests.ui.conftest import TOKENS, build_app, select, settle, table_rows, until


async def test_the_transcript_ends_with_each_runs_tokens_and_cost(
    tmp_path: Path, monkeypatch
) -> None:
    c = three_orders(tmp_path)
    config = tmp_path / "config" / "agent-supervisor"
    config.mkdir(parents=True)
    (config / "prices.toml").write_text('[models."scripted"]\ninput = 1000\noutput = 1000\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("JOB_DIR", str(c.jobs))
    by_run = json.loads(c.cli("usage", c.database, "--by", "run", "--json").stdout)
    app = build_app(c.database, jobs_dir=c.jobs)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await select(pilot, "src")
        await pilot.press("2")
        log = pilot.app.query_one("#transcript-log", RichLog)

        def text() -> str:
            return "\n".join(str(line.text) for line in log.lines)

        assert await until(pilot, lambda: "all runs" in text())
        shown = text()
        assert "Tokens by run" in shown and "8 replies" in shown
        for run in by_run:  # each run's figures, as `usage --by run` prices them
            cost = f"${run['cost_usd']:,.2f}"
            flat = " ".join(shown.split())  # however the pane's width wrapped it
            start = flat.index(f"run {run['run_id'][:12]}")
            end = min(i for i in (flat.find(" run ", start + 4), flat.find("all runs")) if i > 0)
            segment = flat[start:end]  # this run's two lines
            assert f"{run['messages']} replies" in segment and cost in segment, (segment, cost)


async def test_the_tokens_column_sorts_by_cost_and_counts_new_replies(workdir) -> None:
    from supervisor.location import Location
    from supervisor.usage import tokens_text

    db = "demo.db"
    usage = subprocess.run(
        [sys.executable, "-m", "supervisor", "usage", db, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    by_thread = {r["thread_id"]: r for r in json.loads(usage.stdout)}
    app = build_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        rows = table_rows(pilot.app)
        for thread, cells in rows.items():
            spent = by_thread.get(thread)
            total = (
                0
                if spent is None
                else sum(
                    spent[k]
                    for k in (
                        "input_tokens",
                        "output_tokens",
                        "cache_read_tokens",
                        "cache_write_tokens",
                    )
                )
            )
            assert cells[TOKENS] == tokens_text(total), (thread, cells)
        table = pilot.app.table
        while table.order != "cost":
            await pilot.press("s")
        await pilot.pause()
        shown = list(table_rows(pilot.app))
        spent = [
            by_thread[t]["input_tokens"] + by_thread[t]["output_tokens"] if t in by_thread else 0
            for t in shown
        ]
        assert spent == sorted(spent, reverse=True)  # the demo's model has no price: by tokens
        # A reply with a big usage lands on the last thread: it moves to the top.
        last = shown[-1]
        checkpointer = Location.parse(db).checkpointer()
        from cubeloop import TextContent
        from cubeloop.providers.base import AssistantMessage, Usage

        reply = AssistantMessage(
            content=[TextContent(text="done")], usage=Usage(input_tokens=10**6, output_tokens=5)
        )
        async with checkpointer:
            await checkpointer.append(last, [reply])
        pilot.app.request_refresh()
        assert await until(pilot, lambda: list(table_rows(pilot.app))[0] == last)
        assert table_rows(pilot.app)[last][TOKENS].endswith("M")
