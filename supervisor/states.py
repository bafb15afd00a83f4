"""The resume-state rules, as pure functions over a thread's summary.

The names here are part of the CLI/JSON contract (docs/design.md). Nothing in
this module touches a database: the store folds rows into a `ThreadSummary`
and `classify` decides. Keeping the rules pure lets them be tested exhaustively
and shared by every storage backend.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from supervisor.hitl import PendingRequest


class State(StrEnum):
    RUNNING = "running"
    AWAITING_INPUT = "awaiting_input"
    #: A human answer is stored but the run did not go on (its process died).
    ANSWERED = "answered"
    MID_TOOL = "mid_tool"
    AFTER_TOOLS = "after_tools"
    BETWEEN_TURNS = "between_turns"
    ABORTED = "aborted"
    ERROR = "error"
    FINISHED = "finished"
    #: The agent ended its run on purpose after tool results (a tool's `terminate`,
    #: its `should_stop_after_turn`, its policy vetoing the calls): cubeloop marked
    #: the run complete. Like `finished`, a prompt goes on from here.
    STOPPED = "stopped"
    EMPTY = "empty"
    CORRUPT = "corrupt"
    #: The watcher gave up on it after `--max-attempts` failures; `release` clears it.
    HELD = "held"
    #: Driven by another thread's tool (`supervisor.children`) and stopped where it
    #: would be resumed: its parent's resume carries it on, nothing else does.
    CHILD = "child"


#: Each state in a few words (the app's help legend; README's table says more).
MEANINGS: dict[State, str] = {
    State.RUNNING: "an agent runs it now (here, or in a process holding its lease)",
    State.AWAITING_INPUT: "a human's answer is awaited: r (or answer) gives it",
    State.ANSWERED: "answered, and its process died before going on: r goes on",
    State.MID_TOOL: "tool calls without results: r runs them, markers decide reuse or rerun",
    State.AFTER_TOOLS: "every call has its result; the model was not called again",
    State.BETWEEN_TURNS: "a user message the model has not answered",
    State.ABORTED: "the run was aborted: r continues it",
    State.ERROR: "the run failed: r continues it",
    State.FINISHED: "nothing left to do: p prompts it",
    State.STOPPED: "the agent ended its run on purpose: p prompts it",
    State.EMPTY: "no messages yet",
    State.CORRUPT: "a row does not parse: refused",
    State.HELD: "the watcher gave up on it: x releases it, r resumes it by hand",
    State.CHILD: "driven by another thread's tool: resumed through its parent",
}

#: States a crashed or stopped thread can be resumed from without a new prompt.
RESUMABLE = frozenset(
    {
        State.MID_TOOL,
        State.AFTER_TOOLS,
        State.BETWEEN_TURNS,
        State.ABORTED,
        State.ERROR,
        State.ANSWERED,
    }
)

#: States a user should look at ("c" in the UI).
NEEDS_ATTENTION = RESUMABLE | {State.AWAITING_INPUT, State.CORRUPT, State.HELD}

ROLES = ("user", "assistant", "tool_result")


@dataclass(frozen=True)
class ToolCallInfo:
    """One tool call of an assistant message, as the model asked for it."""

    id: str
    name: str
    arguments: object

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


#: How much of a thread's last assistant text a summary keeps (lists show less;
#: the transcript has it all).
LAST_TEXT_CHARS = 240

#: The `answered` of a thread with none: shared, replaced by a set on the first.
NONE_ANSWERED: frozenset[str] = frozenset()


@dataclass(slots=True)
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
    #: tool_call_ids answered since the last assistant message. Slots and a shared
    #: empty default: a listing holds 100,000 of these.
    answered: set[str] | frozenset[str] = NONE_ANSWERED
    #: First row SQLite itself could not read (invalid JSON, unknown role).
    bad_row: int | None = None
    bad_reason: str | None = None
    #: The last assistant row, when SQLite accepts it but Python cannot parse
    #: it (nesting, bad UTF-8). Replaced whenever a newer assistant row arrives,
    #: so a refresh and a fresh listing agree.
    bad_tail: tuple[int, str] | None = None
    pending_request: bool = False
    #: The pending request itself (`supervisor.hitl.PendingRequest`), when read.
    request: PendingRequest | None = None
    #: An answer to the pending request is already stored.
    answer_stored: bool = False
    #: The newest run claimed for this thread has not been marked complete.
    run_open: bool = False
    #: The run of the thread's last message was marked complete. It decides a state
    #: only when that message is a tool result (`stopped`), and listings read it for
    #: those threads alone. (The newest run may be another: a prompt killed after
    #: claiming its run and before writing leaves an empty open run behind.)
    run_done: bool = False
    #: Set by the runner, or by a live lease held elsewhere.
    running: bool = False
    #: Who holds the thread's live lease (pid, host, since), when anyone does.
    holder: dict[str, Any] | None = None
    #: The watcher's record (`supervisor.attempts.Attempt`), when it tried this thread.
    attempt: Any = None
    #: The thread whose tool drives this one, when it is linked (`supervisor.children`).
    parent: str | None = None
    #: The thread this one was forked from (cubeloop's `parent_thread_id`), and the run
    #: the fork ends with when the fork recorded it (`supervisor.fork`).
    forked_from: str | None = None
    forked_after: str | None = None

    def fold_row(
        self, row_id: int, role: str, activity: float | None, detail: str | None = None
    ) -> None:
        """Account for one row; `fold_rows` is the bulk form."""
        fold_rows({self.thread_id: self}, [(row_id, self.thread_id, activity, role, detail)])

    def fold_corrupt(self, row_id: int, activity: float | None, reason: str) -> None:
        """Account for a row that does not parse; the first one is reported."""
        fold_rows({self.thread_id: self}, [(row_id, self.thread_id, activity, None, reason)])

    def set_last_assistant(
        self,
        stop_reason: str | None,
        tool_calls: tuple[ToolCallInfo, ...],
        text: str,
        error: str | None,
    ) -> None:
        """Fill in the details of the last assistant message once parsed.

        The text is kept only as far as a list shows it (`LAST_TEXT_CHARS`):
        100,000 threads' whole last answers were half a listing's memory.
        """
        self.last_stop_reason = stop_reason
        self.tool_calls = tool_calls
        self.last_text = text[:LAST_TEXT_CHARS]
        self.last_error = error

    def copy(self) -> ThreadSummary:
        """A copy that shares nothing mutable (a UI keeps it while the store folds on)."""
        # The generated __init__ takes every field in order: one call, six times
        # faster than setting them one by one (100,000 copies after a first listing).
        copy = ThreadSummary(*_get_fields(self))
        copy.answered = set(self.answered) if self.answered else NONE_ANSWERED
        return copy

    @property
    def corrupt_row(self) -> int | None:
        """The first corrupt row the listing knows of, or None."""
        return self._first_corrupt()[0]

    @property
    def corrupt_reason(self) -> str | None:
        return self._first_corrupt()[1]

    def _first_corrupt(self) -> tuple[int | None, str | None]:
        if self.bad_tail is not None and (self.bad_row is None or self.bad_tail[0] < self.bad_row):
            return self.bad_tail
        return self.bad_row, self.bad_reason

    @property
    def pending_tool_calls(self) -> tuple[ToolCallInfo, ...]:
        """Tool calls of the last assistant message that have no result yet."""
        return tuple(c for c in self.tool_calls if c.id not in self.answered)

    @property
    def state(self) -> State:
        return classify(self)

    @property
    def resume_state(self) -> State:
        """The state a resume starts from: a held thread's own (a person may still resume it)."""
        state = classify(self)
        return classify(self, held=False) if state is State.HELD else state


