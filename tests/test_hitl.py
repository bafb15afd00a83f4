"""Human-in-the-loop threads: shown, answered from the CLI, run on exactly once.

The demo agent's HITL pieces are cubeloop's own: a `CheckpointedChannel`
bound to the run, `ConfirmToolCallMiddleware` gating `refund`, and
`ask_user_tool`, on the scripted FauxProvider. Threads are made by real
child processes: one dies (SIGKILL) while its question waits, one dies
right after the human's answer was stored and before the run went on.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from cubeloop.hitl.types import (
    ApproveRequest,
    AskRequest,
    ConfirmRequest,
    HitlRequest,
    Option,
    Question,
)

from supervisor.hitl import AnswerError, answer_for, parse_request
from supervisor.location import open_store
from supervisor.states import State
from tests.conftest import cli, run_demo_child

REFUND = "Refund order 9001 (EUR 420)"
SIZE = "Pick a size for order 9002"


def refunds(jobs: Path) -> list[str]:
    """Refund side effects that really happened (the demo ledger's effects log)."""
    log = jobs / "effects.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [line.split("\t")[0] for line in lines if line.startswith("refund:")]


def waiting(db: Path, jobs: Path, thread: str, prompt: str) -> None:
    """A thread whose process was SIGKILLed while its question waited for a human."""
    code = run_demo_child(db, thread, jobs, prompt=prompt, human_wait=True)
    assert code == -signal.SIGKILL


def answered(db: Path, jobs: Path, thread: str, prompt: str, answer: object) -> None:
    """A thread whose process was SIGKILLed right after the answer was stored."""
    code = run_demo_child(db, thread, jobs, prompt=prompt, human_answer=json.dumps(answer))
    assert code == -signal.SIGKILL


def state(db: Path, thread: str) -> State:
    store = open_store(db)
    try:
        return store.get(thread).state
    finally:
        store.close()


def answer(db: Path, jobs: Path, thread: str, *args: str):
    return cli("answer", str(db), thread, "--jobs-dir", str(jobs), *args)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "h.db"


def test_approval_runs_the_side_effect_exactly_once(db: Path, jobs: Path) -> None:
    waiting(db, jobs, "refund", REFUND)
    listed = json.loads(cli("list", str(db), "--json").stdout)
    (thread,) = listed
    assert thread["state"] == "awaiting_input"
    request = thread["pending_request"]
    assert request["kind"] == "approve" and request["question_id"] == "call-refund-9001"
    assert request["summary"] == 'approve refund({"amount_eur": 420, "order": "9001"})?'
    shown = cli("show", str(db), "refund").stdout
    assert "approval requested for tool call call-refund-9001" in shown
    assert refunds(jobs) == []

    out = answer(db, jobs, "refund", "--approve")
    assert out.returncode == 0, out.stderr
    assert "✓ answered" in out.stdout and "■ finished (completed" in out.stdout
    assert state(db, "refund") is State.FINISHED
    assert refunds(jobs) == ['refund:{"amount_eur":420,"order":"9001"}']

    again = answer(db, jobs, "refund", "--approve")
    assert again.returncode == 2 and "nothing to answer" in again.stderr
    assert len(refunds(jobs)) == 1


def schema_keys(item: dict) -> bool:
    """One schema for every command's events (`supervisor.events.envelope`)."""
    from supervisor.events import stamp

    return list(item)[:4] == ["thread", "type", "at", "time"] and item["time"] == stamp(item["at"])


def test_an_answer_with_json_prints_events_and_the_outcome_as_json_lines(
    db: Path, jobs: Path
) -> None:
    """`answer --approve --json` once refused; it prints what `resume --json` and `prompt
    --json` print: one object per event, then the outcome with the decision."""
    waiting(db, jobs, "refund", REFUND)
    out = answer(db, jobs, "refund", "--deny", "too much", "--json")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]  # every line is JSON
    assert all(item["thread"] == "refund" for item in lines)
    assert all(schema_keys(item) for item in lines)  # the envelope `watch --events` writes
    assert {"run_start", "run_end"} <= {item["type"] for item in lines}
    outcome = lines[-1]
    assert outcome["type"] == "outcome" and outcome["mode"] == "answer"
    assert outcome["decision"] == "deny" and outcome["reason"] == "too much"
    assert outcome["state"] == "finished"
    assert refunds(jobs) == []


