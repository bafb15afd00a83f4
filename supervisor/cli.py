"""Command line: subcommands, argument checking and exit codes.

Exit codes: 0 success, 1 a resumed/prompted thread did not finish, 2 bad
input (one line on stderr, never a traceback, never a file created).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import itertools
import json
import math
import os
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor import __version__, collector, listing
from supervisor.agents import (
    ENV_VAR,
    AgentLoadError,
    DeferredAgent,
    agent_reference,
    export_environment,
    load_agent,
)
from supervisor.dirs import data_dir
from supervisor.first_read import FirstRead
from supervisor.hitl import AnswerError, answer_for
from supervisor.leases import holder_text
from supervisor.location import DSN_VARIABLE, Location
from supervisor.report import entry_lines, plan_lines, transcript_json
from supervisor.states import RESUMABLE, State, ThreadSummary
from supervisor.store import (
    DEFAULT_BUSY_TIMEOUT,
    SQLiteStore,
    Store,
    StoreError,
    check_database_path,
    connect_readonly,
)
from supervisor.text import clean, one_line, relative_time

# The agent stack (cubeloop, asyncio, the runner) is imported by the commands
# that run agents, not here: `list` and `--help` start in a fraction of the time.
if TYPE_CHECKING:
    from supervisor.agents import LoadedAgent
    from supervisor.runner import RunnerConfig
    from supervisor.ui.app import SupervisorApp

#: The runner's default; kept here so `--help` does not import the runner.
DEFAULT_CONTINUE_TEXT = "Continue where you left off."

EXIT_OK = 0
EXIT_UNFINISHED = 1
EXIT_BAD_INPUT = 2

#: An open run written to this recently may be live in another process.
LIVE_WINDOW = 120.0


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


DB_HELP = "a CubeLoop checkpoint database: a SQLite file or a postgresql:// URL"


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("db", metavar="DB", help=DB_HELP)
    _add_busy_timeout(p)


def _add_busy_timeout(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--busy-timeout",
        type=_seconds(0.0, 3600.0),
        default=DEFAULT_BUSY_TIMEOUT,
        metavar="SECONDS",
        help="how long to wait for another process's write lock (default %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="agent-supervisor",
        description=(
            "See which CubeLoop agent threads died where, and bring each back "
            "without redoing or doubling a side effect. Without a command, "
            "'agent-supervisor [DB]' opens the app (see 'agent-supervisor DB --help')."
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
    p.add_argument(
        "--check",
        action="store_true",
        help="also validate the JSON of every row, not only the rows each state depends on "
        "(reads the whole database)",
    )
    p.set_defaults(run=cmd_list)

    p = sub.add_parser(
        "index",
        help="add our index: messages(thread_id, id) for a SQLite file (fast resume and "
        "detail); for Postgres, indexes on when rows, threads and runs were written and on "
        "pending requests (fast refreshes)",
    )
    _add_db(p)
    p.add_argument("--yes", action="store_true", help="do not ask; add them")
    p.add_argument("--drop", action="store_true", help="remove what this command added")
    p.set_defaults(run=cmd_index)

    p = sub.add_parser("show", help="print one thread's transcript")
    _add_db(p)
    p.add_argument("thread", metavar="THREAD", help="thread id")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument(
        "--full",
        action="store_true",
        help="every message whole, however big (default: one line each, big rows previewed)",
    )
    p.set_defaults(run=cmd_show)

    p = sub.add_parser("jobs", help="list the job markers (idempotency records)")
    p.add_argument(
        "db", metavar="DB", help="the checkpoint database the jobs belong to (file or URL)"
    )
    _add_jobs_dir(p)
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
    _add_db(p)
    _add_jobs_dir(p)
    p.add_argument(
        "--older-than",
        type=_days,
        default=7.0,
        metavar="DAYS",
        help="only markers last written this many days ago or more (default %(default)g)",
    )
    p.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    p.add_argument("--json", action="store_true", help="print a JSON array, a verdict per marker")
    p.set_defaults(run=cmd_prune)

    p = sub.add_parser(
        "resume",
        help="resume crashed threads and print their events",
        description=(
            "Resume threads by state; exit 0 only if every one ends finished "
            "(or waiting on a new human-in-the-loop request)."
        ),
    )
    _add_db(p)
    p.add_argument("threads", metavar="THREAD", nargs="*", help="thread ids")
    p.add_argument("--all", action="store_true", help="every thread in a resumable state")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print what a resume would do with each thread and tool call; run nothing",
    )
    p.add_argument("--json", action="store_true", help="with --dry-run: print a JSON array")
    _add_run_options(p)
    p.add_argument(
        "--processes",
        type=_positive_int,
        default=1,
        metavar="N",
        help="spread the threads over N worker processes, sharing --max-concurrent "
        "(one process runs every agent on one core; default %(default)s)",
    )
    p.set_defaults(run=cmd_resume)

    p = sub.add_parser(
        "prompt",
        help="send a prompt to a thread and run it to the end",
        description=(
            "Send a prompt to a thread (a new id starts one) and run it to the end. "
            "A database that does not exist yet is created, as CubeLoop does."
        ),
    )
    _add_db(p)
    p.add_argument("thread", metavar="THREAD", help="thread id (a new id starts a thread)")
    p.add_argument("text", metavar="TEXT", help="the user message")
    _add_run_options(p)
    p.set_defaults(run=cmd_prompt)

    p = sub.add_parser(
        "answer",
        help="answer a thread's pending human-in-the-loop request and run it on",
        description=(
            "Answer the request a thread waits on, through cubeloop's Agent.respond, and run "
            "the thread on. Without an answer, print the request. An approval takes --approve "
            "or --deny [REASON]; a confirmation --approve (yes) or --deny (no); an ask one "
            "--option N (N,M for a multi-select) or --text TEXT per question, in order. Exit 0 "
            "if the thread ends finished or waits on a new request."
        ),
    )
    _add_db(p)
    p.add_argument("thread", metavar="THREAD", help="thread id")
    p.add_argument("--approve", action="store_true", help="approve (or: yes)")
    p.add_argument(
        "--deny", nargs="?", const="", metavar="REASON", help="deny (or: no), with a reason"
    )
    p.add_argument(
        "--text",
        dest="replies",
        action="append",
        type=lambda v: ("text", v),
        metavar="TEXT",
        help="typed answer to the next question",
    )
    p.add_argument(
        "--option",
        dest="replies",
        action="append",
        type=lambda v: ("option", v),
        metavar="N",
        help="option number (from 1) for the next question",
    )
    p.add_argument("--json", action="store_true", help="print the request as JSON (no answer)")
    _add_run_options(p)
    p.set_defaults(run=cmd_answer)

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
    _add_db(p)
    p.add_argument("threads", metavar="THREAD", nargs="+", help="thread ids")
    p.add_argument(
        "--wait",
        type=_seconds(0.0, 86400.0),
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the holder to let go (default %(default)s)",
    )
    p.set_defaults(run=cmd_abort)

    p = sub.add_parser(
        "watch",
        help="resume crashed threads by policy, with backoff, until stopped",
        description=(
            "Watch the database and resume every thread that enters one of --states and "
            "stays quiet (no lease, no write) for --quiet seconds. A thread whose resume "
            "fails is retried after a backoff that doubles each time; after --max-attempts "
            "failures it is held until 'agent-supervisor release'. One line per decision; "
            "SIGTERM or SIGINT aborts its runs gracefully (threads stay resumable) and exits 0."
        ),
    )
    _add_db(p)
    _add_run_options(p, force=False)
    p.add_argument(
        "--states",
        type=_watch_states,
        default=None,
        metavar="STATE[,STATE]",
        help="states to resume (default: mid_tool,after_tools,between_turns,error,answered; "
        "aborted may be added; awaiting_input never)",
    )
    p.add_argument(
        "--max-attempts",
        type=_positive_int,
        default=5,
        metavar="N",
        help="failed resumes before a thread is held (default %(default)s)",
    )
    p.add_argument(
        "--backoff",
        type=_backoff,
        default=(10.0, 600.0),
        metavar="INITIAL,MAX",
        help="seconds before retrying a failed thread: INITIAL, doubling, at most MAX "
        "(default 10,600)",
    )
    p.add_argument(
        "--quiet",
        type=_non_negative,
        default=30.0,
        metavar="SECONDS",
        help="a thread must be this long without a write or a lease (default %(default)s)",
    )
    p.add_argument(
        "--poll",
        type=_seconds(0.05, 3600.0),
        default=1.0,
        metavar="SECONDS",
        help="how often to look at the database (default %(default)s)",
    )
    p.set_defaults(run=cmd_watch)

    p = sub.add_parser("release", help="clear held threads so the watcher may try them again")
    _add_db(p)
    p.add_argument("threads", nargs="+", metavar="THREAD")
    p.set_defaults(run=cmd_release)

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
    _add_jobs_dir(p)
    p.set_defaults(run=cmd_demo)
    return parser


def _add_run_options(p: argparse.ArgumentParser, force: bool = True) -> None:
    p.add_argument(
        "--agent",
        metavar="MODULE:ATTR",
        help=f"agent factory (default: ${ENV_VAR}, else the built-in demo agent)",
    )
    _add_jobs_dir(p)
    p.add_argument(
        "--strategy",
        choices=["rerun", "interrupt"],
        default="rerun",
        help="mid-tool threads: re-run unanswered calls (default) or tell the model "
        "they were interrupted",
    )
    p.add_argument(
        "--continue-text",
        default=DEFAULT_CONTINUE_TEXT,
        metavar="TEXT",
        help="user message that continues aborted/error threads (default: %(default)r)",
    )
    if force:
        p.add_argument(
            "--force",
            action="store_true",
            help="resume threads that may still be live in another process",
        )
    p.add_argument(
        "--max-concurrent",
        type=_positive_int,
        default=4,
        metavar="N",
        help="threads run at once (default %(default)s)",
    )
    p.add_argument(
        "--abort-grace",
        type=_seconds(0.0, 3600.0),
        default=5.0,
        metavar="SECONDS",
        help="on abort, cancel a thread still running after this (default %(default)s)",
    )


def _add_jobs_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--jobs-dir",
        metavar="DIR|URL",
        help="job markers: a directory, or a postgresql:// URL (default: $JOB_DIR, else "
        "DB.jobs beside a file DB, else the URL DB's own markers table)",
    )


def _print_notices(store: Store) -> None:
    _say_notes(store.take_notices())


def _say_notes(notes: Iterable[str]) -> None:
    for note in notes:
        print(f"agent-supervisor: note: {one_line(note, 300)}", file=sys.stderr)


def _where(args: argparse.Namespace) -> Location:
    """The database the command is about (`Location.parse` tells a file from a URL)."""
    return Location.parse(args.db)


def _open(args: argparse.Namespace, only: Sequence[str] | None = None) -> Store:
    """The store (threads leased by a live supervisor are `running`), notices printed.

    `only`: the command is about these threads; the rest are not listed
    (on a 100,000-thread database that is the difference between seconds
    and milliseconds, given an index: `agent-supervisor index`).
    """
    store = _where(args).open_store(busy_timeout=args.busy_timeout, only=only)
    _print_notices(store)
    return store


#: A database with more rows than this and no thread index gets a hint.
BIG_DATABASE_ROWS = 200_000


def _warn_corrupt(rows: list[int]) -> None:
    if rows:
        shown = ", ".join(str(r) for r in rows[:5]) + (" …" if len(rows) > 5 else "")
        print(
            f"warning: {len(rows)} thread(s) have a corrupt row (rows {shown}); "
            "they are listed as corrupt",
            file=sys.stderr,
        )


def cmd_list(args: argparse.Namespace) -> int:
    options = listing.Options(
        as_json=args.json, states=frozenset(args.state) if args.state else None, now=time.time()
    )
    # --check validates every row first, which holds every summary: one process.
    outcome = None if args.check else _list_split(args, options)
    if outcome is None:
        outcome = _list_in_one_process(args, options)
    _say_notes(outcome.notices)
    _warn_corrupt(outcome.corrupt)
    if outcome.index_hint:  # a big database without the index its backend would use
        print(f"agent-supervisor: note: {outcome.index_hint}", file=sys.stderr)
    return EXIT_OK


def _list_split(args: argparse.Namespace, options: listing.Options) -> listing.Outcome | None:
    """The listing by two processes, where it is worth it; None where one lists it all."""
    if _where(args).server:
        from supervisor.listing.postgres import list_split

        return list_split(args.db, options, sys.stdout, BIG_DATABASE_ROWS)
    return listing.list_split(args.db, args.busy_timeout, options, sys.stdout, BIG_DATABASE_ROWS)


def _list_in_one_process(args: argparse.Namespace, options: listing.Options) -> listing.Outcome:
    store = _where(args).store(busy_timeout=args.busy_timeout)
    try:
        batches = getattr(store, "stream_batches", None)
        if batches is not None and not args.check:  # Postgres: partitions in no order
            tally = listing.write_unordered(batches(), options)
        else:
            threads, shape = _listing(store, args.check)
            tally = listing.write_listing(threads, shape, options)
        return listing.Outcome(
            store.take_notices(), tally.corrupt, store.index_hint(BIG_DATABASE_ROWS)
        )
    finally:
        store.close()


def _listing(store: Store, check: bool) -> tuple[Iterator[ThreadSummary], tuple[int, int]]:
    """Every thread in thread-id order, and (longest thread id, most messages).

    A SQLite file is streamed (`SQLiteStore.stream`): 100,000 summaries held
    at once were most of a listing's memory. `--check` validates every row
    first, which needs them all held; so does a Postgres store.
    """
    stream = getattr(store, "stream", None)
    if stream is not None and not check:
        threads = stream()
        first = next(threads, None)  # the pass has run: the shape is known
        shape = store.shape  # type: ignore[attr-defined]
        return itertools.chain([] if first is None else [first], threads), shape
    store.refresh()
    if check:
        store.check_rows()
    held = sorted(store.threads(), key=lambda s: s.thread_id)
    longest = max((len(s.thread_id) for s in held), default=0)
    return iter(held), (longest, max((s.messages for s in held), default=0))


def cmd_show(args: argparse.Namespace) -> int:
    store = _open(args, only=[args.thread])
    try:
        summary = store.get(args.thread)
        if summary is None:
            raise UsageError(f"{_where(args).shown}: no thread {one_line(args.thread, 60)!r}")
        transcript = store.transcript(args.thread, full=args.full)
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
            for line in entry_lines(entry, None if args.full else 100):
                print(line)
        if summary.request is not None:
            stored = " (answered; resume goes on with it)" if summary.answer_stored else ""
            print(f"pending request {one_line(summary.request.question_id, 60)}{stored}")
            for line in summary.request.lines():
                print("    " + clean(line))
    if summary.corrupt_row is not None:
        print(
            f"warning: row {summary.corrupt_row} is corrupt: {summary.corrupt_reason}",
            file=sys.stderr,
        )
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    from supervisor.plan import MarkerIndex

    directory = _where(args).jobs(args.jobs_dir)
    if not directory.server and directory.path.exists() and not directory.path.is_dir():
        raise UsageError(f"{directory}: not a directory")
    store = _where(args).open_store()  # the jobs belong to a real checkpoint database
    _print_notices(store)
    try:
        export_environment(directory.argument())
        index = MarkerIndex(directory.argument(), directory.read_markers(), _marker_hook(args))
        if args.thread is None:
            found = [(m, None) for m in index.markers]
        else:
            if store.get(args.thread) is None:
                raise UsageError(f"{_where(args).shown}: no thread {one_line(args.thread, 60)!r}")
            calls = store.transcript(args.thread).tool_calls()
            found = index.markers_of(args.thread, calls)
    finally:
        store.close()
    if args.json:
        out = [{**m.to_json(), "matched_by": how and str(how)} for m, how in found]
        json.dump(out, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return EXIT_OK
    print(f"{len(found)} marker(s) in {directory.shown}")
    for m, how in found:
        when = relative_time(m.done_at or m.started_at)
        who = f" thread {one_line(m.thread_id, 30)}" if m.thread_id else ""
        matched = f" (matched by {how})" if how else ""
        print(f"{m.status:<10} {when:<9} {one_line(m.key, 60)}{who}{matched}")
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    """Markers of settled threads, older than the cutoff, removed (see `supervisor.prune`)."""
    from supervisor import prune

    directory = _where(args).jobs(args.jobs_dir)
    if not directory.server and directory.path.exists() and not directory.path.is_dir():
        raise UsageError(f"{directory}: not a directory")
    store = _where(args).open_store()
    try:
        store.refresh()
        states = {s.thread_id: s.state.value for s in store.threads()}
        _print_notices(store)
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
        json.dump(out, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
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


def _days(value: str) -> float:
    """An argparse type for a number of days: finite, not negative."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {value!r}") from None
    if not math.isfinite(number) or not 0 <= number <= 36500:
        raise argparse.ArgumentTypeError("must be between 0 and 36500 days")
    return number


