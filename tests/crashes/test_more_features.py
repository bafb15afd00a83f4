"""More of cubeloop's features, crashed in a real process and carried on by the new engine.

Each agent of `more_agents.py` is built from one feature: compaction (its
summariser's own model call included), ephemeral sub-agents, `Agent.fork`,
thinking blocks in streamed replies with a tool that fails once, steering
messages, `Agent.abort_pending`, and a cancelled prompt task. Each is
SIGKILLed in a real process (`child.py`, or `more_child.py` for what a host
does around the agent) at a point where that feature matters, then resumed
through the CLI. Every test checks what `resume --dry-run --json` says
against what then ran, counts each effect from the tool's own ledger (the
ledger also records which process did it: a host writes `-` as the thread,
the supervisor's resume the thread's id), and checks the transcript: every
call has exactly one result before the next assistant turn.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import transcript_problems
from tests.crashes.harness import ROOT, Case, effect

MORE = "tests.crashes.more_agents"


def case(tmp_path: Path, agent: str) -> Case:
    reference = agent if ":" in agent else f"{MORE}:{agent}"
    return Case(str(tmp_path / "m.db"), tmp_path / "jobs", reference)


def host(c: Case, mode: str, *args: str, kill: str | None = None, killed: bool = True) -> str:
    """Run a `more_child.py` host: it must die by SIGKILL when `killed`, else exit 0."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.crashes.more_child", mode, c.reference, c.database, *args],
        cwd=ROOT,
        env=c.environ(kill),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == (-signal.SIGKILL if killed else 0), (
        done.returncode,
        done.stderr[-2000:],
    )
    return done.stdout


def resumed(c: Case, thread: str = "t", kill: str | None = None) -> str:
    out = c.resume(thread, kill=kill)
    if kill:
        assert out.returncode == -signal.SIGKILL, (out.returncode, out.stdout + out.stderr)
    else:
        assert out.returncode == 0, out.stdout + out.stderr
        assert "Traceback" not in out.stderr, out.stderr
    return out.stdout


def rows(c: Case, thread: str = "t") -> list[dict[str, Any]]:
    """The thread's messages as stored, in order (read with sqlite3 itself)."""
    with sqlite3.connect(c.database) as conn:
        found = conn.execute(
            "SELECT message_json FROM messages WHERE thread_id = ? ORDER BY id", (thread,)
        ).fetchall()
    return [json.loads(m) for (m,) in found]


def extra(c: Case, thread: str = "t") -> dict[str, Any]:
    with sqlite3.connect(c.database) as conn:
        row = conn.execute(
            "SELECT extra_json FROM thread_extra WHERE thread_id = ?", (thread,)
        ).fetchone()
    return json.loads(row[0]) if row else {}


def text(message: dict[str, Any]) -> str:
    return "".join(b.get("text", "") for b in message["content"] if b.get("type") == "text")


def last_text(c: Case, thread: str = "t") -> str:
    return text(rows(c, thread)[-1])


def by_resume(c: Case, thread: str = "t", log: str = "effects.log") -> Counter[str]:
    """The effects the supervisor's resume of `thread` did (not the crashed host's)."""
    path = c.jobs / log
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return Counter(line.split("\t")[0] for line in lines if line.rsplit("\t", 1)[-1] == thread)


def lines(c: Case, log: str) -> int:
    return sum(c.effects(log).values())


def sound(c: Case, thread: str = "t") -> None:
    assert transcript_problems(c.database, thread) == []
    errors = [m for m in rows(c, thread) if m.get("stop_reason") == "error"]
    assert errors == [], errors


# -- CompactionMiddleware ------------------------------------------------------------------

ITEMS = "A B C D E F G H"
PROCESSED = {
    effect("process", item=i, rest=" ".join(ITEMS.split()[n + 1 :])): 1
    for n, i in enumerate(ITEMS.split())
}


def check_compaction(c: Case) -> None:
    """Compacted in the end, with a state that matches the stored history."""
    state = extra(c)
    ids = state["compaction"]["summarized_message_ids"]
    assert state["compaction_until_msg_index"] == len(ids) > 0
    assert ids == [m["id"] for m in rows(c)[: len(ids)]]
    assert last_text(c) == "All processed; summary seen"


