"""An abort whose grace runs out ends `aborted`, as one honoured in time does.

The agent's tool does its side effect, then works on without looking at the
abort signal. A person's abort (the `abort` command from another process, or
Ctrl-C on the process running it) cancels it after `--abort-grace`; cubeloop
answers the call "cancelled" and wrote nothing more, so the thread was left
`after_tools` and `watch`, which leaves aborted threads alone, resumed it.
The run's own final read was cancelled a second time on the way out: it
printed "unknown" and an asyncio error line.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.crashes.harness import ROOT, Case, effect

MAIL = effect("send_mail", target="bob")


@pytest.mark.parametrize("how", ["abort command", "ctrl-c"])
def test_an_abort_past_its_grace_ends_aborted_and_watch_leaves_it(tmp_path: Path, how: str) -> None:
    c = Case(str(tmp_path / "s.db"), tmp_path / "jobs", "stubborn")
    running = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "prompt", c.database, "t", "mail bob"]
        + ["--agent", c.reference, "--jobs-dir", str(c.jobs), "--abort-grace", "1"],
        cwd=ROOT,
        env=c.environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while c.effects() != {MAIL: 1}:  # the effect done, the tool working on
            assert time.monotonic() < deadline and running.poll() is None
            time.sleep(0.1)
        if how == "ctrl-c":
            running.send_signal(signal.SIGINT)
        else:
            asked = c.cli("abort", c.database, "t", "--wait", "30")
            assert asked.returncode == 0, asked.stdout + asked.stderr
        out, err = running.communicate(timeout=60)
    finally:
        if running.poll() is None:
            running.kill()
    assert "■ aborted (aborted" in out, out + err
    assert "asyncio" not in err and "Task exception" not in err and "Traceback" not in err, err
    assert c.state("t") == "aborted" and c.effects() == {MAIL: 1}
    if how == "abort command":  # the state is the same either way: one watcher suffices
        # A person stopped it: the watcher does not bring it back.
        said = c.watch(lambda: False, 2.0)
        assert "resumed" not in said, said
        assert c.state("t") == "aborted" and c.effects() == {MAIL: 1}
