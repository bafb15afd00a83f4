"""Search by message text at fleet size: `list --grep` with the search index, against a floor.

A database of `--threads` threads and `--messages` messages (bench/listing.py's
rows: user text, tool calls, results, interleaved as concurrent writers leave
them) gets 50 planted words, each in one thread's new message, the thread
index (`agent-supervisor index`) and the search index (`index --search`,
timed, with its side file's size). Then, whole processes, A and B in turn:

- `list DB --grep WORD --json` for a planted word (the search, then a listing
  of the one thread it found) against the floor: one FTS5 query on the side
  file and that thread's last row, in plain sqlite3;
- the same search without the search index (it scans every message), once;
- `list --grep` for a word in most messages against `list` of the same file.

Goal: a search answers in under 1 s once indexed.

Usage: python bench/search.py [--threads 100000] [--messages 4000000] [--pairs 3]
       python bench/search.py --floor DB WORD   (the floor, as its own process)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet import CACHE, paired, timed  # noqa: E402

NEEDLES = 50


def needle(n: int) -> str:
    return f"needle{n:04d}q"


def floor(db: str, word: str) -> None:
    """The least a search can do: the index's answer, and the found thread's last row."""
    side = sqlite3.connect(f"file:{db}.search?mode=ro", uri=True)
    ids = [
        r[0]
        for r in side.execute(
            "SELECT DISTINCT r.thread_id FROM words w JOIN rows r ON r.id = w.rowid "
            "WHERE words MATCH ?",
            (f'"{word}"*',),
        )
    ]
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    for thread_id in ids:
        conn.execute(
            "SELECT message_json FROM messages WHERE thread_id = ? ORDER BY id DESC LIMIT 1",
            (thread_id,),
        ).fetchone()
    print(ids)


def prepared(threads: int, messages: int) -> Path:
    """The cached fleet with needles planted, the thread index and the search index."""
    from listing import build

    base = CACHE / f"bench-{threads}x{messages}.db"
    if not base.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        build(base, threads, messages)
        print(f"built {base} in {time.perf_counter() - started:.0f} s")
    copy = CACHE / f"{base.stem}-search.db"
    if copy.exists() and Path(f"{copy}.search").exists():
        return copy
    shutil.copy(base, copy)
    conn = sqlite3.connect(copy)
    with conn:
        for n in range(NEEDLES):
            thread = f"thread-{(n * 1999) % threads:05d}"
            message = {
                "role": "user",
                "content": [{"type": "text", "text": f"please look at {needle(n)} again"}],
                "id": f"needle{n}",
                "timestamp": time.time(),
                "metadata": {},
                "run_id": f"run{thread}",
            }
            conn.execute(
                "INSERT INTO messages (thread_id, message_json, run_id) VALUES (?, ?, ?)",
                (thread, json.dumps(message), f"run{thread}"),
            )
    conn.close()
    py = [sys.executable, "-m", "supervisor"]
    subprocess.run([*py, "index", str(copy), "--yes"], check=True, capture_output=True)
    started = time.perf_counter()
    subprocess.run([*py, "index", str(copy), "--search", "--yes"], check=True)
    size = Path(f"{copy}.search").stat().st_size / 1e6
    print(
        f"search index: {time.perf_counter() - started:.0f} s to build, {size:,.0f} MB "
        f"beside a {copy.stat().st_size / 1e6:,.0f} MB database"
    )
    return copy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=100_000)
    p.add_argument("--messages", type=int, default=4_000_000)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--floor", nargs=2, metavar=("DB", "WORD"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.floor:
        return floor(*args.floor)
    db = prepared(args.threads, args.messages)
    py = sys.executable
    word = needle(7)
    wall = paired(
        f"list --grep {word} (indexed), {args.threads:,} threads / {args.messages:,} messages",
        [py, "-m", "supervisor", "list", str(db), "--grep", word, "--json"],
        [py, __file__, "--floor", str(db), word],
        args.pairs,
        None,
    )
    print(f"search answered in {wall:.2f} s   goal < 1 s: {'met' if wall < 1 else 'MISSED'}")
    side = Path(f"{db}.search")
    aside = side.with_name(side.name + ".aside")
    side.rename(aside)
    try:
        scan, _, cpu = timed([py, "-m", "supervisor", "list", str(db), "--grep", word, "--json"])
        print(f"the same without the search index (a scan): {scan:.2f} s, {cpu:.2f} s CPU")
    finally:
        aside.rename(side)
    paired(
        "list --grep mail (most messages) against list",
        [py, "-m", "supervisor", "list", str(db), "--grep", "mail"],
        [py, "-m", "supervisor", "list", str(db)],
        args.pairs,
        None,
    )


if __name__ == "__main__":
    main()
