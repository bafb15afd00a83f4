"""Plans of every crashed thread against `list` of the same file.

`resume DB --all --dry-run --json` plans every thread a resume would take: it
reads each one's transcript, asks the agent's policy about its unanswered
calls or its ended run (`supervisor.probe`), and matches job markers. Read one
thread at a time, a file without the thread index cost a full scan per thread
(220 s at 5,000 threads). This prints, A and B in turn, whole processes:

- the plan against `list` of the same file, without and with the thread index
  (`agent-supervisor index`, on a copy), wall time, CPU time of the process
  tree and peak memory.

- with `--app`: the app's `R` (every crashed thread's plan, then the preview on
  screen) in a 120x40 pseudo-terminal, timed from the key to the preview's
  title, against the command's plan of the same file timed in turn (needs the
  bench extra: pyte).

The databases are bench/fleet.py's (built once, cached). The indexed copy is
made beside it and kept.

Usage: python bench/plans.py [--threads 5000] [--pairs 3] [--app]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
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


def app_preview(db: Path, pairs: int) -> None:
    """`R` in the app, from the key to the preview drawn, against the command's plan."""
    from fleet import timed

    command = [sys.executable, "-m", "supervisor", "resume", str(db), "--all", "--dry-run"]
    timed(command)  # the page cache warm for both
    keys, plans = [], []
    for _ in range(pairs):
        keys.append(pressed_r(db))
        plans.append(timed(command)[0])
    key, plan = statistics.median(keys), statistics.median(plans)
    print(
        f"app R to the preview, {db.name}: {key:6.2f} s   vs resume --all --dry-run "
        f"{plan:6.2f} s   {key / plan:4.2f}x"
    )


def pressed_r(db: Path) -> float:
    """Seconds from `R` to the preview's title on screen, the whole list read first."""
    from fleet import summary_line
    from write_load import Terminal

    term = Terminal(db)
    try:
        line = lambda: summary_line(term)  # noqa: E731
        term.wait_for(lambda: " threads " in line() and "reading" not in line(), 900)
        time.sleep(2.0)  # the TOKENS column's first read beside the list
        term.press(b"R")
        title = "Resume every crashed thread"
        return term.wait_for(lambda: any(title in term.row(y) for y in range(40)), 900)
    finally:
        term.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=5_000)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--indexed-only", action="store_true")
    p.add_argument("--app", action="store_true", help="time the app's R preview instead")
    args = p.parse_args()
    db = database(args.threads)
    if args.app:
        return app_preview(db, args.pairs)
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
