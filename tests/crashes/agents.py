"""Small agents, each built from one of cubeloop's own features, that can crash on cue.

Every factory takes `(checkpointer, thread_id, run_id=None)`, as the
supervisor calls it. Each model is scripted (`Scripted`, a FauxProvider whose
every reply is decided from the conversation alone, so it answers the same
after any crash), and each side effect is written by the tool itself to
`effects.log` in `$CRASH_LEDGER` (default `$JOB_DIR`), one line per time it
really happened: nothing is merged, so a double shows.

`$CRASH_KILL` names the points at which the process SIGKILLs itself, comma
separated: `tool:NAME:before` (inside the tool, its marker started, before
the effect), `tool:NAME:after` (effect done and marker finished, before the
result is returned), either followed by `:VALUE` to die only in the call with
that argument value, and `EVENT:N` for the N-th agent event of a kind
(`message_end:assistant`, `message_end:tool_result`, `message_end:user`,
`hitl_request`, `hitl_answer`, `turn_end`). Events are counted after cubeloop
has saved what they carry. The factory installs the killer, so a resume by
the supervisor can be crashed the same way.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cubeloop import Agent, AgentTool, AgentToolResult, TextContent, ToolCall
from pydantic import BaseModel

from supervisor.jobs import current_thread, job_key, open_markers

LEDGER_VAR = "CRASH_LEDGER"
KILL_VAR = "CRASH_KILL"


# -- the ledger and the kill points -----------------------------------------------------


def ledger_dir() -> Path:
    return Path(os.environ.get(LEDGER_VAR) or os.environ.get("JOB_DIR") or ".")


def record(name: str, arguments: Any, log: str = "effects.log") -> None:
    """One line per side effect that really happened (fsynced: a SIGKILL keeps it)."""
    directory = ledger_dir()
    directory.mkdir(parents=True, exist_ok=True)
    line = f"{name}:{json.dumps(arguments, sort_keys=True, separators=(',', ':'))}"
    with open(directory / log, "a", encoding="utf-8") as f:
        f.write(f"{line}\t{os.getpid()}\t{current_thread.get() or '-'}\n")
        f.flush()
        os.fsync(f.fileno())


def effects(directory: Path, log: str = "effects.log") -> Counter[str]:
    """How many times each effect happened."""
    path = directory / log
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return Counter(line.split("\t", 1)[0] for line in lines)


def kill_points() -> set[str]:
    return {p.strip() for p in os.environ.get(KILL_VAR, "").split(",") if p.strip()}


def kill_here(point: str, arguments: dict[str, Any] | None = None) -> None:
    """Die here if `point` is armed, or `point:VALUE` for one of the call's argument values."""
    points = kill_points()
    values = [str(v) for v in (arguments or {}).values()]
    if point in points or any(f"{point}:{v}" in points for v in values):
        os.kill(os.getpid(), signal.SIGKILL)


def arm_checkpointer(checkpointer: Any) -> None:
    """Kill points `db:METHOD:N`: die just before the N-th call of a checkpointer method
    (between two writes cubeloop makes in a row, such as a result and the run's end)."""
    points = [p.split(":") for p in kill_points() if p.startswith("db:")]
    if not points or getattr(checkpointer, "_crash_armed", False):
        return
    checkpointer._crash_armed = True
    for _, method, n in points:
        original = getattr(checkpointer, method)
        seen = {"calls": 0}

        async def wrapped(
            *args: Any,
            _original: Any = original,
            _n: int = int(n),
            _seen: dict = seen,
            **kwargs: Any,
        ) -> Any:
            _seen["calls"] += 1
            if _seen["calls"] == _n:
                os.kill(os.getpid(), signal.SIGKILL)
            return await _original(*args, **kwargs)

        setattr(checkpointer, method, wrapped)


#: Events of every agent of this process, for `proc:KIND:N` kill points.
PROCESS_SEEN: Counter[str] = Counter()


class Killer:
    """An agent listener that SIGKILLs the process at the N-th event of a kind: of this
    agent (`KIND:N`), or of every agent the process built (`proc:KIND:N`)."""

    def __init__(self) -> None:
        self.points = kill_points()
        self.seen: Counter[str] = Counter()

    def __call__(self, event: Any, _signal: Any = None) -> None:
        if not self.points:
            return
        kind = event.type
        if kind == "message_end":
            kind = f"message_end:{event.message.role}"
        self.seen[kind] += 1
        PROCESS_SEEN[kind] += 1
        if (
            f"{kind}:{self.seen[kind]}" in self.points
            or f"proc:{kind}:{PROCESS_SEEN[kind]}" in self.points
        ):
            os.kill(os.getpid(), signal.SIGKILL)


