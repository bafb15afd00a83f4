"""Concurrent agents, as whole processes: how many threads a resume runs at once, and how fast.

N threads of the demo agent wait between turns ('Process items ...', six tools of
0.5 s, text at 200 tokens/s each). `agent-supervisor resume DB --all
--max-concurrent N` runs them all at once, in one process and spread over worker
processes (`--processes P`, one per core), with the database in rollback-journal
(cubeloop's default) and in WAL mode. Prints wall time and messages stored per
second against the baseline of the same run: one thread alone (the ideal wall
time for N threads is that thread's; throughput should grow with N until
something saturates).

Usage: python bench/concurrency.py [--threads 40,80,160,320] [--processes 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from supervisor.demo_db import child_command

ENV = {
    **os.environ,
    "AGENT_SUPERVISOR_DEMO_TOOL_SECONDS": "0.5",
    "AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND": "200",
}


def waiting_threads(seed: Path, db: Path, n: int, journal: str) -> None:
    """A copy of `seed` (cubeloop's schema, no threads) with `n` threads between turns."""
    shutil.copy(seed, db)
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA journal_mode = {journal}")
    with conn:
        conn.executemany(
            "INSERT INTO messages (thread_id, message_json) VALUES (?, ?)",
            [
                (
                    f"b{i:04d}",
                    json.dumps(
                        {
                            "role": "user",
                            "content": [
                                {
                                    "type": "text",
                                    "text": "Process items "
                                    + ", ".join(f"b{i}-{k}" for k in range(6)),
                                }
                            ],
                            "timestamp": time.time(),
                        }
                    ),
                )
                for i in range(n)
            ],
        )
    conn.close()


def rows(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    finally:
        conn.close()


def resume_all(seed: Path, work: Path, n: int, processes: int, journal: str) -> tuple[float, int]:
    """Wall seconds of the whole `resume --all` process, and messages it stored."""
    db = work / f"{journal}-{n}-{processes}.db"
    waiting_threads(seed, db, n, journal)
    before = rows(db)
    command = [
        sys.executable, "-m", "supervisor", "resume", str(db), "--all",
        "--max-concurrent", str(n), "--processes", str(processes),
        "--jobs-dir", str(work / f"jobs-{journal}-{n}-{processes}"),
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"resume failed ({done.returncode}): {done.stderr[-500:]}")
    return wall, rows(db) - before


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="40,80,160,320")
    p.add_argument("--processes", default=f"1,{os.cpu_count() or 1}")
    p.add_argument("--journals", default="delete,wal")
    args = p.parse_args()
    counts = [int(n) for n in args.threads.split(",")]
    pools = sorted({int(n) for n in args.processes.split(",")})
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        seed = work / "seed.db"
        subprocess.run(
            child_command(seed, "seed", work / "seed-jobs", prompt="Process items 0"),
            capture_output=True,
            env=ENV,
            check=True,
        )
        conn = sqlite3.connect(seed)
        with conn:
            conn.execute("DELETE FROM messages")
            conn.execute("DELETE FROM runs")
        conn.close()
        for journal in args.journals.split(","):
            alone, _ = resume_all(seed, work, 1, 1, journal)
            print(f"\n{journal} journal: one thread alone {alone:.2f} s (the ideal wall time)")
            for n in counts:
                line = f"  {n:4d} threads:"
                walls = {}
                for processes in pools:
                    wall, stored = resume_all(seed, work, n, processes, journal)
                    walls[processes] = wall
                    line += (
                        f"   {processes} process(es) {wall:6.2f} s "
                        f"{stored / wall:6.0f} msgs/s ({wall / alone:4.1f}x ideal)"
                    )
                if len(pools) > 1:
                    line += f"   speed-up {walls[pools[0]] / walls[pools[-1]]:4.2f}x"
                print(line, flush=True)


if __name__ == "__main__":
    main()
