"""The agent's own decisions survive a crash: vetoes, runs that end on purpose, and the rest.

Each agent is built from one cubeloop feature (see `agents.py`), SIGKILLed in
a real process at the point where that feature's decision lives only in
memory, then resumed through the CLI. Every side effect is counted by the
tool that does it; the plan (`resume --dry-run --json`) must say what then
happens.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from supervisor.location import open_store
from supervisor.states import State
from tests.crashes.harness import Case, effect


def case(tmp_path: Path, agent: str) -> Case:
    return Case(str(tmp_path / "p.db"), tmp_path / "jobs", agent)


def resumed(c: Case, thread: str = "t") -> str:
    out = c.resume(thread)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


# -- after_model_response: a veto decided between saving the reply and running its calls --


def test_a_turn_the_middleware_stopped_is_never_run(tmp_path: Path) -> None:
    c = case(tmp_path, "veto_stop")
    c.crash("t", "wire 5000", "message_end:assistant:1")
    assert c.state("t") == "mid_tool"
    plan = c.plan("t")
    assert [x["verdict"] for x in plan["calls"]] == ["skip"]
    assert (
        "WireLimitMiddleware" in plan["calls"][0]["reason"]
        and "stops the turn" in plan["action"] + plan["calls"][0]["reason"]
    )
    assert "not run" in resumed(c)
    assert c.state("t") == "stopped"
    assert c.effects() == {}
    result = c.transcript("t")[-1]
    assert (
        result["role"] == "tool_result" and "[Not run: the agent's" in result["content"][0]["text"]
    )
    again = c.resume("t")
    assert again.returncode == 0 and "nothing to resume" in again.stdout and c.effects() == {}


def test_a_listing_kept_open_sees_the_vetoed_thread_become_stopped(tmp_path: Path) -> None:
    """The app's kept listing, refreshed, and the streamed one `list` prints agree."""
    c = case(tmp_path, "veto_stop")
    c.crash("t", "wire 5000", "message_end:assistant:1")
    store = open_store(c.database)
    try:
        assert store.get("t").state is State.MID_TOOL
        resumed(c)
        store.refresh()
        assert store.get("t").state is State.STOPPED
    finally:
        store.close()
    assert c.state("t") == "stopped"


def test_the_same_veto_without_a_crash_is_closed_the_same_way(tmp_path: Path) -> None:
    """cubeloop leaves a vetoed turn's calls unanswered and its run open: it looks crashed."""
    c = case(tmp_path, "veto_stop")
    c.crash("t", "wire 5000", None)
    assert c.state("t") == "mid_tool" and c.verdicts("t") == {"wire": "skip"}
    resumed(c)
    assert c.state("t") == "stopped" and c.effects() == {}


def test_a_wire_the_middleware_allows_runs_once(tmp_path: Path) -> None:
    c = case(tmp_path, "veto_stop")
    c.crash("t", "wire 50", "message_end:assistant:1")
    assert c.verdicts("t") == {"wire": "rerun"}
    resumed(c)
    assert c.state("t") == "finished"
    assert c.effects() == {effect("wire", order="w1", amount_eur=50): 1}


def test_a_call_the_middleware_skipped_is_replaced_as_the_agent_said(tmp_path: Path) -> None:
    """loop_to_model, killed before the injected message was saved."""
    c = case(tmp_path, "veto_loop")
    c.crash("t", "clean x1", "message_end:assistant:1")
    assert c.state("t") == "mid_tool"
    plan = c.plan("t")
    assert c.verdicts("t") == {"delete": "skip"} and "call the model again" in plan["action"]
    resumed(c)
    assert c.state("t") == "finished"
    assert c.effects() == {effect("archive", target="x1"): 1}  # never the delete
    texts = [m["content"][0]["text"] for m in c.transcript("t") if m["role"] == "user"]
    assert texts == ["clean x1", "Deleting is not allowed here: archive it instead."]