@pytest.mark.parametrize(
    ("kill", "verdict"), [("tool:process:before:E", "rerun"), ("tool:process:after:F", "reuse")]
)
def test_compaction_crashed_inside_a_tool_after_the_history_was_summarised(
    tmp_path: Path, kill: str, verdict: str
) -> None:
    c = case(tmp_path, "compacting")
    c.crash("t", f"items {ITEMS}", kill)
    assert lines(c, "summaries.log") >= 1  # the history was summarised before the crash
    assert c.state("t") == "mid_tool"
    (planned,) = c.plan("t")["calls"]
    assert (planned["name"], planned["verdict"]) == ("process", verdict), planned
    resumed(c)
    assert c.state("t") == "finished"
    assert c.effects() == PROCESSED
    item = kill.rsplit(":", 1)[1]
    rest = " ".join(ITEMS.split(item, 1)[1].split())
    assert by_resume(c)[effect("process", item=item, rest=rest)] == (verdict == "rerun")
    check_compaction(c)
    sound(c)


def test_compaction_crashed_inside_the_summarisers_model_call(tmp_path: Path) -> None:
    c = case(tmp_path, "compacting")
    c.crash("t", f"items {ITEMS}", "summary:1")
    assert lines(c, "summaries.log") == 1  # died inside it
    assert c.state("t") == "after_tools"
    plan = c.plan("t")
    assert plan["calls"] == [] and plan["action"] == "call the model with the tool results"
    done_before = c.effects()
    resumed(c)
    assert c.state("t") == "finished"
    assert c.effects() == PROCESSED
    assert sum(by_resume(c).values()) == len(PROCESSED) - len(done_before)
    assert lines(c, "summaries.log") >= 2  # summarised again, by the resume
    check_compaction(c)
    sound(c)


def test_compaction_a_resume_killed_in_the_summariser_is_resumed_again(tmp_path: Path) -> None:
    c = case(tmp_path, "compacting")
    c.crash("t", f"items {ITEMS}", "tool:process:before:E")
    resumed(c, kill="summary:1")  # ran E, then died summarising before the next model call
    assert c.state("t") == "after_tools" and c.plan("t")["calls"] == []
    first = by_resume(c)
    assert first == {effect("process", item="E", rest="F G H"): 1}
    resumed(c)
    assert c.state("t") == "finished"
    assert c.effects() == PROCESSED
    check_compaction(c)
    sound(c)


# -- SubagentMiddleware (an ephemeral sub-agent, no thread of its own) ---------------------

DRAFT = effect("draft", task="write-report")
PUBLISH = effect("publish", target="draft of write-report")


def test_subagent_crashed_in_the_parents_next_tool_is_not_run_again(tmp_path: Path) -> None:
    c = case(tmp_path, "delegating")
    c.crash("t", "delegate write-report", "tool:publish:before")
    assert c.state("t") == "mid_tool" and c.verdicts("t") == {"publish": "rerun"}
    resumed(c)
    assert c.state("t") == "finished"
    assert c.effects() == {DRAFT: 1, PUBLISH: 1}
    assert by_resume(c) == {PUBLISH: 1}
    assert lines(c, "workers.log") == 1  # the sub-agent's result was kept, it never ran again
    assert last_text(c) == "Published: publish done: {'target': 'draft of write-report'}"
    sound(c)


@pytest.mark.parametrize(
    ("kill", "resume_kill"),
    [
        ("tool:draft:before", None),
        ("tool:draft:after", None),
        ("message_end:assistant:1", "tool:draft:after"),
    ],
)
def test_subagent_crashed_inside_its_own_tool_drafts_once(
    tmp_path: Path, kill: str, resume_kill: str | None
) -> None:
    c = case(tmp_path, "delegating")
    c.crash("t", "delegate write-report", kill)
    assert c.state("t") == "mid_tool"
    (planned,) = c.plan("t")["calls"]
    assert (planned["name"], planned["verdict"]) == ("subagent", "rerun"), planned
    if resume_kill:  # the supervisor's own resume dies inside the sub-agent's tool too
        resumed(c, kill=resume_kill)
        assert c.state("t") == "mid_tool" and c.verdicts("t") == {"subagent": "rerun"}
    resumed(c)
    assert c.state("t") == "finished"
    assert c.effects() == {DRAFT: 1, PUBLISH: 1}
    # The planned rerun really ran the sub-agent again; its guarded tool did the draft only
    # if the crash came before it.
    assert lines(c, "workers.log") == 2
    assert by_resume(c)[DRAFT] == (kill == "tool:draft:before" or kill.startswith("message"))
    sound(c)


# -- Agent.fork ----------------------------------------------------------------------------


