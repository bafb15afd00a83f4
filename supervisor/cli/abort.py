"""`abort DB THREAD…`: the supervisor holding each thread asked to stop it."""

from __future__ import annotations

import argparse
from typing import Any

from supervisor.cli.context import open_store, where
from supervisor.cli.options import EXIT_OK, EXIT_UNFINISHED, UsageError, add_db, seconds
from supervisor.leases import holder_text
from supervisor.text import one_line


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "abort",
        help="ask the supervisor running a thread to abort it",
        description=(
            "Ask the supervisor process that holds each thread's lease (the app, or a "
            "headless resume/prompt/answer) to abort it gracefully, and wait until it has. "
            "The thread stays resumable. Exit 0 when every thread is stopped or was not "
            "running; 1 if one is still running after --wait."
        ),
    )
    add_db(p)
    p.add_argument("threads", metavar="THREAD", nargs="+", help="thread ids")
    p.add_argument(
        "--wait",
        type=seconds(0.0, 86400.0),
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the holder to let go (default %(default)s)",
    )
    p.set_defaults(run=cmd_abort)


def cmd_abort(args: argparse.Namespace) -> int:
    import asyncio

    store = open_store(args, only=args.threads)
    try:
        unknown = [t for t in args.threads if store.get(t) is None]
    finally:
        store.close()
    if unknown:
        raise UsageError(f"{where(args).shown}: no thread {one_line(unknown[0], 60)!r}")
    board = where(args).leases()

    async def stop_all() -> list[tuple[str, dict | None]]:
        wanted = list(dict.fromkeys(args.threads))
        try:
            return await asyncio.gather(*(board.stop_elsewhere(t, args.wait) for t in wanted))
        finally:
            board.close()

    ok = True
    for thread_id, (outcome, holder) in zip(
        dict.fromkeys(args.threads), asyncio.run(stop_all()), strict=True
    ):
        who = f" ({holder_text(holder)})" if holder else ""
        if outcome == "still running":
            ok = False
            outcome = f"still running after {args.wait:g}s"
        print(f"{one_line(thread_id, 60)}: {outcome}{who}")
    return EXIT_OK if ok else EXIT_UNFINISHED
