"""More small agents, each built from one cubeloop feature, that can crash on cue.

Same conventions as `agents.py` (factories take `(checkpointer, thread_id,
run_id=None)`, scripted models decide from the conversation alone, every side
effect is written by its tool to the ledger, `$CRASH_KILL` names the kill
points), plus a few points of their own:

- `summary:N`: inside the N-th call of a compaction summariser's model (in
  this process), after the call was recorded in `summaries.log`;
- `tool:flaky:failing`: inside `flaky`'s failing first attempt, after the
  attempt was recorded in `attempts.log`;
- `stream:N`: in the middle of streaming the N-th assistant reply (its first
  `message_update`), before any of it is saved;
- `tool:slow:before`/`tool:slow:after`, as for any guarded tool.

Hosts that drive an agent in ways `child.py` does not (fork, steer, cancel,
abort a pending request) are in `more_child.py`.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from cubeloop import Agent, AgentTool, AgentToolResult, TextContent, ToolCall
from cubeloop.providers.base import ThinkingContent
from pydantic import BaseModel

from supervisor.jobs import job_key, open_markers
from tests.crashes.agents import (
    Item,
    Money,
    Target,
    Task,
    _agent,
    call,
    calls_made,
    effects,
    guarded,
    kill_here,
    kill_points,
    ledger_dir,
    record,
    reply,
    results,
    scripted,
    text_of,
)

# -- a model that streams, token by token ---------------------------------------------------


def streamed(script: Any, model_id: str = "streamed", tokens_per_second: float = 4000.0) -> Any:
    """Like `agents.scripted`, but each reply is streamed in fixed-size chunks, with a delay."""
    from cubeloop.providers.faux import FauxProvider

    class Streamed(FauxProvider):
        async def stream(self, model: Any, messages: list[Any], **kwargs: Any) -> Any:
            self.set_responses([lambda msgs, _m, system, _t: script(msgs, system)])
            return await super().stream(model, messages, **kwargs)

    provider = Streamed(tokens_per_second=tokens_per_second, token_size_min=2, token_size_max=2)
    return provider.model(model_id)


class StreamKiller:
    """`stream:N`: die at the first streamed delta of the N-th assistant reply."""

    def __init__(self) -> None:
        self.points = kill_points()
        self.replies = 0
        self.armed = False

    def __call__(self, event: Any, _signal: Any = None) -> None:
        if event.type == "message_start" and getattr(event.message, "role", None) == "assistant":
            self.replies += 1
            self.armed = f"stream:{self.replies}" in self.points
        elif event.type == "message_update" and self.armed:
            os.kill(os.getpid(), signal.SIGKILL)


# -- steps: one item per turn, from the newest 'items ...' prompt (and steering) ---------------


def steps_script(messages: list[Any], _system: str) -> Any:
    """'items A B': process one item per turn, then reply.

    Only the newest 'items' prompt counts (a thread with several runs, or a
    fork of one), and every later user message 'also process X' adds X (a
    steering message). An item counts as done once its call has a result.
    """
    start = max(
        i for i, m in enumerate(messages) if m.role == "user" and text_of(m).startswith("items ")
    )
    after = messages[start:]
    items = text_of(after[0]).split()[1:]
    steered = [
        text_of(m).removeprefix("also process ").strip()
        for m in after[1:]
        if m.role == "user" and text_of(m).startswith("also process ")
    ]
    wanted = items + steered
    done = results(after)
    made = {c.arguments.get("item") for c in calls_made(after) if c.id in done}
    left = [i for i in wanted if i not in made]
    if left:
        return reply(call("process", f"call-{left[0]}", item=left[0]))
    return reply("Processed " + " ".join(wanted))


def steps(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """`process` one item per turn (for fork and steering)."""
    return _agent(scripted(steps_script), checkpointer, thread_id, [guarded("process", Item)])


# -- compaction: a history long enough that cubeloop summarises it ------------------------------


class Batch(BaseModel):
    item: str
    #: The items after this one, space separated: the model reads what is left from
    #: the newest result, which compaction always keeps.
    rest: str


#: Each result is long, so the history passes the compaction threshold in a few turns.
PADDING = " ".join(["lorem ipsum dolor sit amet"] * 20)
SUMMARY_MARK = "[Conversation summary"


def batch_text(arguments: dict[str, Any]) -> str:
    return f"processed {arguments['item']}; left: {arguments['rest']}\n{PADDING}"


def compact_script(messages: list[Any], _system: str) -> Any:
    """'items A B C ...': one `process` per turn; the next item comes from the newest result."""
    last = messages[-1]
    summarised = any(m.role == "user" and text_of(m).startswith(SUMMARY_MARK) for m in messages)
    if last.role == "tool_result":
        head = text_of(last).split("\n", 1)[0]
        left = head.split("left:", 1)[1].split() if "left:" in head else []
        if not left:
            return reply("All processed" + ("; summary seen" if summarised else "; no summary"))
    elif last.role == "user" and text_of(last).startswith("items "):
        left = text_of(last).split()[1:]
    else:
        return reply("?")
    return reply(call("process", f"call-{left[0]}", item=left[0], rest=" ".join(left[1:])))


def summariser() -> Any:
    """The summariser's model: records each call, dies on `summary:N`, then summarises."""
    from cubeloop.providers.faux import FauxProvider, faux_assistant_message

    class Summariser(FauxProvider):
        async def stream(self, model: Any, messages: list[Any], **kwargs: Any) -> Any:
            n = self.call_count + 1
            record("summarise", {"pid": os.getpid(), "n": n}, log="summaries.log")
            kill_here(f"summary:{n}")
            processed = text_of(messages[-1]).count("processed ")
            summary = f"## Goal\nprocess the items ({processed} results summarised)"
            self.set_responses([faux_assistant_message(summary)])
            return await super().stream(model, messages, **kwargs)

    return Summariser().model("summariser")


