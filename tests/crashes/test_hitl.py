"""Human in the loop, crashed at every point, on cubeloop's own pieces.

`approval` gates `refund` behind cubeloop's `ConfirmToolCallMiddleware` over a
`CheckpointedChannel`; `asker` asks with cubeloop's `ask_user_tool`, then
ships in the size chosen. Each is SIGKILLed in a real process at a point of
the approval's life: after the model's call was saved (nobody asked yet),
while the question waits, right after the answer was stored, and inside the
approved tool before and after its effect (the answer given to the waiting
run in memory, or through `Agent.respond` as a durable host gives it).

Each case checks what `list` shows, what `resume --dry-run` says of the call,
then brings the thread back through the CLI and checks it ends `finished`
with every approved effect exactly once (counted by the tool itself), none
for a denial, the edited arguments only for an edit, and the human asked at
most once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.crashes.harness import Answers, Case, effect

APPROVE = {"decision": "approve"}
DENY = {"decision": "deny", "reason": "over budget"}
EDIT = {"decision": "edit", "edited_args": {"order": "9001", "amount_eur": 42}}
ANSWERS = {"approve": APPROVE, "deny": DENY, "edit": EDIT}

#: The answer's flags for `answer`, per decision (an edit is given before the crash only).
FLAGS = {"approve": ["--approve"], "deny": ["--deny", "over budget"]}

REFUND_420 = effect("refund", order="9001", amount_eur=420)
REFUND_42 = effect("refund", order="9001", amount_eur=42)


def expected_refunds(decision: str) -> dict[str, int]:
    return {"approve": {REFUND_420: 1}, "deny": {}, "edit": {REFUND_42: 1}}[decision]


@pytest.fixture
def approval(tmp_path: Path) -> Case:
    return Case(str(tmp_path / "h.db"), tmp_path / "jobs", "approval")


@pytest.fixture
def asker(tmp_path: Path) -> Case:
    return Case(str(tmp_path / "h.db"), tmp_path / "jobs", "asker")


def finish(case: Case, thread: str = "t") -> None:
    """Resume as a user would; it ends finished without asking anyone."""
    out = case.resume(thread)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "waiting for a human" not in out.stdout, out.stdout
    assert case.state(thread) == "finished", out.stdout


# -- the approval gate ------------------------------------------------------------------


@pytest.mark.parametrize("decision", ["approve", "deny"])
def test_killed_after_the_call_was_saved_asks_once_then_runs_as_answered(
    approval: Case, decision: str
) -> None:
    approval.crash("t", "refund 9001 420", "message_end:assistant:1")
    assert approval.state("t") == "mid_tool"
    plan = approval.plan("t")
    assert [c["verdict"] for c in plan["calls"]] == ["ask"]
    assert "approve refund" in plan["calls"][0]["reason"]

    asked = approval.resume("t")
    assert asked.returncode == 0 and "waiting for a human" in asked.stdout
    assert approval.state("t") == "awaiting_input" and approval.effects() == {}
    out = approval.answer("t", *FLAGS[decision])
    assert out.returncode == 0, out.stdout + out.stderr
    assert approval.state("t") == "finished"
    assert approval.effects() == expected_refunds(decision)


@pytest.mark.parametrize("decision", ["approve", "deny"])
def test_killed_while_the_question_waits_is_answered_once(approval: Case, decision: str) -> None:
    approval.crash("t", "refund 9001 420", "hitl_request:1")
    assert approval.state("t") == "awaiting_input"
    assert approval.plan("t")["refused"]
    out = approval.answer("t", *FLAGS[decision])
    assert out.returncode == 0, out.stdout + out.stderr
    assert approval.state("t") == "finished"
    assert approval.effects() == expected_refunds(decision)


#: (decision, what the plan says of the call)
AFTER_ANSWER = [("approve", "rerun"), ("deny", "skip"), ("edit", "rerun")]


@pytest.mark.parametrize(("decision", "verdict"), AFTER_ANSWER)
def test_killed_right_after_the_answer_was_stored_goes_on_with_it(
    approval: Case, decision: str, verdict: str
) -> None:
    approval.crash("t", "refund 9001 420", "hitl_answer:1", answer=ANSWERS[decision])
    assert approval.state("t") == "answered"
    (call,) = approval.plan("t")["calls"]
    assert call["verdict"] == verdict, call
    if decision == "edit":
        assert call["runs_as"]["arguments"] == EDIT["edited_args"]
        assert "a human's edit" in call["reason"]
    if decision == "deny":
        assert "a human denied it: over budget" in call["reason"]
    finish(approval)
    assert approval.effects() == expected_refunds(decision)


#: (kill point, how the answer was given, decision, state shown, plan verdict)
INSIDE_THE_TOOL = [
    ("tool:refund:before", "respond", "approve", "answered", "rerun"),
    ("tool:refund:after", "respond", "approve", "answered", "reuse"),
    ("tool:refund:before", "respond", "edit", "answered", "rerun"),
    ("tool:refund:after", "respond", "edit", "answered", "reuse"),
    ("tool:refund:before", "memory", "approve", "mid_tool", "rerun"),
    ("tool:refund:after", "memory", "approve", "mid_tool", "reuse"),
    ("tool:refund:before", "memory", "edit", "mid_tool", "rerun"),
    ("tool:refund:after", "memory", "edit", "mid_tool", "reuse"),
]


@pytest.mark.parametrize(("kill", "mode", "decision", "shown", "verdict"), INSIDE_THE_TOOL)
def test_killed_inside_the_approved_tool_is_not_asked_again_nor_doubled(
    approval: Case, kill: str, mode: str, decision: str, shown: str, verdict: str
) -> None:
    approval.crash("t", "refund 9001 420", kill, answer=ANSWERS[decision], answer_mode=mode)
    assert approval.state("t") == shown
    (call,) = approval.plan("t")["calls"]
    assert call["verdict"] == verdict, call
    if decision == "edit":  # the edited call's marker decides, never the original's
        assert call["runs_as"]["arguments"] == EDIT["edited_args"]
    finish(approval)
    assert approval.effects() == expected_refunds(decision)  # never the 420 of an edit
    text = approval.transcript("t")[-1]["content"][0]["text"]
    assert text == (
        "Done: Refunded EUR 42 on 9001."
        if decision == "edit"
        else "Done: Refunded EUR 420 on 9001."
    )


# -- ask_user ---------------------------------------------------------------------------

SHIP_M = effect("ship", target="order-9002-M")


def test_ask_killed_after_the_call_was_saved_is_asked_once(asker: Case) -> None:
    asker.crash("t", "which size", "message_end:assistant:1")
    assert asker.state("t") == "mid_tool"
    assert asker.verdicts("t") == {"ask_user": "ask"}
    assert "waiting for a human" in asker.resume("t").stdout
    out = asker.answer("t", "--option", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert asker.state("t") == "finished" and asker.effects() == {SHIP_M: 1}


def test_ask_killed_after_its_answer_was_stored_uses_it(asker: Case) -> None:
    asker.crash("t", "which size", "hitl_answer:1", answer={"size": "M"})
    assert asker.state("t") == "answered"
    (call,) = asker.plan("t")["calls"]
    assert call["verdict"] == "rerun" and "the answer stored before is used" in call["reason"]
    finish(asker)
    assert asker.effects() == {SHIP_M: 1}


@pytest.mark.parametrize("kill", ["tool:ship:before", "tool:ship:after"])
def test_ask_answered_in_memory_then_killed_in_the_next_tool(asker: Case, kill: str) -> None:
    asker.crash("t", "which size", kill, answer={"size": "M"}, answer_mode="memory")
    assert asker.state("t") == "mid_tool"
    assert asker.verdicts("t") == {"ship": "reuse" if kill.endswith("after") else "rerun"}
    finish(asker)
    assert asker.effects() == {SHIP_M: 1}


def test_a_resume_killed_inside_the_approved_tool_comes_back_again(approval: Case) -> None:
    """Crashed twice: first inside the tool, then inside the supervisor's own resume."""
    approval.crash(
        "t", "refund 9001 420", "tool:refund:before", answer=APPROVE, answer_mode="memory"
    )
    out = approval.resume("t", kill="tool:refund:after")
    assert out.returncode != 0
    assert approval.state("t") == "mid_tool" and approval.verdicts("t") == {"refund": "reuse"}
    finish(approval)
    assert approval.effects() == {REFUND_420: 1}


