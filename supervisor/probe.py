"""Asking the agent's own policy, without acting, what a resume will do with each unanswered call.

Job markers say whether a call's work was done. They cannot say that the
agent's middleware vetoes the call, that a human must approve it first, that
a human's edit changed its arguments, or which real tool a deferred-group
dispatch runs: the agent's own hooks decide those, and the resume runs them
(`supervisor.continuation`). So the plan asks the same hooks, the same way:
the agent is built by its factory for the run the resume carries on, over a
checkpointer that reads through the supervisor's read-only store and raises
on every write (`ReadOnlyCheckpointer`), and for the thread's last turn:

1. `after_model_response`, when none of the turn's calls has a result yet
   (a crash may have lost its decision; `continuation.turn_decision`);
2. for each call, `resolve_tool_call` (the real tool), the tool's argument
   check, and `before_tool_call`: its policy, its approval gates (an answer
   stored for the run is read; one it would have to ask for is `ask`);
3. for a human-in-the-loop tool such as `ask_user`, its body, which only asks.

Nothing is written and nothing runs but these hooks; an agent whose hooks
have side effects of their own (cubeloop's have none) would see them here.
Imports cubeloop: only commands that plan import this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cubeloop import AssistantMessage, ToolCall, ToolResultMessage, UserMessage
from cubeloop.agent.types import AgentContext, BeforeToolCallContext
from cubeloop.checkpointer.base import CheckpointData
from cubeloop.hitl.exceptions import HitlControlException
from cubeloop.hitl.types import HitlRequest
from pydantic import ValidationError

from supervisor.agents import AgentLoadError, LoadedAgent, build_agent
from supervisor.continuation import (
    Terminated,
    agent_context,
    asked_before,
    load_into,
    merged_counts,
    run_ended,
    run_of,
    seed_questions,
    spent_answers,
    spent_questions,
    turn_decision,
    unanswered,
    waiting_count,
)
from supervisor.hitl import parse_request
from supervisor.plan import CallPolicy
from supervisor.states import State, ThreadSummary, ToolCallInfo
from supervisor.store import DETAILS_KEY
from supervisor.text import one_line

if TYPE_CHECKING:
    from cubeloop import Agent
    from cubeloop.providers.base import Message

    from supervisor.digest import TranscriptDigest
    from supervisor.store import Store, Transcript


class WouldWrite(Exception):
    """A hook tried to write to the checkpoint: a plan never does."""


class WouldAsk(WouldWrite):
    """The agent would ask a human here (its request would be saved): `ask`."""

    def __init__(self, request: HitlRequest) -> None:
        super().__init__(parse_request(request.model_dump_json()).short(160))


_ROLES: dict[str, type[Any]] = {
    "user": UserMessage,
    "assistant": AssistantMessage,
    "tool_result": ToolResultMessage,
}


class ReadOnlyCheckpointer:
    """A cubeloop checkpointer whose reads come from a supervisor `Store` and whose writes raise.

    It has every method cubeloop's `CheckpointedChannel` checks for, so an
    agent's factory builds its human-in-the-loop pieces over it unchanged.
    """

    def __init__(self, store: Store, known: Transcript | None = None) -> None:
        self._store = store
        #: A thread's whole transcript the caller has read already (one scan, not two).
        self._known = known
        #: Question ids whose stored answers the resume forgets (`continuation.spent_answers`).
        self.forgotten: set[str] = set()
        #: The transcript the last `load` read.
        self.loaded: Transcript | None = None

    async def load(self, thread_id: str) -> CheckpointData | None:
        known = self._known
        if (
            known is not None
            and known.thread_id == thread_id
            and not any(e.big for e in known.entries)
        ):
            transcript = known
        else:
            transcript = self._store.transcript(thread_id, full=True)
        self.loaded = transcript
        messages: list[Message] = []
        for e in transcript.entries:
            if e.message is None:
                raise ValueError(f"row {e.row_id} of {thread_id} is corrupt: {e.error}")
            data = dict(e.message)
            data.setdefault("run_id", e.run_id)
            messages.append(_ROLES[data["role"]].model_validate(data))
        extra = self._store.thread_extra(thread_id)
        if not messages and not extra:
            return None
        return CheckpointData(messages=messages, extra=extra)

    async def load_hitl_answer(
        self, thread_id: str, question_id: str, *, run_id: str | None = None
    ) -> Any:
        if question_id in self.forgotten:
            return None
        return self._store.hitl_answer(thread_id, run_id, question_id)

    async def load_pending(self, thread_id: str) -> tuple[HitlRequest, str | None] | None:
        summary = self._store.get(thread_id)
        request = summary.request if summary is not None else None
        if request is None or not request.raw:
            return None
        return HitlRequest.model_validate(request.raw), request.run_id

    async def load_pending_request(self, thread_id: str) -> HitlRequest | None:
        loaded = await self.load_pending(thread_id)
        return None if loaded is None else loaded[0]

    async def save_pending_request(
        self, thread_id: str, request: HitlRequest | None, *, run_id: str | None = None
    ) -> None:
        if request is not None:
            raise WouldAsk(request)
        # Clearing: the channel clears what it asked for as it unwinds from
        # `WouldAsk`; nothing was saved, and raising here would hide the ask.

    async def _write(self, *_args: Any, **_kwargs: Any) -> None:
        raise WouldWrite("write to the checkpoint")

    append = save_extra = save_hitl_answer = clear_hitl_answers = _write
    claim_run = mark_run_complete = clear_pending_request_if_matches = fork = _write


@dataclass(frozen=True)
class Probed:
    """What the agent's own hooks say a resume of one thread will do."""

    #: Per unanswered call, by its id.
    policies: dict[str, CallPolicy] = field(default_factory=dict)
    #: Why the run had already ended at its last results (`continuation.run_ended`):
    #: the resume marks it complete and runs nothing.
    ended: str | None = None


