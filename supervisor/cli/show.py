"""`show DB THREAD`: one thread's transcript."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from supervisor.cli.context import open_store, where
from supervisor.cli.options import EXIT_OK, UsageError, add_db
from supervisor.cli.output import print_json
from supervisor.report import entry_lines, transcript_json
from supervisor.text import clean, one_line, relative_time


def add_parser(sub: Any) -> None:
    p = sub.add_parser("show", help="print one thread's transcript")
    add_db(p)
    p.add_argument("thread", metavar="THREAD", help="thread id")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument(
        "--full",
        action="store_true",
        help="every message whole, however big (default: one line each, big rows previewed)",
    )
    p.set_defaults(run=cmd_show)


def cmd_show(args: argparse.Namespace) -> int:
    store = open_store(args, only=[args.thread])
    try:
        summary = store.get(args.thread)
        if summary is None:
            raise UsageError(f"{where(args).shown}: no thread {one_line(args.thread, 60)!r}")
        transcript = store.transcript(args.thread, full=args.full)
    finally:
        store.close()
    if args.json:
        print_json(transcript_json(summary, transcript))
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
