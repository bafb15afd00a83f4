"""The Postgres store against a real server: same states as SQLite, read-only, incremental.

Every database here was written by real cubeloop agents through
`PostgresCheckpointer` in child processes, most of them SIGKILLed at a
chosen moment; the same crashes run into a SQLite file give the oracle.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.demo_db import DEMO_THREADS
from supervisor.location import open_store
from supervisor.pg.client import SyncClient
from supervisor.pg.schema import INDEX_NAMES
from supervisor.states import State
from tests.conftest import cli, make_crashes

pytestmark = pytest.mark.postgres


def facts(store) -> dict[str, tuple]:
    """What a backend must agree on, per thread (times and row numbering aside)."""
    return {
        s.thread_id: (
            str(s.state),
            s.messages,
            s.last_role,
            s.last_stop_reason,
            tuple((c.id, c.name, json.dumps(c.arguments)) for c in s.tool_calls),
            tuple(sorted(s.answered)),
            s.last_text,
            s.last_error,
            s.pending_request,
            s.answer_stored,
            s.run_open,
        )
        for s in store.threads()
    }


@pytest.fixture(scope="module")
def both_crashed(pg_server, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The same real crashes, once into a SQLite file and once into Postgres."""
    base = tmp_path_factory.mktemp("parity")
    db = base / "crash.db"
    make_crashes(db, lambda name: base / "sqlite-jobs" / name)
    dsn = pg_server.new_database()
    make_crashes(dsn, lambda name: base / "pg-jobs" / name)
    return db, dsn


def test_real_crashes_classify_identically(both_crashed: tuple[Path, str]) -> None:
    db, dsn = both_crashed
    sqlite, postgres = open_store(db), open_store(dsn)
    try:
        assert facts(postgres) == facts(sqlite)
        assert {str(s.state) for s in postgres.threads()} >= {
            "finished",
            "mid_tool",
            "after_tools",
            "between_turns",
            "aborted",
            "error",
        }
    finally:
        sqlite.close()
        postgres.close()


def test_demo_threads_with_humans_classify_as_on_sqlite(
    demo_template: Path, pg_demo: tuple[str, Path]
) -> None:
    dsn, _ledger = pg_demo
    sqlite, postgres = open_store(demo_template), open_store(dsn)
    try:
        assert facts(postgres) == facts(sqlite)
        assert {s.thread_id: str(s.state) for s in postgres.threads()} == {
            t.thread_id: t.expect for t in DEMO_THREADS
        }
        request = postgres.get("job-09").request
        assert request is not None and request.tool_name == "refund"
    finally:
        sqlite.close()
        postgres.close()


def test_transcripts_hold_the_same_messages(both_crashed: tuple[Path, str]) -> None:
    db, dsn = both_crashed
    sqlite, postgres = open_store(db), open_store(dsn)
    try:
        for thread in ("batch-partial", "error", "finished"):
            mine = [e.message for e in postgres.transcript(thread).entries]
            theirs = [e.message for e in sqlite.transcript(thread).entries]
            assert [m["role"] for m in mine] == [m["role"] for m in theirs]
            assert [m.get("content") for m in mine] == [m.get("content") for m in theirs]
            seqs = [e.row_id for e in postgres.transcript(thread).entries]
            assert seqs == list(range(1, len(seqs) + 1))  # row numbers are seq in the thread
    finally:
        sqlite.close()
        postgres.close()


def test_a_scoped_store_reads_only_the_named_threads(both_crashed: tuple[Path, str]) -> None:
    _db, dsn = both_crashed
    store = open_store(dsn, only=["turn2-calls", "no-such-thread"])
    try:
        assert [s.thread_id for s in store.threads()] == ["turn2-calls"]
        assert store.get("turn2-calls").state is State.MID_TOOL
    finally:
        store.close()