_FIELDS = tuple(f.name for f in fields(ThreadSummary))
_get_fields = operator.attrgetter(*_FIELDS)
#: A summary's fields as a tuple, in the order `ThreadSummary(*fields)` takes them:
#: how summaries cross a pipe (a tuple pickles several times faster than the object).
summary_fields: Callable[[ThreadSummary], tuple[Any, ...]] = _get_fields

#: One message row as a backend reads it: (row id, thread id, unix time or
#: None, role, detail). `role` is "user", "assistant" or "tool_result"
#: (detail: its tool_call_id), or None for a corrupt row (detail: why).
Row = tuple[int, str, float | None, str | None, str | None]

INVALID_JSON = "message_json is not valid JSON"


def fold_rows(threads: dict[str, ThreadSummary], rows: Iterable[Row]) -> None:
    """Fold message rows, in id order, into per-thread summaries.

    This is the listing's inner loop (200,000 rows for a large database),
    so it is one flat loop with no calls per row.
    """
    for row_id, thread_id, activity, role, detail in rows:
        s = threads.get(thread_id)
        if s is None:
            s = threads[thread_id] = ThreadSummary(thread_id)
        s.messages += 1
        s.last_row = row_id
        if activity is not None and (s.last_activity is None or activity > s.last_activity):
            s.last_activity = activity
        if role is None:
            if s.bad_row is None:
                s.bad_row = row_id
                s.bad_reason = detail or INVALID_JSON
            continue
        s.last_role = role
        if role == "assistant":
            s.last_assistant_row = row_id
            s.answered = NONE_ANSWERED
        elif role == "tool_result" and detail is not None:
            if type(s.answered) is frozenset:
                s.answered = {detail}
            else:
                s.answered.add(detail)  # type: ignore[union-attr]