def compacting(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """cubeloop's CompactionMiddleware with a low threshold: older turns get summarised."""
    from cubeloop.middleware.compaction import CompactionMiddleware

    middleware = CompactionMiddleware(
        summary_model=summariser(),
        max_tokens_before_compact=1500,
        keep_tail_tokens=300,
        min_compact_messages=2,
    )
    return _agent(
        scripted(compact_script),
        checkpointer,
        thread_id,
        [guarded("process", Batch, text=batch_text)],
        middleware=[middleware],
    )


# -- an ephemeral sub-agent (SubagentMiddleware) --------------------------------------------------


def worker_script(messages: list[Any], _system: str) -> Any:
    """The sub-agent: draft the task (a side effect), then reply with the draft."""
    done = results(messages)
    if "call-draft" in done:
        return reply(text_of(done["call-draft"]))
    record("worker_run", {"task": text_of(messages[-1])}, log="workers.log")
    return reply(call("draft", "call-draft", task=text_of(messages[-1])))


WORKER = {"subagent_type": "worker"}


def delegating_script(messages: list[Any], _system: str) -> Any:
    """'delegate TASK': a `subagent` drafts it; then `publish` the draft; then reply."""
    done = results(messages)
    if "call-publish" in done:
        return reply("Published: " + text_of(done["call-publish"]))
    if "call-sub" in done:
        draft = done["call-sub"]
        if draft.is_error:
            return reply("The sub-agent failed: " + text_of(draft))
        return reply(call("publish", "call-publish", target=text_of(draft)))
    task = text_of(messages[-1]).split(" ", 1)[1]
    arguments = {"name": "w1", "role": "writer", "task": task, "prompt": task}
    return reply(ToolCall(id="call-sub", name="subagent", arguments=arguments | WORKER))


def delegating(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """cubeloop's SubagentMiddleware: a `worker` sub-agent (no thread of its own) drafts."""
    from cubeloop.middleware.subagents import SubagentMiddleware, SubagentSpec

    worker = SubagentSpec(
        name="worker",
        description="drafts a text",
        system_prompt="You draft.",
        model=scripted(worker_script, "worker"),
        tools=[guarded("draft", Task, text=lambda a: f"draft of {a['task']}")],
    )
    middleware = SubagentMiddleware(
        subagents={"worker": worker}, default_model=scripted(worker_script, "worker")
    )
    return _agent(
        scripted(delegating_script),
        checkpointer,
        thread_id,
        [guarded("publish", Target)],
        middleware=[middleware],
    )


# -- thinking blocks, streamed replies, a tool that fails once -------------------------------------


def attempts(target: str) -> int:
    """How many times `flaky` already failed for this target (from its own ledger)."""
    return effects(ledger_dir(), "attempts.log")[f'flaky_attempt:{{"target":"{target}"}}']


def flaky_tool() -> AgentTool:
    """`flaky(target)`: its first attempt for a target fails (is_error), later ones do the
    effect once (a guarded tool)."""
    inner = guarded("flaky", Target, text=lambda a: f"flaky worked on {a['target']}")

    async def execute(
        call_id: str, args: Target, *, signal: Any = None, on_update: Any = None
    ) -> AgentToolResult:
        if attempts(args.target) == 0:
            record("flaky_attempt", {"target": args.target}, log="attempts.log")
            kill_here("tool:flaky:failing")
            return AgentToolResult(
                content=[TextContent(text=f"flaky failed on {args.target}: try again")],
                is_error=True,
            )
        return await inner.execute(call_id, args, signal=signal, on_update=on_update)

    return AgentTool(name="flaky", description="fails once", parameters=Target, execute=execute)


def think_script(messages: list[Any], _system: str) -> Any:
    """'fix X': think, call flaky(X) until it works, then process(X), then reply.

    Every reply starts with a thinking block and some text, streamed.
    """
    target = text_of(next(m for m in messages if m.role == "user")).split()[1]
    done = results(messages)
    turn = sum(m.role == "assistant" for m in messages) + 1
    thought = ThinkingContent(thinking=f"Turn {turn}: what is left to do for {target}? " * 3)
    tries = [c for c in calls_made(messages) if c.name == "flaky"]
    worked = [c for c in tries if c.id in done and not done[c.id].is_error]
    if not worked:
        n = len(tries) + 1
        return reply(
            thought,
            f"Trying flaky on {target}, attempt {n}.",
            call("flaky", f"call-flaky-{n}", target=target),
        )
    if "call-process" not in done:
        return reply(thought, "Now processing.", call("process", "call-process", item=target))
    failed = sum(done[c.id].is_error for c in tries if c.id in done)
    return reply(thought, f"Fixed {target} after {failed} failed attempt(s).")


def thinker(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    agent = _agent(
        streamed(think_script),
        checkpointer,
        thread_id,
        [flaky_tool(), guarded("process", Item)],
    )
    agent.subscribe(StreamKiller())
    return agent


# -- an approval gate whose model copes with a 'continue' prompt -------------------------------------


def gated_script(messages: list[Any], _system: str) -> Any:
    """'refund ORDER AMOUNT': one gated refund; any other prompt: say what became of it."""
    last = messages[-1]
    if last.role == "tool_result":
        return reply(("Not done: " if last.is_error else "Done: ") + text_of(last))
    text = text_of(last)
    if last.role == "user" and text.startswith("refund "):
        order, amount = text.split()[1:3]
        return reply(call("refund", "call-refund", order=order, amount_eur=int(amount)))
    closed = [text_of(m) for m in messages if m.role == "tool_result"]
    return reply("Nothing left to do; the refund said: " + " | ".join(closed))


def gated(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """`refund` behind cubeloop's ConfirmToolCallMiddleware over a CheckpointedChannel."""
    from cubeloop.hitl import CheckpointedChannel, ConfirmToolCallMiddleware

    channel = CheckpointedChannel(checkpointer=checkpointer, thread_id=thread_id, run_id=run_id)
    return _agent(
        scripted(gated_script),
        checkpointer,
        thread_id,
        [guarded("refund", Money)],
        channel=channel,
        middleware=[ConfirmToolCallMiddleware(channel, require_confirm=["refund"])],
    )


# -- a slow tool, in a batch, for cancellation -------------------------------------------------------

SLOW_SECONDS = 5.0


def slow_tool() -> AgentTool:
    """`slow(item)`: a guarded effect that takes a while (its marker is started first)."""

    async def execute(
        call_id: str, args: Item, *, signal: Any = None, on_update: Any = None
    ) -> AgentToolResult:
        arguments = args.model_dump()
        markers = open_markers()
        key = job_key("slow", arguments)
        marker = markers.get(key)
        if marker is None or not marker.done:
            markers.start(key, tool="slow", arguments=arguments, tool_call_id=call_id)
            kill_here("tool:slow:before", arguments)
            await asyncio.sleep(SLOW_SECONDS)
            record("slow", arguments)
            markers.finish(key, {"text": f"slow done: {args.item}"})
            kill_here("tool:slow:after", arguments)
        return AgentToolResult(content=[TextContent(text=f"slow done: {args.item}")])

    return AgentTool(name="slow", description="takes a while", parameters=Item, execute=execute)


CANCELLED = "[Tool execution cancelled by user]"


def cancel_script(messages: list[Any], _system: str) -> Any:
    """'batch A B': process(A) and slow(B) in one turn ('slow-first A B': slow(B) first);
    then say how each call ended."""
    done = results(messages)
    if done:
        ends = [
            f"{r.tool_name}={'cancelled' if text_of(r) == CANCELLED else 'ok'}"
            for r in done.values()
        ]
        return reply("batch: " + ", ".join(sorted(ends)))
    how, first, second = text_of(messages[-1]).split()[:3]
    calls = [
        call("process", f"call-{first}", item=first),
        call("slow", f"call-{second}", item=second),
    ]
    return reply(*(reversed(calls) if how == "slow-first" else calls))


def cancellable(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """A parallel batch of a quick and a slow tool (the host cancels its task mid-batch)."""
    return _agent(
        scripted(cancel_script),
        checkpointer,
        thread_id,
        [guarded("process", Item), slow_tool()],
        tool_execution="parallel",
    )


def cancellable_sequential(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """The same batch, one call after the other: the second never starts."""
    return _agent(
        scripted(cancel_script),
        checkpointer,
        thread_id,
        [guarded("process", Item), slow_tool()],
        tool_execution="sequential",
    )


__all__ = [
    "cancellable",
    "cancellable_sequential",
    "compacting",
    "delegating",
    "gated",
    "steps",
    "thinker",
]


# -- rewind: a fork after a run, and what its later calls did ----------------------------------


def shop_script(messages: list[Any], _system: str) -> Any:
    """'order X': charge X (guarded by a job marker), then mail X (no marker), then a reply.

    Each turn's call is numbered `call_0`, as several providers do: ids repeat."""
    last_user = max(i for i, m in enumerate(messages) if m.role == "user")
    order = text_of(messages[last_user]).split()[1]
    answered = sum(1 for m in messages[last_user:] if m.role == "tool_result")
    if answered == 0:
        return reply(f"Charging {order}.", call("charge", "call_0", order=order, amount_eur=5))
    if answered == 1:
        return reply(call("mail", "call_0", target=order))
    return reply(f"Ordered {order}.")


def _mail_tool() -> AgentTool:
    """A side effect with no job marker: every call really happens."""

    async def execute(
        tool_call_id: str, args: Target, *, signal: Any = None, on_update: Any = None
    ) -> AgentToolResult:
        arguments = args.model_dump()
        kill_here("tool:mail:before", arguments)
        record("mail", arguments)
        return AgentToolResult(content=[TextContent(text=f"mailed {arguments['target']}")])

    return AgentTool(
        name="mail", description="mail (no marker)", parameters=Target, execute=execute
    )


def shop(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """`charge` (guarded) and `mail` (unguarded), one order per prompt: a thread to fork."""
    return _agent(
        scripted(shop_script), checkpointer, thread_id, [guarded("charge", Money), _mail_tool()]
    )
