"""The tool calls of a stored transcript, as cubeloop objects: which are unanswered,
and the stand-in results that answer them.

A module of its own because it imports cubeloop (a third of a second): the
runner imports it only when an agent runs, so the app's first screen does not
wait for the agent stack.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from cubeloop import TextContent, ToolCall, ToolResultMessage
from cubeloop.providers.base import AssistantMessage, Message

INTERRUPTED_TEXT = (
    "[This tool call was interrupted: the process running it stopped before it "
    "returned. Its side effect may or may not have happened. Call it again if "
    "it is still needed.]"
)
CANCELLED_TEXT = "[Tool execution cancelled by user]"


def _text_of(message: Any) -> str:
    return "".join(getattr(b, "text", "") for b in getattr(message, "content", []))


def stand_in_result(call: ToolCall, text: str, run_id: str | None) -> ToolResultMessage:
    return ToolResultMessage(
        tool_call_id=call.id,
        tool_name=call.name,
        content=[TextContent(text=text)],
        is_error=True,
        timestamp=time.time(),
        run_id=run_id,
        id=uuid.uuid4().hex,
    )


def aborted_message(reason: str, run_id: str | None) -> AssistantMessage:
    """The message cubeloop's `abort_pending` closes a conversation with."""
    from cubeloop.providers.base import Usage

    return AssistantMessage(
        content=[TextContent(text=f"Conversation aborted: {reason}")],
        stop_reason="aborted",
        usage=Usage(),
        timestamp=time.time(),
        run_id=run_id,
        id=uuid.uuid4().hex,
    )


def answer_dangling_calls(messages: list[Message]) -> tuple[list[Message], list[ToolCall]]:
    """The messages a model is shown, with every tool call answered right after it.

    Providers like Anthropic reject a `tool_use` whose `tool_result` is not
    in the very next message. The checkpoint is append-only, so the view is
    repaired, not the storage. A call's stored result that came later in its
    turn (after a user message written while the tool ran) is moved up to
    right after the call: the tool did run, and telling the model otherwise
    would have it ask again and the side effect happen twice. A call with no
    result before the next assistant message (the recipe's own `resume()`
    leaves such transcripts) is answered as interrupted. Results that answer
    no call of their turn, or one already answered, are dropped from the
    view. Returns the repaired list and the calls answered as interrupted.
    """
    out: list[Message] = []
    closed: list[ToolCall] = []
    n = len(messages)
    for i, m in enumerate(messages):
        if isinstance(m, ToolResultMessage):
            continue  # shown at its call, or answering nothing: the API would reject it
        out.append(m)
        if not isinstance(m, AssistantMessage):
            continue
        calls = [b for b in m.content if isinstance(b, ToolCall)]
        ids = {c.id for c in calls}
        answered: set[str] = set()
        j = i + 1
        while j < n and not isinstance(messages[j], AssistantMessage):
            result = messages[j]
            if (
                isinstance(result, ToolResultMessage)
                and result.tool_call_id in ids
                and result.tool_call_id not in answered
            ):
                answered.add(result.tool_call_id)
                out.append(result)
            j += 1
        missing = [c for c in calls if c.id not in answered]
        if missing and m is not messages[-1]:  # a last, unanswered turn is the runner's
            closed += missing
            out += [stand_in_result(c, INTERRUPTED_TEXT, m.run_id) for c in missing]
    if not closed and len(out) == n and all(a is b for a, b in zip(out, messages, strict=True)):
        return messages, []
    return out, closed


def unanswered_calls(
    messages: list[Message],
) -> tuple[AssistantMessage | None, list[ToolCall]]:
    """The last assistant message and its tool calls that have no result."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, AssistantMessage):
            answered = {
                r.tool_call_id for r in messages[i + 1 :] if isinstance(r, ToolResultMessage)
            }
            calls = [b for b in m.content if isinstance(b, ToolCall) and b.id not in answered]
            return m, calls
    return None, []


def message_data(message: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"role": message.role, "text": _text_of(message)}
    if isinstance(message, AssistantMessage):
        data["stop_reason"] = message.stop_reason
        data["error"] = message.error_message
        data["tool_calls"] = [
            {"id": b.id, "name": b.name, "arguments": b.arguments}
            for b in message.content
            if isinstance(b, ToolCall)
        ]
    elif isinstance(message, ToolResultMessage):
        data["tool_call_id"] = message.tool_call_id
        data["is_error"] = message.is_error
    return data
