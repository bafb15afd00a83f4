"""Command line: subcommands, argument checking and exit codes.

Exit codes: 0 success, 1 a resumed/prompted thread did not finish, 2 bad
input (one line on stderr, never a traceback, never a file created).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence

from supervisor import __version__
from supervisor.jobs import read_markers, resolve_jobs_dir
from supervisor.report import entry_lines, thread_hint, thread_json, transcript_json
from supervisor.states import State
from supervisor.store import DEFAULT_BUSY_TIMEOUT, SQLiteStore, StoreError, open_store
from supervisor.text import one_line, relative_time

EXIT_OK = 0
EXIT_UNFINISHED = 1
EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad arguments; the message is one line for the user."""

    def __init__(self, message: str, prog: str = "agent-supervisor") -> None:
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, self.prog)


def _states(value: str) -> set[State]:
    wanted: set[State] = set()
    for name in value.split(","):
        try:
            wanted.add(State(name.strip()))
        except ValueError:
            names = ", ".join(s.value for s in State)
            raise argparse.ArgumentTypeError(
                f"unknown state {name.strip()!r} (one of: {names})"
            ) from None
    return wanted


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("db", metavar="DB", help="a CubeLoop SQLite checkpoint database")
    p.add_argument(
        "--busy-timeout",
        type=float,
        default=DEFAULT_BUSY_TIMEOUT,
        metavar="SECONDS",
        help="how long to wait for another process's write lock (default %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="agent-supervisor",
        description=(
            "See which CubeLoop agent threads died where, and bring each back "
            "without redoing or doubling a side effect."
        ),
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("list", help="list every thread with its resume state")
    _add_db(p)
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.add_argument(
        "--state",
        type=_states,
        metavar="STATE[,STATE]",
        help="only threads in these states",
    )
    p.set_defaults(run=cmd_list)

    p = sub.add_parser("show", help="print one thread's transcript")
    _add_db(p)
    p.add_argument("thread", metavar="THREAD", help="thread id")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(run=cmd_show)

    p = sub.add_parser("jobs", help="list the job markers (idempotency records)")
    p.add_argument(
        "db", metavar="DB", help="the checkpoint database the jobs belong to"
    )
    _add_jobs_dir(p)
    p.add_argument("--thread", metavar="THREAD", help="only markers of this thread")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(run=cmd_jobs)
    return parser


def _add_jobs_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--jobs-dir",
        metavar="DIR",
        help="job marker directory (default: $JOB_DIR, else DB.jobs beside DB)",
    )


def _open(args: argparse.Namespace) -> SQLiteStore:
    return open_store(args.db, busy_timeout=args.busy_timeout)


def _warn_corrupt(store: SQLiteStore) -> None:
    rows = [s.corrupt_row for s in store.threads() if s.corrupt_row is not None]
    if rows:
        shown = ", ".join(str(r) for r in rows[:5]) + (" …" if len(rows) > 5 else "")
        print(
            f"warning: {len(rows)} thread(s) have a corrupt row (rows {shown}); "
            "they are listed as corrupt",
            file=sys.stderr,
        )


def cmd_list(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        threads = store.threads()
        if args.state:
            threads = [s for s in threads if s.state in args.state]
        if args.json:
            json.dump([thread_json(s) for s in threads], sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            _print_table(threads)
        _warn_corrupt(store)
    finally:
        store.close()
    return EXIT_OK


def _print_table(threads: list) -> None:
    rows = [
        (
            one_line(s.thread_id, 36),
            str(s.state),
            str(s.messages),
            relative_time(s.last_activity),
            thread_hint(s, 70),
        )
        for s in threads
    ]
    header = ("THREAD", "STATE", "MSGS", "LAST ACTIVITY", "WHERE IT STOPPED")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for r in [header, *rows]:
        print(
            f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  "
            f"{r[3]:<{widths[3]}}  {r[4]}".rstrip()
        )
    counts = Counter(str(s.state) for s in threads)
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    print(f"\n{len(threads)} thread(s)" + (f": {summary}" if summary else ""))


def cmd_show(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        summary = store.get(args.thread)
        if summary is None:
            raise UsageError(f"{args.db}: no thread {one_line(args.thread, 60)!r}")
        transcript = store.transcript(args.thread)
    finally:
        store.close()
    if args.json:
        json.dump(transcript_json(summary, transcript), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(
            f"thread {one_line(summary.thread_id, 60)} · {summary.state} · "
            f"{summary.messages} message(s) · last activity "
            f"{relative_time(summary.last_activity)}"
        )
        for entry in transcript.entries:
            for line in entry_lines(entry):
                print(line)
    if summary.corrupt_row is not None:
        print(
            f"warning: row {summary.corrupt_row} is corrupt: {summary.corrupt_reason}",
            file=sys.stderr,
        )
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    directory = resolve_jobs_dir(args.db, args.jobs_dir)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory}: not a directory")
    markers = read_markers(directory)
    if args.thread is not None:
        markers = [m for m in markers if m.thread_id == args.thread]
    if args.json:
        json.dump([m.to_json() for m in markers], sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return EXIT_OK
    print(f"{len(markers)} marker(s) in {directory}")
    for m in markers:
        when = relative_time(m.done_at or m.started_at)
        who = f" thread {one_line(m.thread_id, 30)}" if m.thread_id else ""
        print(f"{m.status:<10} {when:<9} {one_line(m.key, 60)}{who}")
    return EXIT_OK


def run(argv: Sequence[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
        if not getattr(args, "run", None):
            parser.print_help()
            return EXIT_BAD_INPUT
        return args.run(args)
    except UsageError as exc:
        print(f"{exc.prog}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except StoreError as exc:
        print(f"agent-supervisor: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


def main() -> None:
    sys.exit(run(sys.argv[1:]))
