"""Leases: exclusive across processes, who holds them, and freed by the kernel on death."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor import leases

HOLD = (
    "import sys, time; from supervisor.leases import acquire; "
    "acquire(__import__('pathlib').Path(sys.argv[1]), 't'); print('held', flush=True); "
    "time.sleep(60)"
)


def test_a_lease_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    lease = leases.acquire(tmp_path, "t")
    try:
        assert leases.is_mine(leases.held_elsewhere(tmp_path, "t"))
        with pytest.raises(leases.LeaseHeld, match=f"pid {os.getpid()} on"):
            leases.acquire(tmp_path, "t")
        assert set(leases.live_leases(tmp_path)) == {"t"}
    finally:
        lease.release()
    assert leases.held_elsewhere(tmp_path, "t") is None
    assert leases.live_leases(tmp_path) == {}


def test_a_holder_killed_with_sigkill_frees_its_lease(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"held"
        holder = leases.held_elsewhere(tmp_path, "t")
        assert holder["pid"] == proc.pid and not leases.is_mine(holder)
        assert leases.holder_text(holder).startswith(f"pid {proc.pid} on ")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert leases.held_elsewhere(tmp_path, "t") is None
    leases.acquire(tmp_path, "t").release()  # free for the next taker


def test_looking_creates_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "db.leases"
    assert leases.held_elsewhere(directory, "t") is None
    assert leases.live_leases(directory) == {}
    assert leases.request_abort(directory, "t") is None
    assert not directory.exists()