# -- a confirmation asked by the agent's own middleware ------------------------------------------

MAIL = effect("send_mail", target="ops")


@pytest.mark.parametrize(("flag", "mails"), [("--approve", {MAIL: 1}), ("--deny", {})])
def test_confirm_killed_after_the_call_was_saved_is_asked_once(
    tmp_path: Path, flag: str, mails: dict
) -> None:
    c = Case(str(tmp_path / "h.db"), tmp_path / "jobs", "confirmer")
    c.crash("t", "mail ops", "message_end:assistant:1")
    (call,) = c.plan("t")["calls"]
    assert call["verdict"] == "ask" and "confirm: send mail to ops?" in call["reason"]
    assert "waiting for a human" in c.resume("t").stdout
    out = c.answer("t", flag)
    assert out.returncode == 0, out.stdout + out.stderr
    assert c.state("t") == "finished" and c.effects() == mails


@pytest.mark.parametrize(
    ("answer", "verdict", "mails"), [(True, "rerun", {MAIL: 1}), (False, "skip", {})]
)
def test_confirm_killed_after_its_answer_was_stored(
    tmp_path: Path, answer: bool, verdict: str, mails: dict
) -> None:
    c = Case(str(tmp_path / "h.db"), tmp_path / "jobs", "confirmer")
    c.crash("t", "mail ops", "hitl_answer:1", answer=answer)
    assert c.state("t") == "answered" and c.verdicts("t") == {"send_mail": verdict}
    finish(c)
    assert c.effects() == mails


