"""`prompt DB THREAD TEXT`: a prompt sent and run to the end (a new id starts a thread)."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path
from typing import Any

from supervisor.cli.context import run_agents, runner_config, where
from supervisor.cli.options import EXIT_OK, EXIT_UNFINISHED, UsageError, add_db, add_run_options
from supervisor.location import Location
from supervisor.sqlite.files import check_database_path, connect_readonly


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "prompt",
        help="send a prompt to a thread and run it to the end",
        description=(
            "Send a prompt to a thread (a new id starts one) and run it to the end. "
            "A database that does not exist yet is created, as CubeLoop does."
        ),
    )
    add_db(p)
    p.add_argument("thread", metavar="THREAD", help="thread id (a new id starts a thread)")
    p.add_argument("text", metavar="TEXT", help="the user message")
    p.add_argument("--json", action="store_true", help="JSON lines: each event, then the outcome")
    add_run_options(p)
    p.set_defaults(run=cmd_prompt)


def cmd_prompt(args: argparse.Namespace) -> int:
    if where(args).server:  # the host owns a Postgres schema: it must be there already
        where(args).store().close()
        creating = False
    else:
        creating = _prompt_target(where(args).path, args.busy_timeout)
    config = runner_config(args)
    if creating:
        print(
            f"agent-supervisor: creating checkpoint database {where(args).shown}", file=sys.stderr
        )
    start = [lambda runner: runner.prompt(args.thread, args.text)]
    ok = run_agents(config, start, probe=args.thread, as_json=args.json)
    return EXIT_OK if ok else EXIT_UNFINISHED


def _prompt_target(path: Path, busy_timeout: float) -> bool:
    """True if the checkpointer will create the database (missing, or SQLite with no tables).

    Anything else must already be a checkpoint database: a SQLite file of
    some other program is refused, never given our tables.
    """
    if not path.exists() and not path.is_symlink():
        if not path.parent.is_dir():
            raise UsageError(f"{path.parent}: no such directory")
        return True
    check_database_path(path)
    if path.stat().st_size == 0:
        return True
    conn = connect_readonly(path, busy_timeout)
    try:
        (tables,) = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        tables = -1
    finally:
        conn.close()
    if tables == 0:
        return True
    Location.parse(path).open_store(busy_timeout=busy_timeout).close()  # a clear error if not ours
    return False
