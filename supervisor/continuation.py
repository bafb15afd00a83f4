"""Carrying a crashed run on inside cubeloop's own loop, under the run's own id.

cubeloop brings a run back by itself in one case only: `Agent.respond()`,
after a human answered. It loads the thread, makes the pending run active
again (no new claim: the run is still open), and runs the suspended turn's
unanswered calls through the agent's whole tool pipeline (`resolve_tool_call`,
`before_tool_call` with its human-in-the-loop gates, the tool, then
`after_tool_call`), honours `terminate` and `should_stop_after_turn`, and
goes on to the next model call. Every other crash leaves a run open that
nothing in cubeloop's public API continues: `resume()` claims a new run and
refuses a transcript that ends with the assistant's calls.

Running those calls beside the agent (a new run id, the tools called
directly) is what went wrong before: cubeloop rejects results whose run is
not the active one, an answer stored under the crashed run is not found
(the human is asked again), an edit decision is not applied, a middleware's
veto is skipped, and the tools' writes to `extra` are lost. So this module
does what `respond()` does, without an answer: `carry_on` makes the open
run active again and drives the same loop functions `respond()` drives.

These are cubeloop internals (`Agent._run_hitl_resume`, `_run_continuation`,
`_dispatch_outcome`, ...): cubeloop is pinned to one version, and
`tests/test_continuation_contract.py` fails the build if any of them moves.

It also holds the one thing the agent's own loop decides between saving the
model's reply and running its calls: `after_model_response`. The message is
saved after that hook ran, so a crash right then leaves calls whose fate
was decided in memory and lost. `turn_decision` asks the hook again, and
`close_vetoed` records a veto durably, so the thread ends as the agent's
own run would have.

Imported only when an agent runs (it imports cubeloop).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cubeloop import AssistantMessage, TextContent, ToolCall, ToolResultMessage
from cubeloop.agent.types import AgentContext
from cubeloop.checkpointer.exceptions import (
    RunAlreadyClaimedError,
    RunAlreadyCompletedError,
)

from supervisor.store import DETAILS_KEY

if TYPE_CHECKING:
    from cubeloop import Agent
    from cubeloop.providers.base import Message


class RunCompleted(Exception):
    """The run a resume would carry on was already marked complete."""


@dataclass(frozen=True)
class TurnDecision:
    """What the agent's `after_model_response` says of a saved turn whose calls never ran."""

    #: "natural" (run the calls), "stop" (end the run, calls unanswered) or
    #: "loop_to_model" (skip the calls, call the model again).
    decision: str = "natural"
    #: Messages the hook injects (after the results when the calls run).
    inject: list[Message] = field(default_factory=list)
    #: The hook itself, for people: "after_model_response" or a middleware's name.
    by: str = "after_model_response"

    @property
    def runs_calls(self) -> bool:
        return self.decision == "natural"

    @property
    def reason(self) -> str:
        if self.decision == "stop":
            return f"the agent's {self.by} stops the turn before its calls run"
        if self.decision == "loop_to_model":
            return f"the agent's {self.by} skips these calls and asks the model again"
        return ""


def run_of(messages: list[Message], mid_tool: bool) -> str | None:
    """The run a resume carries on: the last assistant message's (its calls are the
    unanswered ones) or, for a thread between turns or after tools, the last message's."""
    if mid_tool:
        for m in reversed(messages):
            if isinstance(m, AssistantMessage):
                return m.run_id
        return None
    return messages[-1].run_id if messages else None


async def join_run(checkpointer: Any, thread_id: str, run_id: str | None) -> str:
    """Make sure `run_id` is a claimed, open run of the thread, and return it.

    An open run is joined as it is (a crash left it claimed). A run never
    claimed (a message written before cubeloop kept runs, or by another
    writer) is claimed now. A thread with no run id gets a new one.
    Raises `RunCompleted` for a run already marked complete: carrying it
    on would write into a finished run, which cubeloop refuses.
    """
    run_id = run_id or uuid.uuid4().hex
    try:
        await checkpointer.claim_run(thread_id, run_id)
    except RunAlreadyClaimedError:
        pass  # open: the crashed run itself
    except RunAlreadyCompletedError:
        raise RunCompleted(f"its run {run_id} is already complete") from None
    return run_id


