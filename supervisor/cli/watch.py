"""`watch DB`: crashed threads resumed by policy until SIGTERM, and `release`."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from supervisor.cli.context import open_store, runner_config, where
from supervisor.cli.options import (
    EXIT_OK,
    UsageError,
    add_db,
    add_run_options,
    backoff,
    dollars,
    non_negative,
    positive_int,
    seconds,
    watch_state_list,
)
from supervisor.text import one_line

#: How long `watch` may take to stop past its runs' abort grace before it exits anyway.
SHUTDOWN_MARGIN = 10.0

#: How long a hard exit waits for the spans already ended to be exported (`--otel`).
LAST_FLUSH = 3.0


def add_parser(sub: Any) -> None:
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
    add_db(p)
    add_run_options(p, force=False)
    p.add_argument(
        "--states",
        type=watch_state_list,
        default=None,
        metavar="STATE[,STATE]",
        help="states to resume (default: mid_tool,after_tools,between_turns,error,answered; "
        "aborted may be added; awaiting_input never)",
    )
    p.add_argument(
        "--max-attempts",
        type=positive_int,
        default=5,
        metavar="N",
        help="failed resumes before a thread is held (default %(default)s)",
    )
    p.add_argument(
        "--backoff",
        type=backoff,
        default=(10.0, 600.0),
        metavar="INITIAL,MAX",
        help="seconds before retrying a failed thread: INITIAL, doubling, at most MAX "
        "(default 10,600)",
    )
    p.add_argument(
        "--quiet",
        type=non_negative,
        default=30.0,
        metavar="SECONDS",
        help="a thread must be this long without a write or a lease (default %(default)s)",
    )
    p.add_argument(
        "--poll",
        type=seconds(0.05, 3600.0),
        default=1.0,
        metavar="SECONDS",
        help="how often to look at the database (default %(default)s)",
    )
    p.add_argument(
        "--budget",
        type=dollars,
        metavar="AMOUNT",
        help="hold, instead of resuming, a thread whose tokens have cost more than this "
        "(US dollars, from the price table: see 'agent-supervisor usage')",
    )
    p.add_argument(
        "--prices",
        type=Path,
        metavar="FILE",
        help="with --budget: a price table over the shipped one",
    )
    p.add_argument(
        "--events",
        metavar="FILE|-",
        help="write one JSON line per event (a thread entered awaiting_input, was held, an "
        "attempt failed, a resumed thread finished, a thread was resumed) to FILE, appending; "
        "'-': to stdout (the log lines go to stderr then)",
    )
    p.add_argument(
        "--on-event",
        metavar="CMD",
        help="run CMD (a shell command) once per event, the event's JSON on its stdin "
        "($AGENT_SUPERVISOR_EVENT and $AGENT_SUPERVISOR_THREAD set); in order, off the "
        "watcher's loop, at most 30s each",
    )
    p.set_defaults(run=cmd_watch)

    p = sub.add_parser("release", help="clear held threads so the watcher may try them again")
    add_db(p)
    p.add_argument("threads", nargs="+", metavar="THREAD")
    p.set_defaults(run=cmd_release)


def cmd_watch(args: argparse.Namespace) -> int:
    """Run the watcher until SIGTERM/SIGINT; exit 0 once its runs are aborted gracefully."""
    import asyncio
    import signal

    _check_events(args.events)

    from supervisor.runner import Runner
    from supervisor.watch import DEFAULT_STATES, Policy, Watcher

    prices = None
    if args.budget is not None:
        from supervisor.usage import Prices, PricesError

        try:
            prices = Prices.load(args.prices)
        except PricesError as exc:
            raise UsageError(str(exc)) from None
    policy = Policy(
        budget=args.budget,
        prices=prices,
        states=args.states or DEFAULT_STATES,
        max_attempts=args.max_attempts,
        backoff=args.backoff,
        quiet=args.quiet,
        max_concurrent=args.max_concurrent,
        poll=args.poll,
    )
    config = runner_config(args)
    config.live_window = policy.quiet
    store = where(args).store(busy_timeout=args.busy_timeout)
    ledger = where(args).attempts()
    try:
        ledger.require()
        try:
            ledger.check()
        except Exception as exc:
            raise UsageError(
                f"{ledger.shown}: cannot keep the watcher's records there "
                f"({one_line(str(exc), 120)})"
            ) from None
        events_out = _events_file(args.events)  # checked at the start; made last
    except BaseException:
        ledger.close()
        store.close()
        raise
    say = sys.stderr if args.events == "-" else sys.stdout

    def log(line: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{stamp} {line}", file=say, flush=True)

    events = None
    if events_out is not None or args.on_event:
        from supervisor.events import EventLog

        events = EventLog(events_out, args.on_event or None, warn=log)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        leave = _Shutdown(loop, stop, config.abort_grace + SHUTDOWN_MARGIN, log, config.tracing)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, leave.on_signal)
        async with Runner(config) as runner:
            await runner.check_agent("agent-supervisor-probe")
            await Watcher(store, runner, ledger, policy, log=log, events=events).run(stop)

    try:
        asyncio.run(main())
    finally:
        if events is not None:
            events.close()
        if events_out is not None and events_out is not sys.stdout:
            with contextlib.suppress(OSError):  # what a full disk kept in its buffer: said
                events_out.close()
        ledger.close()
        store.close()
    return EXIT_OK


def _check_events(name: str | None) -> None:
    """`--events FILE`, checked before anything is opened or made: a directory, a missing
    directory or an empty name are one line and exit 2."""
    if name is None or name == "-":
        return
    if not name.strip():
        raise UsageError("--events: give a file, or - for stdout")
    path = Path(name)
    if path.is_dir():
        raise UsageError(f"--events {one_line(name, 120)}: is a directory")
    if not path.parent.is_dir():
        raise UsageError(
            f"--events {one_line(name, 120)}: no directory {one_line(str(path.parent), 120)}"
        )


def _events_file(name: str | None) -> TextIO | None:
    """Where `--events` writes (`_check_events` said it may): stdout for '-', else FILE
    opened for appending (created if it is not there)."""
    if name is None:
        return None
    if name == "-":
        return sys.stdout
    try:
        return Path(name).open("a", encoding="utf-8", buffering=1)
    except OSError as exc:
        why = one_line(exc.strerror or str(exc), 120)
        raise UsageError(f"--events {one_line(name, 120)}: {why}") from None


class _Shutdown:
    """`watch`'s answer to SIGTERM and SIGINT: stop gracefully, within a deadline.

    The first signal asks the watcher to stop (its runs are aborted and parked,
    for the next watcher). A database that stops answering (a server under
    SIGSTOP, a dead network path) must not keep the process past the deadline
    `systemctl stop` allows: a timer thread exits it then, and so does a second
    signal. Exiting hard is what SIGKILL does, and a run killed that way stays
    resumable: nothing is doubled, only the tidy "parked" record is missing.
    The handler is a plain `signal.signal` one, not the event loop's: it runs
    even while the loop's thread waits on a blocking database call. Spans
    already ended are exported before a hard exit (`--otel`), for a few seconds
    at most.
    """

    def __init__(
        self,
        loop: Any,
        stop: Any,
        deadline: float,
        log: Callable[[str], None],
        tracing: Any = None,
    ) -> None:
        self.loop, self.stop, self.deadline, self.log = loop, stop, deadline, log
        self.tracing = tracing
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
        if self.tracing is not None:
            with contextlib.suppress(Exception):
                self.tracing.flush_now(LAST_FLUSH)
        os._exit(128 + signum)


def cmd_release(args: argparse.Namespace) -> int:
    ledger = where(args).attempts()
    store = open_store(args, only=args.threads)
    try:
        unknown = [t for t in args.threads if store.get(t) is None]
        if unknown:
            raise UsageError(f"{where(args).shown}: no thread {one_line(unknown[0], 60)!r}")
        released = set(ledger.release(list(dict.fromkeys(args.threads))))
    finally:
        store.close()
        ledger.close()
    for thread_id in dict.fromkeys(args.threads):
        what = "released" if thread_id in released else "had no attempts recorded"
        print(f"{one_line(thread_id, 60)}: {what}")
    return EXIT_OK
