"""Every fork goes through `split.fork_child`, which refuses once another thread runs.

A child forked while another thread holds a lock (SQLite's, the allocator's,
the logging module's) inherits it held, with nobody left to release it: the
package forks first (the CLI before it reads, the app before its imports).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from supervisor.split import ThreadsRunning, fork_child
from tests.conftest import ROOT


def test_a_fork_with_another_thread_running_is_refused() -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, name="busy-worker")
    other.start()
    try:
        with pytest.raises(ThreadsRunning, match="busy-worker"):
            fork_child(lambda: None)
    finally:
        stop.set()
        other.join()
    pid = fork_child(lambda: None)  # alone again: the fork goes ahead
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_no_module_forks_but_the_helper() -> None:
    forking = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "supervisor").rglob("*.py")
        if "os.fork()" in p.read_text(encoding="utf-8")
    )
    assert forking == [str(Path("supervisor/split.py"))]
