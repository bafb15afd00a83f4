"""Tokens at fleet size: `usage` against a floor, and `list --usage` against `list`.

Whole processes, A and B in turn, on bench/fleet.py's database (100,000
threads / 2,000,000 messages, every assistant row with its usage):

- `usage DB --json` (every reply's tokens summed by thread, priced) against
  the floor: one `GROUP BY thread_id` of the same four numbers in plain
  sqlite3;
- `list DB --usage` (the listing with TOKENS and COST) against `list DB`.

Usage: python bench/usage.py [--threads 100000] [--pairs 3]
       python bench/usage.py --floor DB   (the floor, as its own process)
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet import database, paired  # noqa: E402


def floor(db: str) -> None:
    """The least a sum of tokens by thread can do: SQLite's JSON functions, one pass."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = conn.execute(
        "SELECT thread_id, sum(message_json ->> '$.usage.input_tokens'), "
        "sum(message_json ->> '$.usage.output_tokens'), "
        "sum(message_json ->> '$.usage.cache_read_tokens'), "
        "sum(message_json ->> '$.usage.cache_write_tokens') FROM messages "
        'WHERE message_json >= \'{"role": "assistant",\' '
        'AND message_json < \'{"role": "assistant"-\' GROUP BY thread_id'
    ).fetchall()
    print(len(rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=100_000)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--floor", metavar="DB", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.floor:
        return floor(args.floor)
    db = str(database(args.threads))
    py = sys.executable
    paired(
        f"usage --json, {args.threads:,} threads, against one GROUP BY in sqlite3",
        [py, "-m", "supervisor", "usage", db, "--json"],
        [py, __file__, "--floor", db],
        args.pairs,
        2.0,
    )
    paired(
        "list --usage against list",
        [py, "-m", "supervisor", "list", db, "--usage"],
        [py, "-m", "supervisor", "list", db],
        args.pairs,
        None,
    )


if __name__ == "__main__":
    main()
