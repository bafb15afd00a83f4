"""Key to screen under write load: does the app answer while agents write?

Runs the real app as its own process in a pseudo-terminal (120x40), on a copy
of a 2,000-thread checkpoint database built like bench/listing.py's, and reads
what it draws with a terminal emulator (pyte). A separate writer process
inserts checkpoint rows the way running agents' checkpointers do (one
transaction per message, into 80 threads in turn — among them the rows
the cursor walks over — and one message in ten
starting a new thread) at a fixed rate.

With the Transcript tab open, for each condition it presses `j` and times how
long until the detail title names the next thread — key to whole screen,
drawing included:

- idle: no writer (the baseline, measured in the same run),
- 30 messages/s (goal: median under 200 ms),
- 300 messages/s (goal: median under 500 ms).

Usage: python bench/write_load.py [--threads 2000] [--presses 20]
Needs the bench extra: pip install -e '.[bench]'
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

import pyte

sys.path.insert(0, str(Path(__file__).resolve().parent))
from listing import _assistant, _result, _user, build  # noqa: E402

HERE = Path(__file__).resolve().parent
COLUMNS, LINES = 120, 40
#: The detail pane's title: "thread-00042  after_tools  ·  40 messages".
TITLE = re.compile(r"(\S+)  \S+  ·  \d+ messages")
#: The writer's threads: the first rows of the list (what the presses walk
#: over in three phases) and some elsewhere.
WATCHED, ELSEWHERE = 60, 20


class Terminal:
    """The app in a pseudo-terminal, its screen kept by a terminal emulator."""

    def __init__(self, db: Path) -> None:
        self.screen = pyte.Screen(COLUMNS, LINES)
        self._stream = pyte.ByteStream(self.screen)
        self._lock = threading.Lock()
        self._title_row: int | None = None
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
        env = dict(os.environ, TERM="xterm-256color", COLUMNS=str(COLUMNS), LINES=str(LINES))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor", str(db)],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self._master = master
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self._stream.feed(data)

    def row(self, y: int) -> str:
        """One row as drawn now. Polled every millisecond: `screen.display` renders
        all 40 rows, and polling it took the measuring process half a core, which
        it took from the app it measures (two cores)."""
        with self._lock:
            line = self.screen.buffer[y]
            return "".join(line[x].data for x in range(COLUMNS))

    def title(self) -> str | None:
        """The thread named in the detail title, as drawn now.

        Polled every millisecond: it reads the row the title was last seen on
        (rebuilding all 40 rows each time cost the measuring process more
        than the app took to draw), and the whole screen only when it moved.
        """
        with self._lock:
            if self._title_row is not None:
                line = self.screen.buffer[self._title_row]
                found = TITLE.search("".join(line[x].data for x in range(COLUMNS)))
                if found:
                    return found.group(1)
            lines = list(self.screen.display)
        for y, line in enumerate(lines):
            found = TITLE.search(line)
            if found:
                self._title_row = y
                return found.group(1)
        return None

    def press(self, key: bytes) -> None:
        os.write(self._master, key)

    def wait_for(self, condition, timeout: float) -> float:
        """Seconds until `condition()` holds, polling every millisecond."""
        start = time.perf_counter()
        while not condition():
            if time.perf_counter() - start > timeout:
                raise TimeoutError(f"screen did not change within {timeout:.0f} s")
            time.sleep(0.001)
        return time.perf_counter() - start

    def close(self) -> None:
        with_group = os.getpgid(self.proc.pid)
        os.killpg(with_group, signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(with_group, signal.SIGKILL)
            self.proc.wait()
        self._reader.join(timeout=10)  # never a reader looping on a closed, reused number
        os.close(self._master)


def writer(db: Path, rate: float, threads: int, new_every: int) -> None:
    """Insert checkpoint rows at `rate` per second until killed (a subprocess)."""
    rng = random.Random(5)
    conn = sqlite3.connect(db, timeout=5, isolation_level=None)
    # Most writes go to the threads the cursor walks over (the first rows of
    # the list, which keeps first-appearance order): the user is watching
    # live agents with their transcripts open. The rest land elsewhere.
    first = [
        t
        for (t,) in conn.execute(
            "SELECT thread_id FROM messages GROUP BY thread_id ORDER BY min(id) LIMIT ?",
            (WATCHED,),
        )
    ]
    others = [f"thread-{i:05d}" for i in rng.sample(range(threads), ELSEWHERE)]
    targets = first + [t for t in others if t not in first]
    interval = 1.0 / rate
    due = time.perf_counter()
    n = 0
    while True:
        if n % new_every == new_every - 1:  # an agent starts a new thread
            tid, text = f"new-{n:07d}", _user(rng, "load")
        else:
            tid = targets[n % len(targets)]
            step = (n // len(targets)) % 3
            text = (
                _assistant(rng, "load", [f"w{n}"], "tool_use")
                if step == 0
                else _result(rng, "load", f"w{n - len(targets)}")
                if step == 1
                else _user(rng, "load")
            )
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO messages (thread_id, message_json, run_id) VALUES (?, ?, 'load')",
            (tid, text),
        )
        conn.execute("COMMIT")
        n += 1
        due += interval
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def presses(term: Terminal, count: int) -> list[float]:
    """Press j `count` times, a human's pause apart; seconds until each is drawn."""
    rng = random.Random(1)
    out = []
    for _ in range(count):
        before = term.title()
        term.press(b"j")
        out.append(term.wait_for(lambda b=before: term.title() not in (None, b), 60))
        time.sleep(rng.uniform(0.3, 0.6))
    return out


