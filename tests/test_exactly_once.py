"""Exactly once, for real: crash the demo agent at every distinct point, resume, check.

Each case runs the demo agent ('Process items A..C': two tool calls in the
first turn, one in the second) in a child process and SIGKILLs it after the
N-th agent event, or inside a tool just before/after a job-marker write. The
runner then resumes the crashed thread. Afterwards the thread is finished,
every tool call in the transcript has exactly one result, and each item's
side effect (a line in the demo ledger) happened exactly once.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from supervisor.agents import load_factory
from supervisor.location import open_store
from supervisor.runner import Runner, RunnerConfig
from supervisor.states import RESUMABLE, State
from tests.conftest import effects, run_demo_child, transcript_problems

#: Agent events (message_update not counted) of one full run; see
#: `python -m supervisor.demo_db child --list-events`.
EVENTS = 28
MARKER_POINTS = ["before_start", "after_start", "before_finish", "after_finish"]
ITEMS = ["A", "B", "C"]

#: Events after which a kill leaves what the event before it left: nothing is written and
#: no tool runs between them (a turn or a message starting). SQLite is killed there too;
#: the Postgres matrix, at three times the cost per case, skips them.
SAME_AS_BEFORE = {2, 3, 5, 9, 13, 16, 17, 21, 24, 25}
CASES = [pytest.param({"kill_at_event": n}, id=f"event-{n}") for n in range(1, EVENTS + 1)]
DISTINCT_CASES = [c for c in CASES if c.values[0]["kill_at_event"] not in SAME_AS_BEFORE]
CASES += [
    pytest.param({"kill_at_marker": f"{p}:{item}"}, id=f"{p}-{item}")
    for item in ITEMS
    for p in MARKER_POINTS
]
DISTINCT_CASES += CASES[EVENTS:]


def test_event_count_matches_a_full_run(tmp_path: Path) -> None:
    import subprocess

    from supervisor.demo_db import child_command

    out = subprocess.run(
        child_command(tmp_path / "x.db", "t", tmp_path / "j", list_events=True),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND": "0"},
    ).stdout.split("\n")
    assert len([line for line in out if line.strip()]) == EVENTS


@pytest.mark.parametrize("kill", CASES)
async def test_crash_then_resume_is_exactly_once(
    tmp_path: Path, kill: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, jobs = tmp_path / "jobs.db", tmp_path / "jobs"
    code = run_demo_child(db, "t", jobs, **kill)
    assert code == -signal.SIGKILL, code

    monkeypatch.setenv("JOB_DIR", str(jobs))
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOOL_SECONDS", "0")
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND", "0")
    await resume_and_check(db, jobs, jobs)


def summary_of(database: Path | str, thread: str):
    """The thread as a fresh listing sees it; None when the database was never created."""
    if isinstance(database, Path) and not database.exists():
        return None
    store = open_store(database)
    try:
        return store.get(thread)
    finally:
        store.close()


async def resume_and_check(database: Path | str, jobs: Path | str, ledger: Path) -> None:
    """Resume thread 't' if its crash left it resumable; then it is finished, every tool
    call has one result, and each item's side effect happened once (on any backend)."""
    summary = summary_of(database, "t")
    if summary is None or summary.messages == 0:
        # Killed before the prompt was checkpointed: nothing ran, nothing to resume.
        assert effects(ledger) == []
        return
    if summary.state in RESUMABLE:
        cfg = RunnerConfig(
            database=database,
            factory=load_factory("supervisor.demo:demo_agent"),
            jobs_dir=jobs,
            live_window=0,
        )
        async with Runner(cfg) as runner:
            await runner.resume("t")
            run = await runner.wait("t")
        assert run.outcome == "completed"
    assert summary_of(database, "t").state is State.FINISHED
    assert transcript_problems(database, "t") == []
    assert Counter(effects(ledger)) == Counter(
        f'process_item:{{"item":"{item}"}}' for item in ITEMS
    )
