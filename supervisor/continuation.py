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

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cubeloop import AssistantMessage, TextContent, ToolCall, ToolResultMessage
from cubeloop.agent.types import AgentContext
from cubeloop.checkpointer.exceptions import (
    RunAlreadyClaimedError,
    RunAlreadyCompletedError,
)

if TYPE_CHECKING:
    from cubeloop import Agent
    from cubeloop.providers.base import Message

#: Where the supervisor's own notes on a message go (its `details`).
DETAILS_KEY = "agent_supervisor"


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


async def turn_decision(agent: Agent, messages: list[Message]) -> TurnDecision | None:
    """Ask the agent's `after_model_response` again about its last turn, or None.

    Only for a turn that is the transcript's last message (no result, no
    injected message after it): once any of its calls has a result the
    hook had said "natural", and a message after it means the decision was
    carried out. The context is the agent's own (its tools, its `extra`),
    as the loop builds it right after the model replied.
    """
    hook = agent.after_model_response
    if hook is None or not messages or not isinstance(messages[-1], AssistantMessage):
        return None
    last = messages[-1]
    if not any(isinstance(b, ToolCall) for b in last.content):
        return None
    context = AgentContext(
        system_prompt=agent.state.system_prompt,
        messages=list(messages),
        tools=list(agent.state.tools),
        extra=agent.state.extra,
        run_id=last.run_id,
    )
    action = await hook(last, context, signal=None)
    if action is None:
        return TurnDecision()
    return TurnDecision(
        decision=str(action.decision or "natural"),
        inject=list(action.inject_messages or []),
        by=_hook_name(agent),
    )


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
    run is marked complete, as a run that ended on purpose is.
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
) -> str:
    """Carry a crashed run on as the agent's own run would have gone on; cubeloop's outcome.

    For a thread whose last turn's calls are unanswered (`mid_tool`): the
    agent's `after_model_response` is asked again where a crash may have
    lost its decision (no call of the turn has a result): a `stop` closes
    the calls as not run and ends the run ("stopped" is returned), a
    `loop_to_model` leaves them and calls the model, and injected messages
    go where the loop puts them. With the `interrupt` strategy the calls
    are answered as interrupted and the model decides. Then `carry_on`.
    """
    from supervisor.tool_calls import INTERRUPTED_TEXT, stand_in_result

    def tell(kind: str, **details: Any) -> None:
        if report is not None:
            report(kind, details)

    if mid_tool:
        checkpointer, thread_id = agent.checkpointer, agent.thread_id
        assert checkpointer is not None and thread_id is not None
        messages = await load_into(agent)
        _, pending, answered = unanswered(messages)
        calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in pending]
        decision = None
        if strategy == "rerun" and answered == 0:
            decision = await turn_decision(agent, messages)
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