def classify(s: ThreadSummary, held: bool = True) -> State:
    """Apply the resume-state table. Order matters: the first rule that holds wins.

    A thread the watcher holds is `held` while it is still in a state it
    would resume from; one that finished since (a person resumed it) is
    what it is.
    """
    if s.corrupt_row is not None:
        return State.CORRUPT
    if s.running:
        return State.RUNNING
    if s.parent is not None:  # resumed through its parent only, held or not
        state = _own_state(s)
        return State.CHILD if state in RESUMABLE else state
    if held and s.attempt is not None and s.attempt.held:
        state = _own_state(s)
        return State.HELD if state in RESUMABLE else state
    return _own_state(s)


def _own_state(s: ThreadSummary) -> State:
    """The state from the thread's own rows and request, whoever holds or drives it.

    A pending request counts only while the turn it gates still has a call
    without a result: cubeloop clears the request after saving the result, so
    a process killed between the two leaves a request whose question is
    settled (a resume clears it, as cubeloop would have).
    """
    if s.pending_request and _has_pending(s):
        return State.ANSWERED if s.answer_stored else State.AWAITING_INPUT
    if s.messages == 0 or s.last_role is None:
        return State.EMPTY
    if s.last_role == "user":
        return State.BETWEEN_TURNS
    if s.last_role == "tool_result":
        if _has_pending(s):
            return State.MID_TOOL
        # Results last and the run marked complete: it ended there on purpose.
        return State.STOPPED if s.run_done else State.AFTER_TOOLS
    # The last message is the assistant's.
    if s.last_stop_reason == "aborted":
        return State.ABORTED
    if s.last_stop_reason == "error":
        return State.ERROR
    if _has_pending(s):
        return State.MID_TOOL
    return State.FINISHED


def may_be_child(s: ThreadSummary) -> bool:
    """Whether a parent link could change this thread's state: its own state may be one a
    resume starts from. A cheap test on fields (no classification), so a listing asks
    `thread_extra` for the links of few threads: finished ones, the bulk, are left out."""
    return (
        s.pending_request
        or s.last_role != "assistant"
        or s.last_stop_reason in ("aborted", "error")
        or bool(s.tool_calls)
    )


def _has_pending(s: ThreadSummary) -> bool:
    """`pending_tool_calls` is not empty, without building it."""
    answered = s.answered
    return any(c.id not in answered for c in s.tool_calls)


# -- list order ---------------------------------------------------------------------

#: Orders the thread list can take, in the order a key cycles through them.
ORDERS = ("attention", "activity", "state", "thread", "messages", "cost")


def order_key(order: str, s: ThreadSummary, state: State | None = None) -> tuple[Any, ...]:
    """Sort key of a thread for `order`; "attention": what needs a person first, newest first.

    Every order ends on the thread id, so equal keys never reshuffle. `state`:
    the state shown, when the caller has it (a run in this process wins), so
    a whole listing classifies each thread once, not twice.
    """
    recent = -(s.last_activity or 0.0)
    if order == "attention":
        state = s.state if state is None else state
        group = 0 if state in NEEDS_ATTENTION else 1 if state is State.RUNNING else 2
        return (group, recent, s.thread_id)
    if order == "activity":
        return (recent, s.thread_id)
    if order == "state":
        return (_STATE_RANK[s.state if state is None else state], recent, s.thread_id)
    if order == "messages":
        return (-s.messages, s.thread_id)
    if order == "cost":  # the summary holds no tokens: the app's list sorts these itself
        return (0.0, 0, s.thread_id)
    return (s.thread_id,)


_STATE_RANK = {state: rank for rank, state in enumerate(State)}


#: Where a child thread names its parent, written by `supervisor.children`: the key of
#: the link in the child's `extra`, {"thread_id": ..., "tool_call_id": ...}.
PARENT_KEY = "agent_supervisor_parent"


def parent_of(extra: Any) -> str | None:
    """The parent thread named by a thread's `extra`, if it names one."""
    link = extra.get(PARENT_KEY) if isinstance(extra, dict) else None
    parent = link.get("thread_id") if isinstance(link, dict) else None
    return parent if isinstance(parent, str) and parent else None
