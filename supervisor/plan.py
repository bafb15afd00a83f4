"""What a resume will do, before it does it: the data behind the resume preview.

For a `mid_tool` thread, each unanswered tool call is matched with its job
marker (by the default key, `jobs.job_key(name, arguments)`): a `done`
marker means the tool returns the stored result and the side effect does
not happen again; no marker, or only `started`, means the call really runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from supervisor.jobs import Marker, job_key
from supervisor.states import State, ThreadSummary, ToolCallInfo


@dataclass(frozen=True)
class PlannedCall:
    call: ToolCallInfo
    marker: Marker | None

    @property
    def will_run(self) -> bool:
        """True when resuming really executes this call's work again."""
        return self.marker is None or not self.marker.done

    @property
    def verdict(self) -> str:
        if self.marker is None:
            return "runs again (no job marker)"
        if self.marker.done:
            return "already done: result reused from its marker"
        return "runs again (marker says started, never done)"


def markers_by_key(markers: Iterable[Marker]) -> dict[str, Marker]:
    return {m.key: m for m in markers}


def plan_calls(summary: ThreadSummary, markers: dict[str, Marker]) -> list[PlannedCall]:
    """Each unanswered call of the thread with the marker that decides its fate."""
    return [
        PlannedCall(call, markers.get(job_key(call.name, call.arguments)))
        for call in summary.pending_tool_calls
    ]


def markers_for_thread(
    thread_id: str, calls: Iterable[ToolCallInfo], markers: Iterable[Marker]
) -> list[Marker]:
    """Markers that belong to a thread: written by it, or keyed by one of its calls."""
    keys = {job_key(c.name, c.arguments) for c in calls}
    return [m for m in markers if m.thread_id == thread_id or m.key in keys]


def resume_action(state: State) -> str:
    """One line saying what `r` will do for a state (help text, previews)."""
    return {
        State.MID_TOOL: "finish the unanswered tool calls, then resume",
        State.AFTER_TOOLS: "call the model with the tool results",
        State.BETWEEN_TURNS: "call the model to answer the last user message",
        State.ABORTED: "continue with a 'continue' user message",
        State.ERROR: "continue with a 'continue' user message",
    }.get(state, "nothing to resume")