# -- the same question asked before every call, named by its text (no call id) -----------

S1, S2 = effect("deploy", target="s1"), effect("deploy", target="s2")


@pytest.mark.parametrize(("flag", "deploys"), [("--approve", {S1: 1, S2: 1}), ("--deny", {S1: 1})])
def test_an_answer_to_the_same_question_for_an_earlier_call_approves_nothing_now(
    tmp_path: Path, flag: str, deploys: dict
) -> None:
    """Step 1 approved in memory and deployed; killed once step 2's call was saved. The
    stored answer for step 1 has the id step 2's question gets in a new process (`hash.0`):
    the plan asks, the resume asks the human, and only the answer given then decides."""
    c = Case(str(tmp_path / "h.db"), tmp_path / "jobs", "same_confirm")
    c.crash("t", "deploy s1 s2", "message_end:assistant:2", answer=True, answer_mode="memory")
    assert c.effects() == {S1: 1}
    (call,) = c.plan("t")["calls"]
    assert call["verdict"] == "ask", call
    assert "waiting for a human" in c.resume("t").stdout
    assert c.effects() == {S1: 1}  # nothing deployed before the human answered
    out = c.answer("t", flag)
    assert out.returncode == 0, out.stdout + out.stderr
    assert c.state("t") == "finished" and c.effects() == deploys


def test_an_answer_given_just_before_the_crash_is_used_not_asked_again(tmp_path: Path) -> None:
    """Both steps approved in memory; killed inside step 2's tool before its effect. The
    second answer came after step 1's result: it is step 2's, and the resume uses it."""
    c = Case(str(tmp_path / "h.db"), tmp_path / "jobs", "same_confirm")
    c.crash(
        "t",
        "deploy s1 s2",
        "tool:deploy:before:s2",
        answer=Answers([True, True]),
        answer_mode="memory",
    )
    assert [x["verdict"] for x in c.plan("t")["calls"]] == ["rerun"]
    out = c.resume("t")
    assert out.returncode == 0 and "waiting for a human" not in out.stdout, out.stdout
    assert c.state("t") == "finished" and c.effects() == {S1: 1, S2: 1}


def test_the_same_question_answered_through_respond_after_a_crash(tmp_path: Path) -> None:
    """A durable host: step 1 answered through `respond`, step 2's question left waiting
    when the host went away; the human answers through the supervisor: step 2 runs once."""
    c = Case(str(tmp_path / "h.db"), tmp_path / "jobs", "same_confirm")
    c.crash("t", "deploy s1 s2", None, answer=Answers([True]))
    assert c.state("t") == "awaiting_input"
    out = c.answer("t", "--approve")
    assert out.returncode == 0, out.stdout + out.stderr
    assert c.state("t") == "finished" and c.effects() == {S1: 1, S2: 1}


def test_the_same_question_answered_then_killed_in_its_tool_is_planned_with_its_answer(
    tmp_path: Path,
) -> None:
    """Step 1 answered through `respond` (cubeloop then clears its answer); step 2 answered
    through the supervisor, which dies inside step 2's tool: the plan finds step 2's
    answer under step 2's own number and says it runs; the resume runs it once, asking
    nobody."""
    c = Case(str(tmp_path / "h.db"), tmp_path / "jobs", "same_confirm")
    c.crash("t", "deploy s1 s2", None, answer=Answers([True]))
    killed = c.cli("answer", c.database, "t", "--approve", kill="tool:deploy:before:s2")
    assert killed.returncode != 0
    assert c.state("t") == "answered"
    assert c.verdicts("t") == {"deploy": "rerun"}
    finish(c)
    assert c.effects() == {S1: 1, S2: 1}
