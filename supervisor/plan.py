"""What a resume will do, before it does it: one plan for the CLI, the preview and the markers tab.

For every unanswered tool call the plan says what happens to it and why,
because a preview that is confidently wrong is worse than none:

- `skip`: the agent's own policy or a human's decision says it does not run
  (its `after_model_response` stops or skips the turn, its `before_tool_call`
  blocks it, a human denied it);
- `ask`: a human must answer first (an approval gate, `ask_user`); the
  resume stops there and the thread waits for the answer;
- `reuse`: a `done` marker exists; the tool returns the stored result and
  its side effect does not happen again;
- `rerun`: no marker, or only `started`; the call really runs again;
- `unknown`: the supervisor cannot tell (the agent's marker hook failed, the
  marker is unreadable, several markers could be this call's, or asking the
  agent's policy failed).

The first two come from asking the agent's own hooks, as the resume will
(`supervisor.probe`); the last three from the job markers of the call that
really runs (the tool a deferred dispatch resolves to, the arguments a
human's edit gives).

Markers are matched, in order: by the agent module's marker hook when it has
one (`agent_supervisor_marker(tool_name, arguments, jobs_dir)`, see
`supervisor.agents`); by what our own markers record (the `job_key`, the
tool_call_id, or the tool and its arguments); and, for markers written by
the user's own tools, by the common scheme of a key built from the
argument values with `/` replaced by `_` (the CubeLoop recipe's).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from supervisor.digest import TranscriptDigest
from supervisor.location import Location
from supervisor.markers import Marker, job_key, read_marker
from supervisor.states import RESUMABLE, State, ThreadSummary, ToolCallInfo

#: `agent_supervisor_marker(tool_name, arguments, jobs_dir)`: the path of the
#: marker that guards this call (which may not exist yet), or None when the
#: tool keeps no marker.
MarkerHook = Callable[[str, Any, Path], "str | os.PathLike[str] | None"]


class Verdict(StrEnum):
    REUSE = "reuse"
    RERUN = "rerun"
    SKIP = "skip"
    ASK = "ask"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CallPolicy:
    """What the agent's own policy does with one unanswered call (`supervisor.probe`)."""

    #: "run", "skip" (the policy or a decision says no), "ask" (a human must answer
    #: first) or "unknown" (asking the policy failed).
    action: str
    reason: str = ""
    #: The call that really runs, when not the model's (resolved, or edited by a human).
    runs_as: ToolCallInfo | None = None
    #: The agent's decision about the whole turn, when it skips every call: "stop"
    #: (the run ends there) or "loop_to_model" (the model is asked again).
    turn: str | None = None


class MatchedBy(StrEnum):
    HOOK = "marker hook"
    KEY = "job key"
    CALL_ID = "tool_call_id in marker"
    ARGUMENTS = "tool and arguments in marker"
    VALUES = "argument values in file name"


@dataclass(frozen=True)
class PlannedCall:
    """One unanswered call, its marker (if any) and what resuming does with it."""

    call: ToolCallInfo
    verdict: Verdict
    marker: Marker | None = None
    matched_by: MatchedBy | None = None
    #: Why the verdict, in a few words, for people.
    reason: str = ""
    #: The call that really runs, when it is not the model's (see `CallPolicy`).
    runs_as: ToolCallInfo | None = None

    @property
    def will_run(self) -> bool:
        """True when the work may really happen (again)."""
        return self.verdict in (Verdict.RERUN, Verdict.UNKNOWN)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.call.to_json(),
            "verdict": str(self.verdict),
            "marker": None if self.marker is None else str(self.marker.path),
            "matched_by": None if self.matched_by is None else str(self.matched_by),
            "reason": self.reason,
            "runs_as": None if self.runs_as is None else self.runs_as.to_json(),
        }


#: What happens to a `closed` call, in the words every surface prints.
CLOSED_WHY = "no result stored: not run; the model is told it was interrupted"


