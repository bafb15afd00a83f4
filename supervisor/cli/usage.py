"""`usage DB`: tokens and cost, by thread, run, model or day."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from supervisor.cli.context import open_store, where
from supervisor.cli.options import EXIT_OK, UsageError, add_db, since
from supervisor.cli.output import no_thread, write_json_array
from supervisor.text import one_line


def add_parser(sub: Any) -> None:
    from supervisor.usage import GROUPINGS

    p = sub.add_parser(
        "usage",
        help="tokens and cost from the stored assistant messages, by thread, run, model or day",
    )
    add_db(p)
    p.add_argument(
        "--by", choices=GROUPINGS, default="thread", help="how to group (default %(default)s)"
    )
    p.add_argument(
        "--since",
        type=since,
        metavar="WHEN",
        help="only messages written since: an age (7d, 12h) or a UTC date (2026-12-01)",
    )
    p.add_argument(
        "--thread", action="append", metavar="THREAD", help="only this thread (again for more)"
    )
    p.add_argument(
        "--prices",
        type=Path,
        metavar="FILE",
        help="a price table (TOML) over the shipped one (default: "
        "$XDG_CONFIG_HOME/agent-supervisor/prices.toml, when there is one)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(run=cmd_usage)


def cmd_usage(args: argparse.Namespace) -> int:
    from supervisor.usage import Prices, PricesError, grouped

    try:
        prices = Prices.load(args.prices)
    except PricesError as exc:
        raise UsageError(str(exc)) from None
    # The sums need no listing: a store that has read no thread (a listing of 100,000
    # threads first was most of this command's time and memory).
    if args.thread:  # named threads must be there, as in every command
        named = open_store(args, only=args.thread)
        try:
            missing = [t for t in args.thread if named.get(t) is None]
        finally:
            named.close()
        if missing:
            raise no_thread(where(args), missing[0])
    store = where(args).store(busy_timeout=args.busy_timeout, only=())
    try:
        rows, copied = store.usage_rows(args.since, args.thread, days=args.by == "day")
    finally:
        store.close()
    groups = grouped(rows, args.by, copied)
    if args.by != "day":  # the biggest spenders first
        groups.sort(key=lambda g: (-g.cost(prices)[0], -g.usage.total))
    if args.json:  # item by item: 100,000 threads' objects at once were 300 MiB
        write_json_array(g.to_json(args.by, prices) for g in groups)
        return EXIT_OK
    for line in usage_lines(groups, args.by, prices):
        print(line)
    return EXIT_OK


#: What a group without a key is called (a reply with no model, a row with no run).
NO_KEY = {"thread": "(none)", "run": "(no run)", "model": "(no model)", "day": "(no time)"}


def usage_lines(groups: list[Any], by: str, prices: Any) -> list[str]:
    """The table: a row per group, then the total and the models with no price."""
    from supervisor.usage import Group, cost_text, tokens_text

    heads = {"thread": ["THREAD"], "run": ["THREAD", "RUN"], "model": ["MODEL"], "day": ["DAY"]}
    head = heads[by] + ["MSGS", "INPUT", "OUTPUT", "CACHE R", "CACHE W", "TOTAL", "COST"]
    total = Group(("total",))
    table: list[list[str]] = []
    unpriced: set[str] = set()
    for g in groups:
        u = g.usage
        cost, missing = g.cost(prices)
        unpriced.update(missing)
        for model, mu in g.by_model.items():
            have = total.by_model.setdefault(model, type(mu)())
            have.add(mu)
        keys = [one_line(str(k) if k else NO_KEY[by], 36) for k in g.key]
        table.append(keys + _figures(u, cost_text(cost, missing), tokens_text))
    if not table:
        return ["no assistant messages with usage" + ("" if by == "day" else " here")]
    u = total.usage
    cost, missing = total.cost(prices)
    table.append(
        ["total"] + [""] * (len(heads[by]) - 1) + _figures(u, cost_text(cost, missing), tokens_text)
    )
    widths = [max(len(row[i]) for row in [head, *table]) for i in range(len(head))]
    keys = len(heads[by])
    lines = []
    for n, row in enumerate([head, *table]):
        if n == len(table):  # before the total
            lines.append("")
        cells = [
            cell.ljust(widths[i]) if i < keys or i == len(head) - 1 else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    if unpriced:
        lines.append(
            f"no price for: {', '.join(one_line(m, 40) for m in sorted(unpriced))} "
            "(add them to a price file: agent-supervisor usage --help)"
        )
    return lines


def _figures(u: Any, cost: str, tokens_text: Any) -> list[str]:
    return [
        str(u.messages),
        tokens_text(u.input),
        tokens_text(u.output),
        tokens_text(u.cache_read),
        tokens_text(u.cache_write),
        tokens_text(u.total),
        cost,
    ]
