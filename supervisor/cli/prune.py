"""`prune DB`: old threads removed (`--finished`, `--state`), or only the markers of
settled threads and lease files nobody holds."""

from __future__ import annotations

import argparse
import collections
import time
from typing import Any

from supervisor.cli.context import jobs_place, open_store, where
from supervisor.cli.options import (
    EXIT_OK,
    EXIT_UNFINISHED,
    UsageError,
    add_db,
    add_jobs_dir,
    days_or_age,
    state_list,
)
from supervisor.cli.output import agreed, print_json
from supervisor.text import counted, one_line


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "prune",
        help="remove old threads (--finished, --state), or the job markers of finished "
        "threads and lease files nobody holds",
        description=(
            "With --finished or --state: remove the threads in those states last written "
            "more than --older-than ago from every cubeloop table, with their job markers "
            "and the watcher's records, in batches. Threads a supervisor holds, whose newest "
            "run is open, that a fork names as its source, or that are written to meanwhile "
            "are kept. It asks first on a terminal; without one it needs --yes. "
            "Without them: remove the job markers whose thread is finished or stopped and "
            "that are older than --older-than (markers naming no thread, or a thread this "
            "database does not hold, are kept), and lease files nobody holds."
        ),
    )
    add_db(p)
    add_jobs_dir(p)
    p.add_argument(
        "--finished",
        action="store_true",
        help="remove finished and stopped threads (as --state finished,stopped)",
    )
    p.add_argument(
        "--state",
        type=state_list,
        metavar="STATE[,STATE]",
        help="remove threads in these states",
    )
    p.add_argument(
        "--older-than",
        type=days_or_age,
        default=None,
        metavar="AGE",
        help="only what was last written this long ago or more: 30d, 12h, or a number of "
        "days (default 7 for markers; required to remove threads)",
    )
    p.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    p.add_argument("--yes", action="store_true", help="do not ask; remove the threads")
    p.add_argument("--json", action="store_true", help="print JSON: a verdict per marker or thread")
    p.set_defaults(run=cmd_prune)


def cmd_prune(args: argparse.Namespace) -> int:
    """Old threads removed, or markers of settled threads older than the cutoff (see
    `supervisor.retention` and `supervisor.prune`)."""
    if args.finished or args.state:
        return _prune_threads(args)
    if args.yes:
        raise UsageError("--yes is for removing threads: give --finished or --state")
    if args.older_than is None:
        args.older_than = 7 * 86400.0
    return _prune_markers(args)


def _prune_threads(args: argparse.Namespace) -> int:
    import asyncio

    from supervisor import retention
    from supervisor.prune import remove

    if args.older_than is None:
        raise UsageError("removing threads needs --older-than (30d, 12h, or a number of days)")
    states = set(retention.FINISHED) if args.finished else set()
    states |= {s.value for s in args.state or ()}
    place = where(args)
    jobs = jobs_place(args)
    store = open_store(args)
    try:
        chosen = retention.choose(store.threads(), states, time.time() - args.older_than)
    finally:
        store.close()
    going = [c for c in chosen if c.remove]
    messages = sum(c.messages for c in going)
    if (
        not args.dry_run
        and going
        and not args.yes
        and not agreed(
            f"removing {counted(len(going), 'thread')} writes to {place.shown}; "
            "pass --yes to agree (or --dry-run to see them)",
            f"Remove {counted(len(going), 'thread')} ({counted(messages, 'message')}) from "
            f"{place.shown}, with their job markers? They cannot be brought back.",
        )
    ):
        return EXIT_UNFINISHED
    done = retention.Pruned()
    if not args.dry_run and going:
        remover = place.thread_remover(args.busy_timeout)
        done = asyncio.run(retention.remove_in_batches(remover, place.leases(), chosen))
        ledger = place.attempts()
        try:
            retention.forget(done, jobs.read_markers(), lambda m: remove(jobs, m), ledger)
        finally:
            ledger.close()
    removed = set(done.removed)
    if args.json:
        print_json(
            {
                "dry_run": args.dry_run,
                "threads": [
                    c.to_json(None if args.dry_run else c.thread_id in removed) for c in chosen
                ],
                "removed_threads": len(done.removed),
                "removed_messages": done.messages,
                "removed_markers": done.markers,
                "removed_records": done.records,
                "skipped": done.skipped,
            }
        )
        return EXIT_OK
    for c in going:
        verb = "removed" if c.thread_id in removed else "kept"
        verb = "would remove" if args.dry_run else verb
        why = done.skipped.get(c.thread_id, f"{c.state}, {counted(c.messages, 'message')}")
        print(f"{verb:<13} {one_line(c.thread_id, 40)}  ({one_line(why, 80)})")
    kept = collections.Counter(c.why for c in chosen if not c.remove)
    kept.update(done.skipped.values())
    said = ", ".join(f"{n} {why}" for why, n in sorted(kept.items()))
    if args.dry_run:
        head = f"would remove {counted(len(going), 'thread')} ({counted(messages, 'message')})"
    else:
        head = (
            f"removed {counted(len(done.removed), 'thread')} "
            f"({counted(done.messages, 'message')}), {counted(done.markers, 'job marker')}, "
            f"{counted(done.records, 'watcher record')}"
        )
    print(f"{head} from {place.shown}; kept {sum(kept.values())}{f' ({said})' if said else ''}")
    if done.removed and not place.server:
        from supervisor.sqlite.retention import free_bytes

        print(
            f"{free_bytes(place.path) / 1e6:,.1f} MB inside the file are free now; it keeps its "
            f"size until 'sqlite3 {place.shown} VACUUM' (with no agent running) gives them back"
        )
    return EXIT_OK


def _prune_markers(args: argparse.Namespace) -> int:
    from supervisor import prune

    directory = jobs_place(args)
    store = open_store(args)
    try:
        states = {s.thread_id: s.state.value for s in store.threads()}
    finally:
        store.close()
    cutoff = time.time() - args.older_than
    verdicts = prune.judge(directory.read_markers(), states, cutoff=cutoff)
    done = {
        id(v): (None if args.dry_run else prune.remove(directory, v.marker))
        for v in verdicts
        if v.remove
    }
    leases = 0 if args.dry_run else prune.prune_leases(args.db)
    if args.json:
        out = [prune.as_json(v, done.get(id(v))) for v in verdicts]
        print_json(out)
        return EXIT_OK
    going = [v for v in verdicts if v.remove]
    for v in going:
        verb = "would remove" if args.dry_run else ("removed" if done[id(v)] else "kept (changed)")
        print(f"{verb:<14} {one_line(v.marker.key, 60)} thread {one_line(v.marker.thread_id, 30)}")
    removed = sum(1 for v in going if done[id(v)])
    why = collections.Counter(v.why for v in verdicts if not v.remove)
    if not args.dry_run and removed < len(going):
        why["changed since read"] += len(going) - removed
    kept = ", ".join(f"{n} {reason}" for reason, n in sorted(why.items()))
    what = f"would remove {len(going)}" if args.dry_run else f"removed {removed}"
    print(
        f"{what} marker(s) of finished threads in {directory.shown}; "
        f"kept {sum(why.values())}{f' ({kept})' if kept else ''}"
    )
    if leases:
        print(f"removed {leases} lease file(s) nobody held")
    return EXIT_OK