async def _prompt(dsn: str, thread: str, text: str, jobs: Path) -> None:
    from supervisor import demo
    from supervisor.location import Location

    async with Location.parse(dsn).checkpointer() as cp:
        agent = demo.build_demo_agent(
            cp, thread, tools=demo.demo_tools(jobs, seconds=0), tokens_per_second=None
        )
        await agent.prompt(text)


def test_a_refresh_reads_only_the_threads_that_changed(pg_dsn: str, tmp_path: Path) -> None:
    for i in range(5):
        asyncio.run(_prompt(pg_dsn, f"t{i}", "Process items A..B", tmp_path / "jobs"))
    store = open_store(pg_dsn)
    try:
        assert store.refresh() == set()
        before = store.get("t0").messages
        asyncio.run(_prompt(pg_dsn, "t3", "Process items C..D", tmp_path / "jobs"))
        asyncio.run(_prompt(pg_dsn, "new", "Process items E", tmp_path / "jobs"))
        assert store.refresh() == {"t3", "new"}
        assert store.work["rows"] == store.get("t3").messages + store.get("new").messages
        assert store.get("t0").messages == before
        assert store.get("new").state is State.FINISHED
        assert facts(store) == facts(fresh := open_store(pg_dsn))
        fresh.close()
    finally:
        store.close()


def test_looking_never_writes(pg_dsn: str) -> None:
    store = open_store(pg_dsn)
    try:
        with pytest.raises(Exception, match="read-only"):
            store._client.execute("CREATE TABLE cubepi_ours (x int)")
    finally:
        store.close()


# -- rows we did not write ------------------------------------------------------

SMALL_INTS = st.integers(-(2**63), 2**63 - 1)  # what msgpack can carry
ROLES = st.sampled_from(["user", "assistant", "tool", "system", "", "tool_result"])
PAYLOADS = st.one_of(
    st.binary(max_size=40),
    st.builds(
        lambda role, extra: msgpack.packb({"role": role, **extra}),
        st.sampled_from(["user", "assistant", "tool_result", "other"]),
        st.dictionaries(
            st.sampled_from(["content", "stop_reason", "tool_call_id", "error_message"]),
            st.one_of(st.none(), SMALL_INTS, st.text(max_size=5), st.lists(SMALL_INTS)),
        ),
    ),
)


async def _insert(dsn: str, thread: str, rows: list[tuple[str, bytes]]) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO cubepi_threads (thread_id) VALUES ($1) ON CONFLICT DO NOTHING", thread
        )
        start = await conn.fetchval(
            "SELECT coalesce(max(seq), 0) FROM cubepi_messages WHERE thread_id = $1", thread
        )
        await conn.executemany(
            "INSERT INTO cubepi_messages (thread_id, seq, role, payload) VALUES ($1, $2, $3, $4)",
            [(thread, start + i, role, payload) for i, (role, payload) in enumerate(rows, 1)],
        )
    finally:
        await conn.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    first=st.lists(st.tuples(ROLES, PAYLOADS), max_size=4),
    more=st.lists(st.tuples(ROLES, PAYLOADS), max_size=3),
)
def test_hostile_rows_never_break_the_listing(pg_server, first, more) -> None:
    # One database for every example, a thread each: making and dropping a database per
    # example was most of this test's time (and of the server's CPU).
    dsn = _hostile_database(pg_server)
    thread = f"odd-{next(_HOSTILE_THREADS)}"
    asyncio.run(_insert(dsn, thread, first))
    store = open_store(dsn)
    try:
        asyncio.run(_insert(dsn, thread, more))
        store.refresh()
        whole = open_store(dsn)
        assert facts(store) == facts(whole)  # a refresh and a fresh listing agree
        whole.close()
        summary = store.get(thread)
        bad = [r for r, p in first + more if r not in ("user", "assistant", "tool")]
        if bad:
            assert summary.state is State.CORRUPT
        store.transcript(thread)  # never raises
        store.check_rows()
    finally:
        store.close()


