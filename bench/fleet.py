"""Fleet-size benchmark: 100,000 threads, what the user waits for, against floors.

Builds once (cached outside the repo, in $XDG_CACHE_HOME/agent-supervisor-bench)
a checkpoint database like bench/listing.py's: 100,000 threads, 20 messages
each, interleaved as concurrent writers leave them (1.7 GB). Then prints, each
figure against a baseline measured in the same run, A and B in turn:

- `list`: the whole process (start-up, listing, printing) against the floor, one
  `GROUP BY thread_id` pass plus the last message of each thread in plain
  sqlite3 (`--floor`); wall time, CPU time of the process tree and peak memory
  (goal: each within 2x);
- `list --json` against `list` (goal: memory within 1.5x: the items are streamed);
- start-up: `import supervisor.cli` against the modules a listing needs;
- the app in a pseudo-terminal (read back by a terminal emulator): first rows on
  screen (goal: within 1 s) and the whole list drawn (goal: within 1.5x `list`);
- `j` held down (a key every 33 ms): key to screen p99 (goal: under 50 ms), idle
  and while 10 new messages arrive every second (goal: no stall over 50 ms).

Usage: python bench/fleet.py [--threads 100000] [--pairs 3] [--skip-app]
       python bench/fleet.py --floor DB     (the floor, as its own process)
Needs the bench extra: pip install -e '.[bench]'
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "agent-supervisor-bench"


def floor(db: str) -> None:
    """The least any listing must do: group the rows by thread, read each thread's last row."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    groups = conn.execute("SELECT thread_id, count(*), max(id) FROM messages GROUP BY thread_id")
    last = [row[2] for row in groups]
    rows = 0
    for i in range(0, len(last), 500):
        chunk = last[i : i + 500]
        marks = ",".join("?" * len(chunk))
        for _ in conn.execute(
            f"SELECT id, message_json FROM messages WHERE id IN ({marks})", chunk
        ):
            rows += 1
    print(len(last), rows)


#: Runs a command and reports its wall time, peak memory and CPU time (user and system,
#: of the whole process tree: every process it forked was waited for). A process forked from
#: this one starts with this one's peak memory as its own (Linux keeps the high-water
#: mark across exec), so the command is started from a small process instead.
#: `list` may fork a second process (`supervisor.listing`), and the kernel's peak
#: (ru_maxrss) is the largest process's, not the sum: with "sample" as its first
#: argument, the process tree's proportional set size (PSS: shared pages split between
#: the processes sharing them) is sampled every 10 ms and summed, and the larger of the
#: two figures is the memory. Sampling takes CPU: a `list` keeping both cores busy ran
#: 9% slower under it, a floor on one core hardly at all, so times come from runs
#: without it ("plain").
_MEASURE = (
    "import os, resource, subprocess, sys, threading, time\n"
    "def tree(pid):\n"
    "    found = [pid]\n"
    "    for task in os.listdir(f'/proc/{pid}/task'):\n"
    "        with open(f'/proc/{pid}/task/{task}/children') as f:\n"
    "            for child in f.read().split():\n"
    "                found += tree(int(child))\n"
    "    return found\n"
    "def pss(pid):\n"
    "    with open(f'/proc/{pid}/smaps_rollup') as f:\n"
    "        return sum(int(l.split()[1]) for l in f if l.startswith('Pss:'))\n"
    "peak = [0]\n"
    "def sample(proc):\n"
    "    while proc.poll() is None:\n"
    "        try:\n"
    "            peak[0] = max(peak[0], sum(pss(p) for p in tree(proc.pid)))\n"
    "        except (OSError, ValueError):\n"
    "            pass\n"
    "        time.sleep(0.01)\n"
    "start = time.perf_counter()\n"
    "proc = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL,"
    " stderr=subprocess.DEVNULL)\n"
    "sampler = threading.Thread(target=sample, args=(proc,))\n"
    "if sys.argv[1] == 'sample':\n"
    "    sampler.start()\n"
    "code = proc.wait()\n"
    "wall = time.perf_counter() - start\n"
    "if sys.argv[1] == 'sample':\n"
    "    sampler.join()\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "cpu = usage.ru_utime + usage.ru_stime\n"
    "print(code, wall, max(usage.ru_maxrss, peak[0]), cpu)\n"
)