@dataclass(frozen=True)
class ThreadPlan:
    """What resuming one thread does, without doing it."""

    thread_id: str
    state: State
    action: str
    calls: tuple[PlannedCall, ...] = ()
    #: Unanswered calls that are not run but closed as interrupted: those of an
    #: aborted/error turn, all of them with the `interrupt` strategy, and those
    #: of earlier assistant messages (the transcript is append-only, so they
    #: cannot be run in place; the model is told they were interrupted).
    closed: tuple[ToolCallInfo, ...] = ()
    #: Why resuming is refused, when it is.
    refused: str | None = None
    #: Whether the agent's own policy was asked (`supervisor.probe`): without it,
    #: a call the policy would block or ask about is planned by its marker alone.
    policy_checked: bool = False

    def counts(self) -> dict[str, int]:
        """How many calls get each verdict, and how many are closed as interrupted."""
        counts = {str(v): 0 for v in Verdict}
        for planned in self.calls:
            counts[str(planned.verdict)] += 1
        return {**counts, "interrupted": len(self.closed)}

    def to_json(self) -> dict[str, Any]:
        return {
            "thread_id": self.thread_id,
            "state": str(self.state),
            "action": self.action,
            "refused": self.refused,
            "policy_checked": self.policy_checked,
            "calls": [c.to_json() for c in self.calls],
            "closed": [c.to_json() for c in self.closed],
        }


ACTIONS: dict[State, str] = {
    State.MID_TOOL: "finish the unanswered tool calls, then call the model",
    State.AFTER_TOOLS: "call the model with the tool results",
    State.BETWEEN_TURNS: "call the model to answer the last user message",
    State.ABORTED: "close dangling calls, then continue with a 'continue' message",
    State.ERROR: "close dangling calls, then continue with a 'continue' message",
    State.ANSWERED: "finish the calls with the answer stored before it stopped (nobody is "
    "asked again), then call the model",
}

#: Why a state cannot be resumed, worded to follow the thread id.
REFUSALS: dict[State, str] = {
    State.FINISHED: "is finished: nothing to resume; send a prompt",
    State.STOPPED: "was stopped by the agent itself after its tool results (a tool ended "
    "the run, its turn limit, or its policy): nothing to resume; send a prompt",
    State.EMPTY: "is empty: nothing to resume; send a prompt",
    State.AWAITING_INPUT: "is awaiting a human answer: answer it",
    State.CORRUPT: "has a corrupt row",
    State.RUNNING: "is already running",
    State.HELD: "is held by the watcher after repeated failures: release it",
}