def test_resume_and_prompt_take_json_lines_too(db: Path, jobs: Path) -> None:
    out = cli("prompt", str(db), "p1", "Process items A..B", "--jobs-dir", str(jobs), "--json")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert all(schema_keys(item) for item in lines)
    assert lines[-1]["type"] == "outcome" and lines[-1]["state"] == "finished"
    again = cli("resume", str(db), "p1", "--jobs-dir", str(jobs), "--json")
    assert again.returncode == 0 and again.stdout == ""  # nothing to resume: said on stderr
    assert "already finished" in again.stderr


def test_denial_runs_the_side_effect_zero_times(db: Path, jobs: Path) -> None:
    waiting(db, jobs, "refund", REFUND)
    out = answer(db, jobs, "refund", "--deny", "over the limit")
    assert out.returncode == 0, out.stderr
    assert state(db, "refund") is State.FINISHED
    assert refunds(jobs) == []
    transcript = json.loads(cli("show", str(db), "refund", "--json").stdout)["transcript"]
    results = [e for e in transcript if e["role"] == "tool_result"]
    assert results and "over the limit" in json.dumps(results[-1])


def test_ask_is_answered_by_option_or_text(db: Path, jobs: Path) -> None:
    waiting(db, jobs, "a", SIZE)
    waiting(db, jobs, "b", SIZE)
    printed = answer(db, jobs, "a")
    assert printed.returncode == 0
    assert "Which size should order 9002 ship in?" in printed.stdout
    assert "2. Medium" in printed.stdout and "4. Other (type your own)" in printed.stdout
    as_json = json.loads(answer(db, jobs, "a", "--json").stdout)
    assert (
        as_json["kind"] == "ask" and as_json["request"]["payload"]["questions"][0]["key"] == "size"
    )

    assert answer(db, jobs, "a", "--option", "2").returncode == 0
    assert answer(db, jobs, "b", "--text", "XXL").returncode == 0
    store = open_store(db)
    assert store.get("a").last_text == "Order 9002 ships in size M."
    assert store.get("b").last_text == "Order 9002 ships in size XXL."
    store.close()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--option", "9"], "has options 1..4; got '9'"),
        (["--approve"], "an ask request takes --option N or --text TEXT"),
        (["--option", "1", "--option", "2"], "asks 1 question(s); got 2 answer(s)"),
    ],
)
def test_an_answer_that_does_not_fit_is_one_line_and_changes_nothing(
    db: Path, jobs: Path, args: list[str], message: str
) -> None:
    waiting(db, jobs, "a", SIZE)
    before = db.read_bytes()
    out = answer(db, jobs, "a", *args)
    assert out.returncode == 2 and out.stdout == ""
    assert message in out.stderr and len(out.stderr.splitlines()) == 1
    assert db.read_bytes() == before


def test_answered_then_killed_is_not_waiting_and_resumes_without_asking(
    db: Path, jobs: Path
) -> None:
    answered(db, jobs, "refund", REFUND, {"decision": "approve"})
    listed = {t["thread_id"]: t for t in json.loads(cli("list", str(db), "--json").stdout)}
    assert listed["refund"]["state"] == "answered" and listed["refund"]["answer_stored"]
    assert refunds(jobs) == []  # the answer is stored; the tool never ran
    out = answer(db, jobs, "refund", "--deny")
    assert out.returncode == 2 and "was answered already" in out.stderr

    dry = cli("resume", str(db), "refund", "--dry-run", "--jobs-dir", str(jobs))
    assert "with the answer stored before it stopped (nobody is asked again)" in dry.stdout
    assert "a human approved it (the stored answer is used)" in dry.stdout
    out = cli("resume", str(db), "refund", "--force", "--jobs-dir", str(jobs))
    assert out.returncode == 0, out.stderr
    assert "continuing with the answer a human gave before the crash" in out.stdout
    assert state(db, "refund") is State.FINISHED
    assert len(refunds(jobs)) == 1


