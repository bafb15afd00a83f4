"""Every fork goes through `split.fork_child`, which refuses once another thread runs.

A child forked while another thread holds a lock (SQLite's, the allocator's,
the logging module's) inherits it held, with nobody left to release it: the
package forks first (the CLI before it reads, the app before its imports).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

_SCRIPT = """
import os, threading
from supervisor.split import ThreadsRunning, fork_child

stop = threading.Event()
other = threading.Thread(target=stop.wait, name="busy-worker")
other.start()
try:
    fork_child(lambda: None)
except ThreadsRunning as refused:
    print("refused:", refused)
else:
    print("forked with a thread running")
finally:
    stop.set()
    other.join()
pid = fork_child(lambda: None)  # alone again: the fork goes ahead
_, status = os.waitpid(pid, 0)
print("alone:", os.waitstatus_to_exitcode(status))
"""


def test_a_fork_with_another_thread_running_is_refused() -> None:
    # A fresh interpreter: a pytest worker may keep threads of earlier tests (AnyIO's).
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("refused:") and "busy-worker" in lines[0], lines
    assert lines[1] == "alone: 0", lines


def test_no_module_forks_but_the_helper() -> None:
    forking = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "supervisor").rglob("*.py")
        if "os.fork()" in p.read_text(encoding="utf-8")
    )
    assert forking == [str(Path("supervisor/split.py"))]
