"""The same crashes on cubeloop's Postgres checkpointer: HITL, a terminated run, a veto.

The agents and their hosts are those of the SQLite cases; only the database
is a real PostgreSQL server (started by the tests) and its `cubepi_*` schema.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.crashes.harness import Case, effect

pytestmark = pytest.mark.postgres

REFUND_420 = effect("refund", order="9001", amount_eur=420)
REFUND_42 = effect("refund", order="9001", amount_eur=42)


def case(pg_dsn: str, tmp_path: Path, agent: str) -> Case:
    return Case(pg_dsn, tmp_path / "jobs", agent)


def resumed(c: Case) -> None:
    out = c.resume("t")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "waiting for a human" not in out.stdout


def test_approval_killed_after_the_call_was_saved(pg_dsn: str, tmp_path: Path) -> None:
    c = case(pg_dsn, tmp_path, "approval")
    c.crash("t", "refund 9001 420", "message_end:assistant:1")
    assert c.state("t") == "mid_tool" and c.verdicts("t") == {"refund": "ask"}
    assert "waiting for a human" in c.resume("t").stdout
    assert c.state("t") == "awaiting_input"
    out = c.answer("t", "--approve")
    assert out.returncode == 0, out.stdout + out.stderr
    assert c.state("t") == "finished" and c.effects() == {REFUND_420: 1}


@pytest.mark.parametrize("mode", ["memory", "respond"])
def test_an_edit_killed_inside_the_tool_runs_the_edit_once(
    pg_dsn: str, tmp_path: Path, mode: str
) -> None:
    c = case(pg_dsn, tmp_path, "approval")
    edit = {"decision": "edit", "edited_args": {"order": "9001", "amount_eur": 42}}
    c.crash("t", "refund 9001 420", "tool:refund:after", answer=edit, answer_mode=mode)
    assert c.state("t") == ("mid_tool" if mode == "memory" else "answered")
    (call,) = c.plan("t")["calls"]
    assert call["verdict"] == "reuse" and call["runs_as"]["arguments"]["amount_eur"] == 42
    resumed(c)
    assert c.state("t") == "finished" and c.effects() == {REFUND_42: 1}


def test_a_terminated_run_is_stopped(pg_dsn: str, tmp_path: Path) -> None:
    c = case(pg_dsn, tmp_path, "terminate")
    c.crash("t", "items A B", None)
    assert c.state("t") == "stopped"
    out = c.resume("t")
    assert "already stopped" in out.stdout
    assert sum(c.effects().values()) == 3


def test_a_crash_inside_the_terminating_tool_ends_stopped(pg_dsn: str, tmp_path: Path) -> None:
    c = case(pg_dsn, tmp_path, "terminate")
    c.crash("t", "items A B", "tool:finish:after")
    assert c.state("t") == "mid_tool" and c.verdicts("t") == {"finish": "reuse"}
    resumed(c)
    assert c.state("t") == "stopped"
    assert c.effects()[effect("finish", task="report")] == 1


def test_a_vetoed_turn_is_closed_not_run(pg_dsn: str, tmp_path: Path) -> None:
    c = case(pg_dsn, tmp_path, "veto_stop")
    c.crash("t", "wire 5000", "message_end:assistant:1")
    assert c.verdicts("t") == {"wire": "skip"}
    resumed(c)
    assert c.state("t") == "stopped" and c.effects() == {}
