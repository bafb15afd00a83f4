"""Command line: a module per command over shared options and one output layer.

`agent-supervisor [DB]` opens the app (`cli.app`); `agent-supervisor COMMAND`
runs one of `COMMANDS`, each a module with `add_parser` and its `cmd_*`.
Commands are thin: what they do lives in the library (`supervisor.location`,
`listing`, `runner`, `plan`, `watch`...), and what they print goes through
`cli.output`.

Exit codes: 0 success, 1 a resumed/prompted thread did not finish, 2 bad
input (one line on stderr, never a traceback, never a file created).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from supervisor.agents import AgentLoadError
from supervisor.cli import (
    abort,
    answer,
    app,
    demo,
    fork,
    index,
    jobs,
    list_threads,
    postgres,
    prompt,
    prune,
    resume,
    serve,
    show,
    usage,
    watch,
)
from supervisor.cli.options import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    Parser,
    UsageError,
    Version,
    from_environment,
)
from supervisor.store import StoreError
from supervisor.text import one_line

#: Each command's name and the module that defines it, in the order `--help` lists them.
COMMANDS: dict[str, ModuleType] = {
    "list": list_threads,
    "index": index,
    "show": show,
    "fork": fork,
    "usage": usage,
    "jobs": jobs,
    "prune": prune,
    "resume": resume,
    "prompt": prompt,
    "answer": answer,
    "abort": abort,
    "watch": watch,
    "release": watch,
    "serve": serve,
    "init-markers": postgres,
    "demo": demo,
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="agent-supervisor",
        description=(
            "See which CubeLoop agent threads died where, and bring each back "
            "without redoing or doubling a side effect. Without a command, "
            "'agent-supervisor [DB]' opens the app (see 'agent-supervisor DB --help')."
        ),
    )
    parser.add_argument("--version", action=Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in dict.fromkeys(COMMANDS.values()):  # `watch` adds `release` too
        module.add_parser(sub)
    return parser


def run(argv: Sequence[str]) -> int:
    argv = list(argv)
    app_mode = not argv or argv[0] not in (*COMMANDS, "--version")
    parser = app.build_app_parser(list(COMMANDS)) if app_mode else build_parser()
    try:
        if app_mode and argv and not argv[0].startswith("-"):
            app.refuse_unknown_command(argv[0], list(COMMANDS))
        args = parser.parse_args(argv)
        args.argv = argv  # as given, for a record of the command (a bundle's README)
        if not app_mode:
            _one_line_logs()
        from_environment(args)
        if not getattr(args, "run", None):
            parser.print_help()
            return EXIT_BAD_INPUT
        return args.run(args)
    except UsageError as exc:
        print(f"{exc.prog}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (StoreError, AgentLoadError) as exc:
        print(f"agent-supervisor: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


def _one_line_logs() -> None:
    """Libraries' warnings as one line each on stderr, never a traceback: asyncpg's pool
    logs every failed reconnect with one while a server restarts, cubeloop its failovers.
    (The app keeps stderr off the screen: this is for the headless commands.)"""
    import logging

    class OneLine(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            why = f" ({type(record.exc_info[1]).__name__})" if record.exc_info else ""
            return f"agent-supervisor: {record.name}: {one_line(record.getMessage(), 300)}{why}"

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLine())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


def main() -> None:
    sys.exit(run(sys.argv[1:]))
