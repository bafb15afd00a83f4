"""The idle cost of a fleet that has lived for months: the app and `watch`, left alone.

A database of 20,000 threads, 20,000 lease files left behind (what releases
left before they removed their files: empty ones, and some a SIGKILLed holder
left with its record), 50,000 job markers. The app runs in a pseudo-terminal
and a watcher beside it, both idle, for `--minutes`; every 10 seconds each
process's CPU time (/proc/PID/stat) and resident memory are read. Printed: the
share of one core each used after a warm-up (goal: under 1%), and memory at
the first and last sample (goal: flat).

A second pair runs with the lease files and markers removed: the floor the
piles are measured against, in the same run.

Usage: python bench/soak.py [--threads 20000] [--minutes 10]
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet import CACHE  # noqa: E402
from listing import build  # noqa: E402

from supervisor.leases import lease_path  # noqa: E402
from supervisor.markers import FORMAT, job_key, marker_filename  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_SECONDS = 10.0
WARM_UP_SECONDS = 30.0


#: The watcher's quiet period: no thread is ever quiet long enough to be resumed, so the
#: watcher stays idle. Its threads' times are when the database was built: a cached one
#: older than this is built again (one left an hour, with a quiet of an hour, had the
#: watcher resume thousands of threads: 63% of a core, counted as "idle").
QUIET_SECONDS = 7 * 86400


def database(threads: int) -> Path:
    """The bench's database, built once and kept in the cache (while it is young enough)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"soak-{threads}.db"
    if path.exists() and time.time() - path.stat().st_mtime > QUIET_SECONDS - 86400:
        path.unlink()
    if not path.exists():
        build(path, threads, threads * 10)
    return path


def piles(db: Path, threads: int, leases: int, markers: int) -> None:
    """Lease files nobody holds and job markers, written as an older fleet left them."""
    directory = db.with_name(db.name + ".leases")
    directory.mkdir(mode=0o700, exist_ok=True)
    for i in range(leases):
        body = "" if i % 200 else json.dumps({"thread_id": f"thread-{i:05d}", "pid": 1})
        lease_path(directory, f"thread-{i % threads:05d}-{i}").write_text(body)
    jobs = db.with_name(db.name + ".jobs")
    jobs.mkdir(mode=0o750, exist_ok=True)
    for i in range(markers):
        key = job_key("process_item", {"item": f"i{i}"})
        record = {
            "format": FORMAT,
            "key": key,
            "status": "done",
            "tool": "process_item",
            "arguments": {"item": f"i{i}"},
            "thread_id": f"thread-{i % threads:05d}",
            "started_at": 1.0,
            "done_at": 2.0,
            "result": {"text": "ok"},
        }
        (jobs / marker_filename(key)).write_text(json.dumps(record))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def soak(db: Path, minutes: float, label: str) -> None:
    env = {**os.environ, "TERM": "xterm-256color", "JOB_DIR": str(db.with_name(db.name + ".jobs"))}
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    app = subprocess.Popen(
        [sys.executable, "-m", "supervisor", str(db), "--force"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**env, "COLUMNS": "160", "LINES": "45"},
        start_new_session=True,
    )
    watcher = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "watch", str(db), "--quiet", str(QUIET_SECONDS)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    samples: dict[str, list[tuple[float, float, float]]] = {"app": [], "watch": []}
    try:
        end = time.monotonic() + WARM_UP_SECONDS + minutes * 60
        next_sample = time.monotonic() + WARM_UP_SECONDS
        while time.monotonic() < end:
            try:
                while os.read(master, 65536):  # the screen is drawn into the void
                    pass
            except (BlockingIOError, OSError):
                pass
            if time.monotonic() >= next_sample:
                now = time.monotonic()
                for name, proc in (("app", app), ("watch", watcher)):
                    samples[name].append((now, cpu_seconds(proc.pid), rss_mib(proc.pid)))
                next_sample += SAMPLE_SECONDS
            time.sleep(0.2)
    finally:
        for proc in (app, watcher):
            proc.terminate()
        for proc in (app, watcher):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        os.close(master)
        os.close(slave)
    for name, rows in samples.items():
        (t0, c0, m0), (t1, c1, m1) = rows[0], rows[-1]
        share = 100 * (c1 - c0) / (t1 - t0)
        peak = max(m for _, _, m in rows)
        verdict = "met" if share < 1.0 else "MISSED"
        print(
            f"{label:<22} {name:<6} idle CPU {share:5.2f}% of a core (goal < 1%: {verdict})"
            f"   memory {m0:6.1f} -> {m1:6.1f} MiB (peak {peak:.1f}) over {(t1 - t0) / 60:.1f} min"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=20_000)
    parser.add_argument("--leases", type=int, default=20_000)
    parser.add_argument("--markers", type=int, default=50_000)
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    source = database(args.threads)
    with tempfile.TemporaryDirectory(prefix="soak-") as scratch:
        db = Path(scratch) / "fleet.db"
        shutil.copy(source, db)
        piles(db, args.threads, args.leases, args.markers)
        soak(db, args.minutes, "with the piles")
        shutil.rmtree(db.with_name(db.name + ".leases"), ignore_errors=True)
        shutil.rmtree(db.with_name(db.name + ".jobs"), ignore_errors=True)
        soak(db, args.minutes, "floor (no piles)")


if __name__ == "__main__":
    main()
