"""`fork DB THREAD --after-run RUN`: a new thread from an old one's history, with the ledger.

The plan comes first (every tool call after the fork point, whether its
side effect happened, and whether a fork calling it again repeats it:
`supervisor.fork`); then cubeloop's own `fork` writes the new thread. The
source thread is never changed.
"""

from __future__ import annotations

import argparse
import shlex
import unicodedata
from typing import Any

from supervisor.agents import ENV_VAR, export_environment
from supervisor.cli.context import jobs_place, marker_hook, open_store, where
from supervisor.cli.options import EXIT_OK, UsageError, add_db, add_jobs_dir
from supervisor.cli.output import no_thread, print_json
from supervisor.report import fork_plan_lines
from supervisor.text import counted, one_line


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "fork",
        help="copy a thread up to a completed run into a new thread (cubeloop's fork), "
        "saying first which side effects after that run a fork would repeat",
    )
    add_db(p)
    p.add_argument("thread", metavar="THREAD", help="the thread to fork (never changed)")
    p.add_argument(
        "--after-run",
        metavar="RUN",
        help="the completed run the fork ends with (without it: the runs are listed)",
    )
    p.add_argument(
        "--as", dest="new", metavar="NEW", help="the new thread's id (default THREAD-fork)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan; fork nothing")
    p.add_argument("--json", action="store_true", help="print the plan as a JSON object")
    add_jobs_dir(p)
    p.add_argument(
        "--agent",
        metavar="MODULE:ATTR",
        help=f"agent whose module's marker hook says where markers live (default: ${ENV_VAR})",
    )
    p.set_defaults(run=cmd_fork)


def cmd_fork(args: argparse.Namespace) -> int:
    from supervisor.fork import (
        ForkRefused,
        completed_runs,
        fork_name,
        fork_thread,
        plan_from,
        read_runs,
    )
    from supervisor.plan import MarkerIndex

    place = where(args)
    jobs = jobs_place(args)
    store = open_store(args, only=[args.thread])
    try:
        if store.get(args.thread) is None:
            raise no_thread(place, args.thread)
        transcript = store.transcript(args.thread)
    finally:
        store.close()
    runs = read_runs(place, args.thread)
    if args.after_run is None:
        done = completed_runs(runs)
        listed = ", ".join(one_line(r, 40) for r in done) if done else "none"
        raise UsageError(
            f"name the run the fork ends with: --after-run RUN (completed runs of "
            f"{one_line(args.thread, 60)}, oldest first: {listed})"
        )
    if args.new is not None:
        _check_new_id(args.new)
        if _taken(args, [args.new]):  # said by a dry run too, not only by the fork
            raise UsageError(
                f"a thread {one_line(args.new, 60)!r} already exists: name the fork with --as NEW"
            )
    new = args.new or fork_name(args.thread, _taken(args, _defaults(args.thread)))
    export_environment(jobs.argument())
    index = MarkerIndex(jobs.argument(), jobs.read_markers(), marker_hook(args))
    try:
        plan = plan_from(args.thread, args.after_run, new, runs, transcript, index)
    except ForkRefused as exc:
        raise UsageError(str(exc)) from None
    if not jobs.server and not jobs.path.is_dir() and index.hook is None:
        plan.markers_note = (
            f"no job markers at {jobs.shown} (no such directory): no call is known done; "
            "pass --jobs-dir (or set JOB_DIR) where the tools keep them"
        )
    if not args.dry_run:
        try:
            fork_thread(place, plan)
        except ForkRefused as exc:
            raise UsageError(str(exc)) from None
    if args.json:
        print_json(plan.to_json(forked=not args.dry_run))
        return EXIT_OK
    for line in fork_plan_lines(plan):
        print(line)
    if args.dry_run:
        print("dry run: nothing forked")
    else:
        print(
            f"forked {one_line(new, 60)} ({counted(plan.messages, 'message')}); continue it "
            f"with: agent-supervisor prompt {shlex.quote(place.shown)} {shlex.quote(new)} TEXT"
        )
    return EXIT_OK


def _check_new_id(new: str) -> None:
    """A new thread's id: something a person can type back (no control characters, not
    blank), refused before anything is written."""
    if not new.strip() or any(unicodedata.category(ch)[0] == "C" for ch in new):
        raise UsageError(
            f"--as {one_line(new, 60)!r}: a thread id needs visible characters and no "
            "control characters"
        )


def _defaults(source: str) -> list[str]:
    """The default names in order (SOURCE-fork, -fork-2...): the first free one is used."""
    from supervisor.fork import fork_name

    candidates: list[str] = []
    for _ in range(20):
        candidates.append(fork_name(source, set(candidates)))
    return candidates


def _taken(args: argparse.Namespace, candidates: list[str]) -> set[str]:
    """Which of these ids are threads already."""
    store = where(args).open_store(busy_timeout=args.busy_timeout, only=candidates)
    try:
        return {c for c in candidates if store.get(c) is not None}
    finally:
        store.close()
