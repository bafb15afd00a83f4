"""Rewind: `fork DB THREAD --after-run RUN` on a real agent crashed in a real process.

The `shop` agent (`more_agents.py`) charges an order behind a job marker and
mails it with none, one order per run, every call numbered `call_0`. A
thread takes three orders, the process SIGKILLed inside the third's mail.
The fork plan must say, for each call after the fork point, whether its side
effect happened and whether a fork calling it again repeats it; then the
fork is prompted with the same orders and the tools' own ledger must show
exactly what the plan said: reused calls not again, repeated ones once more.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.crashes.harness import Case, built_once, effect
from tests.crashes.test_more_features import MORE, rows, sound

CHARGE = {o: effect("charge", order=o, amount_eur=5) for o in "ABC"}
MAIL = {o: effect("mail", target=o) for o in "ABC"}


def runs_of(database: str, thread: str) -> list[tuple[str, Any]]:
    with sqlite3.connect(database) as conn:
        return conn.execute(
            "SELECT run_id, completion_seq FROM runs WHERE thread_id = ? ORDER BY rowid", (thread,)
        ).fetchall()


def messages(c: Case, thread: str) -> list[dict[str, Any]]:
    """The thread's messages and their runs, as `show --json` gives them (no row ids)."""
    drop = ("row_id", "created_at")
    return [{k: v for k, v in e.items() if k not in drop} for e in c.transcript(thread)]


def completed_runs(c: Case, thread: str = "src") -> list[str]:
    """The thread's completed runs, oldest first, as `fork` without `--after-run` names them."""
    out = c.cli("fork", c.database, thread)
    assert out.returncode == 2, out.stdout
    return out.stderr.strip().rsplit("oldest first: ", 1)[1].rstrip(")").split(", ")


def three_orders(
    tmp_path: Path, backend: str = "sqlite", request: pytest.FixtureRequest | None = None
) -> Case:
    """ "src" with three orders, the process SIGKILLed inside the third one's mail: a copy
    of the scenario built for real once (`harness.built_once`)."""
    return built_once("orders", f"{MORE}:shop", _build_orders, tmp_path, backend, request)


def _build_orders(c: Case) -> None:
    c.crash("src", "order A", None)
    c.crash("src", "order B", None)
    c.crash("src", "order C", "tool:mail:before:C")
    assert c.effects() == {
        CHARGE["A"]: 1,
        MAIL["A"]: 1,
        CHARGE["B"]: 1,
        MAIL["B"]: 1,
        CHARGE["C"]: 1,
    }
    assert c.state("src") == "mid_tool"


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_the_fork_plan_says_which_side_effects_a_fork_repeats_and_the_fork_does_so(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    c = three_orders(tmp_path, backend, request)
    first, second = completed_runs(c)
    third = c.listed("src")["last_run_id"]  # the crashed run: never completed
    source = messages(c, "src")

    out = c.cli("fork", c.database, "src", "--after-run", first, "--dry-run", "--json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["forked"] is False and plan["thread_id"] == "src-fork"
    assert plan["runs_kept"] == [first] and plan["runs_after"] == [second, third]
    got = [
        (p["name"], p["run_id"], p["happened"], p["in_fork"], p["repeats"]) for p in plan["calls"]
    ]
    assert got == [
        ("charge", second, "yes", "reuse", False),
        ("mail", second, "yes", "runs", True),  # no marker: a fork mailing B mails B again
        ("charge", third, "yes", "reuse", False),  # done marker, though no result was stored
        # Killed before it mailed, but nothing stored says so: no result, no marker, a run
        # cut off. It may have happened, and a fork would mail C (again, for all it knows).
        ("mail", third, "maybe", "runs", True),
    ]
    assert plan["repeats"] == 2 and plan["markers_note"] is None
    assert c.cli("list", c.database, "--json").stdout.count('"thread_id": "src-fork"') == 0

    out = c.cli("fork", c.database, "src", "--after-run", first, "--as", "f")
    assert out.returncode == 0, out.stderr
    assert "! mail" in out.stdout and "RUNS IT AGAIN" in out.stdout
    assert "2 side effects a fork would repeat" in out.stdout
    assert messages(c, "src") == source  # never rewritten
    forked = c.listed("f")
    assert forked["state"] == "finished"
    assert forked["forked_from"] == {"thread_id": "src", "after_run": first}
    assert c.listed("src")["forked_from"] is None
    shown = json.loads(c.cli("show", c.database, "f", "--json").stdout)  # a store scoped to it
    assert shown["forked_from"] == {"thread_id": "src", "after_run": first}
    copied = messages(c, "f")
    assert copied == source[:6]
    assert len(copied) == plan["messages"] == 6  # order A: user, 3 assistant, 2 results

    before = c.effects()
    for order in "BC":
        done = c.cli("prompt", c.database, "f", f"order {order}")
        assert done.returncode == 0, done.stdout + done.stderr
    ran = c.effects() - before
    # What the plan said: charge B and C reused (no second charge), mail B repeated,
    # mail C done for the first time.
    assert ran == {MAIL["B"]: 1, MAIL["C"]: 1}
    assert c.effects()[CHARGE["B"]] == 1 and c.effects()[CHARGE["C"]] == 1
    assert c.state("f") == "finished"
    if backend == "sqlite":
        sound(c, "f")
        assert rows(c, "f")[:6] == rows(c, "src")[:6]


def test_fork_refuses_what_it_cannot_do_with_one_line_and_changes_nothing(tmp_path: Path) -> None:
    c = three_orders(tmp_path)
    (first, _), _, (third, _) = runs_of(c.database, "src")
    size = Path(c.database).stat().st_size
    cases = {
        ("--after-run", third): "never completed",
        ("--after-run", "no-such-run"): "has no run 'no-such-run'",
        (): f"completed runs of src, oldest first: {first}",
    }
    for extra, said in cases.items():
        out = c.cli("fork", c.database, "src", *extra)
        assert out.returncode == 2, out.stdout
        assert said in out.stderr and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    for bad in ("src", "a\nb", "  ", "x\x1b[31m"):  # a thread in use; ids no one can type
        out = c.cli("fork", c.database, "src", "--after-run", first, "--as", bad, "--dry-run")
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    missing = c.cli(
        "fork",
        c.database,
        "src",
        "--after-run",
        first,
        "--dry-run",
        "--json",
        "--jobs-dir",
        str(c.jobs / "nowhere"),
    )
    plan = json.loads(missing.stdout)
    assert "no job markers at" in plan["markers_note"]
    assert {p["happened"] for p in plan["calls"]} == {"yes", "maybe"}  # results, or not known
    named = c.cli("fork", c.database, "src", "--after-run", first, "--as", "my fork")
    assert named.returncode == 0 and "prompt" in named.stdout and "'my fork' TEXT" in named.stdout
    out = c.cli("fork", c.database, "nobody", "--after-run", first)
    assert out.returncode == 2 and "no thread 'nobody'" in out.stderr
    assert c.cli("fork", c.database, "src", "--after-run", first).returncode == 0
    again = c.cli("fork", c.database, "src", "--after-run", first, "--as", "src-fork")
    assert again.returncode == 2 and "already exists" in again.stderr.lower(), again.stderr
    # The default name moves on past a name in use.
    out = c.cli("fork", c.database, "src", "--after-run", first, "--json")
    assert json.loads(out.stdout)["thread_id"] == "src-fork-2"
    assert Path(c.database).stat().st_size >= size
    threads = {t["thread_id"] for t in json.loads(c.cli("list", c.database, "--json").stdout)}
    assert threads == {"src", "src-fork", "src-fork-2", "my fork"}