def armed(agent: Agent) -> Agent:
    agent.subscribe(Killer())
    if agent.checkpointer is not None:
        arm_checkpointer(agent.checkpointer)
    return agent


# -- a scripted model ----------------------------------------------------------------------

Script = Callable[[list[Any], str], Any]


def scripted(script: Script, model_id: str = "scripted") -> Any:
    """A bound model whose every reply is `script(messages, system_prompt)`."""
    from cubeloop.providers.faux import FauxProvider

    class Scripted(FauxProvider):
        async def stream(self, model: Any, messages: list[Any], **kwargs: Any) -> Any:
            self.set_responses([lambda msgs, _m, system, _t: script(msgs, system)])
            return await super().stream(model, messages, **kwargs)

    return Scripted().model(model_id)


def reply(*blocks: Any) -> Any:
    """An assistant reply: text and tool calls (`call(...)`)."""
    from cubeloop.providers.faux import faux_assistant_message

    content = [TextContent(text=b) if isinstance(b, str) else b for b in blocks]
    calls = any(isinstance(b, ToolCall) for b in content)
    return faux_assistant_message(content, stop_reason="tool_use" if calls else "stop")


def call(name: str, call_id: str, **arguments: Any) -> ToolCall:
    return ToolCall(id=call_id, name=name, arguments=arguments)


def text_of(message: Any) -> str:
    return "".join(getattr(b, "text", "") for b in getattr(message, "content", []))


def results(messages: list[Any]) -> dict[str, Any]:
    """Each tool result by its call id (the last one wins)."""
    return {m.tool_call_id: m for m in messages if m.role == "tool_result"}


def calls_made(messages: list[Any]) -> list[ToolCall]:
    return [
        b for m in messages if m.role == "assistant" for b in m.content if isinstance(b, ToolCall)
    ]


# -- a tool with a real side effect, guarded by a job marker --------------------------------


def guarded(
    name: str,
    params: type[BaseModel],
    *,
    text: Callable[[dict[str, Any]], str] | None = None,
    terminate: bool | Callable[[dict[str, Any]], bool] = False,
    content: Callable[[dict[str, Any]], list[Any]] | None = None,
) -> AgentTool:
    """A tool whose effect happens once per arguments: a job marker before and after it.

    Kill points `tool:NAME:before` (marker started, no effect yet) and
    `tool:NAME:after` (effect and marker done, result not returned).
    `terminate`: the result asks to end the run (recorded in the marker too,
    as `jobs.idempotent` records it).
    """

    async def execute(
        tool_call_id: str, args: BaseModel, *, signal: Any = None, on_update: Any = None
    ) -> AgentToolResult:
        arguments = args.model_dump()
        markers = open_markers()
        key = job_key(name, arguments)
        marker = markers.get(key)
        said = text(arguments) if text else f"{name} done: {arguments}"
        ends = terminate(arguments) if callable(terminate) else terminate
        if marker is None or not marker.done:
            markers.start(key, tool=name, arguments=arguments, tool_call_id=tool_call_id)
            kill_here(f"tool:{name}:before", arguments)
            record(name, arguments)
            markers.finish(key, {"text": said, "terminate": ends})
            kill_here(f"tool:{name}:after", arguments)
        blocks = content(arguments) if content else [TextContent(text=said)]
        return AgentToolResult(content=blocks, terminate=ends)

    return AgentTool(
        name=name, description=f"{name} (a side effect)", parameters=params, execute=execute
    )


class Item(BaseModel):
    item: str


class Money(BaseModel):
    order: str
    amount_eur: int


class Target(BaseModel):
    target: str


class Task(BaseModel):
    task: str


def _agent(
    model: Any, checkpointer: Any, thread_id: str, tools: list[AgentTool], **kw: Any
) -> Agent:
    kw.setdefault("tool_execution", "sequential")
    return armed(
        Agent(
            model=model,
            system_prompt="You are a test agent.",
            tools=tools,
            checkpointer=checkpointer,
            thread_id=thread_id,
            **kw,
        )
    )


