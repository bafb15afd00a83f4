"""Crashes inside the windows between two writes cubeloop makes in a row.

Each case kills the process between writes that belong together: a turn's
last result and the run's end (`db:mark_run_complete:1`), a request cleared
and its answers cleared (`db:clear_hitl_answers:1`), a result and the message
the agent injects after it. What the agent decided in between lived only in
memory; the resume must find it again, not carry on past it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.location import open_store
from supervisor.states import State
from tests.crashes.harness import Answers, Case, effect

DONE_AB = {effect("process", item="A"): 1, effect("process", item="B"): 1}


def case(tmp_path: Path, agent: str) -> Case:
    return Case(str(tmp_path / "w.db"), tmp_path / "jobs", agent)


def resumed(c: Case, thread: str = "t", kill: str | None = None) -> str:
    out = c.resume(thread, kill=kill)
    if kill is None:
        assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


# -- a run that ended on purpose, killed before cubeloop marked it complete ----------------


@pytest.mark.parametrize("agent", ["budget", "budget_run"])
def test_a_turn_budget_reached_just_before_a_crash_is_not_passed(
    tmp_path: Path, agent: str
) -> None:
    c = case(tmp_path, agent)
    c.crash("t", "items A B C D", "db:mark_run_complete:1")
    assert c.state("t") == "after_tools"
    assert "the run had ended: the agent's should_stop_after_turn" in resumed(c)
    assert c.state("t") == "stopped"
    assert c.effects() == DONE_AB


def test_a_per_run_budget_counts_the_run_across_the_crash(tmp_path: Path) -> None:
    """should_stop_after_turn counts ctx.new_messages: the carried-on run started before."""
    c = case(tmp_path, "budget_run")
    c.crash("t", "items A B C D", "message_end:tool_result:1")
    resumed(c)
    assert c.state("t") == "stopped"
    assert c.effects() == DONE_AB


def test_a_tool_that_ended_the_run_just_before_a_crash_ends_it(tmp_path: Path) -> None:
    c = case(tmp_path, "quota")
    c.crash("t", "items A B C D", "db:mark_run_complete:1")
    assert c.state("t") == "after_tools"
    assert "a tool ended the run (terminate)" in resumed(c)
    assert c.state("t") == "stopped" and c.effects() == DONE_AB


def test_a_veto_whose_closing_was_cut_short_is_closed(tmp_path: Path) -> None:
    c = case(tmp_path, "veto_stop")
    c.crash("t", "wire 5000", "message_end:assistant:1")
    resumed(c, kill="db:mark_run_complete:1")  # the supervisor's own closing, killed midway
    assert c.state("t") == "after_tools"
    assert "the agent's policy vetoed the turn" in resumed(c)
    assert c.state("t") == "stopped" and c.effects() == {}


# -- answers that outlive their question --------------------------------------------------


def test_an_answer_to_an_earlier_call_with_the_same_id_approves_nothing(tmp_path: Path) -> None:
    """Both turns' calls are `call_0`. The answer for turn 1's was left stored (cubeloop
    cleared the request, then was killed before clearing its answers)."""
    c = case(tmp_path, "approve_reused")
    c.crash("t", "refunds", "hitl_request:1")
    out = c.cli("answer", c.database, "t", "--approve", kill="db:clear_hitl_answers:1")
    assert out.returncode != 0
    assert c.effects() == {effect("refund", order="o1", amount_eur=10): 1}
    assert "waiting for a human" in resumed(c)  # turn 2's refund: a human is asked
    assert c.state("t") == "awaiting_input"
    assert c.effects() == {effect("refund", order="o1", amount_eur=10): 1}


def test_the_same_question_asked_again_in_a_run_is_asked_again(tmp_path: Path) -> None:
    """ask_user asks the same question for two orders. Answered in memory (Small), then
    killed after the first order shipped: the second question must reach a human."""
    c = case(tmp_path, "two_asks")
    c.crash(
        "t",
        "ship o1 o2",
        "tool:ship:after:o1-S",
        answer=Answers([{"size": "S"}]),
        answer_mode="memory",
    )
    assert "waiting for a human" in resumed(c)
    assert c.state("t") == "awaiting_input"
    out = c.answer("t", "--option", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert c.effects() == {effect("ship", target="o1-S"): 1, effect("ship", target="o2-M"): 1}


def test_a_second_question_answered_later_takes_that_answer_once(tmp_path: Path) -> None:
    """A durable host answered the first question (Small); the second waits. The CLI's
    answer (Medium) is the one used, and nobody is asked a third time."""
    c = case(tmp_path, "two_asks")
    c.crash("t", "ship o1 o2", "proc:hitl_request:2", answer=Answers([{"size": "S"}]))
    assert c.state("t") == "awaiting_input"
    out = c.answer("t", "--option", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "waiting for a human" not in out.stdout
    assert c.state("t") == "finished"
    assert c.effects() == {effect("ship", target="o1-S"): 1, effect("ship", target="o2-M"): 1}


# -- a message the agent injects after the results ----------------------------------------


def test_a_message_injected_after_the_results_is_not_lost(tmp_path: Path) -> None:
    c = case(tmp_path, "reminder")
    c.crash("t", "items secret B C", "message_end:tool_result:1")
    resumed(c)
    assert c.effects() == {effect("process", item="secret"): 1}  # B and C: told to stop
    assert c.transcript("t")[-1]["content"][0]["text"].startswith("Stopping: POLICY")


# -- the plan says so beforehand ------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "why"),
    [("budget", "should_stop_after_turn"), ("quota", "a tool ended the run (terminate)")],
)
def test_the_plan_says_the_run_had_ended(tmp_path: Path, agent: str, why: str) -> None:
    c = case(tmp_path, agent)
    c.crash("t", "items A B C D", "db:mark_run_complete:1")
    plan = c.plan("t")
    assert (
        plan["action"].startswith("mark the run complete: it had ended") and why in plan["action"]
    )


def test_the_plan_asks_about_a_call_whose_id_an_answered_call_had(tmp_path: Path) -> None:
    """The stale answer is for turn 1's call_0; turn 2's call_0 was saved, then the crash."""
    c = case(tmp_path, "approve_reused")
    c.crash(
        "t",
        "refunds",
        "message_end:assistant:2",
        answer=Answers([{"decision": "approve"}]),
        answer_mode="memory",
    )
    assert c.verdicts("t") == {"refund": "ask"}
    assert "waiting for a human" in resumed(c)
    assert c.effects() == {effect("refund", order="o1", amount_eur=10): 1}


def test_what_a_tool_wrote_to_extra_survives_a_crash_later_in_its_turn(tmp_path: Path) -> None:
    """Under the supervisor `extra` is saved with each result: a crash in the batch's next
    tool keeps the first wire's spending, and the cap still blocks the second."""
    c = case(tmp_path, "capped")
    c.crash("t", "pay", "message_end:assistant:1")
    assert c.resume("t", kill="tool:note:before").returncode != 0
    resumed(c)
    assert c.effects() == {
        effect("wire", order="w0", amount_eur=600): 1,
        effect("note", target="n1"): 1,
    }


