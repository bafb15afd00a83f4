"""`prune --finished --older-than 30d`: old threads removed from every cubeloop table, nothing else.

A real agent's threads on a real SQLite file and a real Postgres server:
finished ones (their markers written by the supervisor's runs, so they name
the thread), a crashed one, a fork and its source, one a supervisor holds,
and a recent one. Every other thread's rows must be the same, byte for byte,
after; a thread whose lease is taken, or that is written to, between the
listing and its batch stays.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from supervisor.location import Location
from supervisor.retention import Candidate, remove_in_batches
from tests.crashes.harness import ROOT, Case, built_once
from tests.crashes.test_fork import completed_runs
from tests.crashes.test_more_features import MORE

SQLITE_TABLES = (
    "messages",
    "thread_extra",
    "thread_pending_request",
    "thread_hitl_answers",
    "runs",
)
PG_TABLES = ("cubepi_messages", "cubepi_runs", "cubepi_hitl_answers", "cubepi_threads")
OLD = ["old1", "old2", "src", "held"]


def rows_by_table(database: str) -> dict[str, list[Any]]:
    """Every row of every cubeloop table, in a stable order."""
    if not database.startswith("postgres"):
        with sqlite3.connect(database) as conn:
            return {
                t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall()
                for t in SQLITE_TABLES
            }

    async def read() -> dict[str, list[Any]]:
        import asyncpg

        conn = await asyncpg.connect(database)
        try:
            return {
                t: [tuple(r) for r in await conn.fetch(f"SELECT * FROM {t} ORDER BY 1, 2")]
                for t in PG_TABLES
            }
        finally:
            await conn.close()

    return asyncio.run(read())


def backdate(database: str, threads: list[str], days: int = 40) -> None:
    """Make these threads' rows look `days` old (the only change the test makes itself)."""
    if not database.startswith("postgres"):
        with sqlite3.connect(database) as conn:
            conn.execute(
                "UPDATE messages SET created_at = created_at - ? "
                "WHERE thread_id IN (SELECT value FROM json_each(?))",
                (days, json.dumps(threads)),
            )
        return

    async def update() -> None:
        import asyncpg

        conn = await asyncpg.connect(database)
        try:
            await conn.execute(
                "UPDATE cubepi_messages SET created_at = created_at - make_interval(days => $1) "
                "WHERE thread_id = ANY($2::text[])",
                days,
                threads,
            )
        finally:
            await conn.close()

    asyncio.run(update())


