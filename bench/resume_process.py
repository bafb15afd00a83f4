"""`resume THREAD` as a whole process, to the first model call: a big database against a small one.

The thread is bench/runner.py's: 49 messages, crashed in `after_tools` by a
real SIGKILL. It is put in a small database and appended to a copy of
fleet.py's 100,000-thread database, with and without the index
`agent-supervisor index` adds. The agent (bench/first_call.py) ends the process
at its first model call, so each run times start-up, the scoped listing,
the refusal checks, cubeloop's `load()` and the agent's build. A and B in
turn; medians (goal: within 2x of the small database).

Usage: python bench/resume_process.py [--threads 100000] [--pairs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> None:
    from fleet import database, paired
    from runner import copy_thread, crashed_thread

    from supervisor.sqlite.files import add_thread_index, drop_thread_index

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=100_000)
    p.add_argument("--pairs", type=int, default=5)
    args = p.parse_args()
    big_source = database(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        small, jobs = work / "small.db", work / "jobs"
        crashed_thread(small, jobs)
        big = work / "big.db"
        shutil.copy(big_source, big)
        copy_thread(small, big, "long")
        drop_thread_index(big, 60.0)
        indexed = work / "indexed.db"
        shutil.copy(big, indexed)
        add_thread_index(indexed, 60.0)
        os.environ.update(
            PYTHONPATH=str(HERE),
            JOB_DIR=str(jobs),
            AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND="0",
        )
        cli = [sys.executable, "-m", "supervisor", "resume"]
        tail = ["long", "--force", "--agent", "first_call:agent"]
        baseline = cli + [str(small), *tail]
        print("resume THREAD to the first model call, whole process, against a small database:")
        paired(
            f"{args.threads:,} threads, indexed",
            cli + [str(indexed), *tail],
            baseline,
            args.pairs,
            2.0,
        )
        paired(
            f"{args.threads:,} threads, no index",
            cli + [str(big), *tail],
            baseline,
            args.pairs,
            2.0,
        )


if __name__ == "__main__":
    main()