@pytest.mark.parametrize("agent", ["capped", "capped_saving"])
def test_a_crash_in_ones_own_process_keeps_extra_where_the_agent_saves_it(
    tmp_path: Path, agent: str
) -> None:
    """In the user's own process cubeloop saves `extra` at the turn's end: killed inside the
    batch's next tool, the first wire's spending is lost, and the resume wires again past the
    cap. An agent built with `save_extra_after_each_result` keeps it: the cap holds."""
    c = case(tmp_path, agent)
    c.crash("t", "pay", "tool:note:before")
    resumed(c)
    wires = {k: n for k, n in c.effects().items() if k.startswith("wire")}
    if agent == "capped":  # cubeloop's own save points: the limit, shown
        assert len(wires) == 2
    else:
        assert wires == {effect("wire", order="w0", amount_eur=600): 1}


def test_a_prompt_killed_after_claiming_its_run_leaves_the_thread_as_it_was(
    tmp_path: Path,
) -> None:
    """The new prompt's run is claimed, then the process dies before writing: the thread's
    last message still belongs to a completed run."""
    c = case(tmp_path, "terminate")
    c.crash("t", "items A B", None)
    out = c.cli("prompt", c.database, "t", "items C", kill="db:append:1")
    assert out.returncode != 0
    assert c.listed("t")["run_open"] is True  # the empty run the prompt claimed
    assert c.state("t") == "stopped"
    store = open_store(c.database)
    try:
        assert store.get("t").state is State.STOPPED  # the kept listing agrees
    finally:
        store.close()
    assert c.plan("t")["refused"].startswith("was stopped by the agent itself")
    out = c.resume("t")
    assert out.returncode == 0 and "nothing to resume" in out.stdout