_HOSTILE_THREADS = itertools.count()
_HOSTILE_DATABASES: dict[int, str] = {}


def _hostile_database(pg_server) -> str:
    key = id(pg_server)
    if key not in _HOSTILE_DATABASES:
        _HOSTILE_DATABASES[key] = pg_server.new_database()
    return _HOSTILE_DATABASES[key]


# -- the command line -------------------------------------------------------------


def test_list_json_keeps_the_contract(demo_template: Path, pg_demo: tuple[str, Path]) -> None:
    dsn, _ = pg_demo
    mine = json.loads(cli("list", dsn, "--json").stdout)
    theirs = json.loads(cli("list", str(demo_template), "--json").stdout)
    assert [sorted(t) for t in mine] == [sorted(t) for t in theirs]
    assert [(t["thread_id"], t["state"]) for t in mine] == [
        (t["thread_id"], t["state"]) for t in theirs
    ]


def test_list_reads_partition_by_partition_and_shows_the_held_listing(
    pg_demo: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`list` streams the partitions and keeps no summaries; it shows, field for field,
    what the store's held listing (the app's) says, a thread without messages included."""
    from supervisor.pg.store import PostgresStore
    from supervisor.report import thread_json

    dsn, _ = pg_demo
    asyncio.run(_insert(dsn, "zz-no-messages", []))
    streamed = json.loads(cli("list", dsn, "--json").stdout)
    held = open_store(dsn)
    try:
        expected = [thread_json(s) for s in sorted(held.threads(), key=lambda s: s.thread_id)]
    finally:
        held.close()
    assert streamed == json.loads(json.dumps(expected))
    assert {"thread_id": "zz-no-messages", "state": "empty"}.items() <= streamed[-1].items()
    assert len({t["state"] for t in streamed}) >= 8  # the demo's states, not a few

    store = PostgresStore(dsn)
    try:
        batches = list(store.stream_batches())
        assert len(batches) == 64 + 1  # cubeloop's partitions, then the threads without rows
        assert sorted(s.thread_id for b in batches for s in b) == [t["thread_id"] for t in streamed]
        assert store.threads() == []  # nothing kept
        rows = sum(t["messages"] for t in streamed)
        monkeypatch.setattr("supervisor.pg.store.INDEX_HINT_ROWS", rows - 1)
        hint = store.index_hint()  # the rows it saw, counted
        assert f"{rows:,} rows and not our indexes (agent_supervisor_messages_created, " in hint
        monkeypatch.setattr("supervisor.pg.store.INDEX_HINT_ROWS", rows)
        assert store.index_hint() is None
        early = store.stream_batches()
        next(early)
        early.close()  # a reader that stops early: the partition read ahead is waited for
        assert len(store._client.fetch("SELECT thread_id FROM cubepi_threads")) == len(streamed)
    finally:
        store.close()


def test_a_server_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = cli("list", f"postgresql://u:secret@127.0.0.1:{port}/db")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "secret" not in out.stderr and f"127.0.0.1:{port}" in out.stderr


def test_a_database_without_cubeloop_tables_is_refused(pg_server) -> None:
    dsn = pg_server.new_database(schema=False)
    out = cli("list", dsn)
    assert out.returncode == 2 and "not a CubeLoop checkpoint database" in out.stderr
    assert out.stderr.count("\n") == 1


def test_init_markers_creates_our_table_once(pg_dsn: str, tmp_path: Path) -> None:
    out = cli("init-markers", pg_dsn)
    assert out.returncode == 0 and "agent_supervisor.job_markers created" in out.stdout
    again = cli("init-markers", pg_dsn)
    assert again.returncode == 0 and "already there" in again.stdout
    refused = cli("init-markers", str(tmp_path / "x.db"))
    assert refused.returncode == 2 and "not a postgresql:// URL" in refused.stderr
    assert not (tmp_path / "x.db").exists()


def test_markers_live_in_postgres_and_jobs_reads_them(pg_demo: tuple[str, Path]) -> None:
    dsn, _ = pg_demo
    out = cli("jobs", dsn, "--json", "--thread", "job-02")
    assert out.returncode == 0, out.stderr
    markers = json.loads(out.stdout)
    started = [m for m in markers if m["status"] == "started"]
    assert [m["arguments"] for m in started] == [{"item": "card-202"}]  # killed after start
    assert all(m["path"].startswith("agent_supervisor.job_markers/") for m in markers)


def test_demo_refuses_a_database_with_threads(pg_demo: tuple[str, Path], tmp_path: Path) -> None:
    dsn, _ = pg_demo
    out = cli("demo", dsn)
    assert out.returncode == 2 and "already holds threads" in out.stderr
    assert len(json.loads(cli("list", dsn, "--json").stdout)) == len(DEMO_THREADS)


def test_demo_fills_an_empty_database(pg_server, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    dsn = pg_server.new_database(schema=False)
    out = cli("demo", dsn)
    assert out.returncode == 0, out.stderr
    counts = out.stdout.split("(", 1)[-1]  # the random database name may hold "12 " itself
    assert "12 " not in counts and "2 finished" in counts and "1 answered" in counts
    ledgers = list((tmp_path / "agent-supervisor").glob("ledger-*"))
    assert len(ledgers) == 1
    shutil.rmtree(ledgers[0])


def test_index_adds_and_drops_only_ours_with_consent(pg_dsn: str) -> None:
    refused = cli("index", pg_dsn)  # no terminal to ask on
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    ours = list(INDEX_NAMES)
    added = cli("index", pg_dsn, "--yes")
    assert added.returncode == 0 and f"added index {', '.join(ours)} in " in added.stdout
    assert "already indexed" in cli("index", pg_dsn, "--yes").stdout
    client = SyncClient(pg_dsn)
    try:
        client.execute(f"DROP INDEX {ours[3]}")  # one of ours gone: only it is added again
        assert f"added index {ours[3]} in " in cli("index", pg_dsn, "--yes").stdout
        assert set(ours) <= {r[0] for r in client.fetch("SELECT indexname FROM pg_indexes")}
        assert f"dropped index {', '.join(ours)}" in cli("index", pg_dsn, "--drop").stdout
        assert "no index of ours" in cli("index", pg_dsn, "--drop").stdout
        left = {r[0] for r in client.fetch("SELECT indexname FROM pg_indexes")}
    finally:
        client.close()
    assert not set(ours) & left and "ix_cubepi_messages_thread_run" in left  # only ours


def test_big_databases_get_an_index_hint_and_a_preview(
    pg_demo: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import supervisor.pg.store as pg_store

    dsn, _ = pg_demo
    store = open_store(dsn)
    try:
        assert store.index_hint() is None  # small
        assert "not our indexes (agent_supervisor_messages_created, " in store.index_hint(10**6)
        assert store.preview() is None  # small: listed whole at once
        monkeypatch.setattr(pg_store, "PREVIEW_ABOVE_ROWS", -1)
        for with_index in (False, True):
            if with_index:
                assert cli("index", dsn, "--yes").returncode == 0
                assert store.index_hint(10**6) is None
            early = {s.thread_id: s for s in store.preview(threads=3)}
            assert len(early) == 3
            for thread_id, summary in early.items():  # the same states the whole listing has
                assert summary.state is store.get(thread_id).state
    finally:
        store.close()


def test_demo_force_replaces_the_threads(
    pg_demo: tuple[str, Path], tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    dsn, _ = pg_demo
    assert cli("prompt", dsn, "extra", "Process items Q", "--force").returncode == 0
    out = cli("demo", dsn, "--force")
    assert out.returncode == 0, out.stderr
    listed = {t["thread_id"]: t["state"] for t in json.loads(cli("list", dsn, "--json").stdout)}
    assert listed == {t.thread_id: t.expect for t in DEMO_THREADS}  # "extra" is gone
