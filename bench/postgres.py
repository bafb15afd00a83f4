"""Postgres benchmark: the same 100,000 threads as bench/fleet.py, in cubeloop's Postgres tables.

Starts a throwaway PostgreSQL server (tests/pg_server.py), creates cubeloop's
schema, and copies fleet.py's SQLite database into it row for row (payloads
msgpack-encoded, as `PostgresCheckpointer` writes them; `seq` numbered per
thread; the same times and run ids). Then prints, each against a baseline
measured in the same run, A and B in turn:

- `list URL`, the whole process, against the floor (fleet.py's for SQLite, in
  Postgres): one `GROUP BY thread_id` aggregate over `cubepi_messages` (count
  and max(seq)) joined to each thread's last message, in a plain asyncpg
  process (goal: within 2x); against that aggregate alone (an index-only scan,
  less than any listing can do); and against `list` of the SQLite file holding
  the same data;
- a refresh after 10 new messages (cubeloop's own appends to 10 threads):
  median of rounds, in process, with none of the indexes `agent-supervisor
  index URL` adds, with the `created_at` one alone, and with all (goal: under
  50 ms);
- resume latency to the first model call (what `r` does) for a 49-message
  thread, in a small database and in the big one;
- what an open app costs the server while nobody touches it: the CPU time of
  every server process over `--idle-seconds`, with the app open in a
  pseudo-terminal, without `index URL`'s indexes and with them (goal: the
  indexes keep the server under 1% of a core).

Usage: python bench/postgres.py [--threads 100000] [--pairs 3] [--rounds 5] [--idle-only]
       python bench/postgres.py --floor URL    (the floor, as its own process)
       python bench/postgres.py --floor-aggregate URL
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

_JULIAN_UNIX_EPOCH = 2440587.5
_ROLES = {"user": "user", "assistant": "assistant", "tool_result": "tool"}


def floor(dsn: str, last_rows: bool) -> None:
    """The least a listing must do, as bench/fleet.py's floor for SQLite: one aggregate
    over every message, and each thread's last message (`last_rows`); without them,
    the aggregate alone (an index-only scan: no listing can stop there, it must read
    each thread's roles and tail)."""
    import asyncpg

    aggregate = "SELECT thread_id, count(*) AS n, max(seq) AS last FROM cubepi_messages GROUP BY 1"
    sql = (
        f"SELECT g.thread_id, g.n, m.payload FROM ({aggregate}) AS g "
        "JOIN cubepi_messages m ON m.thread_id = g.thread_id AND m.seq = g.last"
        if last_rows
        else aggregate
    )

    async def run() -> int:
        # JIT off, as our listing has it: it compiled for a second before this ran.
        conn = await asyncpg.connect(dsn, server_settings={"jit": "off"})
        rows = await conn.fetch(sql)
        await conn.close()
        return len(rows)

    print(asyncio.run(run()))


async def load(sqlite_path: Path, dsn: str) -> int:
    """Copy the SQLite bench database into cubeloop's Postgres tables; the rows copied."""
    import datetime
    import json
    import sqlite3

    import asyncpg
    import msgpack

    def when(julian: float) -> datetime.datetime:
        seconds = (julian - _JULIAN_UNIX_EPOCH) * 86400.0
        return datetime.datetime.fromtimestamp(seconds, datetime.UTC)

    src = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    conn = await asyncpg.connect(dsn)
    threads = [t for (t,) in src.execute("SELECT thread_id FROM thread_extra ORDER BY rowid")]
    await conn.copy_records_to_table(
        "cubepi_threads", records=[(t,) for t in threads], columns=["thread_id"]
    )
    await conn.copy_records_to_table(
        "cubepi_runs",
        records=[
            (t, r, when(c))
            for t, r, c in src.execute("SELECT thread_id, run_id, claimed_at FROM runs")
        ],
        columns=["thread_id", "run_id", "claimed_at"],
    )
    seqs: dict[str, int] = {}
    batch: list[tuple] = []
    copied = 0
    columns = ["thread_id", "seq", "role", "payload", "run_id", "created_at"]
    for thread_id, text, created, run_id in src.execute(
        "SELECT thread_id, message_json, created_at, run_id FROM messages ORDER BY id"
    ):
        message = json.loads(text)
        seq = seqs[thread_id] = seqs.get(thread_id, 0) + 1
        payload = msgpack.packb(message, use_bin_type=True)
        batch.append((thread_id, seq, _ROLES[message["role"]], payload, run_id, when(created)))
        if len(batch) == 50_000:
            await conn.copy_records_to_table("cubepi_messages", records=batch, columns=columns)
            copied += len(batch)
            batch.clear()
    if batch:
        await conn.copy_records_to_table("cubepi_messages", records=batch, columns=columns)
        copied += len(batch)
    await conn.execute("ANALYZE")
    await conn.close()
    src.close()
    return copied


async def append_messages(dsn: str, thread_ids: list[str]) -> None:
    """One user message to each thread, through cubeloop's own `append`."""
    from cubeloop import TextContent
    from cubeloop.providers.base import UserMessage

    from supervisor.location import Location

    async with Location.parse(dsn).checkpointer() as cp:
        for t in thread_ids:
            await cp.append(t, [UserMessage(content=[TextContent(text="more")], timestamp=0)])


def refresh_figures(dsn: str, threads: int, rounds: int, label: str) -> None:
    from supervisor.location import Location

    store = Location.parse(dsn).open_store()
    times = []
    for r in range(rounds):
        chosen = [f"thread-{(r * 997 + i * 7919) % threads:05d}" for i in range(10)]
        asyncio.run(append_messages(dsn, chosen))
        start = time.perf_counter()
        touched = store.refresh()
        times.append((time.perf_counter() - start) * 1000)
        assert set(chosen) <= touched, (chosen, touched)
    store.close()
    median = statistics.median(times)
    verdict = "met" if median < 50 else "MISSED"
    print(
        f"refresh after 10 new messages, {label:<20} median {median:6.1f} ms  "
        f"max {max(times):6.1f} ms  goal < 50 ms: {verdict}"
    )


async def add_indexes(dsn: str, only_created: bool) -> None:
    """Our indexes (`agent-supervisor index URL`), or the first of them alone (the only
    one before the rest were added: the figure they are measured against)."""
    from supervisor.pg.client import connect
    from supervisor.pg.schema import CREATED_INDEX, INDEXES, add_indexes

    conn = await connect(dsn)
    if only_created:
        await conn.execute(f"CREATE INDEX {CREATED_INDEX} ON {dict(INDEXES)[CREATED_INDEX]}")
    else:
        await add_indexes(conn)
    await conn.close()


def resume_figures(server, big: str, work: Path) -> None:
    """`r` on a 49-message after_tools thread: small database against the big one."""
    import os

    from runner import PROMPT, time_to_first_model_call

    from supervisor.demo_db import run_child_process

    os.environ["AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND"] = "0"
    probe = subprocess_events(work)
    small = server.new_database()
    results = []
    for label, dsn in (("small database", small), ("100,000-thread database", big)):
        run_child_process(dsn, "long", work / "jobs", prompt=PROMPT, kill_at_event=probe)
        os.environ["JOB_DIR"] = str(work / "jobs")
        times = []
        for _ in range(5):
            times.append(
                asyncio.run(time_to_first_model_call(dsn, work / "jobs", "long", None)) * 1000
            )
        results.append((label, statistics.median(times)))
    base = results[0][1]
    for label, ms in results:
        print(f"resume to first model call, {label:<24} median {ms:7.1f} ms  {ms / base:4.1f}x")


def subprocess_events(work: Path) -> int:
    """The event number of the last model call of a full 'Process items 1..32' run."""
    import os
    import subprocess

    from runner import PROMPT

    from supervisor.demo_db import child_command

    out = subprocess.run(
        child_command(work / "probe.db", "p", work / "probe", prompt=PROMPT, list_events=True),
        capture_output=True,
        text=True,
        env={**os.environ, "AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND": "0"},
        check=True,
    ).stdout.split("\n")
    events = [line.split() for line in out if line.strip()]
    return max(int(n) for n, kind in events if kind == "message_start")


def server_cpu(server) -> float:
    """CPU seconds the server has used so far: the postmaster, the backends it reaped and
    the ones alive (Linux /proc)."""
    pid = int((server.data / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")

    def fields(p: int) -> list[str]:
        stat = Path(f"/proc/{p}/stat").read_text()
        return stat[stat.rindex(")") + 2 :].split()  # after the command's name

    main = fields(pid)
    total = sum(int(v) for v in main[11:15])  # utime stime cutime cstime
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                f = fields(int(entry.name))
            except OSError:
                continue
            if int(f[1]) == pid:
                total += int(f[11]) + int(f[12])
    return total / tick


def idle_app_figure(server, dsn: str, label: str, seconds: float, warmup: float = 60) -> None:
    """The app open on `dsn` in a pseudo-terminal, left alone: the server's CPU over `seconds`
    after `warmup` (its first reads: the list, the row check, the tokens), 10 s at a time."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(TERM="xterm-256color", COLUMNS="120", LINES="40")
        os.execv(sys.executable, [sys.executable, "-m", "supervisor", dsn])
    stop = threading.Event()

    def drain() -> None:  # the screen is not read: only kept from filling the pty
        while not stop.is_set():
            try:
                if not os.read(fd, 65536):
                    return
            except OSError:
                return

    threading.Thread(target=drain, daemon=True).start()
    try:
        time.sleep(warmup)
        windows = []
        for _ in range(max(1, round(seconds / 10))):
            before = server_cpu(server)
            time.sleep(10)
            windows.append((server_cpu(server) - before) / 10 * 100)
        steady = windows[len(windows) // 2 :]
        print(
            f"open app, idle ({label}): the server's CPU, % of a core, 10 s at a time from "
            f"{warmup:.0f} s after start: {' '.join(f'{w:.0f}' for w in windows)}; "
            f"the later half {sum(steady) / len(steady):.1f}%"
        )
    finally:
        stop.set()
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--floor", metavar="URL")
    parser.add_argument("--floor-aggregate", metavar="URL")
    parser.add_argument("--load", nargs=2, metavar=("SQLITE", "URL"))
    parser.add_argument("--idle-only", action="store_true", help="the open app's figures only")
    parser.add_argument("--idle-seconds", type=float, default=120.0)
    args = parser.parse_args()
    if args.floor or args.floor_aggregate:
        floor(args.floor or args.floor_aggregate, last_rows=bool(args.floor))
        return
    if args.load:
        print(asyncio.run(load(Path(args.load[0]), args.load[1])))
        return

    from fleet import database, paired

    from tests.pg_server import Server

    sqlite_path = database(args.threads)
    server = Server()
    server.start()
    try:
        dsn = server.new_database()
        start = time.perf_counter()
        # In a process of its own: a child inherits its parent's peak memory
        # (ru_maxrss survives fork and exec), so this process stays small.
        rows = int(
            subprocess.run(
                [sys.executable, __file__, "--load", str(sqlite_path), dsn],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        print(
            f"copied {rows:,} messages of {args.threads:,} threads in "
            f"{time.perf_counter() - start:.0f} s"
        )
        if args.idle_only:
            idle_app_figure(server, dsn, "no index", args.idle_seconds)
            asyncio.run(add_indexes(dsn, only_created=False))
            idle_app_figure(server, dsn, "all our indexes", args.idle_seconds)
            return
        cli = [sys.executable, "-m", "supervisor", "list"]
        paired(
            "list (Postgres) vs floor",
            cli + [dsn],
            [sys.executable, __file__, "--floor", dsn],
            args.pairs,
            2.0,
        )
        paired(
            "list vs the aggregate alone",
            cli + [dsn],
            [sys.executable, __file__, "--floor-aggregate", dsn],
            args.pairs,
            None,
        )
        paired(
            "list: Postgres vs SQLite, same data",
            cli + [dsn],
            cli + [str(sqlite_path)],
            args.pairs,
            None,
        )
        refresh_figures(dsn, args.threads, args.rounds, "no index")
        idle_app_figure(server, dsn, "no index", args.idle_seconds)
        asyncio.run(add_indexes(dsn, only_created=True))
        refresh_figures(dsn, args.threads, args.rounds, "created_at index")
        asyncio.run(add_indexes(dsn, only_created=False))
        refresh_figures(dsn, args.threads, args.rounds, "all our indexes")
        with tempfile.TemporaryDirectory() as work:
            resume_figures(server, dsn, Path(work))
        idle_app_figure(server, dsn, "all our indexes", args.idle_seconds)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
