"""`resume DB THREAD… | --all`: crashed threads brought back, or their plan (`--dry-run`)."""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor.cli.context import (
    agent_and_jobs,
    agent_named,
    jobs_named_by,
    open_store,
    run_agents,
    runner_config,
    where,
)
from supervisor.cli.options import (
    EXIT_OK,
    EXIT_UNFINISHED,
    LIVE_WINDOW,
    UsageError,
    add_db,
    add_run_options,
    positive_int,
)
from supervisor.cli.output import print_json
from supervisor.sqlite.files import connect_readonly
from supervisor.states import RESUMABLE, State, ThreadSummary
from supervisor.store import Store
from supervisor.text import counted, one_line

if TYPE_CHECKING:
    from supervisor.runner import RunnerConfig


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "resume",
        help="resume crashed threads and print their events",
        description=(
            "Resume threads by state; exit 0 only if every one ends finished "
            "(or waiting on a new human-in-the-loop request)."
        ),
    )
    add_db(p)
    p.add_argument("threads", metavar="THREAD", nargs="*", help="thread ids")
    p.add_argument("--all", action="store_true", help="every thread in a resumable state")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print what a resume would do with each thread and tool call; run nothing",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="with --dry-run: the plans as a JSON array; else JSON lines: each event, then "
        "each thread's outcome",
    )
    add_run_options(p)
    p.add_argument(
        "--processes",
        type=positive_int,
        default=1,
        metavar="N",
        help="spread the threads over N worker processes, sharing --max-concurrent "
        "(one process runs every agent on one core; default %(default)s)",
    )
    p.set_defaults(run=cmd_resume)


def cmd_resume(args: argparse.Namespace) -> int:
    if not args.threads and not args.all:
        raise UsageError("name at least one THREAD, or pass --all", "agent-supervisor resume")
    if args.json and not args.dry_run and args.processes > 1:
        raise UsageError("--json goes with one process", "agent-supervisor resume")
    store = open_store(args, only=None if args.all else args.threads)
    try:
        known = {s.thread_id: s for s in store.threads()}
        wanted = list(dict.fromkeys(args.threads))
        unknown = [t for t in wanted if t not in known]
        if unknown:
            raise UsageError(f"{where(args).shown}: no thread {one_line(unknown[0], 60)!r}")
        if args.all:
            wanted += [t for t, s in known.items() if s.state in RESUMABLE and t not in wanted]
        missing = _missing_markers(args, [known[t] for t in wanted])
        if missing is not None and args.dry_run:
            print(f"agent-supervisor: warning: {one_line(missing, 300)}", file=sys.stderr)
        elif missing is not None:
            _refuse_reruns_without_markers(args, store, wanted, missing)
        if args.dry_run:
            return _dry_run(args, store, wanted)
    finally:
        store.close()
    config = runner_config(args)  # a broken agent is exit 2 before anything else
    todo = []
    refused = False
    now = time.time()
    say = sys.stderr if args.json else sys.stdout  # stdout holds JSON lines only
    for thread_id in wanted:
        summary = known[thread_id]
        if summary.state in (State.FINISHED, State.STOPPED):
            line = f"{one_line(thread_id, 40)}: already {summary.state}, nothing to resume"
            print(line, file=say)
            continue
        reason = _refusal(summary, now, args)
        if reason is not None:  # refused before anything opens the database for writing
            print(f"refused: {one_line(thread_id, 60)} {one_line(reason, 200)}", file=sys.stderr)
            if args.json:  # every named thread gets its outcome line
                from supervisor.headless import JsonLines

                JsonLines(sys.stdout).refused(thread_id, summary.state, reason)
            refused = True
            continue
        todo.append(thread_id)
    if not todo:
        if args.all and not wanted:
            print("no thread needs resuming", file=say)
        return EXIT_UNFINISHED if refused else EXIT_OK
    if args.processes > 1 and len(todo) > 1:
        status = _run_sharded(args, config, todo)
        return max(status, EXIT_UNFINISHED if refused else EXIT_OK)
    starts = [_resumer(thread_id, args.force) for thread_id in todo]
    ok = run_agents(config, starts, probe=todo[0], prefix=len(wanted) > 1, as_json=args.json)
    return EXIT_OK if ok and not refused else EXIT_UNFINISHED