def test_resume_refuses_a_waiting_thread_and_points_to_answer(db: Path, jobs: Path) -> None:
    waiting(db, jobs, "refund", REFUND)
    out = cli("resume", str(db), "refund", "--jobs-dir", str(jobs))
    assert out.returncode == 1
    assert "refused: refund is awaiting a human answer: answer it" in out.stderr


def test_an_agent_run_that_asks_ends_awaiting_input_and_exits_0(db: Path, jobs: Path) -> None:
    out = cli("prompt", str(db), "t", REFUND, "--jobs-dir", str(jobs))
    assert out.returncode == 0, out.stderr
    assert "? waiting for a human: approve refund(" in out.stdout
    assert "■ awaiting_input (suspended" in out.stdout
    assert state(db, "t") is State.AWAITING_INPUT
    assert refunds(jobs) == []


# -- parsing rows we did not write -------------------------------------------


def stored(payload) -> str:
    return HitlRequest(
        question_id="q1", thread_id="t", payload=payload, created_at=0
    ).model_dump_json()


def test_requests_parse_from_cubeloops_own_json() -> None:
    approve = parse_request(
        stored(ApproveRequest(tool_name="mail", tool_call_id="c9", args={"to": "x@y"})), "run1"
    )
    assert (approve.kind, approve.tool_call_id, approve.run_id) == ("approve", "c9", "run1")
    confirm = parse_request(stored(ConfirmRequest(prompt="Delete it?")))
    assert confirm.kind == "confirm" and confirm.short() == "confirm: Delete it?"
    assert answer_for(confirm, approve=False) is False
    ask = parse_request(
        stored(
            AskRequest(
                questions=[
                    Question(
                        key="k",
                        prompt="Pick",
                        multi_select=True,
                        options=[Option(label="A", value="a"), Option(label="B", value="b")],
                    )
                ]
            )
        )
    )
    assert answer_for(ask, replies=[("option", "1,2")]) == {"k": ["a", "b"]}
    with pytest.raises(AnswerError, match="takes one of its options"):
        answer_for(ask, replies=[("text", "c")])


@pytest.mark.parametrize(
    "text", ["", "{", "[]", '{"payload": 3}', '{"question_id": 1, "payload": {"kind": "x"}}']
)
def test_odd_request_rows_are_shown_raw_and_never_answered(text: str) -> None:
    request = parse_request(text)
    assert request.kind == "?" and not request.answerable
    assert request.lines()[0] == "unknown request:"
    with pytest.raises(AnswerError):
        answer_for(request, approve=True)


async def test_the_runner_asks_before_going_on_with_a_recent_answer(db: Path, jobs: Path) -> None:
    """The process that stored the answer may still be running it: same rule as any resume."""
    from supervisor.agents import load_factory
    from supervisor.runner import PossiblyLive, Runner, RunnerConfig

    answered(db, jobs, "refund", REFUND, {"decision": "approve"})
    config = RunnerConfig(
        database=db, factory=load_factory("supervisor.demo:demo_agent"), jobs_dir=jobs
    )
    async with Runner(config) as runner:
        with pytest.raises(PossiblyLive, match="may still be running in another process"):
            await runner.resume("refund")
    assert refunds(jobs) == []


def test_resume_json_gives_a_refused_thread_its_outcome_line(db: Path, jobs: Path) -> None:
    from tests.conftest import crash

    crash(db, "fresh", jobs, kill_at_event=5)  # its open run was written a moment ago
    out = cli("resume", str(db), "fresh", "--jobs-dir", str(jobs), "--json")
    assert out.returncode == 1 and "--force" in out.stderr
    (line,) = [json.loads(x) for x in out.stdout.splitlines()]
    assert line["thread"] == "fresh" and line["type"] == "outcome" and schema_keys(line)
    assert line["outcome"] == "refused" and "--force" in line["reason"]
    assert line["mode"] == "resume"  # the fields of every outcome line
