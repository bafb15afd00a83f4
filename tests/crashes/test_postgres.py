"""The same crashes on cubeloop's Postgres checkpointer: HITL, a terminated run, a veto.

The agents and their hosts are those of the SQLite cases; only the database
is a real PostgreSQL server (started by the tests) and its `cubepi_*` schema.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.crashes.harness import Answers, Case, effect

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


def test_the_same_question_for_an_earlier_call_approves_nothing_now(
    pg_dsn: str, tmp_path: Path
) -> None:
    """The server's clock orders answers and results: step 1's answer is spent, step 2 is
    asked about; an answer given just before the crash is used."""
    s1, s2 = effect("deploy", target="s1"), effect("deploy", target="s2")
    c = case(pg_dsn, tmp_path, "same_confirm")
    c.crash("t", "deploy s1 s2", "message_end:assistant:2", answer=True, answer_mode="memory")
    assert c.verdicts("t") == {"deploy": "ask"}
    assert "waiting for a human" in c.resume("t").stdout
    assert c.effects() == {s1: 1}
    assert c.answer("t", "--deny").returncode == 0
    assert c.state("t") == "finished" and c.effects() == {s1: 1}

    d = case(pg_dsn, tmp_path / "second", "same_confirm")
    d.crash(
        "u",
        "deploy s1 s2",
        "tool:deploy:before:s2",
        answer=Answers([True, True]),
        answer_mode="memory",
    )
    assert d.verdicts("u") == {"deploy": "rerun"}
    out = d.resume("u")
    assert out.returncode == 0 and "waiting for a human" not in out.stdout, out.stdout
    assert d.effects() == {s1: 1, s2: 1}


def test_a_prompt_killed_after_claiming_its_run_is_listed_as_it_was(
    pg_dsn: str, tmp_path: Path
) -> None:
    """`list` streams Postgres by partition: the last message's run is still read exactly,
    so the claimed, empty run of a killed prompt does not turn a stopped thread into one
    the watcher would resume."""
    c = case(pg_dsn, tmp_path, "terminate")
    c.crash("t", "items A B", None)
    out = c.cli("prompt", c.database, "t", "items C", kill="db:append:1")
    assert out.returncode != 0
    listed = c.listed("t")
    assert listed["run_open"] is True and listed["state"] == "stopped", listed
    assert c.plan("t")["state"] == "stopped"