def test_a_call_before_tool_call_blocks_is_never_run(tmp_path: Path) -> None:
    c = case(tmp_path, "veto_block")
    c.crash("t", "wire 5000", "message_end:assistant:1")
    (call,) = c.plan("t")["calls"]
    assert call["verdict"] == "skip" and "over the wire limit" in call["reason"]
    resumed(c)
    assert c.state("t") == "finished" and c.effects() == {}


# -- runs that end on purpose --------------------------------------------------------------

DONE_AB = {effect("process", item="A"): 1, effect("process", item="B"): 1}


def test_a_run_a_tool_terminated_is_stopped_not_resumed(tmp_path: Path) -> None:
    c = case(tmp_path, "terminate")
    c.crash("t", "items A B", None)
    listed = c.listed("t")
    assert listed["state"] == "stopped" and listed["run_open"] is False
    assert c.plan("t")["refused"].startswith("was stopped by the agent itself")
    out = c.resume("t")
    assert out.returncode == 0 and "already stopped, nothing to resume" in out.stdout
    assert c.effects() == {**DONE_AB, effect("finish", task="report"): 1}
    assert c.transcript("t")[-1]["role"] == "tool_result"  # the model was never called again


def test_a_crash_inside_the_terminating_tool_ends_as_the_run_would_have(tmp_path: Path) -> None:
    c = case(tmp_path, "terminate")
    c.crash("t", "items A B", "tool:finish:before")
    assert c.state("t") == "mid_tool" and c.verdicts("t") == {"finish": "rerun"}
    resumed(c)
    assert c.state("t") == "stopped"
    assert c.effects() == {**DONE_AB, effect("finish", task="report"): 1}


def test_a_turn_budget_is_not_resumed_past(tmp_path: Path) -> None:
    c = case(tmp_path, "budget")
    c.crash("t", "items A B C D", None)
    assert c.state("t") == "stopped"
    out = c.watch(until=lambda: False, seconds=3)
    assert "t: resumed" not in out, out
    assert out.splitlines()[-1].endswith("stopped"), out
    assert c.effects() == DONE_AB and c.state("t") == "stopped"


def test_a_crash_inside_a_budget_is_watched_back_to_the_budget_only(tmp_path: Path) -> None:
    c = case(tmp_path, "budget")
    c.crash("t", "items A B C D", "message_end:tool_result:1")
    assert c.state("t") == "after_tools"
    out = c.watch(until=lambda: c.state("t") == "stopped")
    assert c.state("t") == "stopped", out
    assert c.effects() == DONE_AB  # C and D: the agent decided not to


# -- call ids reused across turns ---------------------------------------------------------------


def test_a_call_id_reused_from_an_earlier_turn_does_not_take_its_marker(tmp_path: Path) -> None:
    """Turn 1's call_0 processed A (done marker, tool_call_id call_0); turn 2's call_0 (B)
    was saved and never ran. The plan must not reuse A's result for it."""
    c = case(tmp_path, "reused_ids")
    c.crash("t", "items A B", "message_end:assistant:2")
    (call,) = c.plan("t")["calls"]
    assert call["arguments"] == {"item": "B"} and call["verdict"] == "rerun", call
    assert call["marker"] is None
    resumed(c)
    assert c.effects() == DONE_AB and c.state("t") == "finished"


# -- tools that write the thread's extra --------------------------------------------------------


def test_writes_to_extra_by_rerun_tools_are_kept(tmp_path: Path) -> None:
    """TodoListMiddleware: the list written in turn 1, then a parallel batch [process,
    write_todos(completed)] killed inside process. The resumed batch's write must win over
    the list stored before the crash."""
    c = case(tmp_path, "todos")
    c.crash("t", "todo B", "tool:process:after")
    assert c.verdicts("t") == {"process": "reuse", "write_todos": "rerun"}
    resumed(c)
    assert c.transcript("t")[-1]["content"][0]["text"] == "todo list seen: completed"
    assert c.effects() == {effect("process", item="B"): 1}
    (extra,) = sqlite3.connect(c.database).execute("SELECT extra_json FROM thread_extra").fetchone()
    assert json.loads(extra)["todos"] == [{"content": "ship the report", "status": "completed"}]


# -- goals, fallbacks, images, deferred tools, batches ----------------------------------------