@dataclass
class MarkerIndex:
    """The markers of a jobs directory, ready to be matched to tool calls."""

    #: A directory, or a Postgres URL (markers in our table; hooks need a directory).
    jobs_dir: Path | str
    markers: list[Marker]
    hook: MarkerHook | None = None
    _by_key: dict[str, Marker] = field(init=False, repr=False)
    _by_call: dict[str, Marker] = field(init=False, repr=False)
    _foreign: list[Marker] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ours = [m for m in self.markers if not m.foreign]
        self._by_key = {m.key: m for m in ours}
        self._by_call = {m.tool_call_id: m for m in ours if m.tool_call_id}
        self._foreign = [m for m in self.markers if m.foreign]

    def match(self, call: ToolCallInfo, runs_as: ToolCallInfo | None = None) -> PlannedCall:
        """The marker deciding this call's fate, and how it was found.

        `runs_as`: the call the agent really runs, when that is not the one the
        model made (a deferred tool's dispatcher resolved, a human's edit): its
        tool and arguments decide. A marker is this call's only if it records the
        same tool and arguments: call ids are not unique (several providers
        number them `call_0`, `call_1` in every turn), so an id alone matches
        nothing.
        """
        target = runs_as or deferred_target(call) or call
        if self.hook is not None:
            return self._by_hook(call, target)
        marker = self._by_key.get(job_key(target.name, target.arguments))
        if marker is not None:
            return _verdict(call, marker, MatchedBy.KEY)
        marker = self._by_call.get(call.id)
        if marker is not None and _same_call(marker, target):
            return _verdict(call, marker, MatchedBy.CALL_ID)
        for m in self._by_key.values():
            if _same_call(m, target):
                return _verdict(call, m, MatchedBy.ARGUMENTS)
        candidates = by_argument_values(target, self._foreign)
        if len(candidates) == 1:
            return _verdict(call, candidates[0], MatchedBy.VALUES)
        if candidates:
            names = ", ".join(m.path.name for m in candidates[:3])
            return PlannedCall(
                call,
                Verdict.UNKNOWN,
                reason=f"{len(candidates)} markers could be this call's ({names}); "
                "an agent marker hook would say which",
            )
        return PlannedCall(call, Verdict.RERUN, reason=self._none_found)

    @functools.cached_property
    def _none_found(self) -> str:
        """Why no marker was found: none matched, or the jobs directory is not there (a
        typo in `--jobs-dir`, a stale `$JOB_DIR`: the plan must say where it looked)."""
        if isinstance(self.jobs_dir, str) and "://" in self.jobs_dir:
            return "no job marker found"
        if not Path(self.jobs_dir).exists():
            return f"no job marker found: {self.jobs_dir} does not exist"
        return "no job marker found"

    def _by_hook(self, call: ToolCallInfo, target: ToolCallInfo) -> PlannedCall:
        try:
            where = self.hook(target.name, target.arguments, self.jobs_dir)  # type: ignore[misc]
        except Exception as exc:
            return PlannedCall(
                call,
                Verdict.UNKNOWN,
                reason=f"the marker hook raised {type(exc).__name__}: {exc}",
            )
        if where is None:
            return PlannedCall(
                call, Verdict.RERUN, matched_by=MatchedBy.HOOK, reason="the tool keeps no marker"
            )
        if not isinstance(where, str | os.PathLike):
            return PlannedCall(
                call,
                Verdict.UNKNOWN,
                reason=f"the marker hook returned a {type(where).__name__}, not a path",
            )
        path = Path(where)
        if not path.is_absolute():
            jobs = Location.parse(self.jobs_dir)
            if jobs.server:
                return PlannedCall(
                    call,
                    Verdict.UNKNOWN,
                    reason="the marker hook gave a relative path and "
                    "the job markers are in Postgres, not a directory",
                )
            path = jobs.path / path
        try:
            exists = path.is_file()
        except OSError as exc:
            return PlannedCall(call, Verdict.UNKNOWN, reason=f"cannot read {path}: {exc}")
        if not exists:
            return PlannedCall(
                call, Verdict.RERUN, matched_by=MatchedBy.HOOK, reason=f"no marker at {path}"
            )
        return _verdict(call, read_marker(path), MatchedBy.HOOK)

    def markers_of(
        self, thread_id: str, calls: Iterable[ToolCallInfo]
    ) -> list[tuple[Marker, MatchedBy | None]]:
        """Markers that belong to a thread: written by it, or matched to one of its calls."""
        found: dict[Path, tuple[Marker, MatchedBy | None]] = {}
        for m in self.markers:
            if m.thread_id is not None and m.thread_id == thread_id:
                found[m.path] = (m, None)
        for call in calls:
            planned = self.match(call)
            if planned.marker is not None:
                found.setdefault(planned.marker.path, (planned.marker, planned.matched_by))
        return sorted(found.values(), key=lambda pair: _marker_time(pair[0]))


def may_be_live(summary: ThreadSummary, now: float, window: float) -> bool:
    """An open run written to less than `window` seconds ago may be live in another process.

    Resuming it would run its tools twice, so the CLI wants `--force` and
    the app asks first. An aborted thread was stopped on purpose: not live.
    """
    if window <= 0 or summary.last_activity is None or summary.last_run_id is None:
        return False
    state = summary.state
    recent = now - summary.last_activity < window
    return recent and state in RESUMABLE and state is not State.ABORTED


def markers_in_doubt(
    jobs: Location, named_by: str | None, strategy: str, states: Iterable[State]
) -> str | None:
    """Why a resume of these states cannot trust its markers, or None: calls that may have
    run would be run again (`mid_tool`, the `rerun` strategy) and the jobs place someone
    named (`--jobs-dir`, `$JOB_DIR`) is missing (`Location.missing_markers`). The one
    rule the CLI's refusal and the runner's note share."""
    if named_by is None or strategy != "rerun" or State.MID_TOOL not in set(states):
        return None
    return jobs.missing_markers(named_by)


def live_reason(summary: ThreadSummary, now: float, window: float) -> str | None:
    """Why a thread may be live elsewhere, in the words every surface uses; None if not."""
    if not may_be_live(summary, now, window):
        return None
    return (
        "may still be running in another process (its run is open and was written to "
        f"less than {window:g}s ago)"
    )


