"""`jobs DB`: the job markers, all or those of one thread."""

from __future__ import annotations

import argparse
from typing import Any

from supervisor.agents import ENV_VAR, export_environment
from supervisor.cli.context import jobs_place, marker_hook, open_store, where
from supervisor.cli.options import EXIT_OK, UsageError, add_busy_timeout, add_jobs_dir
from supervisor.cli.output import print_json
from supervisor.report import marker_json
from supervisor.text import one_line, relative_time


def add_parser(sub: Any) -> None:
    p = sub.add_parser("jobs", help="list the job markers (idempotency records)")
    p.add_argument(
        "db", metavar="DB", help="the checkpoint database the jobs belong to (file or URL)"
    )
    add_busy_timeout(p)
    add_jobs_dir(p)
    p.add_argument(
        "--thread",
        metavar="THREAD",
        help="only markers of this thread: written by it, or matched to one of its tool calls",
    )
    p.add_argument(
        "--agent",
        metavar="MODULE:ATTR",
        help=f"agent whose module's marker hook says where markers live (default: ${ENV_VAR})",
    )
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(run=cmd_jobs)


def cmd_jobs(args: argparse.Namespace) -> int:
    from supervisor.plan import MarkerIndex

    directory = jobs_place(args)
    store = open_store(args)  # the jobs belong to a real checkpoint database
    try:
        export_environment(directory.argument())
        index = MarkerIndex(directory.argument(), directory.read_markers(), marker_hook(args))
        if args.thread is None:
            found = [(m, None) for m in index.markers]
        else:
            if store.get(args.thread) is None:
                raise UsageError(f"{where(args).shown}: no thread {one_line(args.thread, 60)!r}")
            calls = store.transcript(args.thread).tool_calls()
            found = index.markers_of(args.thread, calls)
    finally:
        store.close()
    if args.json:
        print_json([marker_json(m, how) for m, how in found])
        return EXIT_OK
    missing = "" if directory.server or directory.path.is_dir() else " (no such directory)"
    print(f"{len(found)} marker(s) in {directory.shown}{missing}")
    for m, how in found:
        when = relative_time(m.done_at or m.started_at)
        who = f" thread {one_line(m.thread_id, 30)}" if m.thread_id else ""
        matched = f" (matched by {how})" if how else ""
        print(f"{m.status:<10} {when:<9} {one_line(m.key, 60)}{who}{matched}")
    return EXIT_OK
