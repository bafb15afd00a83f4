"""`answer DB THREAD`: a pending human-in-the-loop request printed, or answered and run on."""

from __future__ import annotations

import argparse
from typing import Any

from supervisor.cli.context import open_store, run_agents, runner_config, where
from supervisor.cli.options import EXIT_OK, EXIT_UNFINISHED, UsageError, add_db, add_run_options
from supervisor.cli.output import print_json
from supervisor.hitl import AnswerError, answer_for
from supervisor.states import State
from supervisor.text import clean, one_line

#: How to answer each kind of request, said under the request itself.
ANSWER_HOW = {
    "approve": "Answer with --approve, or --deny [REASON].",
    "confirm": "Answer with --approve (yes) or --deny (no).",
    "ask": "Answer with --option N (N,M for several) or --text TEXT, once per question, in order.",
}


def add_parser(sub: Any) -> None:
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
    add_db(p)
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
    p.add_argument(
        "--json",
        action="store_true",
        help="without an answer, print the request as JSON; with one, JSON lines: each "
        "event, then the outcome (decision and final state)",
    )
    add_run_options(p)
    p.set_defaults(run=cmd_answer)


def cmd_answer(args: argparse.Namespace) -> int:
    prog = "agent-supervisor answer"
    answering = args.approve or args.deny is not None or bool(args.replies)
    if args.approve and args.deny is not None:
        raise UsageError("--approve and --deny exclude each other", prog)
    store = open_store(args, only=[args.thread])
    try:
        summary = store.get(args.thread)
    finally:
        store.close()
    if summary is None:
        raise UsageError(f"{where(args).shown}: no thread {one_line(args.thread, 60)!r}")
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
            print_json(request.to_json())
        else:
            print("\n".join(clean(line) for line in request.lines()))
            print(f"\n{ANSWER_HOW.get(request.kind, '')}".rstrip())
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
    config = runner_config(args)
    start = [lambda runner: runner.answer(args.thread, answer)]
    decision = "approve" if args.approve else "deny" if args.deny is not None else "reply"
    ok = run_agents(
        config,
        start,
        probe=args.thread,
        as_json=args.json,
        outcome_extra={"decision": decision, "reason": args.deny or None},
    )
    return EXIT_OK if ok else EXIT_UNFINISHED
