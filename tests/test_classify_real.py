"""Resume states of threads left behind by real agents killed with SIGKILL."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.location import open_store
from supervisor.states import State

EXPECTED = {
    "finished": State.FINISHED,
    "first-model-call": State.BETWEEN_TURNS,
    "during-tool": State.MID_TOOL,
    "batch-partial": State.MID_TOOL,
    "model-after-tools": State.AFTER_TOOLS,
    "turn2-calls": State.MID_TOOL,
    "aborted": State.ABORTED,
    "error": State.ERROR,
}


@pytest.mark.parametrize("thread,state", sorted(EXPECTED.items()))
def test_real_crash_is_classified(crash_db: Path, thread: str, state: State) -> None:
    store = open_store(crash_db)
    summary = store.get(thread)
    assert summary is not None
    assert summary.state is state


def test_partial_batch_reports_only_the_unanswered_call(crash_db: Path) -> None:
    summary = open_store(crash_db).get("batch-partial")
    assert summary is not None
    assert summary.answered == {"call-1-A"}
    assert [(c.name, c.arguments) for c in summary.pending_tool_calls] == [
        ("process_item", {"item": "B"})
    ]


def test_crashed_runs_stay_open_and_finished_runs_close(crash_db: Path) -> None:
    store = open_store(crash_db)
    assert store.get("during-tool").run_open is True
    assert store.get("finished").run_open is False
