"""Plans for many threads at once: `resume --all --dry-run`, the app's `R` preview.

A plan reads its thread's transcript (and asks the agent's policy over it,
`supervisor.probe`). Read one thread at a time, a plan of every crashed thread
of a file without the thread index was a full scan of the messages table per
thread: 220 s at 5,000 threads, for a file `list` read in 0.3 s. Here what a
plan reads of each transcript, its digest (`supervisor.digest`: the calls left
dangling, the last turn), comes from one pass in the table's own order
(`Store.digests`). The few threads whose hooks must see the whole transcript
(unanswered calls, anything unusual) are read whole in a second pass of their own.

The agent's hooks are asked without loading the transcript into the agent
where they cannot change the plan (`probe.probe_without_loading`): most
crashed threads. Loading validates every message into cubeloop's models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from supervisor.location import Location
from supervisor.plan import (
    MarkerHook,
    MarkerIndex,
    ThreadPlan,
    plan_thread,
    refusal,
    terminated_by_markers,
)
from supervisor.probe import Probed, probe, probe_without_loading

if TYPE_CHECKING:
    from pathlib import Path

    from supervisor.agents import LoadedAgent
    from supervisor.digest import TranscriptDigest
    from supervisor.states import ThreadSummary
    from supervisor.store import Store


def marker_index(jobs_dir: Path | str, hook: MarkerHook | None) -> MarkerIndex:
    """The markers kept at the jobs place, ready to be matched to tool calls."""
    return MarkerIndex(jobs_dir, Location.parse(jobs_dir).read_markers(), hook)


def dry_run(
    store: Store,
    summaries: Sequence[ThreadSummary],
    index: MarkerIndex,
    *,
    strategy: str,
    agent: LoadedAgent,
) -> list[ThreadPlan]:
    """What `resume --dry-run` prints, for a command (no event loop running): nothing runs,
    nothing is written. The agent's policy is asked about the unanswered calls when
    they are to be re-run (`strategy` "rerun"), as the resume will ask it."""
    import asyncio

    # No collector pause here: each plan builds the agent, whose objects do form cycles.
    return asyncio.run(
        plan_threads(
            store,
            summaries,
            index,
            strategy=strategy,
            agent=agent if strategy == "rerun" else None,
        )
    )


async def plan_threads(
    store: Store,
    summaries: Sequence[ThreadSummary],
    index: MarkerIndex,
    *,
    strategy: str,
    agent: LoadedAgent | None,
) -> list[ThreadPlan]:
    """Each thread's plan, in the order given. `agent`: whose policy is asked about the
    unanswered calls (None: not asked, as with the `interrupt` strategy)."""
    by_id = {s.thread_id: s for s in summaries}
    readable = [s.thread_id for s in summaries if refusal(s) is None]  # the rest plan nothing
    plans: dict[str, ThreadPlan] = {}
    #: Threads whose hooks must be asked over their whole transcript (`probe`).
    asked: dict[str, TranscriptDigest] = {}

    def ends(assistant: object) -> bool:
        return terminated_by_markers(assistant, index)

    def planned(summary: ThreadSummary, digest: TranscriptDigest, probed: Probed | None) -> None:
        plans[summary.thread_id] = plan_thread(
            summary,
            index,
            digest=digest,
            strategy=strategy,
            policies=None if probed is None else probed.policies,
            ended=None if probed is None else probed.ended,
        )

    for digest in store.digests(readable):
        summary = by_id[digest.thread_id]
        probed = None
        if agent is not None:
            probed = await probe_without_loading(agent, store, summary, digest, ends)
            if probed is None:
                asked[summary.thread_id] = digest
                continue
        planned(summary, digest, probed)
    if agent is not None and asked:  # a second pass, over these threads' rows only
        for transcript in store.transcripts(asked, full=True):
            summary = by_id[transcript.thread_id]
            probed = await probe(agent, store, summary, transcript, ends)
            planned(summary, asked[summary.thread_id], probed)
    return [plans.get(s.thread_id) or plan_thread(s, index, strategy=strategy) for s in summaries]


def unserved_by_the_demo(
    plans: list[ThreadPlan], agent_named: bool, reference: str
) -> list[ThreadPlan]:
    """The plans as a resume will act: with the built-in demo agent taken for want of a
    named one, a thread whose calls name a tool it has not is refused
    (`Runner._check_agent_fits`), not planned "skip: the agent has no tool"."""
    from dataclasses import replace

    from supervisor.agents import DEFAULT_AGENT, demo_lacks_tool

    if agent_named or reference != DEFAULT_AGENT:
        return plans
    out = []
    for plan in plans:
        missing = next(
            (c.call.name for c in plan.calls if c.reason.startswith("the agent has no tool")),
            None,
        )
        if missing is None:
            out.append(plan)
        else:
            out.append(
                replace(
                    plan, action="nothing", calls=(), closed=(), refused=demo_lacks_tool(missing)
                )
            )
    return out


def waits(summaries: Sequence[ThreadSummary], now: float, window: float) -> dict[str, str | None]:
    """Per thread, why a resume now would refuse it until `--force` (it may still be
    running in another process), or None: what a dry run adds to its plans."""
    from supervisor.plan import live_reason

    out: dict[str, str | None] = {}
    for s in summaries:
        live = live_reason(s, now, window)
        out[s.thread_id] = None if live is None else f"{live}; --force resumes it anyway"
    return out


def dry_run_json(plans: Sequence[ThreadPlan], live: dict[str, str | None]) -> list[dict[str, Any]]:
    """`resume --dry-run --json`'s items (and a bundle's `plan.json`)."""
    return [{**p.to_json(), "live": live.get(p.thread_id)} for p in plans]


def dry_run_lines(plans: Sequence[ThreadPlan], live: dict[str, str | None]) -> list[str]:
    """`resume --dry-run`'s text (and a bundle's `plan.txt`): each plan, and a note where
    the resume would wait for `--force`."""
    from supervisor.report import plan_lines
    from supervisor.text import one_line

    lines: list[str] = []
    for plan in plans:
        lines += plan_lines(plan)
        if plan.refused is None and (why := live.get(plan.thread_id)) is not None:
            lines.append(f"    note: {one_line(why, 200)}")
    return lines
