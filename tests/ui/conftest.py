"""Fixtures for the app: a demo database with fixed times and ids, a fixed clock.

The demo database is built by really running the demo agent (see
supervisor.demo_db); for repeatable screens a copy gets its timestamps, run
ids and marker times rewritten to fixed values, and the app gets a fixed
clock, relative paths (cwd is the test's directory) and no file watching.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.worker import WorkerCancelled

from supervisor.agents import load_factory
from supervisor.location import open_store
from supervisor.runner import RunnerConfig
from supervisor.sqlite.store import SQLiteStore
from supervisor.states import State
from supervisor.ui.app import SupervisorApp, make_app
from supervisor.ui.widgets.thread_table import COLUMNS, ThreadTable

#: 2026-11-27 12:00:00 UTC, the clock every app test sees.
FIXED_NOW = 1795780800.0
JULIAN_EPOCH = 2440587.5


def normalise(db: Path, jobs: Path) -> None:
    """Fixed created_at (one row every 7 s, the last 30 s before FIXED_NOW), run ids, markers,
    and each reply's usage (the demo's model counts tokens from text that holds ids)."""
    conn = sqlite3.connect(db)
    with conn:
        for row_id, text in conn.execute("SELECT id, message_json FROM messages").fetchall():
            message = json.loads(text)
            if message.get("role") == "assistant" and isinstance(message.get("usage"), dict):
                message["usage"] = {  # written as cubeloop writes it: json.dumps
                    "input_tokens": 100 + row_id,
                    "output_tokens": 20 + row_id % 7,
                    "cache_read_tokens": 0,
                    "cache_write_tokens": 0,
                }
                conn.execute(
                    "UPDATE messages SET message_json = ? WHERE id = ?",
                    (json.dumps(message), row_id),
                )
        (top,) = conn.execute("SELECT max(id) FROM messages").fetchone()
        conn.execute(
            "UPDATE messages SET created_at = ? + ((? - (? - id) * 7.0 - 30.0) / 86400.0)",
            (JULIAN_EPOCH, FIXED_NOW, top),
        )
        runs = [
            r
            for (r,) in conn.execute(
                "SELECT run_id FROM messages WHERE run_id IS NOT NULL GROUP BY run_id ORDER BY min(id)"
            )
        ]
        for i, run in enumerate(runs, start=1):
            fixed = f"run{i:05d}"
            conn.execute(
                "UPDATE messages SET run_id = ?, message_json = replace(message_json, ?, ?) "
                "WHERE run_id = ?",
                (fixed, run, fixed, run),
            )
            for table in ("runs", "thread_pending_request", "thread_hitl_answers"):
                conn.execute(f"UPDATE {table} SET run_id = ? WHERE run_id = ?", (fixed, run))
    conn.close()
    for marker in jobs.glob("*.json"):
        data = json.loads(marker.read_text())
        data["started_at"] = FIXED_NOW - 90
        if data.get("done_at"):
            data["done_at"] = FIXED_NOW - 80
        marker.write_text(json.dumps(data))


@pytest.fixture(scope="session")
def fixed_template(demo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("fixed")
    db = base / "demo.db"
    shutil.copy(demo_template, db)
    shutil.copytree(demo_template.with_name("demo.db.jobs"), base / "demo.db.jobs")
    normalise(db, base / "demo.db.jobs")
    return db


@pytest.fixture
def workdir(fixed_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the fixed demo database; the test runs inside its directory."""
    shutil.copy(fixed_template, tmp_path / "demo.db")
    shutil.copytree(fixed_template.with_name("demo.db.jobs"), tmp_path / "demo.db.jobs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JOB_DIR", "demo.db.jobs")
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOOL_SECONDS", "0")
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND", "0")
    return tmp_path


def build_app(db: str = "demo.db", remember_theme: bool = False, **config: object) -> SupervisorApp:
    settings: dict[str, object] = dict(
        database=Path(db),
        factory=load_factory("supervisor.demo:demo_agent"),
        agent_ref="supervisor.demo:demo_agent",
        jobs_dir=Path(db + ".jobs"),
        live_window=0,
        stopwatch=lambda: 0.0,  # no measured durations on screen
    )
    settings.update(config)
    return make_app(
        SQLiteStore(db),
        RunnerConfig(**settings),
        clock=lambda: FIXED_NOW,
        watch=False,
        cursor_blink=False,
        remember_theme=remember_theme,
    )


@pytest.fixture
def app_factory(workdir: Path) -> Callable[..., SupervisorApp]:
    return build_app


def spy_notify(app: SupervisorApp) -> list[str]:
    """Every message the app notifies from now on (its `notify`, wrapped and called through),
    rather than Textual's private list of notifications."""
    said: list[str] = []
    real = app.notify

    def notify(message: str, *args: object, **kwargs: object) -> None:
        said.append(str(message))
        real(message, *args, **kwargs)

    app.notify = notify  # type: ignore[method-assign]
    return said


async def settle(pilot) -> None:
    """Let refreshes, detail loads and agent runs finish."""
    for _ in range(3):
        # The file watcher never completes; everything else does.
        busy = [w for w in pilot.app.workers if w.group != "watch"]
        if busy:  # an empty list would mean "every worker", the watcher too
            with contextlib.suppress(WorkerCancelled):  # superseded exclusive workers
                await pilot.app.workers.wait_for_complete(busy)
        await pilot.pause()


async def until(pilot, condition: Callable[[], object], seconds: float = 30.0) -> bool:
    """Poll `condition` between pauses until it holds; whether it did within `seconds`.

    Generous on purpose: a loaded CI machine can take many times longer than a
    laptop, and a condition that holds returns at once.
    """
    for _ in range(int(seconds / 0.05)):
        if condition():
            return True
        await pilot.pause(0.05)
    return bool(condition())


#: A list row's cells by their column's label (`table_rows(app)[thread][AGE]`).
AGE = next(i for i, (label, _, _) in enumerate(COLUMNS) if label == "ACTIVITY")
HINT = next(i for i, (label, _, _) in enumerate(COLUMNS) if label == "WHERE IT STOPPED")
TOKENS = next(i for i, (label, _, _) in enumerate(COLUMNS) if label == "TOKENS")


def table_rows(app: SupervisorApp) -> dict[str, list[str]]:
    """The list as drawn: thread id to cell texts, in display order."""
    table = app.query_one("#threads", ThreadTable)
    return {t: [str(c) for c in table.row_cells(t)] for t in table.shown}


def state(thread: str) -> State:
    return open_store("demo.db").get(thread).state


async def select(pilot, thread: str) -> None:
    table = pilot.app.query_one("#threads", ThreadTable)
    table.focus()
    table.move_to(thread)
    await pilot.pause(0.2)  # the detail loads once the cursor rests
    await settle(pilot)
