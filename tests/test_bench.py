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