def unanswered(messages: list[Message]) -> tuple[AssistantMessage | None, list[ToolCall], int]:
    """The last assistant message, its calls without a result, and how many results it has."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, AssistantMessage):
            results = {
                r.tool_call_id for r in messages[i + 1 :] if isinstance(r, ToolResultMessage)
            }
            calls = [b for b in m.content if isinstance(b, ToolCall)]
            return m, [c for c in calls if c.id not in results], len(results)
    return None, [], 0


@dataclass(frozen=True)
class LastTurn:
    """The transcript's last assistant turn with calls, and what follows it."""

    assistant: AssistantMessage
    #: Where it is in the transcript.
    index: int
    #: The results after it (of its calls).
    results: list[ToolResultMessage]
    #: Nothing but its results follows it: the loop's next step is still to come.
    open: bool


def last_turn(messages: list[Message]) -> LastTurn | None:
    """The last assistant message, if it has calls, with the results after it."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, AssistantMessage):
            if not any(isinstance(b, ToolCall) for b in m.content):
                return None
            after = messages[i + 1 :]
            results = [r for r in after if isinstance(r, ToolResultMessage)]
            return LastTurn(m, i, results, len(results) == len(after))
    return None


async def turn_decision(agent: Agent, messages: list[Message]) -> TurnDecision | None:
    """Ask the agent's `after_model_response` again about its last turn, or None.

    The reply is saved after the hook decided, and what it decided is
    carried out next: the calls run or not, injected messages are appended
    (after the results, when the calls run). A crash before that lost it.
    So it is asked again while nothing but the turn's own results follows
    the reply; once any result exists the decision was "natural", and only
    its injected messages are still to come. The context is the agent's own
    (its tools, its `extra`), as the loop has it right after the model replied.
    """
    hook = agent.after_model_response
    turn = last_turn(messages)
    if hook is None or turn is None or not turn.open:
        return None
    # With results in, only messages it injects are still to come; what it writes to
    # `extra` counts only then (the turn's end saved `extra` after them otherwise).
    extra = copy.deepcopy(agent.state.extra) if turn.results else agent.state.extra
    context = agent_context(agent, messages[: turn.index + 1], turn.assistant.run_id, extra)
    action = await hook(turn.assistant, context, signal=None)
    if action is None:
        return TurnDecision()
    if turn.results and action.inject_messages and extra is not agent.state.extra:
        agent.state.extra.clear()
        agent.state.extra.update(extra)
    decision = TurnDecision(
        decision=str(action.decision or "natural"),
        inject=list(action.inject_messages or []),
        by=_hook_name(agent),
    )
    if turn.results and not decision.runs_calls:
        return TurnDecision(inject=decision.inject, by=decision.by)  # its calls did run
    return decision


#: Whether a turn's tools asked to end the run (their job markers say so), read from disk.
Terminated = Callable[[AssistantMessage], bool]


async def run_ended(
    agent: Agent, messages: list[Message], run_id: str, terminated: Terminated | None = None
) -> str | None:
    """Why the run ended at its last turn's results, when it did; None to go on.

    cubeloop marks such a run complete right after the results, and a crash
    in between leaves it open and `after_tools`. It ended if every result is
    the supervisor's own "not run" (a veto being closed), if a tool asked to
    end it (`terminated`: its job marker recorded `terminate`), or if the
    agent's `should_stop_after_turn`, asked again, says so (its budget counted
    on the run's messages, as the run itself counted them).
    """
    from cubeloop.agent.types import ShouldStopAfterTurnContext

    turn = last_turn(messages)
    if turn is None or not turn.open or not turn.results:
        return None
    if all(_not_run(r) for r in turn.results):
        return "the agent's policy vetoed the turn"
    if terminated is not None and await asyncio.to_thread(terminated, turn.assistant):
        return "a tool ended the run (terminate)"
    hook = agent.should_stop_after_turn
    if hook is None:
        return None
    context = agent_context(agent, messages, run_id)
    stop = ShouldStopAfterTurnContext(
        message=turn.assistant,
        tool_results=turn.results,
        context=context,
        new_messages=[m for m in messages if m.run_id == run_id],
    )
    return "the agent's should_stop_after_turn" if await hook(stop) else None


def _not_run(result: ToolResultMessage) -> bool:
    details = result.details
    return isinstance(details, dict) and isinstance(details.get(DETAILS_KEY), dict)


def agent_context(
    agent: Agent,
    messages: list[Message],
    run_id: str | None,
    extra: dict[str, Any] | None = None,
) -> AgentContext:
    """The context cubeloop hands the agent's hooks, built as its loop builds it."""
    return AgentContext(
        system_prompt=agent.state.system_prompt,
        messages=list(messages),
        tools=list(agent.state.tools),
        extra=agent.state.extra if extra is None else extra,
        run_id=run_id,
    )


