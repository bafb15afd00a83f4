"""cubeloop's agent events, told as `RunnerEvent`s: in order, streaming text coalesced.

A fast model streams hundreds of deltas a second; they are gathered and
handed on at most every `coalesce_seconds` per thread. A human-in-the-loop
request ends the run durably (`Agent.detach`) rather than wait in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from supervisor.hitl import parse_request
from supervisor.run_model import Run


class EventRelay:
    """Turns one runner's agent events into its `RunnerEvent`s."""

    def __init__(
        self, emit: Callable[..., None], stopwatch: Callable[[], float], coalesce_seconds: float
    ) -> None:
        self.emit = emit
        #: Measures tool durations; tests that snapshot the screen pass a fixed one.
        self.stopwatch = stopwatch
        self.coalesce_seconds = coalesce_seconds

    def on_agent_event(self, run: Run, event: Any) -> None:
        kind = event.type
        if kind == "hitl_request":
            self._suspend(run, event)
            return
        if kind in ("hitl_answer", "agent_suspended"):
            return  # reported by the runner itself
        if kind == "message_update":
            stream = getattr(event, "stream_event", None)
            if stream is not None and stream.type == "text_delta" and stream.delta:
                self._buffer_text(run, stream.delta)
            return
        self.flush_text(run)
        tid = run.thread_id
        if kind == "message_start":
            if getattr(event.message, "role", None) == "assistant":
                self.emit(tid, "assistant_start")
        elif kind == "message_end":
            from supervisor.tool_calls import message_data

            self.emit(tid, "message_end", **message_data(event.message))
        elif kind == "tool_execution_start":
            run.tool_started[event.tool_call_id] = self.stopwatch()
            self.emit(
                tid,
                "tool_start",
                id=event.tool_call_id,
                name=event.tool_name,
                arguments=event.args,
            )
        elif kind == "tool_execution_end":
            began = run.tool_started.pop(event.tool_call_id, None)
            self.emit(
                tid,
                "tool_end",
                id=event.tool_call_id,
                name=event.tool_name,
                is_error=event.is_error,
                result=result_text(event.result),
                seconds=None if began is None else self.stopwatch() - began,
            )
        else:
            self.emit(tid, kind)

    def _suspend(self, run: Run, event: Any) -> None:
        """A human is asked: end the run durably rather than wait in memory.

        The request is already in the database (the checkpointed channel
        writes it before the event), so the thread shows `awaiting_input`
        and any supervisor can answer it later.
        """
        run.suspended = True
        request = parse_request(event.request.model_dump_json(), run.run_id)
        self.flush_text(run)
        self.emit(run.thread_id, "hitl_request", summary=request.short(200), kind=request.kind)
        if run.agent is not None:
            asyncio.get_running_loop().create_task(run.agent.detach())

    def _buffer_text(self, run: Run, delta: str) -> None:
        run.text.append(delta)
        if run.flush_handle is None:
            loop = asyncio.get_running_loop()
            run.flush_handle = loop.call_later(self.coalesce_seconds, self.flush_text, run)

    def flush_text(self, run: Run) -> None:
        if run.flush_handle is not None:
            run.flush_handle.cancel()
            run.flush_handle = None
        if run.text:
            text, run.text = "".join(run.text), []
            self.emit(run.thread_id, "text", text=text)


def result_text(result: Any) -> str:
    content = getattr(result, "content", None)
    if content is None and isinstance(result, dict):
        content = result.get("content")
    if isinstance(content, list):
        return "".join(
            str(getattr(b, "text", None) or (b.get("text", "") if isinstance(b, dict) else ""))
            for b in content
        )
    return "" if result is None else str(result)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else "no message"