def test_a_goal_set_before_the_crash_is_still_evaluated(tmp_path: Path) -> None:
    """GoalMiddleware keeps its goal in memory until its first evaluation."""
    c = case(tmp_path, "goal")
    c.crash("t", "/goal process G", "tool:process:before")
    resumed(c)
    assert c.effects() == {effect("process", item="G"): 1}
    assert c.effects("evaluations.log") == {effect("evaluate", goal="G"): 1}
    (extra,) = sqlite3.connect(c.database).execute("SELECT extra_json FROM thread_extra").fetchone()
    assert json.loads(extra)["goal"]["status"] == "achieved"


def test_a_fallback_model_carries_on_after_a_crash(tmp_path: Path) -> None:
    c = case(tmp_path, "fallback")
    c.crash("t", "items A", "tool:process:before")
    resumed(c)
    assert c.state("t") == "finished"
    assert c.effects() == {effect("process", item="A"): 1, effect("finish", task="report"): 1}
    assert c.effects("models.log")  # the primary was really tried, and failed over


def test_a_reused_result_keeps_its_image(tmp_path: Path) -> None:
    c = case(tmp_path, "images")
    c.crash("t", "chart", "tool:chart:after")
    assert c.verdicts("t") == {"chart": "reuse"}
    resumed(c)
    assert c.effects() == {effect("chart", target="sales"): 1}
    assert c.transcript("t")[-1]["content"][0]["text"] == "chart blocks: text,image"


def test_a_deferred_call_is_planned_as_its_real_tool(tmp_path: Path) -> None:
    c = case(tmp_path, "tests.crashes.hooked:deferred")
    c.crash("t", "charge", "tool:charge:after")
    (call,) = c.plan("t")["calls"]
    assert call["name"] == "deferred_tool_call" and call["verdict"] == "reuse", call
    assert call["runs_as"]["name"] == "charge" and call["matched_by"] == "marker hook"
    resumed(c)
    assert c.effects() == {effect("charge", order="d1", amount_eur=7): 1}


@pytest.mark.parametrize("kill", ["tool:process:before:B", "tool:process:after:B"])
def test_a_parallel_batch_killed_mid_batch_runs_each_call_once(tmp_path: Path, kill: str) -> None:
    c = case(tmp_path, "batch")
    c.crash("t", "items A B C", kill)
    verdicts = [x["verdict"] for x in c.plan("t")["calls"]]
    assert len(verdicts) == 3
    resumed(c)
    assert c.effects() == {effect("process", item=i): 1 for i in "ABC"}
    assert c.state("t") == "finished"


# -- a child agent on a thread of its own --------------------------------------------------------

CHILD_EFFECT = {effect("child_effect", task="write-report"): 1}


@pytest.mark.parametrize("agent", ["parent", "parent_building"])
@pytest.mark.parametrize(
    "kill", ["tool:child_effect:before", "tool:child_effect:after", "message_end:assistant:2"]
)
def test_a_child_thread_is_driven_once_through_its_parent(
    tmp_path: Path, kill: str, agent: str
) -> None:
    c = case(tmp_path, agent)
    c.crash("p", "delegate write-report", kill)
    child = c.listed("p/child")
    assert child["state"] == ("finished" if kill.startswith("message") else "child")
    shown = json.loads(c.cli("show", c.database, "p/child", "--json").stdout)
    assert shown["parent_thread_id"] == "p"
    refused = c.resume("p/child")
    assert "nothing to resume" in refused.stdout or "driven by its parent" in refused.stderr
    plan = json.loads(c.cli("resume", c.database, "--all", "--dry-run", "--json").stdout)
    assert [p["thread_id"] for p in plan] == ["p"]
    out = c.cli("resume", c.database, "--all", "--force")
    assert out.returncode == 0, out.stdout + out.stderr
    assert c.state("p") == "finished" and c.state("p/child") == "finished"
    assert c.effects() == CHILD_EFFECT
    roles = [m["role"] for m in c.transcript("p/child")]
    assert roles == ["user", "assistant", "tool_result", "assistant"]  # one run, one reply