def holding(term: Terminal, count: int, repeat: float = 1 / 30) -> list[float]:
    """j held down: a key every `repeat` seconds (a terminal's key repeat), each timed."""
    out = []
    for _ in range(count):
        before = term.title()
        term.press(b"j")
        took = term.wait_for(lambda b=before: term.title() not in (None, b), 60)
        out.append(took)
        time.sleep(max(0.0, repeat - took))
    return out


def report(
    label: str,
    times: list[float],
    base: float | None,
    goal: float | None,
    on: str = "median",
) -> None:
    times = sorted(times)
    median = statistics.median(times)
    p90 = times[int(len(times) * 0.9) - 1]
    p99 = times[max(0, int(len(times) * 0.99) - 1)]
    ratio = f"  {median / base:5.1f}x idle" if base else ""
    verdict = ""
    if goal is not None:
        value = p99 if on == "p99" else median
        ok = "met" if value < goal else "MISSED"
        verdict = f"  goal {on} < {goal * 1000:.0f} ms: {ok}"
    print(
        f"{label:<26} median {median * 1000:5.0f} ms  p90 {p90 * 1000:5.0f} ms  "
        f"p99 {p99 * 1000:5.0f} ms  max {times[-1] * 1000:5.0f} ms{ratio}{verdict}"
    )


def measure(
    db: Path,
    threads: int,
    count: int,
    new_every: int,
    rates: list[tuple[int, float]],
    hold: int = 0,
) -> None:
    term = Terminal(db)
    try:
        start = time.perf_counter()
        term.wait_for(lambda: term.title() is not None, 120)
        print(
            f"app shows the first thread's detail {time.perf_counter() - start:.2f} s after start"
        )
        term.press(b"2")  # the Transcript tab: the heaviest detail to redraw
        time.sleep(1.0)
        idle = presses(term, count)
        base = statistics.median(idle)
        report("idle (baseline)", idle, None, None)
        if hold:
            report(f"idle, j held ({hold} keys)", holding(term, hold), base, 0.050, on="p99")
        for rate, goal in rates:
            proc = subprocess.Popen(
                [sys.executable, __file__, "--writer", str(db), str(rate), str(threads)]
                + ["--new-every", str(new_every)]
            )
            try:
                time.sleep(2.0)  # let the app settle into the writer's rhythm
                (written_before,) = _count(db)
                started = time.perf_counter()
                loaded = presses(term, count)
                held = holding(term, hold) if hold else []
                (written_after,) = _count(db)
                achieved = (written_after - written_before) / (time.perf_counter() - started)
            finally:
                proc.kill()
                proc.wait()
            report(f"{rate} msg/s ({achieved:.0f} done)", loaded, base, goal)
            if held:
                report(f"{rate} msg/s, j held", held, base, goal, on="p99")
            time.sleep(2.0)
    finally:
        term.close()


def _count(db: Path) -> tuple[int]:
    conn = sqlite3.connect(db, timeout=5)
    try:
        return conn.execute("SELECT count(*) FROM messages").fetchone()
    finally:
        conn.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2000)
    p.add_argument("--per-thread", type=int, default=40)
    p.add_argument("--presses", type=int, default=20)
    p.add_argument(
        "--journal",
        choices=["delete", "wal"],
        default="delete",
        help="the database's journal mode (cubeloop's default is delete)",
    )
    p.add_argument(
        "--new-every",
        type=int,
        default=10,
        metavar="N",
        help="one message in N starts a new thread (default 10; 1: every message)",
    )
    p.add_argument(
        "--hold",
        type=int,
        default=0,
        metavar="N",
        help="also hold j for N keys (30 a second) in each condition; goal p99 < 50 ms idle",
    )
    p.add_argument(
        "--big",
        action="store_true",
        help="add a thread with one 50 MB message (the hardening issue's worst case)",
    )
    p.add_argument("--writer", nargs=3, metavar=("DB", "RATE", "THREADS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.writer:
        db, rate, threads = args.writer
        writer(Path(db), float(rate), int(threads), args.new_every)
        return
    messages = args.threads * args.per_thread
    cached = HERE / f"bench-{args.threads}x{messages}.db"
    if not cached.exists():
        build(cached, args.threads, messages)
    print(
        f"database: {args.threads} threads, {messages} messages, journal mode "
        f"{args.journal}; screen {COLUMNS}x{LINES}"
    )
    print(f"key j to the detail title naming the next thread, {args.presses} presses each:")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "load.db"
        shutil.copy(cached, db)
        conn = sqlite3.connect(db)
        conn.execute(f"PRAGMA journal_mode={args.journal}")
        if args.big:
            body = {"role": "user", "content": [{"type": "text", "text": "word " * 10_000_000}]}
            with conn:
                conn.execute(
                    "INSERT INTO messages (thread_id, message_json) VALUES ('big', ?)",
                    (json.dumps(body),),
                )
        conn.close()
        measure(
            db,
            args.threads,
            args.presses,
            args.new_every,
            hold=args.hold,
            rates=[(30, 0.200), (300, 0.500)],
        )


if __name__ == "__main__":
    main()