def _run_sharded(args: argparse.Namespace, config: RunnerConfig, todo: list[str]) -> int:
    """`resume --processes N`: the threads dealt to worker processes (`supervisor.shards`)."""
    from supervisor.shards import run_sharded, shards_for

    if not where(args).server and _journal_mode(where(args).path, args.busy_timeout) != "wal":
        print(
            f"note: {args.db} uses a rollback journal, so worker processes wait on each other's "
            "writes; in WAL mode they do not (once, with no agent running: "
            f"sqlite3 {args.db} 'PRAGMA journal_mode=WAL')",
            file=sys.stderr,
        )
    return run_sharded(shards_for(config, todo, args.processes, args.force))


def _refusal(summary: ThreadSummary, now: float, args: argparse.Namespace) -> str | None:
    """Why the runner would refuse this thread, known from the read-only listing."""
    from supervisor.plan import refusal

    return refusal(summary) or _live(summary, now, args)


def _dry_run(args: argparse.Namespace, store: Store, wanted: list[str]) -> int:
    """The plan for each thread, from the read-only store: nothing runs, nothing is written.

    The agent's own policy is asked about each unanswered call, as the resume
    will ask it (`supervisor.probe`), over a checkpointer that cannot write.
    """
    from supervisor.plans import (
        dry_run,
        dry_run_json,
        dry_run_lines,
        marker_index,
        unserved_by_the_demo,
        waits,
    )

    agent, jobs_dir = agent_and_jobs(args)
    summaries = [s for t in wanted if (s := store.get(t)) is not None]
    plans = dry_run(
        store,
        summaries,
        marker_index(jobs_dir, agent.marker_hook),
        strategy=args.strategy,
        agent=agent,
    )
    plans = unserved_by_the_demo(plans, agent_named(args), agent.reference)
    # What the resume itself would refuse for now: a thread written to moments ago may
    # still be running in another process (the plan says what --force would do).
    live = {} if args.force else waits(summaries, time.time(), LIVE_WINDOW)
    if args.json:
        print_json(dry_run_json(plans, live))
        return EXIT_OK
    if not plans:
        print("no thread needs resuming")
    for line in dry_run_lines(plans, live):
        print(line)
    return EXIT_OK


def _missing_markers(args: argparse.Namespace, summaries: list[ThreadSummary]) -> str | None:
    """Why the markers cannot be trusted, where calls that may have run would be resumed
    with their place named and missing (`Location.missing_markers`); else None."""
    from supervisor.plan import markers_in_doubt

    jobs = where(args).jobs(args.jobs_dir)
    states = (s.state for s in summaries)
    return markers_in_doubt(jobs, jobs_named_by(args), args.strategy, states)


def _refuse_reruns_without_markers(
    args: argparse.Namespace, store: Store, wanted: list[str], missing: str
) -> None:
    """Exit 2 before a resume that would run a call again for want of its marker's place.

    Planned as the dry run plans (the agent's own policy asked): a call a human
    must answer first, or the policy skips, runs nothing here, and a crash
    before any tool ran (no directory yet) resumes as usual.
    """
    from supervisor.plan import Verdict
    from supervisor.plans import dry_run, marker_index

    agent, jobs_dir = agent_and_jobs(args)
    summaries = [s for t in wanted if (s := store.get(t)) is not None]
    crashed = [s for s in summaries if s.state is State.MID_TOOL]
    plans = dry_run(
        store, crashed, marker_index(jobs_dir, agent.marker_hook), strategy="rerun", agent=agent
    )
    again = [c.call for p in plans for c in p.calls if c.verdict is Verdict.RERUN]
    if again:
        names = ", ".join(one_line(c.name, 40) for c in again[:3])
        raise UsageError(
            f"{missing}: not resumed ({counted(len(again), 'call')} would run again: {names}); "
            "name the directory the tools keep their markers in, or make it to resume anyway"
        )


def _live(summary: ThreadSummary, now: float, args: argparse.Namespace) -> str | None:
    """Why the resume would refuse a thread that may still be running, unless --force."""
    from supervisor.plans import waits

    return None if args.force else waits([summary], now, LIVE_WINDOW)[summary.thread_id]


def _journal_mode(path: Path, busy_timeout: float) -> str:
    """The SQLite file's journal mode, read without writing."""
    conn = connect_readonly(path, busy_timeout)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
    except sqlite3.Error:
        return "unknown"
    finally:
        conn.close()


def _resumer(thread_id: str, force: bool):
    return lambda runner: runner.resume(thread_id, force=force)
