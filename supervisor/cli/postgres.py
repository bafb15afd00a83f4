"""`init-markers URL`: our markers table, created on request only."""

from __future__ import annotations

import argparse
from typing import Any

from supervisor.cli.context import where
from supervisor.cli.options import EXIT_OK, UsageError
from supervisor.store import StoreError


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "init-markers",
        help="create the job markers table in a Postgres database (once)",
        description=(
            "Create the schema agent_supervisor and its job_markers table, where tools "
            "on every host keep their job markers (jobs.open_markers). Nothing else is "
            "changed; running it again does nothing."
        ),
    )
    p.add_argument("db", metavar="URL", help="a postgresql:// URL")
    p.set_defaults(run=cmd_init_markers)


def cmd_init_markers(args: argparse.Namespace) -> int:
    """Our markers table, created on request only: we never run DDL unasked."""
    import asyncio

    from supervisor.pg.client import PgError, connect, describe
    from supervisor.pg.schema import MARKERS_TABLE, create_markers_table, has_markers_table

    if not where(args).server:
        raise UsageError(
            f"{where(args).shown}: not a postgresql:// URL "
            "(file databases keep markers in a directory)",
            "agent-supervisor init-markers",
        )

    async def create() -> bool:
        conn = await connect(args.db, "init-markers")
        try:
            existed = await has_markers_table(conn)
            await create_markers_table(conn)
            return existed
        finally:
            await conn.close()

    try:
        existed = asyncio.run(create())
    except PgError as exc:
        raise StoreError(str(exc)) from None
    except Exception as exc:
        raise StoreError(describe(args.db, exc)) from None
    done = "already there" if existed else "created"
    print(f"{where(args).shown}: {MARKERS_TABLE} {done}")
    return EXIT_OK
