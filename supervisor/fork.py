"""Rewind: a new thread from an old one's history up to a run, with the side-effect ledger.

"Re-run from here" elsewhere reruns too much or blindly. A fork here uses
cubeloop's own `fork` (it copies the messages and runs up to a completed run
and records the parent; the source thread is never rewritten), and before it
does, `fork_plan` lists every tool call the source made *after* that run,
with what the job markers say of it:

- whether its side effect happened: a result was stored or a `done` marker
  exists ("yes"), only a `started` marker ("maybe": the process died inside
  the tool), or neither ("no");
- what a fork calling the same tool with the same arguments gets: the
  stored result (a `done` marker: every marker scheme we match keys the
  call by its tool and arguments, and the fork's calls carry new ids) or
  the side effect again (no `done` marker).

The dangerous line is "happened, runs again": a side effect the fork may
repeat. `fork_plan` reads; `fork_thread` writes the new thread.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from supervisor.location import Location
from supervisor.plan import MarkerIndex, MatchedBy, PlannedCall, Verdict
from supervisor.states import ToolCallInfo
from supervisor.store import Transcript, summarise_assistant

#: What a fork records in the new thread's `extra` (cubeloop puts it under "fork").
FORK_BY = "agent-supervisor"


class ForkRefused(Exception):
    """The fork cannot be made as asked (one line for the user)."""


@dataclass(frozen=True)
class LaterCall:
    """A tool call the source made after the fork point, and its fate in the fork."""

    run_id: str | None
    call: ToolCallInfo
    #: A result is in the source's transcript (None: none; True: an error result).
    result_error: bool | None
    #: The markers' verdict for this call, as a resume would plan it.
    planned: PlannedCall
    #: Whether the call's run was marked complete (it ended on purpose, not by a crash).
    run_completed: bool = False

    @property
    def happened(self) -> str:
        """ "yes", "maybe" or "no". Without a result or a marker a call may still have run:
        a process killed inside the tool leaves neither. Only a run that ended on purpose
        (marked complete) says an unanswered, unmarked call never ran."""
        marker = self.planned.marker
        if marker is not None and marker.done:
            return "yes"
        if self.result_error is False:
            return "yes"
        if marker is not None or self.result_error is True or not self.run_completed:
            return "maybe"  # started and never finished, failed partway, or cut off
        return "no"

    @property
    def again(self) -> str:
        """What the same call (tool and arguments) in the fork does: "reuse", "runs", "unknown"."""
        if self.planned.verdict is Verdict.REUSE:
            return "reuse"
        if self.planned.verdict is Verdict.UNKNOWN:
            return "unknown"
        return "runs"

    @property
    def repeats(self) -> bool:
        """A side effect that happened (or may have) and that the fork would do again."""
        return self.happened != "no" and self.again != "reuse"

    def words(self) -> str:
        """The verdict for people."""
        how = self.planned.matched_by
        scheme = f" ({_SCHEMES.get(how, str(how))})" if how is not None else ""
        if self.again == "reuse":
            return f"a fork calling it again gets the stored result{scheme}: no second side effect"
        if self.again == "unknown":
            return f"cannot tell what a fork calling it again does: {self.planned.reason}"
        if self.happened == "yes":
            return "a fork calling it again RUNS IT AGAIN: no done marker; the side effect repeats"
        if self.happened == "maybe":
            return (
                "may have happened (no result stored, no done marker: it was started, or its "
                "process was cut off); a fork calling it again RUNS IT AGAIN"
            )
        return "never happened; a fork calling it runs it for the first time"

    def to_json(self) -> dict[str, Any]:
        marker = self.planned.marker
        result = {None: None, True: "error", False: "ok"}[self.result_error]
        return {
            **self.call.to_json(),
            "run_id": self.run_id,
            "result": result,
            "happened": self.happened,
            "in_fork": self.again,
            "repeats": self.repeats,
            "marker": None if marker is None else str(marker.path),
            "matched_by": None if self.planned.matched_by is None else str(self.planned.matched_by),
            "reason": self.words(),
        }


_SCHEMES = {
    MatchedBy.KEY: "its done marker, keyed by tool and arguments",
    MatchedBy.CALL_ID: "its done marker records this call and its arguments",
    MatchedBy.ARGUMENTS: "its done marker records the tool and arguments",
    MatchedBy.VALUES: "a done marker named by the argument values",
    MatchedBy.HOOK: "the agent's marker hook finds its done marker from the arguments",
}


@dataclass
class ForkPlan:
    """What `fork_thread` will do, said before it does it."""

    source: str
    after_run: str
    new_thread: str
    #: Runs copied (up to and including `after_run`) and left out, in claim order.
    runs_kept: list[str] = field(default_factory=list)
    runs_after: list[str] = field(default_factory=list)
    #: Messages the fork starts with.
    messages: int = 0
    calls: list[LaterCall] = field(default_factory=list)
    #: Why the markers could not be consulted, when they could not (a missing directory).
    markers_note: str | None = None

    @property
    def repeats(self) -> list[LaterCall]:
        return [c for c in self.calls if c.repeats]

    def to_json(self, forked: bool) -> dict[str, Any]:
        return {
            "source": self.source,
            "after_run": self.after_run,
            "thread_id": self.new_thread,
            "forked": forked,
            "runs_kept": self.runs_kept,
            "runs_after": self.runs_after,
            "messages": self.messages,
            "calls": [c.to_json() for c in self.calls],
            "repeats": len(self.repeats),
            "markers_note": self.markers_note,
        }


def completed_runs(runs: list[tuple[str, int | None]]) -> list[str]:
    return [run for run, seq in runs if seq is not None]


def plan_from(
    source: str,
    after_run: str,
    new_thread: str,
    runs: list[tuple[str, int | None]],
    transcript: Transcript,
    index: MarkerIndex,
) -> ForkPlan:
    """The plan from what was read: the source's runs, its transcript, the markers.

    Which messages the fork keeps is cubeloop's rule: those of no run, and
    those of runs completed no later than `after_run`.
    """
    seqs = dict(runs)
    if after_run not in seqs:
        done = completed_runs(runs)
        named = ", ".join(done[-5:]) if done else "none"
        raise ForkRefused(
            f"thread {source!r} has no run {after_run!r} (its completed runs: {named})"
        )
    cutoff = seqs[after_run]
    if cutoff is None:
        raise ForkRefused(
            f"run {after_run!r} of {source!r} never completed: a fork starts after a completed run"
        )
    kept = {run for run, seq in runs if seq is not None and seq <= cutoff}
    plan = ForkPlan(
        source,
        after_run,
        new_thread,
        runs_kept=[run for run, _ in runs if run in kept],
        runs_after=[run for run, _ in runs if run not in kept],
    )
    later: list[tuple[str | None, ToolCallInfo]] = []
    for entry in transcript.entries:
        if entry.run_id is None or entry.run_id in kept:
            plan.messages += 1
            continue
        message = entry.message
        if isinstance(message, dict) and message.get("role") == "assistant":
            later += [(entry.run_id, call) for call in summarise_assistant(message)[1]]
    answered = _answers(transcript, kept)
    completed = {run for run, seq in runs if seq is not None}
    for n, (run, call) in enumerate(later):
        plan.calls.append(
            LaterCall(run, call, answered.get(n), index.match(call), run in completed)
        )
    return plan


def _answers(transcript: Transcript, kept: set[str]) -> dict[int, bool]:
    """For each later call (numbered in order), whether its result was an error; absent
    when it has none. A result answers the newest unanswered call of its id before it
    in its run (ids repeat across turns)."""
    found: dict[int, bool] = {}
    open_calls: dict[tuple[str | None, str], list[int]] = {}
    n = 0
    for entry in transcript.entries:
        if entry.run_id is None or entry.run_id in kept:
            continue
        message = entry.message
        if not isinstance(message, dict):
            continue
        if message.get("role") == "assistant":
            for call in summarise_assistant(message)[1]:
                open_calls.setdefault((entry.run_id, call.id), []).append(n)
                n += 1
        elif message.get("role") == "tool_result":
            waiting = open_calls.get((entry.run_id, str(message.get("tool_call_id"))))
            if waiting:
                found[waiting.pop()] = bool(message.get("is_error"))
    return found


_SUFFIX = re.compile(r"-fork(?:-(\d+))?$")


def fork_name(source: str, taken: set[str]) -> str:
    """`SOURCE-fork`, or `-fork-2`, `-fork-3`... the first free one."""
    base = _SUFFIX.sub("", source) if _SUFFIX.search(source) else source
    name = f"{base}-fork"
    n = 1
    while name in taken:
        n += 1
        name = f"{base}-fork-{n}"
    return name


async def _read_runs(where: Location, thread_id: str) -> list[tuple[str, int | None]]:
    from supervisor.runs import thread_runs

    checkpointer = where.checkpointer()
    async with checkpointer:
        return await thread_runs(checkpointer, thread_id)


def read_runs(where: Location, thread_id: str) -> list[tuple[str, int | None]]:
    """The thread's runs, by cubeloop's own connection (`runs.thread_runs`)."""
    return asyncio.run(_read_runs(where, thread_id))


async def _fork(where: Location, plan: ForkPlan) -> None:
    from cubeloop.checkpointer.exceptions import CheckpointerError, ThreadAlreadyExistsError

    checkpointer = where.checkpointer()
    async with checkpointer:
        try:
            await checkpointer.fork(
                plan.source,
                plan.new_thread,
                after_run_id=plan.after_run,
                metadata={"after_run_id": plan.after_run, "by": FORK_BY},
            )
        except ThreadAlreadyExistsError:
            raise ForkRefused(
                f"a thread {plan.new_thread!r} already exists: name the fork with --as NEW"
            ) from None
        except CheckpointerError as exc:
            raise ForkRefused(f"cubeloop refused the fork: {type(exc).__name__}: {exc}") from None


def fork_thread(where: Location, plan: ForkPlan) -> None:
    """Make the fork the plan describes (cubeloop's `fork`: one transaction)."""
    asyncio.run(_fork(where, plan))