async def probe(
    loaded: LoadedAgent,
    store: Store,
    summary: ThreadSummary,
    transcript: Transcript | None = None,
    terminated: Terminated | None = None,
) -> Probed:
    """What the agent's policy does with each of the thread's unanswered calls, and whether
    its run had ended, asked as the resume will ask (`continuation.bring_back`).

    For a thread a resume carries on through its calls (`mid_tool`, and
    `answered`, whose stored answer is read as the resume reads it), and one
    whose results are in (`after_tools`: did the run end there?); nothing for
    any other. A hook or factory that fails makes every call `unknown`, with
    the reason. `terminated`: whether a turn's tools asked to end the run
    (their markers), as `Runner` tells.
    """
    state = summary.resume_state
    if state not in (State.MID_TOOL, State.ANSWERED, State.AFTER_TOOLS):
        return Probed()
    if state is not State.AFTER_TOOLS and not summary.pending_tool_calls:
        return Probed()
    cp = ReadOnlyCheckpointer(store, transcript)
    try:
        data = await cp.load(summary.thread_id)
        messages = list(data.messages) if data is not None else []
        if state is State.ANSWERED and summary.request is not None:
            run_id = summary.request.run_id
        else:
            run_id = run_of(messages, mid_tool=state is State.MID_TOOL)
        agent = await build_agent(
            loaded.factory, cp, summary.thread_id, loaded.reference, run_id=run_id
        )
        messages = await load_into(agent)
        if state is State.AFTER_TOOLS:
            return Probed(ended=await run_ended(agent, messages, run_id or "", terminated))
        if run_id is not None and state is State.MID_TOOL:
            cp.forgotten.update(spent_answers(messages, run_id))
        answered = store.answers_given(summary.thread_id, run_id or "")
        newest = _newest_result(cp.loaded, run_id or "")
        waiting = summary.request.question_id if summary.request is not None else ""
        counts = merged_counts(
            asked_before(messages, run_id or ""),
            spent_questions(answered, newest),
            waiting_count(waiting) if state is State.ANSWERED else {},
        )
        seed_questions(agent, counts)
        return Probed(await _ask_policy(agent, state, run_id, messages))
    except (AgentLoadError, WouldWrite, HitlControlException, Exception) as exc:
        why = f"asking the agent's policy failed ({type(exc).__name__}: {one_line(str(exc), 160)})"
        return Probed({c.id: CallPolicy("unknown", why) for c in summary.pending_tool_calls})


async def probe_without_loading(
    loaded: LoadedAgent,
    store: Store,
    summary: ThreadSummary,
    digest: TranscriptDigest,
    terminated: Terminated | None = None,
) -> Probed | None:
    """What `probe` would say, where that is certain without loading the transcript into
    the agent (its messages validated into cubeloop's models, a third of a plan's time);
    None where `probe` must be asked.

    Most crashed threads need no hook asked: a thread between turns has nothing
    to ask about, and one whose results are in (`after_tools`) ended its run
    only if the turn was vetoed, a tool asked to end it, or the agent's
    `should_stop_after_turn` says so. An agent without that hook, over a turn
    neither vetoed nor ended by a tool, goes on: the agent is built (its
    factory decides its hooks, per thread) but nothing is loaded into it. A
    thread with unanswered calls, and anything unusual, is left to `probe`.
    Only the transcript's last turn is read (`digest`): a factory that loads
    the thread itself reads it from the store.
    """
    state = summary.resume_state
    if state not in (State.MID_TOOL, State.ANSWERED, State.AFTER_TOOLS):
        return Probed()
    if state is not State.AFTER_TOOLS and not summary.pending_tool_calls:
        return Probed()
    entries = digest.last_turn
    if state is not State.AFTER_TOOLS or not entries or digest.unreadable:
        return None
    try:
        turn = _last_turn([e.message for e in entries if e.message is not None])
        if turn is None:
            return Probed()  # `run_ended`: no open turn with results, nothing ended
        calls, results = turn
        if all(_not_run(r) for r in results):
            return None
        if terminated is not None and terminated(_Calls(calls)):
            return None
    except Exception:  # noqa: BLE001 - `probe` says how it fails
        return None
    last = entries[-1].message or {}
    run_id = last["run_id"] if "run_id" in last else entries[-1].run_id  # as `probe` loads it
    if run_id is not None and not isinstance(run_id, str):
        return None
    try:
        agent = await build_agent(
            loaded.factory,
            ReadOnlyCheckpointer(store),
            summary.thread_id,
            loaded.reference,
            run_id=run_id,
        )
    except Exception:  # noqa: BLE001 - `probe` says how it fails
        return None
    return Probed() if agent.should_stop_after_turn is None else None


