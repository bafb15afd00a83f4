"""Tokens and cost at the end of a transcript: run by run, priced from the user's file."""

from __future__ import annotations

import json
from pathlib import Path

from textual.widgets import RichLog

from tests.crashes.test_fork import three_orders
from tests.ui.conftest import build_app, select, settle, until


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
