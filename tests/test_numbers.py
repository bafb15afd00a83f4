"""Numbers on the command line and in the watcher's records: finite and in range, or refused.

`nan` passes every comparison and `inf` most, so a plain `float` argument
let `--quiet nan` turn the liveness guard off, `--poll 0` burn a core, and
`--backoff inf,inf` write a record every later watcher failed to read.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.conftest import cli, run_demo_child


@pytest.mark.parametrize(
    "args",
    [
        ["watch", "DB", "--backoff", "inf,inf"],
        ["watch", "DB", "--backoff", "nan,10"],
        ["watch", "DB", "--quiet", "nan"],
        ["watch", "DB", "--poll", "0"],
        ["watch", "DB", "--poll", "nan"],
        ["list", "DB", "--busy-timeout", "nan"],
        ["list", "DB", "--busy-timeout", "-1"],
        ["abort", "DB", "t", "--wait", "nan"],
        ["resume", "DB", "t", "--abort-grace", "-5"],
        ["resume", "DB", "t", "--abort-grace", "inf"],
    ],
)
def test_a_number_out_of_range_is_one_line_and_exit_2(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "n.db"
    run_demo_child(db, "t", tmp_path / "jobs")
    before = db.read_bytes()
    out = cli(*[str(db) if a == "DB" else a for a in args])
    assert out.returncode == 2, out.stdout + out.stderr
    assert len(out.stderr.splitlines()) == 1 and "Traceback" not in out.stderr
    assert db.read_bytes() == before and not (tmp_path / "n.db.watch").exists()


def test_a_record_an_older_watcher_poisoned_with_inf_is_read(tmp_path: Path) -> None:
    db = tmp_path / "n.db"
    run_demo_child(db, "t", tmp_path / "jobs", kill_at_marker="after_start:A")
    ledger = sqlite3.connect(tmp_path / "n.db.watch")
    with ledger:
        ledger.execute(
            "CREATE TABLE attempts (thread_id TEXT PRIMARY KEY, attempts INTEGER NOT NULL, "
            "last_error TEXT, next_at REAL, held INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL)"
        )
        ledger.execute("INSERT INTO attempts VALUES ('t', 1, 'boom', 1e999, 0, 0)")
    ledger.close()
    out = cli("list", str(db), "--json")
    assert out.returncode == 0 and "Traceback" not in out.stderr
    assert '"next_at": null' in out.stdout
