"""The built-in demo agent: the recipe's batch job, scripted so it runs offline.

A prompt such as "Process items A..F" makes the model call `process_item`
for two items per turn until all are done. Two prompts ask a human, through
cubeloop's checkpointed HITL channel: "Refund order 9001 (EUR 420)" calls
`refund`, which needs an approval; "Pick a size for order 9002" asks a
question with options (`ask_user`). Each call takes a second or two,
guards its side effect with a job marker, and records the side effect in a
ledger (standing in for a payment or mail service). `demo_agent` is the
default `--agent`; `anthropic_agent` runs the same tools on a real model.

Settings come from the environment because the factory signature is fixed:
`JOB_DIR` (markers and ledger), `AGENT_SUPERVISOR_MARKERS` (markers in
Postgres instead, see `supervisor.jobs.open_markers`),
`AGENT_SUPERVISOR_DEMO_TOOL_SECONDS` and
`AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND` (the tests make both fast).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import time
from pathlib import Path
from typing import Any

from cubeloop import Agent, AgentTool, AgentToolResult, TextContent
from cubeloop.hitl import CheckpointedChannel, ConfirmToolCallMiddleware, ask_user_tool
from cubeloop.providers.base import AssistantMessage, Message, ToolCall
from cubeloop.providers.faux import FauxProvider, faux_assistant_message
from pydantic import BaseModel, Field

from supervisor.dirs import data_dir
from supervisor.jobs import MARKERS_VARIABLE, JobMarkers, current_thread, job_key, open_markers

TOOL_NAME = "process_item"
REFUND_TOOL = "refund"
REFUND = re.compile(r"refund order (\S+) \(EUR (\d+)\)", re.IGNORECASE)
PICK_SIZE = re.compile(r"pick a size for order (\S+)", re.IGNORECASE)
ITEMS_PER_TURN = 2
SYSTEM_PROMPT = (
    "You run batch jobs. Call process_item once for every item the user "
    "lists, at most two per turn, then report what was processed."
)


def parse_items(text: str) -> list[str]:
    """Items named in a prompt: ranges like 'A..F' or '1..5', or a comma list."""
    match = re.search(r"items?\s+(.+)", text, re.IGNORECASE)
    if not match:
        return []
    spec = match.group(1).strip().rstrip(".")
    ranged = re.fullmatch(r"(\d+|\w)\s*\.\.\s*(\d+|\w)", spec)
    if ranged:
        lo, hi = ranged.groups()
        if lo.isdigit() and hi.isdigit():
            return [str(i) for i in range(int(lo), int(hi) + 1)]
        return [chr(c) for c in range(ord(lo), ord(hi) + 1)]
    return [part for part in re.split(r"[\s,]+(?:and\s+)?", spec) if part]


class Ledger:
    """A stand-in for an external service with idempotency keys (Stripe-like).

    The job marker saves repeating work; a crash between the side effect
    and the `done` marker is closed by the service refusing a key it has
    seen. `effects.log` gets one line per effect that really happened, and
    `attempts.log` one line per call, so tests can count both.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _append(self, name: str, line: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / name, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def apply(self, key: str, thread_id: str | None) -> bool:
        """Do the effect once per key; False if the key was already applied."""
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = f"{key}\t{thread_id or '-'}\t{time.time():.3f}"
        with open(self.directory / "ledger.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._append("attempts.log", stamp)
            effects = self.directory / "effects.log"
            seen = effects.exists() and any(
                line.split("\t", 1)[0] == key
                for line in effects.read_text(encoding="utf-8").splitlines()
            )
            if not seen:
                self._append("effects.log", stamp)
            return not seen

    def effects(self) -> list[str]:
        path = self.directory / "effects.log"
        if not path.exists():
            return []
        return [line.split("\t", 1)[0] for line in path.read_text().splitlines()]


class ItemParams(BaseModel):
    item: str = Field(description="the item to process")


def jobs_dir_from_env() -> Path:
    """The ledger's directory (and the markers', unless they are in Postgres)."""
    if os.environ.get("JOB_DIR"):
        return Path(os.environ["JOB_DIR"])
    if os.environ.get(MARKERS_VARIABLE):
        return ledger_dir_for(os.environ[MARKERS_VARIABLE])
    return Path("agent-supervisor.jobs")


def ledger_dir_for(dsn: str) -> Path:
    """Where the demo keeps its ledger when its markers are in a Postgres database."""
    import hashlib

    digest = hashlib.sha256(dsn.encode("utf-8")).hexdigest()[:16]
    return data_dir() / f"ledger-{digest}"


def demo_markers(directory: Path) -> Any:
    """Markers in Postgres when the supervisor says so, else in the directory."""
    return open_markers(None if os.environ.get(MARKERS_VARIABLE) else directory)


def tool_seconds() -> float:
    return float(os.environ.get("AGENT_SUPERVISOR_DEMO_TOOL_SECONDS", "1.5"))


def make_process_tool(
    markers: JobMarkers, ledger: Ledger, seconds: float | None = None
) -> AgentTool:
    """`process_item`, guarded by a job marker and the ledger's idempotency key."""

    async def execute(
        tool_call_id: str,
        params: ItemParams,
        *,
        signal: asyncio.Event | None = None,
        on_update: Any = None,
    ) -> AgentToolResult:
        arguments = params.model_dump()
        key = job_key(TOOL_NAME, arguments)
        marker = markers.get(key)
        if marker is not None and marker.done:
            text = (marker.result or {}).get("text") or f"Processed {params.item}."
            return AgentToolResult(content=[TextContent(text=f"{text} (already done)")])
        markers.start(key, tool=TOOL_NAME, arguments=arguments, tool_call_id=tool_call_id)
        delay = tool_seconds() if seconds is None else seconds
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if signal is not None and signal.is_set():
                return AgentToolResult(
                    content=[TextContent(text=f"Stopped before processing {params.item}.")],
                    is_error=True,
                )
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        ledger.apply(key, current_thread.get())
        text = f"Processed {params.item}."
        markers.finish(key, {"text": text})
        return AgentToolResult(content=[TextContent(text=text)], details={"item": params.item})

    return AgentTool(
        name=TOOL_NAME,
        description="Process one item. Idempotent: safe to call again.",
        parameters=ItemParams,
        execute=execute,
    )


class RefundParams(BaseModel):
    order: str = Field(description="the order to refund")
    amount_eur: int = Field(description="the amount, in euros")


def make_refund_tool(markers: JobMarkers, ledger: Ledger) -> AgentTool:
    """`refund`: a side effect a human must approve first (the middleware asks)."""

    async def execute(
        tool_call_id: str,
        params: RefundParams,
        *,
        signal: asyncio.Event | None = None,
        on_update: Any = None,
    ) -> AgentToolResult:
        arguments = params.model_dump()
        key = job_key(REFUND_TOOL, arguments)
        marker = markers.get(key)
        if marker is None or not marker.done:
            markers.start(key, tool=REFUND_TOOL, arguments=arguments, tool_call_id=tool_call_id)
            ledger.apply(key, current_thread.get())
            markers.finish(key, {"text": f"Refunded EUR {params.amount_eur}."})
        text = f"Refunded EUR {params.amount_eur} for order {params.order}."
        return AgentToolResult(content=[TextContent(text=text)])

    return AgentTool(
        name=REFUND_TOOL,
        description="Refund an order. Needs a human's approval.",
        parameters=RefundParams,
        execute=execute,
    )


def _text(message: Message) -> str:
    return "".join(getattr(b, "text", "") for b in message.content)


def plan_next(messages: list[Message]) -> AssistantMessage:
    """The scripted model: decide the next step from the conversation alone.

    Stateless, so it answers correctly after any crash and resume: items
    whose tool result succeeded are done, the rest are called next.
    """
    asked = _plan_human_step(messages)
    if asked is not None:
        return asked
    items: list[str] = []
    start = 0
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m.role == "user" and parse_items(_text(m)):
            items, start = parse_items(_text(m)), i
            break
    if not items:
        return faux_assistant_message("Nothing to process. Ask me to 'Process items A..F'.")
    done: set[str] = set()
    calls: dict[str, str] = {}
    for m in messages[start:]:
        if m.role == "assistant":
            for b in m.content:
                if isinstance(b, ToolCall):
                    calls[b.id] = str(b.arguments.get("item"))
        elif m.role == "tool_result" and not m.is_error and m.tool_call_id in calls:
            done.add(calls[m.tool_call_id])
    remaining = [item for item in items if item not in done]
    if not remaining:
        return faux_assistant_message(f"Processed {len(items)} items: {', '.join(items)}.")
    turn = sum(1 for m in messages[start:] if m.role == "assistant") + 1
    batch = remaining[:ITEMS_PER_TURN]
    blocks: list[Any] = [TextContent(text=f"Processing {' and '.join(batch)}.")]
    blocks += [
        ToolCall(id=f"call-{turn}-{item}", name=TOOL_NAME, arguments={"item": item})
        for item in batch
    ]
    return faux_assistant_message(blocks, stop_reason="tool_use")


def _plan_human_step(messages: list[Message]) -> AssistantMessage | None:
    """The refund and size prompts: one tool call, then a reply to its result."""
    prompt = next((m for m in reversed(messages) if m.role == "user"), None)
    if prompt is None:
        return None
    text = _text(prompt)
    refund, size = REFUND.search(text), PICK_SIZE.search(text)
    if refund is None and size is None:
        return None
    last = messages[-1]
    if last.role == "tool_result":
        result = _text(last)
        if size is not None and not last.is_error:
            picked = result.rsplit('"size": ', 1)[-1].split("\n")[0].strip(' "}')
            return faux_assistant_message(f"Order {size.group(1)} ships in size {picked}.")
        verb = "Done" if not last.is_error else "Not done"
        return faux_assistant_message(f"{verb}: {result}")
    if last.role != "user":
        return None
    if refund is not None:
        order, amount = refund.group(1), int(refund.group(2))
        call = ToolCall(
            id=f"call-refund-{order}",
            name=REFUND_TOOL,
            arguments={"order": order, "amount_eur": amount},
        )
        return faux_assistant_message(
            [TextContent(text=f"Refunding order {order}."), call], stop_reason="tool_use"
        )
    question = {
        "key": "size",
        "prompt": f"Which size should order {size.group(1)} ship in?",
        "options": [
            {"label": "Small", "value": "S"},
            {"label": "Medium", "value": "M"},
            {"label": "Large", "value": "L"},
            {"label": "Other", "value": "other", "allow_input": True},
        ],
    }
    call = ToolCall(
        id=f"call-ask-{size.group(1)}", name="ask_user", arguments={"questions": [question]}
    )
    return faux_assistant_message([call], stop_reason="tool_use")


class ScriptedProvider(FauxProvider):
    """A FauxProvider whose every response comes from a planner function."""

    def __init__(self, planner=plan_next, tokens_per_second: float | None = None) -> None:
        super().__init__(tokens_per_second=tokens_per_second)
        self.planner = planner

    async def stream(self, model: Any, messages: list[Message], **kwargs: Any) -> Any:
        planner = self.planner
        self.set_responses([lambda msgs, _model: planner(msgs)])
        return await super().stream(model, messages, **kwargs)


def _tokens_per_second() -> float | None:
    value = float(os.environ.get("AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND", "40"))
    return value if value > 0 else None


def demo_tools(
    jobs_dir: Path | None = None,
    *,
    markers: JobMarkers | None = None,
    ledger: Ledger | None = None,
    seconds: float | None = None,
) -> list[AgentTool]:
    directory = jobs_dir or jobs_dir_from_env()
    return [
        make_process_tool(markers or demo_markers(directory), ledger or Ledger(directory), seconds)
    ]


def build_demo_agent(
    checkpointer: Any,
    thread_id: str,
    *,
    tools: list[AgentTool] | None = None,
    planner: Any = plan_next,
    tokens_per_second: float | None = None,
    run_id: str | None = None,
) -> Agent:
    """The demo agent with its parts swappable, for tests and the demo builder.

    With a `run_id` it can ask humans: a `CheckpointedChannel` bound to that
    run gates `refund` behind an approval and backs `ask_user`. Without one
    those tools are left out, so nothing that needs approval can run unasked.
    """
    provider = ScriptedProvider(planner, tokens_per_second=tokens_per_second)
    tools = list(tools if tools is not None else demo_tools())
    human: dict[str, Any] = {}
    if run_id is not None:
        directory = jobs_dir_from_env()
        channel = CheckpointedChannel(checkpointer=checkpointer, thread_id=thread_id, run_id=run_id)
        tools += [
            make_refund_tool(demo_markers(directory), Ledger(directory)),
            ask_user_tool(channel),
        ]
        human = {
            "channel": channel,
            "middleware": [ConfirmToolCallMiddleware(channel, require_confirm=[REFUND_TOOL])],
        }
    return Agent(
        model=provider.model("demo-scripted"),
        system_prompt=SYSTEM_PROMPT,
        tools=tools,
        tool_execution="sequential",
        checkpointer=checkpointer,
        thread_id=thread_id,
        **human,
    )


def demo_agent(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Agent:
    """The default agent factory: offline, scripted, side effects guarded."""
    return build_demo_agent(
        checkpointer, thread_id, tokens_per_second=_tokens_per_second(), run_id=run_id
    )


def anthropic_agent(checkpointer: Any, thread_id: str) -> Agent:
    """The same tools on a real model; needs ANTHROPIC_API_KEY. Not used in tests."""
    from cubeloop.providers.anthropic import AnthropicProvider

    provider = AnthropicProvider(api_key=os.environ["ANTHROPIC_API_KEY"])
    model_id = os.environ.get("AGENT_SUPERVISOR_MODEL", "claude-sonnet-4-5")
    return Agent(
        model=provider.model(model_id),
        system_prompt=SYSTEM_PROMPT,
        tools=demo_tools(),
        tool_execution="sequential",
        checkpointer=checkpointer,
        thread_id=thread_id,
    )
