"""The README's own agent (examples/refund_agent.py), walked through as the README says.

A prompt is SIGKILLed inside the refund (its marker says started), the
thread lists `mid_tool`, the plan says the refund runs again, and the resume
runs it: one refund in the tool's own log, counted line by line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT, cli

AGENT = "examples.refund_agent:build"


def test_the_example_agent_killed_mid_refund_is_resumed_with_one_refund(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("REFUND_SECONDS", "0")  # the resume's refund; the prompt's is slow
    db, jobs = tmp_path / "shop.db", tmp_path / "shop.db.jobs"
    env = {**os.environ, "REFUND_SECONDS": "60"}
    prompt = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "prompt", str(db), "order-2", "refund B-7 25"]
        + ["--agent", AGENT],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not list(jobs.glob("refund_*.json")):  # the marker is written before the work
        assert prompt.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    prompt.send_signal(signal.SIGKILL)
    assert prompt.wait() == -signal.SIGKILL

    listed = json.loads(cli("list", str(db), "--json").stdout)
    assert [(t["thread_id"], t["state"]) for t in listed] == [("order-2", "mid_tool")]
    planned = cli("resume", str(db), "order-2", "--dry-run", "--json", "--agent", AGENT)
    [plan] = json.loads(planned.stdout)
    assert [(c["name"], c["verdict"]) for c in plan["calls"]] == [("refund", "rerun")]

    done = cli("resume", str(db), "order-2", "--force", "--agent", AGENT)
    assert done.returncode == 0, done.stderr
    assert (jobs / "refunds.log").read_text().splitlines() == ["B-7 25"]
    again = cli("resume", str(db), "order-2", "--agent", AGENT)
    assert "already finished" in again.stdout
    assert (jobs / "refunds.log").read_text().splitlines() == ["B-7 25"]
