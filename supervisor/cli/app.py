"""The app: `agent-supervisor [DB]` opens it (the demo database when none is given)."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor import collector
from supervisor.agents import AgentLoadError
from supervisor.cli.context import runner_config, where
from supervisor.cli.options import (
    EXIT_OK,
    Parser,
    UsageError,
    Version,
    add_busy_timeout,
    add_run_options,
    need_kinds,
)
from supervisor.dirs import data_dir
from supervisor.first_read import FirstRead
from supervisor.location import DSN_VARIABLE
from supervisor.notifications import MODES, NotifyPolicy

if TYPE_CHECKING:
    from supervisor.ui.app import SupervisorApp


def build_app_parser(commands: list[str]) -> argparse.ArgumentParser:
    """The app's own parser; `commands` are named in its description."""
    p = Parser(
        prog="agent-supervisor",
        description=(
            "Open the supervisor app on a CubeLoop checkpoint database (default: the "
            "demo database, created on first use). Other commands: "
            + ", ".join(commands)
            + " (agent-supervisor COMMAND --help)."
        ),
    )
    p.add_argument("--version", action=Version)
    add_app_database(p)
    add_app_options(p)
    p.set_defaults(run=cmd_app)
    return p


def add_app_database(p: argparse.ArgumentParser) -> None:
    """The app's DB, optional (`choose_database` picks the default): `serve` takes it too."""
    p.add_argument(
        "db",
        metavar="DB",
        nargs="?",
        help="checkpoint database to open: a SQLite file or a postgresql:// URL "
        "(default: $AGENT_SUPERVISOR_DSN, else the demo database)",
    )


def add_app_options(p: argparse.ArgumentParser) -> None:
    """The app's options after DB: `serve` takes them too and hands them to each session's app."""
    p.add_argument(
        "--theme",
        metavar="NAME",
        help="colour theme (default: the one last picked in the app, else harbor)",
    )
    p.add_argument(
        "--no-watch",
        action="store_true",
        help="do not watch files; refresh only after own runs",
    )
    p.add_argument(
        "--notify",
        choices=MODES,
        default="auto",
        help="when a thread newly needs you: a desktop notification where the terminal "
        "shows one, else the bell (auto, the default); bell; desktop (OSC 9/777); off",
    )
    p.add_argument(
        "--notify-on",
        type=need_kinds,
        default=frozenset({"awaiting_input"}),
        metavar="KIND[,KIND]",
        help="what counts: awaiting_input (a new question; the default), held",
    )
    add_busy_timeout(p)
    add_run_options(p)


def app_options(args: argparse.Namespace) -> list[str]:
    """The app options `args` holds, as a command line again: each one that differs from its
    default, in its long form (`serve` starts each session's app with them). Read off the
    options `add_app_options` defines, so an option added there is passed on too."""
    parser = Parser(add_help=False)
    add_app_options(parser)
    argv: list[str] = []
    for action in parser._actions:  # argparse has no public list of its options
        value = getattr(args, action.dest, action.default)
        if value == action.default:
            continue
        flag = max(action.option_strings, key=len)
        argv += [flag] if action.nargs == 0 else [flag, str(value)]
    return argv


def refuse_unknown_command(db: str, commands: list[str]) -> None:
    """`agent-supervisor lsit`: a word that is no file and no command is a mistyped
    command, not a database to look for."""
    if os.sep in db or "." in db or ":" in db or Path(db).exists():
        return
    close = difflib.get_close_matches(db, commands, n=1)
    guess = f"did you mean '{close[0]}'? " if close else ""
    names = ", ".join(commands)
    raise UsageError(f"{db!r} is neither a command nor a file; {guess}commands: {names}")


def demo_database_path() -> Path:
    """Where the app keeps its demo database when no DB is given."""
    return data_dir() / "demo.db"


def cmd_app(args: argparse.Namespace) -> int:
    """Open the store and start its preview before importing the UI: the first
    screen then has rows as soon as it is drawn (the imports take half a second)."""
    choose_database(args)
    # Half a second of imports (Textual, the agent stack) lies between here and the
    # first screen: no collection walks their objects meanwhile (a full one cost
    # 40 ms of it), and they live as long as the process, so they are frozen after.
    with collector.bulk_read(keep=True):
        app = _build_app(args)
    app.run()
    if app.agent_error is not None:  # the agent is imported after the first frame
        raise AgentLoadError(app.agent_error)
    return EXIT_OK


def choose_database(args: argparse.Namespace) -> None:
    """What the app settles before it opens anything: a theme it knows, and DB (given, else
    $AGENT_SUPERVISOR_DSN, else the demo database, made on first use)."""
    if args.theme:
        from supervisor.ui.app import theme_names

        if args.theme not in theme_names():
            raise UsageError(f"unknown theme {args.theme!r} (one of: {', '.join(theme_names())})")
    if args.db is None and os.environ.get(DSN_VARIABLE):
        args.db = os.environ[DSN_VARIABLE]
    if args.db is None:
        args.db = str(demo_database_path())
        if not Path(args.db).exists():
            from supervisor.demo_db import build_demo_db  # cubeloop: only to build it

            print(f"creating the demo database at {where(args).shown} …", file=sys.stderr)
            build_demo_db(Path(args.db))


def check_app(args: argparse.Namespace) -> None:
    """What the app refuses before its first frame (a database it cannot open, a jobs place
    or an agent reference it cannot use), checked without starting it: `serve` says so
    once, on its own terminal, rather than in every browser tab."""
    where(args).store(busy_timeout=args.busy_timeout).close()
    runner_config(args, defer=True)


def _build_app(args: argparse.Namespace) -> SupervisorApp:
    """The store (its first read started), the agent, the app: everything before its first frame."""
    # A big file's first listing is read by two forked processes, started before
    # the store opens and before anything starts a thread (`supervisor.first_read`).
    first_read = None if where(args).server else FirstRead.start(args.db, args.busy_timeout)
    try:
        store = where(args).store(busy_timeout=args.busy_timeout)
    except BaseException:
        if first_read is not None:
            first_read.cancel()
        raise
    if first_read is not None:
        store.read_first_from(first_read)
    store.preview_soon()
    try:
        from supervisor.ui.app import make_app

        # The agent is imported after the first frame; what is wrong before the import
        # is an error line now, the rest one line when the app closes on it.
        config = runner_config(args, defer=True)
    except BaseException:
        store.close()  # and the preview's child with it
        raise
    return make_app(
        store,
        config,
        watch=not args.no_watch,
        theme=args.theme,
        remember_theme=True,
        notify=NotifyPolicy(args.notify, args.notify_on),
    )