def spent_answers(messages: list[Message], run_id: str) -> list[str]:
    """Question ids of the run's answers whose calls have their results: spent.

    An approval's question id is its call's id. `respond()` clears a run's
    answers after the answered turn, but not if it was killed in between,
    and an answer given while the run waited in memory is never cleared.
    Providers that number calls per turn (`call_0`) reuse ids, so a later
    call would find such an answer and run approved by nobody. They are
    forgotten before the run goes on: a new call is asked about (once).
    """
    return sorted(
        {
            m.tool_call_id
            for m in messages
            if isinstance(m, ToolResultMessage) and m.run_id == run_id
        }
    )


def asked_before(messages: list[Message], run_id: str) -> dict[str, int]:
    """How many times the run asked each `ask_user` question already (by content hash).

    cubeloop names such a question by its content and a counter kept by the
    channel object (`hash.0`, `hash.1`): a new process counts from 0 again,
    so a question asked a second time would find the first one's answer.
    The counter is set back to what the run had counted (`seed_questions`).
    """
    from cubeloop.hitl.ask_user import AskUserParams
    from cubeloop.hitl.channel import _derive_question_id
    from cubeloop.hitl.types import Option, Question

    results = {m.tool_call_id for m in messages if isinstance(m, ToolResultMessage)}
    counts: dict[str, int] = {}
    for m in messages:
        if not isinstance(m, AssistantMessage) or m.run_id != run_id:
            continue
        for b in m.content:
            if not isinstance(b, ToolCall) or b.name != "ask_user" or b.id not in results:
                continue
            try:
                params = AskUserParams.model_validate(b.arguments)
            except ValueError:
                continue
            questions = [
                Question(
                    key=q.key,
                    prompt=q.prompt,
                    options=[Option(**o.model_dump()) for o in q.options] if q.options else None,
                    multi_select=q.multi_select,
                    required=q.required,
                ).model_dump(mode="json")
                for q in params.questions
            ]
            digest = _derive_question_id("ask", questions)
            counts[digest] = counts.get(digest, 0) + 1
    return counts


#: A question cubeloop names by its content: a 32-hex hash and the channel's counter.
_CONTENT_QUESTION = re.compile(r"([0-9a-f]{32})\.(\d+)")


def spent_questions(answered: Mapping[str, float], newest_result: float | None) -> dict[str, int]:
    """How far the run had counted each question named by its content (a `confirm` or an
    `ask` with no call id), from the answers stored for it.

    cubeloop keeps a run's answers until the run ends, and a new process
    counts such questions from 0 again: a middleware asking "deploy the next
    step?" before every call would find the first step's answer for the
    second one and run it approved by nobody. An answer given no later than
    the run's newest tool result (by the database's clock:
    `runs.answer_times`) was for a call already done; the counter is
    set past it. One given after (the crash came between an answer and its
    call) is found again and used. On a tie the human is asked again rather
    than an answer taken for another call.
    """
    counts: dict[str, int] = {}
    if newest_result is None:
        return counts
    for question_id, at in answered.items():
        named = _CONTENT_QUESTION.fullmatch(question_id)
        if named is None or at > newest_result:
            continue
        digest, seq = named.group(1), int(named.group(2))
        counts[digest] = max(counts.get(digest, 0), seq + 1)
    return counts


def waiting_count(question_id: str) -> dict[str, int]:
    """Where the counter stood when the waiting question was asked: its own number.

    `respond()` clears a run's answers after the answered turn, so a run
    answered once that way and asking the same question again keeps no
    trace of the first but the second's id (`hash.1`); replayed from 0, the
    second question would be named `hash.0`, miss its answer, and be asked
    again.
    """
    named = _CONTENT_QUESTION.fullmatch(question_id)
    return {} if named is None else {named.group(1): int(named.group(2))}


def merged_counts(*counts: Mapping[str, int]) -> dict[str, int]:
    """Question counters from several sources: the furthest each had counted."""
    out: dict[str, int] = {}
    for each in counts:
        for digest, n in each.items():
            out[digest] = max(out.get(digest, 0), n)
    return out


async def question_counts(agent: Agent, messages: list[Message], run_id: str) -> dict[str, int]:
    """Where the run's question counter stood: from its `ask_user` calls (`asked_before`)
    and the answers of calls already done (`spent_questions`)."""
    from supervisor import runs

    answered, newest = await runs.answer_times(agent.checkpointer, agent.thread_id, run_id)
    return merged_counts(asked_before(messages, run_id), spent_questions(answered, newest))


