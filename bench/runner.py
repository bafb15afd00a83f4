"""Runner benchmark: resume start-up latency, and how many threads run at once.

1. Resume latency: a 49-message thread crashed in `after_tools` (the demo agent
   on 'Process items 1..32', SIGKILLed just as its last model call started) is
   resumed; we time `Runner.resume()` until the first model call streams. The
   baseline, measured in the same run, is a fresh prompt on an empty thread
   (same agent, same database) until its first model call.
   With `--big DB` the same thread is also appended to a copy of a large
   database (e.g. bench/bench-5000x200000.db from bench/listing.py), since
   loading a thread scans the whole messages table; and to a copy of that with
   the index `agent-supervisor index` adds.

2. Concurrency: N threads of the demo agent ('Process items 1..6', tools of
   0.5 s, text at 200 tokens/s) run at once while a 20 ms ticker measures how
   late the event loop is. The event stream "lags" once the ticker's p99
   lateness passes 100 ms (a UI would stutter). Reports events/s and lateness
   for growing N.

Usage: python bench/runner.py [--big bench/bench-5000x200000.db] [--max-threads 400]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from supervisor.agents import load_factory
from supervisor.demo_db import child_command
from supervisor.runner import Runner, RunnerConfig, RunnerEvent
from supervisor.sqlite.files import add_thread_index

PROMPT = "Process items 1..32"


def crashed_thread(db: Path, jobs: Path) -> None:
    """Make thread 'long' (49 messages, after_tools) with a real SIGKILL."""
    env = {**os.environ, "AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND": "0"}
    listing = subprocess.run(
        child_command(
            db.with_suffix(".probe.db"),
            "p",
            jobs / "probe",
            prompt=PROMPT,
            list_events=True,
        ),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split("\n")
    events = [line.split() for line in listing if line.strip()]
    last_model_call = max(int(n) for n, kind in events if kind == "message_start")
    subprocess.run(
        child_command(db, "long", jobs, prompt=PROMPT, kill_at_event=last_model_call),
        capture_output=True,
        env=env,
    )


async def time_to_first_model_call(db: Path, jobs: Path, thread: str, prompt: str | None) -> float:
    config = RunnerConfig(
        database=db,
        factory=load_factory("supervisor.demo:demo_agent"),
        jobs_dir=jobs,
        live_window=0,
    )
    first = asyncio.get_running_loop().create_future()

    def on_event(event: RunnerEvent) -> None:
        if event.type == "assistant_start" and not first.done():
            first.set_result(time.perf_counter())

    async with Runner(config) as runner:
        await runner._cp()  # open the database outside the timing, as the UI has it open
        runner.subscribe(on_event)
        start = time.perf_counter()
        if prompt is None:
            await runner.resume(thread)
        else:
            await runner.prompt(thread, prompt)
        end = await first
        await runner.abort(thread)
    return end - start


def copy_thread(src: Path, dst: Path, thread: str) -> None:
    conn = sqlite3.connect(dst)
    conn.execute("ATTACH DATABASE ? AS src", (str(src),))
    with conn:
        conn.execute(
            "INSERT INTO messages (thread_id, message_json, created_at, run_id) "
            "SELECT thread_id, message_json, created_at, run_id FROM src.messages "
            "WHERE thread_id = ? ORDER BY id",
            (thread,),
        )
    conn.close()


def resume_latency(work: Path, big: Path | None) -> None:
    db, jobs = work / "r.db", work / "jobs"
    crashed_thread(db, jobs)
    n = (
        sqlite3.connect(db)
        .execute("SELECT count(*) FROM messages WHERE thread_id='long'")
        .fetchone()[0]
    )
    os.environ["JOB_DIR"] = str(jobs)
    targets = [("small database", db)]
    if big is not None:
        big_copy = work / "big.db"
        shutil.copy(big, big_copy)
        copy_thread(db, big_copy, "long")
        targets.append((f"large database ({big.name})", big_copy))
        indexed = work / "big-indexed.db"
        shutil.copy(big_copy, indexed)
        add_thread_index(indexed, 30.0)  # what `agent-supervisor index` adds
        targets.append(("large database, indexed", indexed))
    print(f"resume latency: a {n}-message thread in after_tools, to its first model call")
    for label, path in targets:
        snapshot = work / "snap.db"
        shutil.copy(path, snapshot)
        resumes, prompts = [], []
        for _ in range(3):
            shutil.copy(snapshot, path)
            # Written out before the clock starts: a resume right after copying 1.8 GB
            # waited for that copy's write-back (1.0-1.2 s where it takes 12-15 ms after).
            os.sync()
            resumes.append(asyncio.run(time_to_first_model_call(path, jobs, "long", None)))
            prompts.append(
                asyncio.run(time_to_first_model_call(path, jobs, "fresh", "Process items x"))
            )
        resume, fresh = statistics.median(resumes), statistics.median(prompts)
        print(
            f"  {label:<40} resume {resume * 1000:7.1f} ms   fresh prompt {fresh * 1000:7.1f} ms   "
            f"ratio {resume / fresh:.1f}x"
        )


async def concurrency_step(db: Path, jobs: Path, n: int) -> tuple[float, float, float, int]:
    os.environ["JOB_DIR"] = str(jobs)  # the demo agent's markers and ledger: fresh each run
    os.environ["AGENT_SUPERVISOR_DEMO_TOOL_SECONDS"] = "0.5"
    os.environ["AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND"] = "200"
    config = RunnerConfig(
        database=db,
        factory=load_factory("supervisor.demo:demo_agent"),
        jobs_dir=jobs,
        max_concurrent=n,
        live_window=0,
    )
    events = 0

    def count(_event: RunnerEvent) -> None:
        nonlocal events
        events += 1

    lateness: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        period = 0.02
        while not stop.is_set():
            due = time.perf_counter() + period
            await asyncio.sleep(period)
            lateness.append(time.perf_counter() - due)

    async with Runner(config) as runner:
        runner.subscribe(count)
        tick = asyncio.create_task(ticker())
        start = time.perf_counter()
        for i in range(n):
            items = ", ".join(f"c{n}-{i}-{k}" for k in range(6))  # fresh markers
            await runner.prompt(f"c{n}-{i}", f"Process items {items}")
        await runner.wait_all()
        took = time.perf_counter() - start
        stop.set()
        await tick
    lateness.sort()
    p99 = lateness[int(len(lateness) * 0.99) - 1] if lateness else 0.0
    return took, events / took, p99, events


def concurrency(work: Path, max_threads: int) -> None:
    db, jobs = work / "c.db", work / "cjobs"
    subprocess.run(child_command(db, "seed", jobs, prompt="Process items 0"), capture_output=True)
    print(
        "concurrency: demo threads at once (tools 0.5 s, 200 tokens/s), loop lateness of a 20 ms ticker"
    )
    baseline = None
    n = 1
    while n <= max_threads:
        took, rate, p99, total = asyncio.run(concurrency_step(db, jobs, n))
        baseline = baseline or rate
        flag = "  <- lags (p99 > 100 ms)" if p99 > 0.1 else ""
        print(
            f"  {n:4d} threads: {took:5.1f} s, {total:6d} events, {rate:7.0f} events/s "
            f"({rate / baseline:5.1f}x one thread), p99 lateness {p99 * 1000:6.1f} ms{flag}"
        )
        if p99 > 0.1:
            break
        n = n * 2 if n > 1 else 10


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--big", type=Path, help="a large checkpoint database to also test against")
    p.add_argument("--max-threads", type=int, default=640)
    p.add_argument("--skip-concurrency", action="store_true")
    p.add_argument("--skip-resume", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_resume:
            resume_latency(work, args.big)
        if not args.skip_concurrency:
            concurrency(work, args.max_threads)


if __name__ == "__main__":
    sys.exit(main())