#: The processes run as installed: Python caches compiled modules (pip compiles them on
#: install), whatever this shell says (PYTHONDONTWRITEBYTECODE made every start-up
#: compile our modules again, tens of milliseconds the floor's stdlib never paid).
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(command: list[str], sample: bool = False) -> tuple[float, float, float]:
    """Wall seconds, peak memory (MiB) and CPU seconds of one whole process (and any it
    forks); with `sample`, the memory of all of them (and a wall time the sampling slowed)."""
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, "sample" if sample else "plain", *command],
        capture_output=True,
        text=True,
        check=True,
        env=_ENV,
    ).stdout.split()
    code, wall, peak, cpu = int(out[0]), float(out[1]), int(out[2]), float(out[3])
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed with status {code}")
    return wall, peak / 1024, cpu


def paired(
    label: str,
    a: list[str],
    b: list[str],
    pairs: int,
    goal: float | None,
    memory_goal: float | None = None,
) -> float:
    """A and B in turn; medians, and the median of the pair-by-pair ratios. Times from
    plain runs; memory from as many runs again, in turn, each sampled."""
    timed(a), timed(b)  # warm the page cache for both
    runs = [(timed(a), timed(b)) for _ in range(pairs)]
    wall_a = statistics.median(ra[0] for ra, _ in runs)
    wall_b = statistics.median(rb[0] for _, rb in runs)
    ratio = statistics.median(ra[0] / rb[0] for ra, rb in runs)
    cpu_a = statistics.median(ra[2] for ra, _ in runs)
    cpu_b = statistics.median(rb[2] for _, rb in runs)
    cpu_ratio = statistics.median(ra[2] / rb[2] for ra, rb in runs)
    sampled = [(timed(a, sample=True), timed(b, sample=True)) for _ in range(pairs)]
    mem_a = statistics.median(ra[1] for ra, _ in sampled)
    mem_b = statistics.median(rb[1] for _, rb in sampled)
    verdict = "" if goal is None else f"  goal < {goal:g}x: {'met' if ratio < goal else 'MISSED'}"
    if memory_goal is not None:
        met = mem_a / mem_b < memory_goal
        verdict += f"  memory goal < {memory_goal:g}x: {'met' if met else 'MISSED'}"
    print(
        f"{label:<34} {wall_a:6.2f} s {cpu_a:6.2f} s CPU {mem_a:5.0f} MiB   "
        f"vs {wall_b:6.2f} s {cpu_b:6.2f} s CPU {mem_b:5.0f} MiB   "
        f"time {ratio:4.2f}x  CPU {cpu_ratio:4.2f}x  memory {mem_a / mem_b:4.2f}x{verdict}"
    )
    return wall_a


def database(threads: int) -> Path:
    from listing import build  # cubeloop and all: never imported by the floor's process

    path = CACHE / f"bench-{threads}x{threads * 20}.db"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        build(path, threads, threads * 20)
        print(f"built {path} in {time.perf_counter() - start:.0f} s")
    return path


def summary_line(term) -> str:  # a write_load.Terminal
    return term.row(0)