def test_a_fork_crashed_mid_tool_is_resumed_and_its_source_left_untouched(
    tmp_path: Path,
) -> None:
    c = case(tmp_path, "steps")
    prompts = ["items A", "items B", "--then", "items F G"]
    host(c, "fork", "src", "fork", *prompts, kill="tool:process:before:F")
    source = rows(c, "src")
    assert c.state("src") == "finished" and c.state("fork") == "mid_tool"
    assert c.verdicts("fork") == {"process": "rerun"}
    everything = json.loads(c.cli("resume", c.database, "--all", "--dry-run", "--json").stdout)
    assert [p["thread_id"] for p in everything] == ["fork"]
    resumed(c, "fork")
    assert c.state("fork") == "finished" and c.state("src") == "finished"
    assert rows(c, "src") == source  # the source thread is untouched
    assert c.effects() == {effect("process", item=i): 1 for i in "ABFG"}
    assert by_resume(c, "fork") == {effect("process", item=i): 1 for i in "FG"}
    users = [text(m) for m in rows(c, "fork") if m["role"] == "user"]
    assert users == ["items A", "items F G"]  # the first run only, then the fork's own
    assert last_text(c, "fork") == "Processed F G"
    sound(c, "fork")
    sound(c, "src")


# -- thinking blocks, streamed replies, a tool error then a retry --------------------------

THINKER = [
    # (kill, state, verdicts, failed attempts the model saw, turns)
    ("tool:flaky:failing", "mid_tool", {"flaky": "rerun"}, 0, 3),
    ("tool:flaky:before", "mid_tool", {"flaky": "rerun"}, 1, 4),
    ("stream:3", "after_tools", {}, 1, 4),
    ("tool:process:before", "mid_tool", {"process": "rerun"}, 1, 4),
]


@pytest.mark.parametrize(("kill", "state", "verdicts", "failed", "turns"), THINKER)
def test_thinking_streamed_and_a_failed_tool_retried(
    tmp_path: Path, kill: str, state: str, verdicts: dict[str, str], failed: int, turns: int
) -> None:
    c = case(tmp_path, "thinker")
    c.crash("t", "fix X", kill)
    assert c.state("t") == state and c.verdicts("t") == verdicts
    resumed(c)
    assert c.state("t") == "finished"
    assert c.effects() == {effect("flaky", target="X"): 1, effect("process", item="X"): 1}
    assert c.effects("attempts.log") == {'flaky_attempt:{"target":"X"}': 1}  # failed once only
    stored = rows(c)
    replies = [m for m in stored if m["role"] == "assistant"]
    assert len(replies) == turns  # no partial reply of a killed stream was kept
    for n, m in enumerate(replies, start=1):
        kinds = [b["type"] for b in m["content"]]
        assert kinds[:2] == ["thinking", "text"], kinds
        assert m["content"][0]["thinking"].startswith(f"Turn {n}: ")
    errors = [text(m) for m in stored if m["role"] == "tool_result" and m["is_error"]]
    assert errors == ["flaky failed on X: try again"] * failed
    assert last_text(c) == f"Fixed X after {failed} failed attempt(s)."
    sound(c)


# -- steering messages ---------------------------------------------------------------------

STEER = "also process Q"


@pytest.mark.parametrize(
    ("kill", "state", "verdicts", "items"),
    [
        ("tool:process:before:Q", "mid_tool", {"process": "rerun"}, "ABQ"),
        ("message_end:user:2", "between_turns", {}, "ABQ"),
        # Killed in the very tool the steer came during: the steer was only in memory.
        ("tool:process:after:A", "mid_tool", {"process": "reuse"}, "AB"),
    ],
)
def test_a_steering_message_injected_while_a_tool_ran_is_followed_once(
    tmp_path: Path, kill: str, state: str, verdicts: dict[str, str], items: str
) -> None:
    c = case(tmp_path, "steps")
    host(c, "steer", "t", "items A B", "--at", "A", "--text", STEER, kill=kill)
    assert c.state("t") == state and c.verdicts("t") == verdicts
    resumed(c)
    assert c.state("t") == "finished"
    assert c.effects() == {effect("process", item=i): 1 for i in items}
    users = [text(m) for m in rows(c) if m["role"] == "user"]
    assert users == ["items A B", STEER] if "Q" in items else ["items A B"]
    if "Q" in items:  # right after A's result, where the loop drains steering
        roles = [m["role"] for m in rows(c)]
        assert roles[:4] == ["user", "assistant", "tool_result", "user"]
    assert last_text(c) == "Processed " + " ".join(items)
    sound(c)


