"""The resume-state rules, as pure functions over a thread's summary.

The names here are part of the CLI/JSON contract (see DESIGN.md). Nothing in
this module touches a database: the store folds rows into a `ThreadSummary`
and `classify` decides. Keeping the rules pure lets them be tested exhaustively
and shared by every storage backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class State(StrEnum):
    RUNNING = "running"
    AWAITING_INPUT = "awaiting_input"
    MID_TOOL = "mid_tool"
    AFTER_TOOLS = "after_tools"
    BETWEEN_TURNS = "between_turns"
    ABORTED = "aborted"
    ERROR = "error"
    FINISHED = "finished"
    EMPTY = "empty"
    CORRUPT = "corrupt"


#: States a crashed or stopped thread can be resumed from without a new prompt.
RESUMABLE = frozenset(
    {
        State.MID_TOOL,
        State.AFTER_TOOLS,
        State.BETWEEN_TURNS,
        State.ABORTED,
        State.ERROR,
    }
)

#: States a user should look at ("c" in the UI).
NEEDS_ATTENTION = RESUMABLE | {State.AWAITING_INPUT, State.CORRUPT}

ROLES = ("user", "assistant", "tool_result")


@dataclass(frozen=True)
class ToolCallInfo:
    """One tool call of an assistant message, as the model asked for it."""

    id: str
    name: str
    arguments: object

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass
class ThreadSummary:
    """What the rules need to know about one thread, folded row by row.

    Rows arrive in id order; `fold_*` methods keep only what the tail of the
    thread says, so a refresh can fold new rows onto an old summary and get
    the same answer as a full scan.
    """

    thread_id: str
    messages: int = 0
    last_row: int = 0
    last_activity: float | None = None
    last_role: str | None = None
    last_run_id: str | None = None
    #: Row id of the last assistant message; its JSON is read lazily.
    last_assistant_row: int | None = None
    last_stop_reason: str | None = None
    last_error: str | None = None
    last_text: str = ""
    tool_calls: tuple[ToolCallInfo, ...] = ()
    #: tool_call_ids answered since the last assistant message.
    answered: set[str] = field(default_factory=set)
    corrupt_row: int | None = None
    corrupt_reason: str | None = None
    pending_request: bool = False
    #: The newest run claimed for this thread has not been marked complete.
    run_open: bool = False
    #: Set by the runner, or by a live lease held elsewhere.
    running: bool = False

    def fold_row(
        self,
        row_id: int,
        role: str,
        activity: float | None,
        run_id: str | None,
        tool_call_id: str | None,
    ) -> None:
        """Account for one parsed message row."""
        self._touch(row_id, activity)
        self.last_role = role
        if run_id is not None:
            self.last_run_id = run_id
        if role == "assistant":
            self.last_assistant_row = row_id
            self.last_stop_reason = None
            self.last_error = None
            self.last_text = ""
            self.tool_calls = ()
            self.answered = set()
        elif role == "tool_result" and tool_call_id is not None:
            self.answered.add(tool_call_id)

    def fold_corrupt(self, row_id: int, activity: float | None, reason: str) -> None:
        """Account for a row that does not parse; the first one is reported."""
        self._touch(row_id, activity)
        if self.corrupt_row is None:
            self.corrupt_row = row_id
            self.corrupt_reason = reason

    def set_last_assistant(
        self,
        stop_reason: str | None,
        tool_calls: tuple[ToolCallInfo, ...],
        text: str,
        error: str | None,
    ) -> None:
        """Fill in the details of the last assistant message once parsed."""
        self.last_stop_reason = stop_reason
        self.tool_calls = tool_calls
        self.last_text = text
        self.last_error = error

    def _touch(self, row_id: int, activity: float | None) -> None:
        self.messages += 1
        self.last_row = row_id
        if activity is not None and (
            self.last_activity is None or activity > self.last_activity
        ):
            self.last_activity = activity

    @property
    def pending_tool_calls(self) -> tuple[ToolCallInfo, ...]:
        """Tool calls of the last assistant message that have no result yet."""
        return tuple(c for c in self.tool_calls if c.id not in self.answered)

    @property
    def state(self) -> State:
        return classify(self)


def classify(s: ThreadSummary) -> State:
    """Apply DESIGN.md's table. Order matters: the first rule that holds wins."""
    if s.corrupt_row is not None:
        return State.CORRUPT
    if s.running:
        return State.RUNNING
    if s.pending_request:
        return State.AWAITING_INPUT
    if s.messages == 0 or s.last_role is None:
        return State.EMPTY
    if s.last_role == "user":
        return State.BETWEEN_TURNS
    if s.last_role == "tool_result":
        return State.MID_TOOL if s.pending_tool_calls else State.AFTER_TOOLS
    # The last message is the assistant's.
    if s.last_stop_reason == "aborted":
        return State.ABORTED
    if s.last_stop_reason == "error":
        return State.ERROR
    if s.pending_tool_calls:
        return State.MID_TOOL
    return State.FINISHED