def app_figures(db: Path, threads: int, list_seconds: float, holds: int) -> None:
    from write_load import Terminal, holding  # needs pyte (the bench extra); the list does not

    term = Terminal(db)
    try:
        # A row of the list: a state's name (ids are cut to fit at 120 columns).
        first = term.wait_for(
            lambda: any(
                state in term.row(y)
                for y in (3, 4, 5)
                for state in ("between_turns", "after_tools", "finished")
            ),
            300,
        )
        whole = term.wait_for(
            lambda: (
                summary_line(term).lstrip().startswith(f"{threads:,} threads ")
                and "reading" not in summary_line(term)
            ),
            600,
        )
        whole += first
        print(
            f"app: first rows drawn {first:6.2f} s after start   goal < 1 s: "
            f"{'met' if first < 1 else 'MISSED'}"
        )
        print(
            f"app: whole list drawn {whole:6.2f} s   {whole / list_seconds:4.1f}x list   "
            f"goal < 1.5x: {'met' if whole / list_seconds < 1.5 else 'MISSED'}"
        )
        time.sleep(2.0)
        held = sorted(holding(term, holds))
        report("j held, idle", held)
        proc = subprocess.Popen([sys.executable, __file__, "--trickle", str(db), str(threads)])
        try:
            time.sleep(1.5)
            loaded = sorted(holding(term, holds))
        finally:
            proc.kill()
            proc.wait()
        report("j held, 10 new messages/s", loaded)
    finally:
        term.close()


def report(label: str, times: list[float]) -> None:
    p99 = times[max(0, int(len(times) * 0.99) - 1)]
    print(
        f"app: {label:<28} median {statistics.median(times) * 1000:5.0f} ms  "
        f"p99 {p99 * 1000:5.0f} ms  max {times[-1] * 1000:5.0f} ms   "
        f"goal p99 < 50 ms: {'met' if p99 < 0.050 else 'MISSED'}"
    )


def trickle(db: str, threads: int) -> None:
    """Ten new messages a second, into random threads, each its own transaction."""
    from listing import _user

    rng = random.Random(5)
    conn = sqlite3.connect(db, isolation_level=None, timeout=10)
    while True:
        for _ in range(10):
            thread = f"thread-{rng.randrange(threads):05d}"
            conn.execute(
                "INSERT INTO messages (thread_id, message_json, run_id) VALUES (?, ?, ?)",
                (thread, _user(rng, "trickle"), "trickle"),
            )
        time.sleep(1.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=100_000)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--holds", type=int, default=200, help="j presses per held-key phase")
    p.add_argument("--skip-app", action="store_true")
    p.add_argument(
        "--list-seconds",
        type=float,
        help="skip the list and import figures; take this as the list time (app figures only)",
    )
    p.add_argument("--floor", metavar="DB", help=argparse.SUPPRESS)
    p.add_argument("--trickle", nargs=2, metavar=("DB", "THREADS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.floor:
        return floor(args.floor)
    if args.trickle:
        return trickle(args.trickle[0], int(args.trickle[1]))

    db = database(args.threads)
    size = db.stat().st_size / 1e9
    print(f"database: {args.threads:,} threads, {args.threads * 20:,} messages, {size:.1f} GB")
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"SQLite {sqlite3.sqlite_version}"
    )
    py = sys.executable
    if args.list_seconds:
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            work = Path(tmp) / db.name
            shutil.copy(db, work)
            app_figures(work, args.threads, args.list_seconds, args.holds)
        return
    paired(
        "import supervisor.cli",
        [py, "-c", "import supervisor.cli"],
        [py, "-c", "import argparse, json, sqlite3, pathlib"],
        args.pairs,
        None,
    )
    list_seconds = paired(
        f"list, {args.threads:,} threads",
        [py, "-m", "supervisor", "list", str(db)],
        [py, __file__, "--floor", str(db)],
        args.pairs,
        2.0,
    )
    paired(
        f"list --json, {args.threads:,} threads",
        [py, "-m", "supervisor", "list", str(db), "--json"],
        [py, "-m", "supervisor", "list", str(db)],
        args.pairs,
        None,
        memory_goal=1.5,
    )
    if args.skip_app:
        return
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        work = Path(tmp) / db.name  # the app's run writes nothing, the trickle does
        shutil.copy(db, work)
        app_figures(work, args.threads, list_seconds, args.holds)


if __name__ == "__main__":
    sys.exit(main())
