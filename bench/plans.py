"""Plans of every crashed thread against `list` of the same file.

`resume DB --all --dry-run --json` plans every thread a resume would take: it
reads each one's transcript, asks the agent's policy about its unanswered
calls or its ended run (`supervisor.probe`), and matches job markers. Read one
thread at a time, a file without the thread index cost a full scan per thread
(220 s at 5,000 threads). This prints, A and B in turn, whole processes:

- the plan against `list` of the same file, without and with the thread index
  (`agent-supervisor index`, on a copy), wall time, CPU time of the process
  tree and peak memory.

The databases are bench/fleet.py's (built once, cached). The indexed copy is
made beside it and kept.

Usage: python bench/plans.py [--threads 5000] [--pairs 3]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet import CACHE, database, paired  # noqa: E402


def indexed_copy(db: Path) -> Path:
    copy = CACHE / f"{db.stem}-indexed.db"
    if not copy.exists():
        shutil.copy(db, copy)
        subprocess.run(
            [sys.executable, "-m", "supervisor", "index", str(copy), "--yes"],
            check=True,
            capture_output=True,
        )
    return copy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=5_000)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--indexed-only", action="store_true")
    args = p.parse_args()
    db = database(args.threads)
    py = sys.executable
    files = [("with the index", indexed_copy(db))]
    if not args.indexed_only:
        files.insert(0, ("without the index", db))
    for label, path in files:
        paired(
            f"plans, {args.threads:,} threads, {label}",
            [py, "-m", "supervisor", "resume", str(path), "--all", "--dry-run", "--json"],
            [py, "-m", "supervisor", "list", str(path)],
            args.pairs,
            2.0,
        )


if __name__ == "__main__":
    sys.exit(main())