def _last_turn(
    messages: list[dict[str, Any]],
) -> tuple[list[ToolCall], list[dict[str, Any]]] | None:
    """`continuation.last_turn` over stored messages: the last assistant message's calls
    and the results after it, when it has calls, results follow, and nothing else does."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m.get("role") != "assistant":
            continue
        content = m.get("content")
        calls = [
            ToolCall.model_validate(b)
            for b in (content if isinstance(content, list) else ())
            if isinstance(b, dict) and b.get("type") == "tool_call"
        ]
        after = messages[i + 1 :]
        results = [r for r in after if r.get("role") == "tool_result"]
        if not calls or not results or len(results) != len(after):
            return None
        return calls, results
    return None


def _not_run(result: dict[str, Any]) -> bool:
    details = result.get("details")
    return isinstance(details, dict) and isinstance(details.get(DETAILS_KEY), dict)


@dataclass(frozen=True)
class _Calls:
    """An assistant message as `Terminated` reads one: its content blocks."""

    content: list[ToolCall]


async def _ask_policy(
    agent: Agent, state: State, run_id: str | None, messages: list[Message]
) -> dict[str, CallPolicy]:
    assistant, pending, answered = unanswered(messages)
    if assistant is None:
        return {}
    if state is State.MID_TOOL and answered == 0:
        decision = await turn_decision(agent, messages)
        if decision is not None and not decision.runs_calls:
            return {
                c.id: CallPolicy("skip", decision.reason, turn=decision.decision) for c in pending
            }
    context = agent_context(agent, messages, run_id)
    return {c.id: await _ask_about(agent, assistant, c, context) for c in pending}


def _newest_result(transcript: Transcript | None, run_id: str) -> float | None:
    """When the run's newest tool result was saved (as `runs.answer_times` reads it, from
    the transcript in hand rather than a second read of the table)."""
    times = [
        e.created_at
        for e in (transcript.entries if transcript is not None else ())
        if e.run_id == run_id
        and e.created_at is not None
        and e.message is not None
        and e.message.get("role") == "tool_result"
    ]
    return max(times, default=None)


def _info(call: ToolCall) -> ToolCallInfo:
    return ToolCallInfo(call.id, call.name, call.arguments)


async def _ask_about(
    agent: Agent, assistant: AssistantMessage, call: ToolCall, context: AgentContext
) -> CallPolicy:
    """One call through the pipeline's deciding steps, as `execute_tool_calls` takes them."""
    target = call
    if agent.resolve_tool_call is not None:
        try:
            resolved = await agent.resolve_tool_call(call, context=context, signal=None)
        except WouldWrite:
            raise
        except Exception as exc:
            return CallPolicy("skip", f"resolving it fails ({one_line(str(exc), 120)})")
        if resolved is not None:
            target = ToolCall(id=call.id, name=resolved.name, arguments=resolved.arguments)
    runs_as = None if target is call else _info(target)
    tool = next((t for t in context.tools or [] if t.name == target.name), None)
    if tool is None:
        return CallPolicy("skip", f"the agent has no tool {target.name!r}", runs_as)
    try:
        args = tool.parameters.model_validate(target.arguments)
    except ValidationError:
        return CallPolicy("skip", "its arguments do not fit the tool", runs_as)
    notes: list[str] = []
    if agent.before_tool_call is not None:
        try:
            decided = await agent.before_tool_call(
                BeforeToolCallContext(
                    assistant_message=assistant, tool_call=target, args=args, context=context
                ),
                signal=None,
            )
        except WouldAsk as asked:
            return CallPolicy("ask", f"a human must answer first: {asked}", runs_as)
        except WouldWrite:
            raise
        except Exception as exc:
            return CallPolicy("skip", f"the agent's before_tool_call fails ({exc})", runs_as)
        trace = (decided.hitl_trace or {}) if decided is not None else {}
        decision = str(trace.get("decision", ""))
        human = decision.startswith("human") or decision == "edit"
        if decided is not None and decided.block:
            who = "a human denied it" if human else "the agent's policy blocks it"
            return CallPolicy("skip", f"{who}: {decided.reason or 'blocked'}", runs_as)
        if decided is not None and decided.edited_args is not None:
            target = ToolCall(id=call.id, name=target.name, arguments=decided.edited_args)
            runs_as = _info(target)
            notes.append("runs with a human's edit" if human else "runs as the policy rewrote it")
        elif decision == "human_approve":
            notes.append("a human approved it (the stored answer is used)")
    if getattr(tool, "hitl_builtin", False):
        try:
            await tool.execute(call.id, args, signal=None)  # such a tool only asks
        except WouldAsk as asked:
            return CallPolicy("ask", f"a human must answer first: {asked}", runs_as)
        notes.append("it asks a human; the answer stored before is used")
    return CallPolicy("run", "; ".join(notes), runs_as)