def _marker_hook(args: argparse.Namespace):
    """The agent module's marker hook, when an agent is named (`--agent` or env)."""
    reference = getattr(args, "agent", None) or os.environ.get(ENV_VAR)
    return load_agent(reference).marker_hook if reference else None


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _load_agent(args: argparse.Namespace) -> tuple[LoadedAgent, Path | str]:
    """The checked agent and the jobs directory, the environment set before the import."""
    jobs_dir = _agent_environment(args)
    return load_agent(agent_reference(args.agent)), jobs_dir


def _agent_environment(args: argparse.Namespace) -> Path | str:
    """The jobs directory, exported for agents written like the recipe (they read it at
    import): call before the agent is imported."""
    jobs = _where(args).jobs(args.jobs_dir)
    export_environment(jobs)
    return jobs.argument()


def cmd_index(args: argparse.Namespace) -> int:
    """Add (or drop) our index, after asking: it writes to the user's database."""
    from supervisor.store import INDEX_NAME, add_thread_index, drop_thread_index

    if _where(args).server:
        return _index_postgres(args)
    path = check_database_path(args.db)
    with SQLiteStore(path, busy_timeout=args.busy_timeout, only=()) as store:
        present = store.has_thread_index()
    if args.drop:
        if not drop_thread_index(path, args.busy_timeout):
            print(f"{path}: no index {INDEX_NAME} to drop")
            return EXIT_OK
        print(f"{path}: dropped index {INDEX_NAME}")
        return EXIT_OK
    if present:
        print(f"{path}: already indexed on thread_id; nothing to do")
        return EXIT_OK
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(
                f"adding an index writes to {path}; pass --yes to agree", "agent-supervisor index"
            )
        size = path.stat().st_size / 1e6
        answer = input(
            f"Add index {INDEX_NAME} on messages(thread_id, id) to {path} "
            f"({size:,.0f} MB; the index adds a few percent)? [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            print("not changed")
            return EXIT_UNFINISHED
    started = time.monotonic()
    add_thread_index(path, args.busy_timeout)
    print(f"{path}: added index {INDEX_NAME} in {time.monotonic() - started:.1f}s")
    return EXIT_OK


def _index_postgres(args: argparse.Namespace) -> int:
    """Our indexes on cubeloop's tables (`pg.schema.INDEXES`), so a refresh finds what
    changed (new rows, new threads, pending requests, runs) without a table scan.

    cubeloop's `(thread_id, seq)` key already serves resumes and the detail.
    The schema is the host's (Alembic): an autogenerate would offer to drop
    indexes it does not know, so we ask first and say their names.
    """
    import asyncio

    from supervisor.pg.client import PgError, connect, describe
    from supervisor.pg.schema import (
        INDEX_NAMES,
        INDEXES,
        add_indexes,
        drop_indexes,
        existing_indexes,
    )

    where = _where(args).shown

    async def run(action) -> object:
        conn = await connect(args.db, "index")
        try:
            return await action(conn)
        finally:
            await conn.close()

    def on_server(action) -> Any:
        try:
            return asyncio.run(run(action))
        except PgError as exc:
            raise StoreError(str(exc)) from None
        except Exception as exc:
            raise StoreError(describe(args.db, exc)) from None

    if args.drop:
        dropped = on_server(drop_indexes)
        print(
            f"{where}: dropped index {', '.join(dropped)}"
            if dropped
            else f"{where}: no index of ours to drop"
        )
        return EXIT_OK
    have = set(on_server(existing_indexes))
    missing = [name for name in INDEX_NAMES if name not in have]
    if not missing:
        print(f"{where}: already indexed; nothing to do")
        return EXIT_OK
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(
                f"adding indexes writes to {where}; pass --yes to agree", "agent-supervisor index"
            )
        listed = "\n".join(f"  {n} ON {d}" for n, d in INDEXES if n in missing)
        answer = input(
            f"Add to {where}:\n{listed}\n"
            "(Tell Alembic to ignore them, or an autogenerate will offer to drop them.) [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            print("not changed")
            return EXIT_UNFINISHED
    started = time.monotonic()
    added = on_server(add_indexes)
    print(f"{where}: added index {', '.join(added)} in {time.monotonic() - started:.1f}s")
    return EXIT_OK


def _run_agents(config: RunnerConfig, starts: list, probe: str, prefix: bool = False) -> bool:
    """Run agents headless until they stop; True if every thread finished."""
    import asyncio

    from supervisor.headless import run_threads

    return asyncio.run(run_threads(config, starts, probe=probe, prefix=prefix))


def _check_places(args: argparse.Namespace) -> None:
    """Where a run will write, checked before it starts: a jobs directory that is a file,
    a leases directory that is not ours or cannot be made, are one line and exit 2, not a
    traceback (or an agent looping on a tool that cannot write its marker)."""
    from supervisor.leases import LeaseError, leases_dir, secure_directory

    jobs = _where(args).jobs(getattr(args, "jobs_dir", None))
    if not jobs.server and jobs.path.exists() and not jobs.path.is_dir():
        raise UsageError(f"{jobs}: not a directory (job markers are kept in a directory)")
    if not _where(args).server:
        try:
            secure_directory(leases_dir(args.db), 0o700)
        except LeaseError as exc:
            raise UsageError(str(exc)) from None


def _runner_config(args: argparse.Namespace, defer: bool = False) -> RunnerConfig:
    """Check everything a run needs before any work starts; with `defer` (the app),
    what can be checked without importing the agent, which the app imports later."""
    from supervisor.runner import RunnerConfig

    _check_places(args)
    if defer:
        jobs_dir = _agent_environment(args)
        deferred = DeferredAgent(agent_reference(args.agent))
        deferred.check()
        agent: dict[str, Any] = {"deferred": deferred, "agent_ref": deferred.reference}
    else:
        loaded, jobs_dir = _load_agent(args)
        agent = {
            "factory": loaded.factory,
            "agent_ref": loaded.reference,
            "marker_hook": loaded.marker_hook,
        }
    return RunnerConfig(
        database=_where(args).argument(),
        jobs_dir=jobs_dir,
        **agent,
        max_concurrent=args.max_concurrent,
        continue_text=args.continue_text,
        mid_tool_strategy=args.strategy,
        abort_grace=args.abort_grace,
        live_window=0 if getattr(args, "force", False) else LIVE_WINDOW,
    )


def cmd_resume(args: argparse.Namespace) -> int:
    if not args.threads and not args.all:
        raise UsageError("name at least one THREAD, or pass --all", "agent-supervisor resume")
    if args.json and not args.dry_run:
        raise UsageError("--json goes with --dry-run", "agent-supervisor resume")
    store = _open(args, only=None if args.all else args.threads)
    try:
        known = {s.thread_id: s for s in store.threads()}
        wanted = list(dict.fromkeys(args.threads))
        unknown = [t for t in wanted if t not in known]
        if unknown:
            raise UsageError(f"{_where(args).shown}: no thread {one_line(unknown[0], 60)!r}")
        if args.all:
            wanted += [t for t, s in known.items() if s.state in RESUMABLE and t not in wanted]
        if args.dry_run:
            return _dry_run(args, store, wanted)
    finally:
        store.close()
    config = _runner_config(args)  # a broken agent is exit 2 before anything else
    todo = []
    refused = False
    now = time.time()
    for thread_id in wanted:
        summary = known[thread_id]
        if summary.state in (State.FINISHED, State.STOPPED):
            print(f"{one_line(thread_id, 40)}: already {summary.state}, nothing to resume")
            continue
        reason = _refusal(summary, now, args)
        if reason is not None:  # refused before anything opens the database for writing
            print(f"refused: {one_line(thread_id, 60)} {one_line(reason, 200)}", file=sys.stderr)
            refused = True
            continue
        todo.append(thread_id)
    if not todo:
        if args.all and not wanted:
            print("no thread needs resuming")
        return EXIT_UNFINISHED if refused else EXIT_OK
    if args.processes > 1 and len(todo) > 1:
        status = _run_sharded(args, config, todo)
        return max(status, EXIT_UNFINISHED if refused else EXIT_OK)
    starts = [_resumer(thread_id, args.force) for thread_id in todo]
    ok = _run_agents(config, starts, probe=todo[0], prefix=len(wanted) > 1)
    return EXIT_OK if ok and not refused else EXIT_UNFINISHED


def _run_sharded(args: argparse.Namespace, config: RunnerConfig, todo: list[str]) -> int:
    """`resume --processes N`: the threads dealt to worker processes (`supervisor.shards`)."""
    from supervisor.shards import run_sharded, shards_for

    if not _where(args).server and _journal_mode(_where(args).path, args.busy_timeout) != "wal":
        print(
            f"note: {args.db} uses a rollback journal, so worker processes wait on each other's "
            "writes; in WAL mode they do not (once, with no agent running: "
            f"sqlite3 {args.db} 'PRAGMA journal_mode=WAL')",
            file=sys.stderr,
        )
    return run_sharded(shards_for(config, todo, args.processes, args.force))


def cmd_answer(args: argparse.Namespace) -> int:
    prog = "agent-supervisor answer"
    answering = args.approve or args.deny is not None or bool(args.replies)
    if args.json and answering:
        raise UsageError("--json prints the request; give it without an answer", prog)
    if args.approve and args.deny is not None:
        raise UsageError("--approve and --deny exclude each other", prog)
    store = _open(args, only=[args.thread])
    try:
        summary = store.get(args.thread)
    finally:
        store.close()
    if summary is None:
        raise UsageError(f"{_where(args).shown}: no thread {one_line(args.thread, 60)!r}")
    request = summary.request
    if summary.state is State.ANSWERED:
        raise UsageError(
            f"{one_line(args.thread, 60)} was answered already and stopped before going on; "
            "'agent-supervisor resume' continues it with the stored answer",
            prog,
        )
    if summary.state is not State.AWAITING_INPUT or request is None:
        raise UsageError(f"{one_line(args.thread, 60)} is {summary.state}: nothing to answer", prog)
    if not answering:
        if args.json:
            json.dump(request.to_json(), sys.stdout, indent=2, default=str)
            sys.stdout.write("\n")
        else:
            print("\n".join(clean(line) for line in request.lines()))
        return EXIT_OK
    try:
        answer = answer_for(
            request,
            approve=True if args.approve else False if args.deny is not None else None,
            reason=args.deny or None,
            replies=list(args.replies or []),
        )
    except AnswerError as exc:
        raise UsageError(str(exc), prog) from None
    config = _runner_config(args)
    start = [lambda runner: runner.answer(args.thread, answer)]
    ok = _run_agents(config, start, probe=args.thread)
    return EXIT_OK if ok else EXIT_UNFINISHED


def cmd_abort(args: argparse.Namespace) -> int:
    import asyncio

    store = _open(args, only=args.threads)
    try:
        unknown = [t for t in args.threads if store.get(t) is None]
    finally:
        store.close()
    if unknown:
        raise UsageError(f"{_where(args).shown}: no thread {one_line(unknown[0], 60)!r}")
    board = _where(args).leases()

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


def _refusal(summary: ThreadSummary, now: float, args: argparse.Namespace) -> str | None:
    """Why the runner would refuse this thread, known from the read-only listing."""
    from supervisor.plan import live_reason, refusal

    reason = refusal(summary)
    if reason is not None:
        return reason
    live = live_reason(summary, now, LIVE_WINDOW)
    if live is not None and not args.force:
        return f"{live}; --force resumes it anyway"
    return None


def _dry_run(args: argparse.Namespace, store: Store, wanted: list[str]) -> int:
    """The plan for each thread, from the read-only store: nothing runs, nothing is written.

    The agent's own policy is asked about each unanswered call, as the resume
    will ask it (`supervisor.probe`), over a checkpointer that cannot write.
    """
    import asyncio

    from supervisor.plan import MarkerIndex, ThreadPlan, plan_thread, terminated_by_markers
    from supervisor.probe import probe

    agent, jobs_dir = _load_agent(args)
    index = MarkerIndex(jobs_dir, Location.parse(jobs_dir).read_markers(), agent.marker_hook)
    asking = args.strategy == "rerun"

    async def plan_all() -> list[ThreadPlan]:
        plans = []
        for thread_id in wanted:  # one at a time: a transcript is kept only for its plan
            summary = store.get(thread_id)
            assert summary is not None
            transcript = store.transcript(thread_id)
            probed = None
            if asking:
                ends = lambda a: terminated_by_markers(a, index)  # noqa: E731
                probed = await probe(agent, store, summary, transcript, ends)
            plans.append(
                plan_thread(
                    summary,
                    index,
                    messages=transcript.messages(),
                    strategy=args.strategy,
                    policies=None if probed is None else probed.policies,
                    ended=None if probed is None else probed.ended,
                )
            )
        return plans

    plans = asyncio.run(plan_all())
    if args.json:
        json.dump([p.to_json() for p in plans], sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return EXIT_OK
    if not plans:
        print("no thread needs resuming")
    for plan in plans:
        for line in plan_lines(plan):
            print(line)
    return EXIT_OK


def _journal_mode(path: Path, busy_timeout: float) -> str:
    """The SQLite file's journal mode, read without writing."""
    conn = connect_readonly(path, busy_timeout)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
    except sqlite3.Error:
        return "unknown"
    finally:
        conn.close()


def _resumer(thread_id: str, force: bool):
    return lambda runner: runner.resume(thread_id, force=force)


def cmd_prompt(args: argparse.Namespace) -> int:
    if _where(args).server:  # the host owns a Postgres schema: it must be there already
        _where(args).store().close()
        creating = False
    else:
        creating = _prompt_target(_where(args).path, args.busy_timeout)
    config = _runner_config(args)
    if creating:
        print(
            f"agent-supervisor: creating checkpoint database {_where(args).shown}", file=sys.stderr
        )
    start = [lambda runner: runner.prompt(args.thread, args.text)]
    ok = _run_agents(config, start, probe=args.thread)
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


def _watch_states(value: str) -> frozenset[State]:
    from supervisor.watch import WATCHABLE

    wanted = _states(value)
    refused = sorted(str(s) for s in wanted - WATCHABLE)
    if refused:
        raise argparse.ArgumentTypeError(
            f"the watcher never resumes {', '.join(refused)} "
            f"(one of: {', '.join(sorted(str(s) for s in WATCHABLE))})"
        )
    return frozenset(wanted)


def _backoff(value: str) -> tuple[float, float]:
    try:
        initial, longest = (float(part) for part in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("give INITIAL,MAX in seconds, e.g. 10,600") from None
    if not (math.isfinite(initial) and math.isfinite(longest)):
        raise argparse.ArgumentTypeError("INITIAL and MAX must be finite numbers of seconds")
    if not 0 <= initial <= longest <= 7 * 86400:
        raise argparse.ArgumentTypeError("need 0 <= INITIAL <= MAX <= 604800 (a week)")
    return initial, longest


def _seconds(minimum: float = 0.0, maximum: float = 7 * 86400.0) -> Callable[[str], float]:
    """An argparse type for a number of seconds: finite and within [minimum, maximum]
    (`nan` slips through every comparison, `inf` through most: both are refused)."""

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
        if not math.isfinite(number) or not minimum <= number <= maximum:
            raise argparse.ArgumentTypeError(f"must be between {minimum:g} and {maximum:g} seconds")
        return number

    return parse


_non_negative = _seconds()


def cmd_watch(args: argparse.Namespace) -> int:
    """Run the watcher until SIGTERM/SIGINT; exit 0 once its runs are aborted gracefully."""
    import asyncio
    import signal

    from supervisor.runner import Runner
    from supervisor.watch import DEFAULT_STATES, Policy, Watcher

    policy = Policy(
        states=args.states or DEFAULT_STATES,
        max_attempts=args.max_attempts,
        backoff=args.backoff,
        quiet=args.quiet,
        max_concurrent=args.max_concurrent,
        poll=args.poll,
    )
    config = _runner_config(args)
    config.live_window = policy.quiet
    store = _where(args).store(busy_timeout=args.busy_timeout)
    ledger = _where(args).attempts()
    if hasattr(ledger, "require"):
        ledger.require()
    try:
        ledger.check()
    except Exception as exc:
        raise UsageError(
            f"{getattr(ledger, 'path', _where(args).shown)}: cannot keep the watcher's records "
            f"there ({one_line(str(exc), 120)})"
        ) from None

    def log(line: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{stamp} {line}", flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        leave = _Shutdown(loop, stop, config.abort_grace + SHUTDOWN_MARGIN, log)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, leave.on_signal)
        async with Runner(config) as runner:
            await runner.check_agent("agent-supervisor-probe")
            await Watcher(store, runner, ledger, policy, log=log).run(stop)

    try:
        asyncio.run(main())
    finally:
        ledger.close()
        store.close()
    return EXIT_OK


#: How long `watch` may take to stop past its runs' abort grace before it exits anyway.
SHUTDOWN_MARGIN = 10.0


class _Shutdown:
    """`watch`'s answer to SIGTERM and SIGINT: stop gracefully, within a deadline.

    The first signal asks the watcher to stop (its runs are aborted and parked,
    for the next watcher). A database that stops answering (a server under
    SIGSTOP, a dead network path) must not keep the process past the deadline
    `systemctl stop` allows: a timer thread exits it then, and so does a second
    signal. Exiting hard is what SIGKILL does, and a run killed that way stays
    resumable: nothing is doubled, only the tidy "parked" record is missing.
    The handler is a plain `signal.signal` one, not the event loop's: it runs
    even while the loop's thread waits on a blocking database call.
    """

    def __init__(
        self,
        loop: Any,
        stop: Any,
        deadline: float,
        log: Callable[[str], None],
    ) -> None:
        self.loop, self.stop, self.deadline, self.log = loop, stop, deadline, log
        self.signalled = False

    def on_signal(self, signum: int, frame: Any) -> None:
        import signal
        import threading

        name = signal.Signals(signum).name
        if self.signalled:
            self._leave(f"{name} again: exiting now; runs in flight stay resumable", signum)
        self.signalled = True
        self.loop.call_soon_threadsafe(self.stop.set)
        timer = threading.Timer(
            self.deadline,
            self._leave,
            (
                f"not stopped {self.deadline:g}s after {name} (does the database answer?): "
                "exiting; runs in flight stay resumable",
                signum,
            ),
        )
        timer.daemon = True
        timer.start()

    def _leave(self, why: str, signum: int) -> None:
        with contextlib.suppress(Exception):
            self.log(why)
            sys.stdout.flush()
        os._exit(128 + signum)


def cmd_release(args: argparse.Namespace) -> int:
    ledger = _where(args).attempts()
    store = _open(args, only=args.threads)
    try:
        unknown = [t for t in args.threads if store.get(t) is None]
        if unknown:
            raise UsageError(f"{_where(args).shown}: no thread {one_line(unknown[0], 60)!r}")
        released = set(ledger.release(list(dict.fromkeys(args.threads))))
    finally:
        store.close()
        ledger.close()
    for thread_id in dict.fromkeys(args.threads):
        what = "released" if thread_id in released else "had no attempts recorded"
        print(f"{one_line(thread_id, 60)}: {what}")
    return EXIT_OK


def cmd_init_markers(args: argparse.Namespace) -> int:
    """Our markers table, created on request only: we never run DDL unasked."""
    import asyncio

    from supervisor.pg.client import PgError, connect, describe
    from supervisor.pg.schema import MARKERS_TABLE, create_markers_table, has_markers_table

    if not _where(args).server:
        raise UsageError(
            f"{_where(args).shown}: not a postgresql:// URL "
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
    print(f"{_where(args).shown}: {MARKERS_TABLE} {done}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from supervisor.demo_db import DemoExists, DemoFailed, build_demo_db

    where = _where(args)
    if not where.server and (
        where.path.exists() and not where.path.is_file() or not where.path.name
    ):
        raise UsageError(f"{where.path}: not a regular file")
    jobs = where.jobs(args.jobs_dir)
    try:
        build_demo_db(where.argument(), force=args.force, jobs_dir=jobs.argument())
    except DemoExists as exc:
        raise UsageError(str(exc)) from None
    except DemoFailed as exc:
        raise StoreError(str(exc)) from None
    store = _where(args).open_store()
    try:
        counts = Counter(str(s.state) for s in store.threads())
    finally:
        store.close()
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    print(f"created {_where(args).shown} ({summary}); job markers in {jobs.shown}")
    return EXIT_OK


SUBCOMMANDS = (
    "list",
    "show",
    "jobs",
    "prune",
    "resume",
    "prompt",
    "answer",
    "abort",
    "index",
    "init-markers",
    "watch",
    "release",
    "demo",
)


def build_app_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="agent-supervisor",
        description=(
            "Open the supervisor app on a CubeLoop checkpoint database (default: the "
            "demo database, created on first use). Other commands: "
            + ", ".join(SUBCOMMANDS)
            + " (agent-supervisor COMMAND --help)."
        ),
    )
    p.add_argument("--version", action="version", version=__version__)
    p.add_argument(
        "db",
        metavar="DB",
        nargs="?",
        help="checkpoint database to open: a SQLite file or a postgresql:// URL "
        "(default: $AGENT_SUPERVISOR_DSN, else the demo database)",
    )
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
    _add_busy_timeout(p)
    _add_run_options(p)
    p.set_defaults(run=cmd_app)
    return p


def demo_database_path() -> Path:
    """Where the app keeps its demo database when no DB is given."""
    return data_dir() / "demo.db"


def cmd_app(args: argparse.Namespace) -> int:
    """Open the store and start its preview before importing the UI: the first
    screen then has rows as soon as it is drawn (the imports take half a second)."""
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

            print(f"creating the demo database at {_where(args).shown} …", file=sys.stderr)
            build_demo_db(Path(args.db))
    # Half a second of imports (Textual, the agent stack) lies between here and the
    # first screen: no collection walks their objects meanwhile (a full one cost
    # 40 ms of it), and they live as long as the process, so they are frozen after.
    with collector.paused():
        app = _build_app(args)
        gc.freeze()
    app.run()
    if app.agent_error is not None:  # the agent is imported after the first frame
        raise AgentLoadError(app.agent_error)
    return EXIT_OK


def _build_app(args: argparse.Namespace) -> SupervisorApp:
    """The store (its first read started), the agent, the app: everything before its first frame."""
    # A big file's first listing is read by two forked processes, started before
    # the store opens and before anything starts a thread (`supervisor.first_read`).
    first_read = None if _where(args).server else FirstRead.start(args.db, args.busy_timeout)
    try:
        store = _where(args).store(busy_timeout=args.busy_timeout)
    except BaseException:
        if first_read is not None:
            first_read.cancel()
        raise
    if first_read is not None:
        store.read_first_from(first_read)
    if hasattr(store, "preview_soon"):
        store.preview_soon()
    try:
        from supervisor.ui.app import make_app

        # The agent is imported after the first frame; what is wrong before the import
        # is an error line now, the rest one line when the app closes on it.
        config = _runner_config(args, defer=True)
    except BaseException:
        store.close()  # and the preview's child with it
        raise
    return make_app(store, config, watch=not args.no_watch, theme=args.theme, remember_theme=True)


def run(argv: Sequence[str]) -> int:
    argv = list(argv)
    app_mode = not argv or argv[0] not in (*SUBCOMMANDS, "--version")
    parser = build_app_parser() if app_mode else build_parser()
    try:
        args = parser.parse_args(argv)
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


def from_environment(args: argparse.Namespace) -> None:
    """`env:NAME` as DB or --jobs-dir: the location read from the environment variable NAME
    (`env:` alone: $AGENT_SUPERVISOR_DSN), so a password never sits in the command line
    every user's `ps` shows. (A URL may also leave the password out: asyncpg then reads
    $PGPASSWORD or ~/.pgpass.)"""
    for name in ("db", "jobs_dir"):
        value = getattr(args, name, None)
        if not isinstance(value, str) or not value.startswith("env:"):
            continue
        variable = value[len("env:") :] or DSN_VARIABLE
        found = os.environ.get(variable)
        if not found:
            raise UsageError(f"{value}: ${variable} is not set", "agent-supervisor")
        setattr(args, name, found)


def main() -> None:
    sys.exit(run(sys.argv[1:]))