def seed_questions(agent: Agent, counts: dict[str, int]) -> None:
    """Set the agent's channel's question counter to what the run had counted, also after
    `respond()` resets it (`attach_resume_answer`)."""
    channel = agent.channel
    if channel is None or not hasattr(channel, "_qid_seq") or not counts:
        return
    channel._qid_seq = dict(counts)
    attach = channel.attach_resume_answer

    def attach_and_seed(question_id: str, answer: Any) -> None:
        attach(question_id, answer)
        channel._qid_seq = dict(counts)

    channel.attach_resume_answer = attach_and_seed  # type: ignore[method-assign]


def _hook_name(agent: Agent) -> str:
    from cubeloop.middleware.base import Middleware

    base = Middleware.after_model_response
    names = [
        type(m).__name__
        for m in getattr(agent, "_middleware", [])
        if getattr(type(m), "after_model_response", base) is not base
    ]
    return f"{', '.join(names)} (after_model_response)" if names else "after_model_response"


def not_run_result(call: ToolCall, reason: str, run_id: str | None) -> ToolResultMessage:
    """A result that says a call was not run, and why; marked as the supervisor's."""
    return ToolResultMessage(
        tool_call_id=call.id,
        tool_name=call.name,
        content=[TextContent(text=f"[Not run: {reason}.]")],
        details={DETAILS_KEY: {"not_run": reason}},
        is_error=True,
        timestamp=time.time(),
        run_id=run_id,
        id=uuid.uuid4().hex,
    )


async def close_vetoed(
    checkpointer: Any, thread_id: str, run_id: str, calls: list[ToolCall], reason: str
) -> None:
    """The agent's policy ended the turn before these calls: say so and end the run.

    Left as they are, the calls look exactly like a crash right after the
    model replied, and every resume would ask again. Each gets a result
    saying it was not run (the model reads why on the next prompt), and the
    run is marked complete, as a run that ended on purpose is. Killed
    between the two, the results say so (`run_ended` finishes the closing).
    """
    await checkpointer.append(thread_id, [not_run_result(c, reason, run_id) for c in calls])
    await checkpointer.mark_run_complete(thread_id, run_id)


def restore_goal(agent: Agent, messages: list[Message], run_id: str) -> bool:
    """Give `GoalMiddleware` back the goal a crash took from its memory; True if it did.

    The middleware reads its goal from the run's `/goal` prompt into memory
    and writes it to `extra["goal"]` only after its first evaluation; a crash
    before that loses it, and the resumed run would end without checking
    the goal. Its own recovery reads an active `extra["goal"]`, so that is
    what is written back, from the run's first `/goal` message.
    """
    from cubeloop.middleware.goal import GoalMiddleware

    goals = [m for m in getattr(agent, "_middleware", []) if isinstance(m, GoalMiddleware)]
    if not goals:
        return False
    saved = agent.state.extra.get("goal")
    if isinstance(saved, dict) and saved.get("status") == "active":
        return False
    for m in messages:
        if getattr(m, "role", None) != "user" or m.run_id != run_id:
            continue
        text = "".join(getattr(b, "text", "") for b in m.content)
        if text.startswith("/goal "):
            condition = text[len("/goal ") :].strip()
            if not condition:
                return False
            agent.state.extra["goal"] = {
                "condition": condition,
                "status": "active",
                "evaluations": 0,
                "max_evaluations": goals[0]._max_evaluations,
            }
            return True
        return False  # the run began with another prompt: no goal to restore
    return False


def count_the_run(agent: Agent, messages: list[Message], run_id: str) -> None:
    """`should_stop_after_turn` sees the run's messages from its start, not from the resume.

    The loop gives the hook `new_messages`: what this run added. A carried-on
    run starts a new loop, whose list would start empty, so a budget counted
    per run would start over. The run's earlier messages are put in front.
    """
    hook = agent.should_stop_after_turn
    if hook is None:
        return
    before = [m for m in messages if m.run_id == run_id]

    async def counted(ctx: Any) -> bool:
        return await hook(dataclasses.replace(ctx, new_messages=[*before, *ctx.new_messages]))

    agent.should_stop_after_turn = counted


