"""Listing benchmark: one SQL pass against per-thread `load()`, and refresh cost.

Builds (once, cached next to this script) a database in the checkpointer's own
schema with 5,000 threads and 200,000 messages of several sizes, interleaved
across threads as concurrent writers leave them, then prints:

- full listing time (median of 3 opens of the store),
- per-thread `SQLiteCheckpointer.load()` on a sample, extrapolated to all threads,
- their ratio (goal: at least 100x),
- a refresh after 10 new messages against a full listing (goal: at least 20x cheaper).

Usage: python bench/listing.py [--threads 5000] [--messages 200000] [--rebuild]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import time
from pathlib import Path

from cubeloop.checkpointer import SQLiteCheckpointer

from supervisor.location import open_store

HERE = Path(__file__).resolve().parent


def _text(rng: random.Random, size: int) -> str:
    words = ["alpha", "beta", "gamma", "delta", "item", "video", "charge", "mail"]
    out: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(words)
        out.append(word)
        length += len(word) + 1
    return " ".join(out)


def _user(rng: random.Random, run: str) -> str:
    return json.dumps(
        {
            "role": "user",
            "content": [{"type": "text", "text": _text(rng, rng.choice([40, 150, 600]))}],
            "id": f"u{rng.getrandbits(48):x}",
            "timestamp": time.time(),
            "metadata": {},
            "run_id": run,
        }
    )


def _assistant(rng: random.Random, run: str, calls: list[str], stop: str) -> str:
    content: list[dict] = [{"type": "text", "text": _text(rng, rng.choice([30, 150, 700]))}]
    content += [
        {
            "type": "tool_call",
            "id": c,
            "name": "process_item",
            "arguments": {"item": c[-4:]},
        }
        for c in calls
    ]
    return json.dumps(
        {
            "role": "assistant",
            "content": content,
            "id": f"a{rng.getrandbits(48):x}",
            "stop_reason": stop,
            "error_message": None,
            "usage": {"input_tokens": 100, "output_tokens": 50},
            "timestamp": time.time(),
            "provider_id": "faux",
            "model_id": "bench",
            "metadata": {},
            "run_id": run,
        }
    )


def _result(rng: random.Random, run: str, call: str) -> str:
    return json.dumps(
        {
            "role": "tool_result",
            "tool_call_id": call,
            "tool_name": "process_item",
            "content": [{"type": "text", "text": _text(rng, rng.choice([20, 200, 1200]))}],
            "details": None,
            "is_error": False,
            "id": f"r{rng.getrandbits(48):x}",
            "timestamp": time.time(),
            "metadata": {},
            "run_id": run,
        }
    )


def _thread_script(rng: random.Random, tid: int, count: int) -> list[str]:
    """`count` messages of a plausible conversation: prompt, tool turns, answers."""
    run = f"run{tid}"
    msgs = [_user(rng, run)]
    turn = 0
    while len(msgs) < count:
        turn += 1
        left = count - len(msgs)
        if left >= 3:
            calls = [f"c{tid}-{turn}-{i}" for i in range(rng.choice([1, 2]))]
            msgs.append(_assistant(rng, run, calls, "tool_use"))
            msgs += [_result(rng, run, c) for c in calls][: count - len(msgs)]
        else:
            msgs.append(_assistant(rng, run, [], "stop"))
            if len(msgs) < count:
                msgs.append(_user(rng, run))
    return msgs[:count]


def build(path: Path, threads: int, messages: int) -> None:
    path.unlink(missing_ok=True)

    async def schema() -> None:
        async with SQLiteCheckpointer(str(path)):
            pass

    asyncio.run(schema())
    rng = random.Random(7)
    per = messages // threads
    scripts = {f"thread-{i:05d}": _thread_script(rng, i, per) for i in range(threads)}
    # Interleave as concurrent writers would: pick a random live thread each time.
    live = list(scripts)
    positions = dict.fromkeys(scripts, 0)
    rows: list[tuple[str, str, str]] = []
    while live:
        i = rng.randrange(len(live))
        tid = live[i]
        rows.append((tid, scripts[tid][positions[tid]], f"run{tid}"))
        positions[tid] += 1
        if positions[tid] == len(scripts[tid]):
            live[i] = live[-1]
            live.pop()
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO messages (thread_id, message_json, run_id) VALUES (?, ?, ?)",
            rows,
        )
        conn.executemany(
            "INSERT INTO runs (thread_id, run_id) VALUES (?, ?)",
            [(t, f"run{t}") for t in scripts],
        )
        conn.executemany(
            "INSERT INTO thread_extra (thread_id, extra_json) VALUES (?, '{}')",
            [(t,) for t in scripts],
        )
    conn.close()


def time_listing(path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    store = open_store(path)
    elapsed = time.perf_counter() - start
    n = len(store.threads())
    store.close()
    return elapsed, n


def time_loads(path: Path, sample: list[str]) -> float:
    async def run() -> float:
        async with SQLiteCheckpointer(str(path)) as cp:
            start = time.perf_counter()
            for tid in sample:
                await cp.load(tid)
            return time.perf_counter() - start

    return asyncio.run(run())


def time_refresh(path: Path, new: int, threads: int) -> tuple[float, set[str]]:
    store = open_store(path)
    rng = random.Random(11)
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO messages (thread_id, message_json) VALUES (?, ?)",
            [(f"thread-{rng.randrange(threads):05d}", _user(rng, "x")) for _ in range(new)],
        )
    conn.close()
    start = time.perf_counter()
    touched = store.refresh()
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed, touched


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=5000)
    p.add_argument("--messages", type=int, default=200_000)
    p.add_argument("--sample", type=int, default=40)
    p.add_argument("--rebuild", action="store_true")
    p.add_argument("--out", type=Path, default=HERE, help="where the database is kept")
    args = p.parse_args()

    path = args.out / f"bench-{args.threads}x{args.messages}.db"
    if args.rebuild or not path.exists():
        start = time.perf_counter()
        build(path, args.threads, args.messages)
        print(f"built {path.name} in {time.perf_counter() - start:.1f} s")
    size_mb = path.stat().st_size / 1e6
    print(f"database: {args.threads} threads, {args.messages} messages, {size_mb:.0f} MB")

    time_listing(path)  # warm the page cache so both sides read from memory
    listings = [time_listing(path) for _ in range(3)]
    listing = statistics.median(t for t, _ in listings)
    assert listings[0][1] == args.threads, listings

    rng = random.Random(3)
    sample = rng.sample(
        [f"thread-{i:05d}" for i in range(args.threads)], min(args.sample, args.threads)
    )
    per_load = time_loads(path, sample) / len(sample)
    loads_all = per_load * args.threads
    print(f"full listing (one SQL pass):        {listing * 1000:8.1f} ms")
    print(
        f"per-thread load() x {args.threads}:          {loads_all * 1000:8.1f} ms "
        f"({per_load * 1000:.1f} ms each, {args.sample}-thread sample)"
    )
    print(f"listing is {loads_all / listing:,.0f}x faster than per-thread loads (goal >= 100x)")

    # Copy so the refresh's new rows do not change the cached database.
    work = path.with_suffix(".refresh.db")
    work.write_bytes(path.read_bytes())
    try:
        refresh, touched = time_refresh(work, 10, args.threads)
    finally:
        work.unlink(missing_ok=True)
    print(f"refresh after 10 new messages:      {refresh * 1000:8.1f} ms ({len(touched)} threads)")
    print(f"refresh is {listing / refresh:,.0f}x cheaper than a full listing (goal >= 20x)")


if __name__ == "__main__":
    main()
