"""`demo DB`: a demo database with threads in every state, made by real crashes."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from supervisor.cli.context import where
from supervisor.cli.options import EXIT_OK, UsageError, add_jobs_dir
from supervisor.store import StoreError


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="create a demo database with threads in every state",
        description=(
            "Create a demo database by really running the built-in demo agent in "
            "child processes and killing them (SIGKILL) at chosen moments."
        ),
    )
    p.add_argument(
        "db", metavar="DB", help="the database file to create, or a postgresql:// URL to fill"
    )
    p.add_argument(
        "--force", action="store_true", help="replace an existing file (empty a URL's threads)"
    )
    add_jobs_dir(p)
    p.set_defaults(run=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from supervisor.demo_db import DemoExists, DemoFailed, build_demo_db

    place = where(args)
    if not place.server and (
        place.path.exists() and not place.path.is_file() or not place.path.name
    ):
        raise UsageError(f"{place.path}: not a regular file")
    jobs = place.jobs(args.jobs_dir)
    try:
        build_demo_db(place.argument(), force=args.force, jobs_dir=jobs.argument())
    except DemoExists as exc:
        raise UsageError(str(exc)) from None
    except DemoFailed as exc:
        raise StoreError(str(exc)) from None
    store = where(args).open_store()
    try:
        counts = Counter(str(s.state) for s in store.threads())
    finally:
        store.close()
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    print(f"created {where(args).shown} ({summary}); job markers in {jobs.shown}")
    return EXIT_OK