def hold_lease(database: str, thread: str) -> subprocess.Popen[str]:
    """Another process holding the thread's lease until it is killed."""
    code = (
        "import asyncio, sys\n"
        "from supervisor.location import Location\n"
        "async def main():\n"
        f"    lease = await Location.parse({database!r}).leases().acquire({thread!r})\n"
        "    print('held', flush=True)\n"
        "    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)\n"
        "asyncio.run(main())\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shop(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    """A copy of the shop, built for real once per process and backend (six agent runs)."""
    return built_once("shop", f"{MORE}:shop", _build_shop, tmp_path, request.param, request)


def _build_shop(c: Case) -> None:
    database = c.database
    for thread, order in [("old1", "A"), ("old2", "B"), ("src", "D"), ("held", "E")]:
        out = c.cli("prompt", database, thread, f"order {order}")
        assert out.returncode == 0, out.stdout + out.stderr
    c.crash("crashed", "order C", "tool:mail:before:C")
    (run,) = completed_runs(c, "src")
    assert c.cli("fork", database, "src", "--after-run", run, "--as", "src-fork").returncode == 0
    backdate(database, [*OLD, "crashed", "src-fork"])
    assert c.cli("prompt", database, "recent", "order F").returncode == 0


def test_prune_removes_old_finished_threads_everywhere_and_leaves_the_rest_byte_for_byte(
    shop: Case,
) -> None:
    c = shop
    db = c.database
    charge = {m.key: m for m in Location.parse(str(c.jobs)).read_markers()}
    assert {m.thread_id for m in charge.values()} >= {"old1", "old2", "src", "held", "recent"}
    holder = hold_lease(db, "held")
    try:
        before = rows_by_table(db)
        dry = c.cli("prune", db, "--finished", "--older-than", "30d", "--dry-run", "--json")
        assert dry.returncode == 0, dry.stderr
        assert rows_by_table(db) == before  # a dry run changes nothing
        out = c.cli("prune", db, "--finished", "--older-than", "30d", "--yes", "--json")
        assert out.returncode == 0, out.stderr
    finally:
        holder.kill()
        holder.wait()
    report = json.loads(out.stdout)
    verdicts = {t["thread_id"]: (t["remove"], t["why"], t["removed"]) for t in report["threads"]}
    planned = {t["thread_id"]: t["remove"] for t in json.loads(dry.stdout)["threads"]}
    assert planned == {t: v[0] for t, v in verdicts.items()}
    assert {t for t, v in verdicts.items() if v[2]} == {"old1", "old2", "src-fork"}
    assert verdicts["src"][1] == "a fork's source (its forks name it)"
    assert "held" not in verdicts  # a supervisor holds it: it lists as running
    assert verdicts["recent"][1] == "written since the cutoff"
    assert "crashed" not in verdicts  # mid_tool: not a state asked for
    assert report["removed_messages"] == sum(
        1
        for r in before[SQLITE_TABLES[0] if "messages" in before else PG_TABLES[0]]
        if r[1 if not db.startswith("postgres") else 0] in ("old1", "old2", "src-fork")
    )
    after = rows_by_table(db)
    gone = {"old1", "old2", "src-fork"}
    for table, rows in before.items():
        column = 1 if table == "messages" else 0  # thread_id's place in each table
        kept = [r for r in rows if r[column] not in gone]
        assert after[table] == kept, table  # every other row exactly as it was
        assert not [r for r in after[table] if r[column] in gone], table
    markers = {m.key: m for m in Location.parse(str(c.jobs)).read_markers()}
    assert {m.thread_id for m in markers.values()} & gone == set()
    assert report["removed_markers"] == sum(1 for m in charge.values() if m.thread_id in gone)
    listed = {t["thread_id"] for t in json.loads(c.cli("list", db, "--json").stdout)}
    assert listed == {"src", "held", "recent", "crashed"}


def test_a_thread_leased_or_written_after_the_listing_is_kept(shop: Case) -> None:
    c = shop
    db = c.database
    listed = {t["thread_id"]: t for t in json.loads(c.cli("list", db, "--json").stdout)}

    def candidate(thread: str, messages: int | None = None) -> Candidate:
        t = listed[thread]
        last = max(e["row_id"] for e in c.transcript(thread))
        count = t["messages"] if messages is None else messages
        return Candidate(thread, t["state"], count, last, True, "finished, old")

    before = rows_by_table(db)
    where = Location.parse(db)
    holder = hold_lease(db, "old1")
    try:
        stale = [candidate("old1"), candidate("old2", listed["old2"]["messages"] - 1)]
        done = asyncio.run(remove_in_batches(where.thread_remover(5.0), where.leases(), stale))
    finally:
        holder.kill()
        holder.wait()
    assert done.removed == [] and done.messages == 0
    assert done.skipped["old1"].startswith("held by")
    assert done.skipped["old2"] == "written to since the listing"
    assert rows_by_table(db) == before
    done = asyncio.run(
        remove_in_batches(where.thread_remover(5.0), where.leases(), [candidate("old2")])
    )
    assert done.removed == ["old2"] and done.messages == listed["old2"]["messages"]


def test_prune_refuses_bad_input_with_one_line(tmp_path: Path) -> None:
    c = Case(str(tmp_path / "x.db"), tmp_path / "jobs", f"{MORE}:shop")
    assert c.cli("prompt", c.database, "t", "order A").returncode == 0
    for args, said in [
        (["--finished"], "needs --older-than"),
        (["--finished", "--older-than", "3x"], "not an age"),
        (["--finished", "--older-than", "0"], "pass --yes to agree"),
        (["--yes"], "--yes is for removing threads"),
        (["--state", "bogus", "--older-than", "1d"], "unknown state 'bogus'"),
    ]:
        out = c.cli("prune", c.database, *args)
        assert out.returncode == 2, (args, out.stdout)
        assert said in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert json.loads(c.cli("list", c.database, "--json").stdout)[0]["thread_id"] == "t"
    assert not (tmp_path / "missing.db").exists()
    out = c.cli("prune", str(tmp_path / "missing.db"), "--finished", "--older-than", "1d")
    assert out.returncode == 2 and not (tmp_path / "missing.db").exists()
