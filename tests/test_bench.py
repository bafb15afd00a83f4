"""The benchmark script still runs (at a small size); its figures are not asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_bench_runs_at_small_size(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-u",  # each line as printed: a failure shows how far the script got
            "bench/listing.py",
            "--threads",
            "50",
            "--messages",
            "2000",
            "--sample",
            "5",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "faster than per-thread loads" in done.stdout
    assert "cheaper than a full listing" in done.stdout
    assert not list((ROOT / "bench").glob("*50x2000*"))


def test_fleet_bench_runs_at_small_size(tmp_path: Path) -> None:
    """The 100,000-thread bench at 300 threads: database cached outside the repo, list vs floor."""
    import os

    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "bench/fleet.py", "--threads", "300", "--pairs", "1", "--skip-app"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    listed = next(line for line in done.stdout.splitlines() if "list, 300 threads" in line)
    assert " vs " in listed and "CPU" in listed and "time " in listed
    assert "list --json, 300 threads" in done.stdout and "memory goal < 1.5x" in done.stdout
    assert (tmp_path / "agent-supervisor-bench" / "bench-300x6000.db").exists()
    assert not list((ROOT / "bench").glob("*300x6000*"))