async def load_into(agent: Agent) -> list[Message]:
    """The thread's messages and extra, installed in the agent as cubeloop's own load does."""
    assert agent.checkpointer is not None and agent.thread_id is not None
    data = await agent.checkpointer.load(agent.thread_id)
    messages = list(data.messages) if data else []
    agent._state._messages = list(messages)
    agent._extra.clear()
    if data is not None:
        agent._extra.update(data.extra or {})
    agent._checkpoint_loaded = True
    return messages


#: Told what a resume decided before it runs: ("recovery" | "skipped", details).
Report = Callable[[str, dict[str, Any]], None]


async def bring_back(
    agent: Agent,
    run_id: str,
    *,
    mid_tool: bool,
    strategy: str = "rerun",
    report: Report | None = None,
    terminated: Terminated | None = None,
) -> str:
    """Carry a crashed run on as the agent's own run would have gone on; cubeloop's outcome
    ("stopped" when the run is found to have ended).

    Before anything runs, what the crash may have lost is taken back:

    - a run that ended at its last turn's results (`run_ended`) is marked
      complete, and nothing runs;
    - for a turn whose reply is all that was saved, the agent's
      `after_model_response` is asked again (`turn_decision`): `stop` closes
      the calls as not run and ends the run, `loop_to_model` leaves them and
      calls the model, and injected messages go where the loop puts them
      (also when the calls had run: they come after the results);
    - answers a reused call id would wrongly find are forgotten
      (`spent_answers`), and the channel's question counter is set back to
      the run's (`seed_questions`).

    With the `interrupt` strategy the calls are answered as interrupted and
    the model decides. Then `carry_on`.
    """
    from supervisor.tool_calls import INTERRUPTED_TEXT, stand_in_result

    def tell(kind: str, **details: Any) -> None:
        if report is not None:
            report(kind, details)

    checkpointer, thread_id = agent.checkpointer, agent.thread_id
    assert checkpointer is not None and thread_id is not None
    messages = await load_into(agent)
    if not mid_tool and (why := await run_ended(agent, messages, run_id, terminated)):
        await checkpointer.mark_run_complete(thread_id, run_id)
        tell("note", text=f"the run had ended: {why}; it is marked complete, nothing runs")
        return "stopped"
    decision = await turn_decision(agent, messages) if strategy == "rerun" else None
    spent = spent_answers(messages, run_id)
    if spent:
        await checkpointer.clear_hitl_answers(thread_id, spent, run_id=run_id)
    seed_questions(agent, await question_counts(agent, messages, run_id))
    if mid_tool:
        _, pending, _ = unanswered(messages)
        calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in pending]
        if decision is not None and not decision.runs_calls:
            tell("skipped", calls=calls, reason=decision.reason)
            if decision.decision == "stop":
                await close_vetoed(checkpointer, thread_id, run_id, pending, decision.reason)
                return "stopped"
            mid_tool = False  # loop_to_model: the model is asked again
        else:
            tell("recovery", strategy=strategy, calls=calls)
        if strategy == "interrupt":
            stand_ins = [stand_in_result(c, INTERRUPTED_TEXT, run_id) for c in pending]
            await checkpointer.append(thread_id, stand_ins)
            mid_tool = False
    for message in decision.inject if decision is not None else ():
        agent.steer(message)  # drained where the agent's loop puts them
    return await carry_on(agent, run_id, mid_tool=mid_tool)


async def carry_on(agent: Agent, run_id: str, *, mid_tool: bool) -> str:
    """Go on with the thread's open run `run_id` (claimed: see `join_run`); cubeloop's outcome.

    `mid_tool`: the last assistant message has unanswered calls, which run
    first through the agent's tool pipeline, as `respond()` runs them;
    otherwise the model is called next. Returns "complete", "suspended" (a
    human was asked) or "abandoned"/"incomplete" (aborted, failed). The
    thread's messages and extra are loaded afresh: what the tools write to
    `extra` is saved by cubeloop at the turn's end, never overwritten.
    """
    async with agent._run_lock:
        messages = await load_into(agent)
        agent._validate_hitl_bindings(run_id, caller="resume")
        restore_goal(agent, messages, run_id)
        count_the_run(agent, messages, run_id)
        agent._state.active_run_id = run_id
        agent._state.last_outcome = None
        try:
            if mid_tool:
                await agent._run_hitl_resume()
            else:
                await agent._run_continuation()
        except BaseException:
            agent._pending_suspension_event = None
            raise
        outcome = agent._state.last_outcome or "abandoned"
        await agent._dispatch_outcome(outcome, run_id)
        agent._state.active_run_id = None
        await agent._emit_suspended_event(outcome)
        return str(outcome)