# -- human in the loop: an approval gate, and ask_user ---------------------------------------


def refund_script(messages: list[Any], _system: str) -> Any:
    """'refund ORDER AMOUNT': one gated refund call, then a reply to its result."""
    last = messages[-1]
    if last.role == "tool_result":
        return reply(("Not done: " if last.is_error else "Done: ") + text_of(last))
    order, amount = text_of(last).split()[1:3]
    return reply(
        f"Refunding {order}.", call("refund", "call-refund", order=order, amount_eur=int(amount))
    )


def approval(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """`refund` behind cubeloop's ConfirmToolCallMiddleware (approve, deny or edit)."""
    from cubeloop.hitl import CheckpointedChannel, ConfirmToolCallMiddleware

    channel = CheckpointedChannel(checkpointer=checkpointer, thread_id=thread_id, run_id=run_id)
    return _agent(
        scripted(refund_script),
        checkpointer,
        thread_id,
        [
            guarded(
                "refund", Money, text=lambda a: f"Refunded EUR {a['amount_eur']} on {a['order']}."
            )
        ],
        channel=channel,
        middleware=[ConfirmToolCallMiddleware(channel, require_confirm=["refund"])],
    )


SIZES = [
    {"label": "Small", "value": "S"},
    {"label": "Medium", "value": "M"},
    {"label": "Other", "value": "other", "allow_input": True},
]


def ask_script(messages: list[Any], _system: str) -> Any:
    """Ask for a size (ask_user), then ship in it (a side effect), then reply."""
    last = messages[-1]
    done = results(messages)
    if "call-ship" in done:
        return reply(f"Shipped: {text_of(done['call-ship'])}")
    if "call-ask" in done:
        answer = done["call-ask"]
        if answer.is_error:
            return reply("No size given.")
        size = json.loads(text_of(answer).split("\n", 1)[1])["size"]
        return reply(call("ship", "call-ship", target=f"order-9002-{size}"))
    if last.role == "user":
        question = {"key": "size", "prompt": "Which size?", "options": SIZES}
        return reply(call("ask_user", "call-ask", questions=[question]))
    return reply("?")


def asker(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """cubeloop's ask_user_tool, then a side effect that depends on the answer."""
    from cubeloop.hitl import CheckpointedChannel, ask_user_tool

    channel = CheckpointedChannel(checkpointer=checkpointer, thread_id=thread_id, run_id=run_id)
    return _agent(
        scripted(ask_script),
        checkpointer,
        thread_id,
        [ask_user_tool(channel), guarded("ship", Target)],
        channel=channel,
    )


def mail_script(messages: list[Any], _system: str) -> Any:
    """'mail X': one send_mail call; after its result, a reply."""
    last = messages[-1]
    if last.role == "tool_result":
        return reply(("Not sent: " if last.is_error else "Sent: ") + text_of(last))
    return reply(call("send_mail", "call-mail", target=text_of(last).split()[1]))


def confirmer(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """A middleware of the agent's own asks a yes/no `confirm` before every `send_mail`."""
    from cubeloop.agent.types import BeforeToolCallResult
    from cubeloop.hitl import CheckpointedChannel
    from cubeloop.middleware.base import Middleware

    channel = CheckpointedChannel(checkpointer=checkpointer, thread_id=thread_id, run_id=run_id)

    class ConfirmMail(Middleware):
        async def before_tool_call(self, ctx: Any, *, signal: Any = None) -> Any:
            prompt = f"send mail to {ctx.args.target}?"
            if await channel.confirm(prompt, tool_call_id=ctx.tool_call.id, signal=signal):
                return None
            return BeforeToolCallResult(block=True, reason="the human said no")

    return _agent(
        scripted(mail_script),
        checkpointer,
        thread_id,
        [guarded("send_mail", Target)],
        channel=channel,
        middleware=[ConfirmMail()],
    )


# -- a middleware that vetoes a call after the model replied ----------------------------------


def wire_script(messages: list[Any], _system: str) -> Any:
    """'wire AMOUNT': one wire call; after its result, a reply."""
    last = messages[-1]
    if last.role == "tool_result":
        return reply("Result: " + text_of(last))
    if last.role == "user":
        amount = int(text_of(last).split()[1])
        return reply(call("wire", "call-wire", order="w1", amount_eur=amount))
    return reply("?")


class WireLimit:
    """after_model_response: a wire over 1000 EUR stops the turn (the calls never run)."""

    async def after_model_response(self, response: Any, ctx: Any, *, signal: Any = None) -> Any:
        from cubeloop.middleware.base import TurnAction

        for b in response.content:
            if isinstance(b, ToolCall) and b.name == "wire" and b.arguments["amount_eur"] > 1000:
                record("veto", b.arguments, log="policy.log")
                return TurnAction(decision="stop")
        return None


def veto_stop(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    from cubeloop.middleware.base import Middleware

    class WireLimitMiddleware(WireLimit, Middleware):
        pass

    return _agent(
        scripted(wire_script),
        checkpointer,
        thread_id,
        [guarded("wire", Money)],
        middleware=[WireLimitMiddleware()],
    )


ARCHIVE_INSTEAD = "Deleting is not allowed here: archive it instead."


def delete_script(messages: list[Any], _system: str) -> Any:
    """'clean X': calls delete(X); told to archive, calls archive(X); then replies."""
    last = messages[-1]
    if last.role == "tool_result":
        return reply("Cleaned: " + text_of(last))
    if last.role == "user" and text_of(last) == ARCHIVE_INSTEAD:
        target = next(c.arguments["target"] for c in calls_made(messages) if c.name == "delete")
        return reply(call("archive", "call-archive", target=target))
    if last.role == "user":
        return reply(call("delete", "call-delete", target=text_of(last).split()[1]))
    return reply("?")


def veto_loop(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """after_model_response: a `delete` is skipped and the model told to archive (loop_to_model)."""
    from cubeloop import UserMessage
    from cubeloop.middleware.base import Middleware, TurnAction

    class NoDelete(Middleware):
        async def after_model_response(self, response: Any, ctx: Any, *, signal: Any = None) -> Any:
            if any(isinstance(b, ToolCall) and b.name == "delete" for b in response.content):
                message = UserMessage(content=[TextContent(text=ARCHIVE_INSTEAD)])
                return TurnAction(decision="loop_to_model", inject_messages=[message])
            return None

    return _agent(
        scripted(delete_script),
        checkpointer,
        thread_id,
        [guarded("delete", Target), guarded("archive", Target)],
        middleware=[NoDelete()],
    )


def veto_block(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """before_tool_call: cubeloop's ApprovalPolicyMiddleware denies a wire over 1000 EUR."""
    from cubeloop.hitl import ApprovalPolicyMiddleware, InMemoryChannel
    from cubeloop.hitl.policy import Approve, Deny

    def policy(ctx: Any) -> Any:
        args = ctx.args.model_dump()
        return Deny(reason="over the wire limit") if args["amount_eur"] > 1000 else Approve()

    return _agent(
        scripted(wire_script),
        checkpointer,
        thread_id,
        [guarded("wire", Money)],
        middleware=[ApprovalPolicyMiddleware(InMemoryChannel(), policy)],
    )


# -- runs that end on purpose: a terminating tool, a turn budget --------------------------------


def items_script(messages: list[Any], _system: str) -> Any:
    """'items A B C': process one item per turn, then 'finish' (terminates), then a reply."""
    prompt = next(m for m in messages if m.role == "user")
    items = text_of(prompt).split()[1:]
    done = results(messages)
    if "call-finish" in done:
        return reply("All finished.")
    made = {c.arguments.get("item") for c in calls_made(messages) if c.id in done}
    left = [i for i in items if i not in made]
    if left:
        return reply(call("process", f"call-{left[0]}", item=left[0]))
    return reply(call("finish", "call-finish", task="report"))


def terminate(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """`finish` returns AgentToolResult(terminate=True): the run ends after its result."""
    return _agent(
        scripted(items_script),
        checkpointer,
        thread_id,
        [guarded("process", Item), guarded("finish", Task, terminate=True)],
    )


def budget(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """should_stop_after_turn: at most two tool turns per thread, counted from the transcript."""

    async def two_turns(ctx: Any) -> bool:
        return len(calls_made(ctx.context.messages)) >= 2

    return _agent(
        scripted(items_script),
        checkpointer,
        thread_id,
        [guarded("process", Item), guarded("finish", Task)],
        should_stop_after_turn=two_turns,
    )


# -- provider call ids reused across turns -----------------------------------------------------


def reused_ids_script(messages: list[Any], _system: str) -> Any:
    """Like items_script, but every turn's call is `call_0`, as several providers number them."""
    prompt = next(m for m in messages if m.role == "user")
    items = text_of(prompt).split()[1:]
    turns = [m for m in messages if m.role == "assistant"]
    if len(turns) < len(items):
        return reply(call("process", "call_0", item=items[len(turns)]))
    return reply("Processed " + " ".join(items))


def reused_ids(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    return _agent(scripted(reused_ids_script), checkpointer, thread_id, [guarded("process", Item)])


# -- a tool that writes the thread's extra (cubeloop's todo list) ---------------------------------


def todo_script(messages: list[Any], system: str) -> Any:
    """'todo X': write a todo list; then process X and mark it done in one batch; then
    reply with the list the middleware shows (it appends the list as the last message)."""
    done = results(messages)
    item = text_of(next(m for m in messages if m.role == "user")).split()[1]
    if "call-todo-1" not in done:
        todos = [{"content": "ship the report", "status": "in_progress"}]
        return reply(call("write_todos", "call-todo-1", todos=todos))
    if "call-process" not in done:
        todos = [{"content": "ship the report", "status": "completed"}]
        return reply(
            call("process", "call-process", item=item),
            call("write_todos", "call-todo-2", todos=todos),
        )
    view = text_of(messages[-1])
    if not view.startswith("[Current todo list]"):
        return reply("todo list NOT seen")
    return reply("todo list seen: " + json.loads(view.split("\n", 1)[1])["todos"][0]["status"])


def todos(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """cubeloop's TodoListMiddleware: `write_todos` writes `extra` through extra_ref."""
    from cubeloop.middleware.todo import TodoListMiddleware

    holder: dict[str, Agent] = {}
    middleware = TodoListMiddleware(extra_ref=lambda: holder["agent"].state.extra)
    agent = _agent(
        scripted(todo_script),
        checkpointer,
        thread_id,
        [guarded("process", Item)],
        middleware=[middleware],
        tool_execution="parallel",
    )
    holder["agent"] = agent
    return agent


# -- an agent that drives a child agent on a thread of its own -----------------------------------


def child_script(messages: list[Any], _system: str) -> Any:
    done = results(messages)
    if "call-child" in done:
        return reply("child done: " + text_of(done["call-child"]))
    return reply(call("child_effect", "call-child", task=text_of(messages[-1])))


def parent_script(messages: list[Any], _system: str) -> Any:
    done = results(messages)
    if "call-delegate" in done:
        return reply("parent done: " + text_of(done["call-delegate"]))
    return reply(call("delegate", "call-delegate", task=text_of(messages[-1]).split(" ", 1)[1]))


def child_agent(checkpointer: Any, thread_id: str) -> Agent:
    return _agent(scripted(child_script), checkpointer, thread_id, [guarded("child_effect", Task)])


def parent(
    checkpointer: Any, thread_id: str, run_id: str | None = None, *, built: bool = True
) -> Agent:
    """`delegate` runs a child agent on the thread `<parent>/child` of the same database.

    The child is linked to the parent and driven with `supervisor.children`,
    as the supervisor's guide tells an agent author to: built first, or
    (`built=False`) given as a function of the run it goes on in.
    """
    from supervisor.children import drive_child

    async def execute(
        call_id: str, args: Task, *, signal: Any = None, on_update: Any = None
    ) -> Any:
        child_id = f"{thread_id}/child"
        how = dict(parent_thread_id=thread_id, tool_call_id=call_id)
        if built:
            driven = await drive_child(child_agent(checkpointer, child_id), args.task, **how)
        else:
            driven = await drive_child(
                lambda _run_id: child_agent(checkpointer, child_id),
                args.task,
                checkpointer=checkpointer,
                thread_id=child_id,
                **how,
            )
        last = driven.agent.state.messages[-1]
        return AgentToolResult(content=[TextContent(text=text_of(last))])

    tool = AgentTool(
        name="delegate", description="delegate to a child agent", parameters=Task, execute=execute
    )
    return _agent(scripted(parent_script), checkpointer, thread_id, [tool])


def parent_building(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """`parent`, giving `drive_child` a function that builds the child for its run."""
    return parent(checkpointer, thread_id, run_id, built=False)


# -- deferred tool groups ---------------------------------------------------------------------------


def deferred_script(messages: list[Any], _system: str) -> Any:
    done = results(messages)
    if "call-charge" in done:
        return reply("Charged: " + text_of(done["call-charge"]))
    arguments = {"order": "d1", "amount_eur": 7}
    return reply(call("deferred_tool_call", "call-charge", tool_name="charge", arguments=arguments))


def deferred(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """`charge` lives in a deferred tool group, called through `deferred_tool_call`."""
    from cubeloop.deferred import DeferredToolGroup

    async def load() -> list[AgentTool]:
        return [guarded("charge", Money)]

    group = DeferredToolGroup(
        group_id="billing",
        display_name="Billing",
        description="billing tools",
        tool_names=["charge"],
        loader=load,
    )
    return _agent(
        scripted(deferred_script), checkpointer, thread_id, [], deferred_tool_groups=[group]
    )


# -- a result with an image, through `idempotent` -----------------------------------------------------


PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def chart_script(messages: list[Any], _system: str) -> Any:
    done = results(messages)
    if "call-chart" in done:
        kinds = [b.type for b in done["call-chart"].content]
        return reply("chart blocks: " + ",".join(kinds))
    return reply(call("chart", "call-chart", target="sales"))


def images(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """A tool wrapped in `supervisor.jobs.idempotent` whose result holds an image block."""
    from cubeloop.providers.base import ImageContent

    from supervisor.jobs import idempotent

    @idempotent(lambda: open_markers(), tool_name="chart")
    async def execute(
        call_id: str, args: Target, *, signal: Any = None, on_update: Any = None
    ) -> Any:
        record("chart", args.model_dump())
        return AgentToolResult(
            content=[
                TextContent(text="the chart"),
                ImageContent(source=PIXEL, media_type="image/png"),
            ]
        )

    async def killing(call_id: str, args: Target, **kw: Any) -> Any:
        result = await execute(call_id, args, **kw)
        kill_here("tool:chart:after")
        return result

    tool = AgentTool(name="chart", description="draw a chart", parameters=Target, execute=killing)
    return _agent(scripted(chart_script), checkpointer, thread_id, [tool])


# -- a goal the agent works towards (GoalMiddleware), with a structured-output evaluator ----------------


def goal_script(messages: list[Any], _system: str) -> Any:
    done = results(messages)
    if "call-goal" in done:
        return reply("Goal work done.")
    return reply(call("process", "call-goal", item="G"))


def goal(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """cubeloop's GoalMiddleware: at the run's end its evaluator (structured output) judges the goal."""
    from cubeloop.middleware.goal import GoalMiddleware
    from cubeloop.providers.faux import FauxProvider, faux_assistant_message

    class Evaluator(FauxProvider):
        async def stream(self, model: Any, messages: list[Any], **kwargs: Any) -> Any:
            record("evaluate", {"goal": "G"}, log="evaluations.log")
            verdict = call("structured_output", "eval", achieved=True, reason="G was processed")
            self.set_responses([faux_assistant_message([verdict], stop_reason="tool_use")])
            return await super().stream(model, messages, **kwargs)

    return _agent(
        scripted(goal_script),
        checkpointer,
        thread_id,
        [guarded("process", Item)],
        middleware=[GoalMiddleware(Evaluator().model("evaluator"))],
    )


# -- a fallback model chain ------------------------------------------------------------------------------


def fallback(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """The primary model is down (every call an error); cubeloop falls back to the scripted one."""
    from cubeloop import FallbackBoundModel
    from cubeloop.errors import ProviderUnavailable
    from cubeloop.providers.faux import FauxProvider

    class Down(FauxProvider):
        async def stream(self, model: Any, messages: list[Any], **kwargs: Any) -> Any:
            record("primary", {"down": True}, log="models.log")
            raise ProviderUnavailable("primary is down", provider="down")

    chain = FallbackBoundModel(
        chain=(Down().model("primary"), scripted(items_script, "secondary")),
        max_retries_per_model=0,
    )
    return _agent(
        chain, checkpointer, thread_id, [guarded("process", Item), guarded("finish", Task)]
    )


# -- a parallel batch ---------------------------------------------------------------------------------------


def batch_script(messages: list[Any], _system: str) -> Any:
    done = results(messages)
    if done:
        return reply("batch: " + ", ".join(sorted(text_of(r) for r in done.values())))
    items = text_of(messages[-1]).split()[1:]
    return reply(*[call("process", f"call-{i}", item=i) for i in items])


def batch(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    return _agent(
        scripted(batch_script),
        checkpointer,
        thread_id,
        [guarded("process", Item)],
        tool_execution="parallel",
    )


async def _sleep(seconds: float) -> None:  # a tool that takes a while, for abort tests
    await asyncio.sleep(seconds)


# -- found by attacking the resume: runs that end on purpose, with a crash before their end ------


def stops_on_request(messages: list[Any], _system: str) -> Any:
    """items_script, but a result or message that says STOP is obeyed."""
    last = messages[-1]
    if "STOP" in text_of(last) or text_of(last).startswith("POLICY"):
        return reply("Stopping: " + text_of(last))
    return items_script(messages, _system)


def budget_run(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """should_stop_after_turn: at most two tool turns per run, counted from ctx.new_messages."""

    async def two_in_this_run(ctx: Any) -> bool:
        return len([m for m in ctx.new_messages if m.role == "tool_result"]) >= 2

    return _agent(
        scripted(items_script),
        checkpointer,
        thread_id,
        [guarded("process", Item), guarded("finish", Task)],
        should_stop_after_turn=two_in_this_run,
    )


def quota(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """`process` of item B hits a quota and ends the run (terminate=True); nothing says so."""
    ends_at_b = guarded("process", Item, terminate=lambda a: a["item"] == "B")
    return _agent(scripted(items_script), checkpointer, thread_id, [ends_at_b])


def approve_reused(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """Two gated refunds in two turns, each call named `call_0` (ids numbered per turn)."""
    from cubeloop.hitl import CheckpointedChannel, ConfirmToolCallMiddleware

    def script(messages: list[Any], _system: str) -> Any:
        turns = [m for m in messages if m.role == "assistant"]
        orders = [("o1", 10), ("o2", 20)]
        if len(turns) < len(orders):
            order, amount = orders[len(turns)]
            return reply(call("refund", "call_0", order=order, amount_eur=amount))
        return reply("refunds done")

    channel = CheckpointedChannel(checkpointer=checkpointer, thread_id=thread_id, run_id=run_id)
    return _agent(
        scripted(script),
        checkpointer,
        thread_id,
        [guarded("refund", Money)],
        channel=channel,
        middleware=[ConfirmToolCallMiddleware(channel, require_confirm=["refund"])],
    )


QUESTION = {
    "key": "size",
    "prompt": "Which size?",
    "options": [{"label": "Small", "value": "S"}, {"label": "Medium", "value": "M"}],
}


def two_asks_script(messages: list[Any], _system: str) -> Any:
    """'ship o1 o2': for each order, ask its size (the same question), then ship in it."""
    orders = text_of(next(m for m in messages if m.role == "user")).split()[1:]
    done = results(messages)
    for order in orders:
        if f"ask-{order}" not in done:
            return reply(call("ask_user", f"ask-{order}", questions=[QUESTION]))
        if f"ship-{order}" not in done:
            size = json.loads(text_of(done[f"ask-{order}"]).split("\n", 1)[1])["size"]
            return reply(call("ship", f"ship-{order}", target=f"{order}-{size}"))
    return reply("shipped")


def two_asks(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """cubeloop's ask_user asked the same question twice in one run."""
    from cubeloop.hitl import CheckpointedChannel, ask_user_tool

    channel = CheckpointedChannel(checkpointer=checkpointer, thread_id=thread_id, run_id=run_id)
    return _agent(
        scripted(two_asks_script),
        checkpointer,
        thread_id,
        [ask_user_tool(channel), guarded("ship", Target)],
        channel=channel,
    )


POLICY = "POLICY: after touching secret, stop all work."


def reminder(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """after_model_response: 'natural', and a message injected after the results."""
    from cubeloop import UserMessage
    from cubeloop.middleware.base import Middleware, TurnAction

    class Reminder(Middleware):
        async def after_model_response(self, response: Any, ctx: Any, *, signal: Any = None) -> Any:
            if any(
                isinstance(b, ToolCall) and b.arguments.get("item") == "secret"
                for b in response.content
            ):
                message = UserMessage(content=[TextContent(text=POLICY)])
                return TurnAction(decision="natural", inject_messages=[message])
            return None

    return _agent(
        scripted(stops_on_request),
        checkpointer,
        thread_id,
        [guarded("process", Item), guarded("finish", Task)],
        middleware=[Reminder()],
    )


def capped(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """A spending cap kept in `extra`: `wire` adds to it, `before_tool_call` blocks a wire
    past 1000 EUR. One sequential batch: wire 600, a note, wire 600 (the second is blocked)."""
    from cubeloop.agent.types import BeforeToolCallResult
    from cubeloop.middleware.base import Middleware

    holder: dict[str, Agent] = {}

    def spent() -> int:
        return int(holder["agent"].state.extra.get("spent", 0))

    class Cap(Middleware):
        async def before_tool_call(self, ctx: Any, *, signal: Any = None) -> Any:
            if ctx.tool_call.name == "wire" and spent() + ctx.args.amount_eur > 1000:
                return BeforeToolCallResult(block=True, reason="over the 1000 EUR cap")
            return None

    wire = guarded("wire", Money)

    async def wire_and_count(call_id: str, args: Money, **kw: Any) -> Any:
        result = await wire.execute(call_id, args, **kw)
        holder["agent"].state.extra["spent"] = spent() + args.amount_eur
        return result

    def script(messages: list[Any], _system: str) -> Any:
        if results(messages):
            return reply(f"spent {sum(1 for m in messages if m.role == 'tool_result')} results")
        return reply(
            call("wire", "call-w0", order="w0", amount_eur=600),
            call("note", "call-n1", target="n1"),
            call("wire", "call-w1", order="w1", amount_eur=600),
        )

    agent = _agent(
        scripted(script),
        checkpointer,
        thread_id,
        [
            AgentTool(name="wire", description="wire", parameters=Money, execute=wire_and_count),
            guarded("note", Target),
        ],
        middleware=[Cap()],
    )
    holder["agent"] = agent
    return agent


def capped_saving(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """`capped`, built as the docs say for a process of one's own: `extra` saved after each
    tool result (`supervisor.extra`)."""
    from supervisor.extra import save_extra_after_each_result

    agent = capped(checkpointer, thread_id, run_id)
    save_extra_after_each_result(agent)
    return agent


def steps_script(messages: list[Any], _system: str) -> Any:
    """'deploy S1 S2 ...': one deploy call per turn, then a reply."""
    prompt = next(m for m in messages if m.role == "user")
    steps = text_of(prompt).split()[1:]
    turn = sum(1 for m in messages if m.role == "assistant")
    if turn < len(steps):
        return reply(call("deploy", f"call-{turn}", target=steps[turn]))
    return reply("deployed: " + "; ".join(text_of(r) for r in results(messages).values()))


def same_confirm(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """A middleware asks the same yes/no question before every deploy, with no call id:
    cubeloop names it by its text and a counter the channel keeps (`hash.0`, `hash.1`)."""
    from cubeloop.agent.types import BeforeToolCallResult
    from cubeloop.hitl import CheckpointedChannel
    from cubeloop.middleware.base import Middleware

    channel = CheckpointedChannel(checkpointer=checkpointer, thread_id=thread_id, run_id=run_id)

    class Gate(Middleware):
        async def before_tool_call(self, ctx: Any, *, signal: Any = None) -> Any:
            if await channel.confirm("Run the next deploy step?", signal=signal):
                return None
            return BeforeToolCallResult(block=True, reason="the human said no")

    return _agent(
        scripted(steps_script),
        checkpointer,
        thread_id,
        [guarded("deploy", Target)],
        channel=channel,
        middleware=[Gate()],
    )


# -- a tool that ignores the abort signal ----------------------------------------------------


def stubborn(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """`send_mail` does its effect, then works on for a minute without looking at the
    agent's abort signal: only a cancel (after the supervisor's abort grace) stops it."""

    async def execute(
        tool_call_id: str, args: BaseModel, *, signal: Any = None, on_update: Any = None
    ) -> AgentToolResult:
        record("send_mail", args.model_dump())
        await asyncio.sleep(60)
        return AgentToolResult(content=[TextContent(text="sent")])

    tool = AgentTool(
        name="send_mail", description="mail (a side effect)", parameters=Target, execute=execute
    )
    return _agent(scripted(mail_script), checkpointer, thread_id, [tool])
