"""`list DB`: every thread with its resume state, as text or JSON."""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from supervisor import collector, listing
from supervisor.cli.context import where
from supervisor.cli.options import EXIT_OK, UsageError, add_db, state_list
from supervisor.cli.output import say_notes
from supervisor.states import ThreadSummary
from supervisor.store import Store


def add_parser(sub: Any) -> None:
    p = sub.add_parser("list", help="list every thread with its resume state")
    add_db(p)
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.add_argument(
        "--state",
        type=state_list,
        metavar="STATE[,STATE]",
        help="only threads in these states",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="also validate the JSON of every row, not only the rows each state depends on "
        "(reads the whole database)",
    )
    p.add_argument(
        "--grep",
        metavar="TEXT",
        help="only threads with a message whose text holds these words (the last may be "
        "the start of a word): user and assistant text, tool arguments, results, errors",
    )
    p.add_argument(
        "--usage",
        action="store_true",
        help="add each thread's tokens and cost (a second read of the assistant messages: "
        "see 'agent-supervisor usage')",
    )
    p.add_argument(
        "--prices",
        type=Path,
        metavar="FILE",
        help="with --usage: a price table over the shipped one",
    )
    p.set_defaults(run=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    options = listing.Options(
        as_json=args.json,
        states=frozenset(args.state) if args.state else None,
        now=time.time(),
        usage=_thread_usage(args) if args.usage else None,
        only=_searched(args) if args.grep is not None else None,
    )
    with collector.bulk_read():  # every summary and line made once, then the process ends
        # --check validates every row first, which holds every summary: one process.
        # A search that found a few threads lists those alone, not 100,000 to keep a few.
        few = options.only is not None and len(options.only) <= FEW_FOUND
        outcome = None if args.check or few else _list_split(args, options)
        if outcome is None:
            outcome = _list_in_one_process(args, options)
    say_notes(outcome.notices)
    _warn_corrupt(outcome.corrupt)
    if outcome.index_hint:  # a big database without the index its backend would use
        print(f"agent-supervisor: note: {outcome.index_hint}", file=sys.stderr)
    return EXIT_OK


#: A search that found at most this many threads lists them alone (a read of those threads;
#: with the thread index, milliseconds), not every thread to keep those.
FEW_FOUND = 2_000


def _searched(args: argparse.Namespace) -> frozenset[str]:
    """The threads `--grep` matches, by the search index or, said on stderr, by a scan."""
    from supervisor.search import query_words

    if not query_words(args.grep):
        raise UsageError(f"--grep {args.grep!r} has no words to search for")
    store = where(args).store(busy_timeout=args.busy_timeout, only=())
    try:
        if not store.has_search_index():
            say_notes(
                [
                    "searching by reading every message (no search index: "
                    f"'agent-supervisor index {where(args).shown} --search' makes one)"
                ]
            )
        return store.search(args.grep).threads
    finally:
        store.close()


def _thread_usage(args: argparse.Namespace) -> listing.ThreadUsage:
    """Each thread's tokens and cost, read before the listing (`supervisor.usage`)."""
    from supervisor.usage import Prices, PricesError, cost_text, grouped, tokens_text

    try:
        prices = Prices.load(args.prices)
    except PricesError as exc:
        raise UsageError(str(exc)) from None
    store = where(args).store(busy_timeout=args.busy_timeout, only=())
    try:
        rows, copied = store.usage_rows()
    finally:
        store.close()
    found = {}
    texts: dict[str, str] = {}  # a few distinct texts, 100,000 times: each kept once
    for group in grouped(rows, "thread", copied):
        cost, unpriced = group.cost(prices)
        item = None
        if args.json:  # the objects only where they are written
            item = group.to_json("thread", prices)
            del item["thread_id"]
        tokens, price = tokens_text(group.usage.total), cost_text(cost, unpriced)
        found[group.key[0]] = (
            texts.setdefault(tokens, tokens),
            texts.setdefault(price, price),
            item,
        )
    del rows
    return listing.ThreadUsage(found)


def _list_split(args: argparse.Namespace, options: listing.Options) -> listing.Outcome | None:
    """The listing by two processes, where it is worth it; None where one lists it all."""
    if where(args).server:
        from supervisor.listing.postgres import list_split

        return list_split(args.db, options, sys.stdout)
    return listing.list_split(args.db, args.busy_timeout, options, sys.stdout)


def _list_in_one_process(args: argparse.Namespace, options: listing.Options) -> listing.Outcome:
    few = options.only is not None and len(options.only) <= FEW_FOUND
    store = where(args).store(
        busy_timeout=args.busy_timeout, **({"only": sorted(options.only)} if few else {})
    )
    try:
        if store.streams == "unordered" and not args.check:  # Postgres: partitions
            tally = listing.write_unordered(store.stream_batches(), options)
        else:
            threads, shape = _listing(store, args.check)
            tally = listing.write_listing(threads, shape, options)
        return listing.Outcome(store.take_notices(), tally.corrupt, store.index_hint(tally.rows))
    finally:
        store.close()


def _listing(store: Store, check: bool) -> tuple[Iterator[ThreadSummary], tuple[int, int]]:
    """Every thread in thread-id order, and (longest thread id, most messages).

    A SQLite file is streamed (`SQLiteStore.stream`): 100,000 summaries held
    at once were most of a listing's memory. `--check` validates every row
    first, which needs them all held; so does a Postgres store.
    """
    if store.streams == "ordered" and not check:
        threads = store.stream()
        first = next(threads, None)  # the pass has run: the shape is known
        shape = store.shape  # type: ignore[attr-defined]
        return itertools.chain([] if first is None else [first], threads), shape
    store.refresh()
    if check:
        store.check_rows()
    held = sorted(store.threads(), key=lambda s: s.thread_id)
    longest = max((len(s.thread_id) for s in held), default=0)
    return iter(held), (longest, max((s.messages for s in held), default=0))


def _warn_corrupt(rows: list[int]) -> None:
    if rows:
        shown = ", ".join(str(r) for r in rows[:5]) + (" …" if len(rows) > 5 else "")
        print(
            f"warning: {len(rows)} thread(s) have a corrupt row (rows {shown}); "
            "they are listed as corrupt",
            file=sys.stderr,
        )
