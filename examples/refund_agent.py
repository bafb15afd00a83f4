"""A complete agent for trying the supervisor without an API key.

Its model is cubeloop's scripted `FauxProvider`: told "refund ORDER AMOUNT" it
calls the `refund` tool once, then says it is done. The tool is the side
effect worth protecting: it appends a line to `refunds.log` in the jobs
directory, and takes `$REFUND_SECONDS` (default 5) to do it, so there is
time to kill the process in the middle. A job marker guards it
(`supervisor.jobs.idempotent`): written `started` before the work and `done`
with the result after, so a resume reuses a finished refund instead of paying
twice.

    agent-supervisor prompt shop.db order-1 "refund A-1 40" --agent examples.refund_agent:build

See the README's "Your own agent" for the whole walk-through.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from cubeloop import Agent, AgentTool, AgentToolResult, TextContent, ToolCall
from cubeloop.providers.faux import FauxProvider, faux_assistant_message
from pydantic import BaseModel

from supervisor.jobs import idempotent, open_markers


class Refund(BaseModel):
    order: str
    amount_eur: int


def jobs_dir() -> Path:
    """The supervisor exports the jobs directory as $JOB_DIR before it imports this module."""
    return Path(os.environ.get("JOB_DIR", "."))


@idempotent(open_markers, tool_name="refund")
async def refund(tool_call_id: str, params: Refund, **_: Any) -> AgentToolResult:
    await asyncio.sleep(float(os.environ.get("REFUND_SECONDS", "5")))
    with open(jobs_dir() / "refunds.log", "a", encoding="utf-8") as log:
        log.write(f"{params.order} {params.amount_eur}\n")
    return AgentToolResult(content=[TextContent(text=f"refunded {params.order}")])


REFUND_TOOL = AgentTool(
    name="refund",
    description="Refund an order (a real side effect).",
    parameters=Refund,
    execute=refund,
)


def script(messages: list[Any]) -> Any:
    """What the model says next, decided from the conversation alone (a resume agrees)."""
    last = messages[-1]
    if last.role == "tool_result":
        return faux_assistant_message([TextContent(text="Done.")], stop_reason="stop")
    words = "".join(getattr(b, "text", "") for b in last.content).split()
    if len(words) != 3 or words[0] != "refund":
        return faux_assistant_message([TextContent(text="Say: refund ORDER AMOUNT")])
    call = ToolCall(
        id="call-1", name="refund", arguments={"order": words[1], "amount_eur": int(words[2])}
    )
    return faux_assistant_message([TextContent(text="Refunding."), call], stop_reason="tool_use")


class Scripted(FauxProvider):
    """A FauxProvider whose every reply comes from `script`."""

    async def stream(self, model: Any, messages: list[Any], **kwargs: Any) -> Any:
        self.set_responses([lambda msgs, *_: script(msgs)])
        return await super().stream(model, messages, **kwargs)


def build(checkpointer: Any, thread_id: str) -> Agent:
    """The factory the supervisor calls: `--agent examples.refund_agent:build`."""
    return Agent(
        model=Scripted().model("scripted"),
        system_prompt="You refund orders.",
        tools=[REFUND_TOOL],
        checkpointer=checkpointer,
        thread_id=thread_id,
    )
