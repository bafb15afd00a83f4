"""`prune DB`: markers of settled threads and lease files nobody holds, removed."""

from __future__ import annotations

import argparse
import collections
import time
from typing import Any

from supervisor.cli.context import jobs_place, open_store
from supervisor.cli.options import EXIT_OK, add_db, add_jobs_dir, days
from supervisor.cli.output import print_json
from supervisor.text import one_line


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "prune",
        help="remove job markers of finished threads, and lease files nobody holds",
        description=(
            "Remove the job markers whose thread is finished or stopped in this database "
            "and that are older than --older-than: no resume will consult them again. "
            "Markers naming no thread, or a thread this database does not hold (a shared "
            "JOB_DIR), are kept. Lease files nobody holds are removed too."
        ),
    )
    add_db(p)
    add_jobs_dir(p)
    p.add_argument(
        "--older-than",
        type=days,
        default=7.0,
        metavar="DAYS",
        help="only markers last written this many days ago or more (default %(default)g)",
    )
    p.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    p.add_argument("--json", action="store_true", help="print a JSON array, a verdict per marker")
    p.set_defaults(run=cmd_prune)


def cmd_prune(args: argparse.Namespace) -> int:
    """Markers of settled threads, older than the cutoff, removed (see `supervisor.prune`)."""
    from supervisor import prune

    directory = jobs_place(args)
    store = open_store(args)
    try:
        states = {s.thread_id: s.state.value for s in store.threads()}
    finally:
        store.close()
    cutoff = time.time() - args.older_than * 86400.0
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