# -- Agent.abort_pending ---------------------------------------------------------------------

REFUND_PROMPT = "refund 9001 420"


@pytest.mark.parametrize("how", ["inflight", "detached"])
def test_an_aborted_pending_request_ends_aborted_and_continue_never_runs_the_call(
    tmp_path: Path, how: str
) -> None:
    c = case(tmp_path, "gated")
    host(c, "abort-pending", "t", REFUND_PROMPT, "--how", how, killed=False)
    listed = c.listed("t")
    assert listed["state"] == "aborted"
    plan = c.plan("t")
    assert plan["calls"] == [] and plan["closed"] == [], plan  # abort_pending closed the call
    assert "continue" in plan["action"]
    refused = c.answer("t", "--approve")
    assert refused.returncode != 0 and c.effects() == {}  # nothing is waiting any more
    resumed(c)
    assert c.state("t") == "finished"
    assert c.effects() == {}
    assert not list(c.jobs.glob("refund*"))  # the gated tool never even started
    stored = rows(c)
    results = [m for m in stored if m["role"] == "tool_result"]
    assert [text(r) for r in results] == ["aborted: the host aborted it"]
    assert [text(m) for m in stored if m["role"] == "user"][-1] == "Continue where you left off."
    assert last_text(c).startswith("Nothing left to do")
    sound(c)


def test_a_crash_inside_abort_pending_after_its_deny_never_runs_the_call(tmp_path: Path) -> None:
    """In memory (`inflight`) the channel cleared the pending request before the deny."""
    c = case(tmp_path, "gated")
    host(c, "abort-pending", "t", REFUND_PROMPT, "--how", "inflight", "--die-after-deny")
    assert c.state("t") == "after_tools"
    plan = c.plan("t")
    assert plan["calls"] == [] and "finish the abort a host began" in plan["action"]
    resumed(c)
    assert c.state("t") == "aborted"  # closed as abort_pending closes it: the model never ran
    assert last_text(c) == "Conversation aborted: the host aborted it"
    assert c.effects() == {} and not list(c.jobs.glob("refund*"))
    sound(c)


def test_a_crash_inside_abort_pending_of_a_suspended_run_does_not_leave_it_stuck(
    tmp_path: Path,
) -> None:
    c = case(tmp_path, "gated")
    host(c, "abort-pending", "t", REFUND_PROMPT, "--how", "detached", "--die-after-deny")
    # The call is closed (its result says aborted): nobody should be asked about it.
    assert c.state("t") == "after_tools"
    resumed(c)
    assert c.state("t") == "aborted"
    assert c.effects() == {}
    sound(c)


def test_an_approved_call_whose_result_was_saved_before_the_crash_finishes(
    tmp_path: Path,
) -> None:
    c = case(tmp_path, "tests.crashes.agents:approval")
    approve = {"decision": "approve"}
    c.crash("t", REFUND_PROMPT, "message_end:tool_result:1", answer=approve)
    plan = c.plan("t")
    assert plan["calls"] == []
    resumed(c)
    assert c.state("t") == "finished"
    assert c.effects() == {effect("refund", order="9001", amount_eur=420): 1}
    assert last_text(c) == "Done: Refunded EUR 420 on 9001."
    sound(c)


# -- a cancelled prompt task -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "prompt", "done", "ends"),
    [
        ("cancellable", "batch A B", {effect("process", item="A"): 1}, "process=ok"),
        ("cancellable_sequential", "slow-first A B", {}, "process=cancelled"),
    ],
)
def test_a_cancelled_task_is_carried_on_without_running_what_was_cancelled(
    tmp_path: Path, agent: str, prompt: str, done: dict[str, int], ends: str
) -> None:
    c = case(tmp_path, agent)
    assert host(c, "cancel", "t", prompt, "--at", "slow").strip() == "cancelled"
    results = {m["tool_name"]: text(m) for m in rows(c) if m["role"] == "tool_result"}
    assert results["slow"] == "[Tool execution cancelled by user]"
    assert c.state("t") == "after_tools"
    plan = c.plan("t")
    assert plan["calls"] == [] and plan["action"] == "call the model with the tool results"
    resumed(c)
    assert c.state("t") == "finished"
    assert c.effects() == done  # the cancelled slow(B) never ran, nor anything twice
    assert by_resume(c) == {}
    assert last_text(c) == f"batch: {ends}, slow=cancelled"
    sound(c)