#: The name cubeloop's deferred tool groups give the call that dispatches to a real tool.
DEFERRED_DISPATCH = "deferred_tool_call"


def deferred_target(call: ToolCallInfo) -> ToolCallInfo | None:
    """The real tool and arguments inside a deferred-group dispatch call, or None."""
    if call.name != DEFERRED_DISPATCH or not isinstance(call.arguments, dict):
        return None
    name, arguments = call.arguments.get("tool_name"), call.arguments.get("arguments")
    if not isinstance(name, str) or not isinstance(arguments, dict | None):
        return None
    return ToolCallInfo(call.id, name, arguments or {})


def _same_call(marker: Marker, call: ToolCallInfo) -> bool:
    """The marker records this tool and these arguments (as canonical JSON: key order aside)."""
    return marker.tool == call.name and job_key(call.name, marker.arguments) == job_key(
        call.name, call.arguments
    )


def _marker_time(m: Marker) -> tuple[float, str]:
    return (m.started_at or m.done_at or 0.0, m.key)


def _verdict(call: ToolCallInfo, marker: Marker, how: MatchedBy) -> PlannedCall:
    if marker.done:
        return PlannedCall(call, Verdict.REUSE, marker, how, "done marker: its result is reused")
    if marker.status == "started":
        return PlannedCall(call, Verdict.RERUN, marker, how, "marker says started, never done")
    return PlannedCall(
        call, Verdict.UNKNOWN, marker, how, "marker is unreadable: the tool decides what to do"
    )


