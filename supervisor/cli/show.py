"""`show DB THREAD`: one thread's transcript, as text, JSON, Markdown or JSON lines; or
an incident bundle of it (`--bundle DIR`, `supervisor.bundle`)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from supervisor.agents import ENV_VAR
from supervisor.cli.context import jobs_place, open_store, where
from supervisor.cli.options import (
    EXIT_OK,
    LIVE_WINDOW,
    UsageError,
    add_db,
    add_jobs_dir,
    version_text,
)
from supervisor.cli.output import no_thread, print_json, say_notes
from supervisor.report import entry_lines, transcript_json, transcript_jsonl
from supervisor.states import ThreadSummary
from supervisor.store import Transcript
from supervisor.text import clean, one_line, relative_time

FORMATS = ("text", "json", "md", "jsonl")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("show", help="print one thread's transcript, or bundle it for a report")
    add_db(p)
    p.add_argument("thread", metavar="THREAD", help="thread id")
    p.add_argument(
        "--format",
        choices=FORMATS,
        help="text (default); json: one object; md: Markdown for a bug report (every "
        "message whole, times in UTC); jsonl: a line for the thread, one per message, "
        "one for a pending request",
    )
    p.add_argument("--json", action="store_true", help="the same as --format json")
    p.add_argument(
        "--full",
        action="store_true",
        help="every message whole, however big (default: one line each, big rows previewed)",
    )
    p.add_argument(
        "--bundle",
        type=Path,
        metavar="DIR",
        help="write an incident bundle into the new directory DIR: the transcript (md and "
        "jsonl), what a resume would do, the job markers, the watcher's attempts, the "
        "lease holder, and a README",
    )
    p.add_argument(
        "--agent",
        metavar="MODULE:ATTR",
        help=f"with --bundle: the agent the plan asks, as resume does (default: ${ENV_VAR}, "
        "else the built-in demo agent)",
    )
    add_jobs_dir(p)
    p.set_defaults(run=cmd_show)


def cmd_show(args: argparse.Namespace) -> int:
    if args.json and args.format not in (None, "json"):
        raise UsageError("--json is --format json: give one of them", "agent-supervisor show")
    if args.bundle is not None:
        if args.json or args.format:
            raise UsageError(
                "--bundle writes every format: leave out --format and --json",
                "agent-supervisor show",
            )
        return _bundle(args)
    if args.agent or args.jobs_dir:
        raise UsageError("--agent and --jobs-dir go with --bundle", "agent-supervisor show")
    shape = args.format or ("json" if args.json else "text")
    full = args.full or shape == "md"  # a report holds every message whole
    store = open_store(args, only=[args.thread])
    try:
        summary = store.get(args.thread)
        if summary is None:
            raise no_thread(where(args), args.thread)
        transcript = store.transcript(args.thread, full=full)
    finally:
        store.close()
    if shape == "json":
        print_json(transcript_json(summary, transcript))
    elif shape == "jsonl":
        _print_lines(transcript_jsonl(summary, transcript))
    elif shape == "md":
        from supervisor.markdown import transcript_markdown

        _print_lines(transcript_markdown(summary, transcript))
    else:
        _print_text(summary, transcript, full)
    if summary.corrupt_row is not None:
        print(
            f"warning: row {summary.corrupt_row} is corrupt: {summary.corrupt_reason}",
            file=sys.stderr,
        )
    return EXIT_OK


def _print_lines(lines: Iterable[str]) -> None:
    write = sys.stdout.write
    for line in lines:
        write(line)
        write("\n")


def _print_text(summary: ThreadSummary, transcript: Transcript, full: bool) -> None:
    print(
        f"thread {one_line(summary.thread_id, 60)} · {summary.state} · "
        f"{summary.messages} message(s) · last activity "
        f"{relative_time(summary.last_activity)}"
    )
    for entry in transcript.entries:
        for line in entry_lines(entry, None if full else 100):
            print(line)
    if summary.request is not None:
        stored = " (answered; resume goes on with it)" if summary.answer_stored else ""
        print(f"pending request {one_line(summary.request.question_id, 60)}{stored}")
        for line in summary.request.lines():
            print("    " + clean(line))


def _bundle(args: argparse.Namespace) -> int:
    """`--bundle DIR`: refused before anything is read if DIR cannot take it; made whole
    or not at all. Without a loadable agent the bundle is still made, without a plan."""
    from supervisor.agents import AgentLoadError
    from supervisor.bundle import BundleError, check_target, gather, write_bundle
    from supervisor.cli.context import agent_and_jobs, agent_environment

    try:
        check_target(args.bundle)
    except BundleError as exc:
        raise UsageError(str(exc)) from None
    jobs_place(args)
    store = open_store(args, only=[args.thread])
    try:
        summary = store.get(args.thread)
        if summary is None:
            raise no_thread(where(args), args.thread)
        agent, no_agent = None, None
        try:
            agent, jobs_dir = agent_and_jobs(args)
        except AgentLoadError as exc:
            jobs_dir = agent_environment(args)
            no_agent = (
                "a plan asks the agent's own policy, as resume --dry-run does, and the "
                f"agent could not be loaded: {exc}"
            )
        incident = gather(
            store,
            where(args),
            summary,
            agent=agent,
            no_agent=no_agent,
            jobs_dir=jobs_dir,
            live_window=LIVE_WINDOW,
        )
    finally:
        store.close()
    try:
        written = write_bundle(
            args.bundle,
            incident,
            versions=version_text(),
            argv=args.argv,
            made_at=time.time(),
        )
    except BundleError as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {clean(str(args.bundle))}: the incident bundle of {one_line(args.thread, 60)}")
    for name in written:
        print(f"  {clean(str(args.bundle / name))}")
    if no_agent is not None:
        say_notes([f"no plan: {no_agent}"])
    return EXIT_OK