def _scalars(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _scalars(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _scalars(v)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, str | int | float):
        yield str(value)


def by_argument_values(call: ToolCallInfo, markers: Iterable[Marker]) -> list[Marker]:
    """Foreign markers whose file name holds every argument value, `/` as `_`.

    That is how hand-written markers are usually named (the recipe's
    `f"transcode:{src}->{dst}".replace('/', '_')`). When several fit, those
    whose name starts with the tool's name (or its first word) are preferred.
    """
    values = [v.replace("/", "_") for v in _scalars(call.arguments) if v.strip()]
    if not values:
        return []
    fits = [m for m in markers if all(v in m.path.stem for v in values)]
    if len(fits) > 1:
        first_word = call.name.split("_", 1)[0]
        named = [m for m in fits if m.path.stem.startswith((call.name, first_word))]
        if named:
            fits = named
    return fits


def dangling_calls(messages: Iterable[dict[str, Any] | None]) -> list[ToolCallInfo]:
    """Calls of earlier assistant messages that got no result before the next one.

    The calls of the last assistant message are the plan's `calls`; these
    are the ones before it, which a provider like Anthropic rejects (a
    `tool_use` must be answered in the very next message): the resume answers
    them as interrupted in what the model sees (`tool_calls.answer_dangling_calls`).
    """
    return TranscriptDigest.of_messages(messages).dangling


def terminated_by_markers(assistant: Any, index: MarkerIndex) -> bool:
    """Whether every call of a turn has a done job marker that recorded `terminate`: the
    tools asked to end the run (cubeloop ends it when all of a turn's results do)."""
    calls = [
        ToolCallInfo(b.id, b.name, b.arguments)
        for b in assistant.content
        if getattr(b, "type", None) == "tool_call"
    ]
    if not calls:
        return False
    for call in calls:
        marker = index.match(call).marker
        result = marker.result if marker is not None and marker.done else None
        if not (isinstance(result, dict) and result.get("terminate") is True):
            return False
    return True


def interrupted_abort(messages: Iterable[dict[str, Any] | None]) -> str | None:
    """The reason of an abort cubeloop's `Agent.abort_pending` began and a crash cut short.

    It answers the gated turn's calls with `aborted` results, then closes the
    conversation with an aborted assistant message. Killed between the two,
    the thread ends with those results: carrying it on would call the model in
    a conversation its host closed. The resume writes the closing message
    instead (`Runner`), as `abort_pending` would have.
    """
    tail: list[dict[str, Any]] = []
    for m in messages:
        if not isinstance(m, dict):
            continue
        if m.get("role") == "assistant":
            tail = []
        elif m.get("role") == "tool_result":
            tail.append(m)
        else:
            tail = []
    reasons = []
    for result in tail:
        details = result.get("details")
        hitl = details.get("hitl") if isinstance(details, dict) else None
        if not isinstance(hitl, dict) or hitl.get("decision") != "aborted":
            return None
        reasons.append(str(hitl.get("reason") or "aborted"))
    return reasons[0] if reasons else None


def refusal(summary: ThreadSummary) -> str | None:
    """Why a thread in this state cannot be resumed, in the words every surface uses."""
    state = summary.resume_state
    if state in ACTIONS:
        return None
    if state is State.CORRUPT and summary.corrupt_reason:
        return f"has a corrupt row ({summary.corrupt_reason})"
    if state is State.CHILD:
        return (
            f"is driven by its parent thread {summary.parent!r}: resume the parent, "
            "whose tool carries this thread on"
        )
    return REFUSALS.get(state, str(state))


def plan_call(
    call: ToolCallInfo, index: MarkerIndex, policy: CallPolicy | None = None
) -> PlannedCall:
    """One unanswered call's fate: the agent's policy first, then the markers of what runs."""
    if policy is None or policy.action == "run":
        runs_as = policy.runs_as if policy is not None else None
        planned = index.match(call, runs_as)
        if policy is not None and policy.reason:
            reason = f"{policy.reason}; {planned.reason}" if planned.reason else policy.reason
            planned = replace(planned, reason=reason)
        return replace(planned, runs_as=runs_as)
    verdict = {"skip": Verdict.SKIP, "ask": Verdict.ASK}.get(policy.action, Verdict.UNKNOWN)
    return PlannedCall(call, verdict, reason=policy.reason, runs_as=policy.runs_as)


def plan_thread(
    summary: ThreadSummary,
    index: MarkerIndex,
    *,
    messages: Iterable[dict[str, Any] | None] = (),
    digest: TranscriptDigest | None = None,
    strategy: str = "rerun",
    policies: dict[str, CallPolicy] | None = None,
    ended: str | None = None,
) -> ThreadPlan:
    """The whole plan for one thread, from its summary, markers and transcript (its
    `messages`, or their `digest` when the caller folded them already).

    `policies`: what the agent's policy does with each pending call, by call
    id (`supervisor.probe`); None when it was not asked. `ended`: why the
    run had ended at its last results (the probe found it).
    """
    state = summary.resume_state
    reason = refusal(summary)
    if reason is not None:
        return ThreadPlan(summary.thread_id, state, "nothing", refused=reason)
    if digest is None:
        digest = TranscriptDigest.of_messages(messages)
    action = ACTIONS[state]
    pending = summary.pending_tool_calls
    calls: tuple[PlannedCall, ...] = ()
    closed = list(digest.dangling)
    # An abort's results follow the newest assistant message: the last turn holds them.
    if state is State.MID_TOOL and strategy == "interrupt":
        action = "record the unanswered calls as interrupted, then call the model"
        closed += pending
    elif (
        state is State.AFTER_TOOLS
        and (why := interrupted_abort(digest.last_messages())) is not None
    ):
        action = f"finish the abort a host began ({why}): the thread ends aborted; nothing runs"
    elif state is State.AFTER_TOOLS and ended is not None:
        action = f"mark the run complete: it had ended ({ended}); nothing runs"
    elif state in (State.MID_TOOL, State.ANSWERED):
        known = policies or {}
        calls = tuple(plan_call(c, index, known.get(c.id)) for c in pending)
        turns = {p.turn for p in known.values()}
        if turns == {"stop"}:
            action = "close the calls as not run and end the run, as the agent's policy says"
        elif turns == {"loop_to_model"}:
            action = "leave the calls unrun and call the model again, as the agent's policy says"
        elif any(c.verdict is Verdict.ASK for c in calls):
            action = "ask a human first; then finish the calls and call the model"
    else:  # aborted / error (and the states with no calls): calls never run are closed
        closed += pending
        if not closed and state in (State.ABORTED, State.ERROR):  # say only what happens
            action = "continue with a 'continue' message"
    return ThreadPlan(
        summary.thread_id,
        state,
        action,
        calls=calls,
        closed=tuple(closed),
        policy_checked=policies is not None,
    )
