"""Plans of many threads from one pass over the messages table (`supervisor.plans`).

Read one thread at a time, a plan of every crashed thread of a file without
the thread index scanned the whole table per thread (220 s at 5,000 threads).
These tests hold the pass to one read of the table, and the transcripts and
plans it gives to what the per-thread reads gave.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from supervisor.agents import DEFAULT_AGENT, load_agent
from supervisor.location import Location
from supervisor.plan import MarkerIndex, plan_thread, terminated_by_markers
from supervisor.plans import plan_threads
from supervisor.probe import probe
from supervisor.store import BIG_ROW
from tests.conftest import insert_rows, user_json


def _rows(transcript) -> list[tuple]:
    return [
        (e.row_id, e.created_at, e.run_id, e.message, e.error, e.size, e.raw)
        for e in transcript.entries
    ]


def _same_transcripts(store, full: bool) -> None:
    ids = [s.thread_id for s in store.threads()]
    wanted = [*reversed(ids), ids[0], "no-such-thread"]  # any order, a repeat, an unknown
    many = list(store.transcripts(wanted, full=full))
    assert [t.thread_id for t in many] == sorted(set(wanted))
    for t in many:
        assert _rows(t) == _rows(store.transcript(t.thread_id, full=full)), t.thread_id
    assert next(t for t in many if t.thread_id == "no-such-thread").entries == []


def test_sqlite_transcripts_in_one_pass_are_the_per_thread_ones(demo_db: Path) -> None:
    insert_rows(demo_db, [("big-one", user_json("x" * (BIG_ROW + 10)))])
    insert_rows(demo_db, [("bad-json", "{not json")])
    with Location.parse(demo_db).open_store() as store:
        _same_transcripts(store, full=False)
        _same_transcripts(store, full=True)
        big = next(store.transcripts(["big-one"])).entries[0]
        assert big.message is None and big.size is not None  # a preview, as one read gives


def test_postgres_transcripts_in_one_pass_are_the_per_thread_ones(pg_demo) -> None:
    dsn, _ = pg_demo
    with Location.parse(dsn).open_store() as store:
        _same_transcripts(store, full=False)


def _resumable(store) -> list:
    from supervisor.plan import refusal

    return [s for s in store.threads() if refusal(s) is None]


def test_a_plan_of_every_crashed_thread_reads_the_messages_table_once(demo_db: Path) -> None:
    with Location.parse(demo_db).open_store() as store:
        summaries = _resumable(store)
        assert len(summaries) >= 4  # the demo crashes threads in several states
        reads: list[str] = []
        store.db.conn.set_trace_callback(
            lambda sql: reads.append(sql) if " FROM messages " in sql else None
        )
        agent = load_agent(DEFAULT_AGENT)
        index = MarkerIndex(demo_db.with_name("demo.db.jobs"), [], agent.marker_hook)
        plans = asyncio.run(plan_threads(store, summaries, index, strategy="rerun", agent=agent))
        store.db.conn.set_trace_callback(None)
    assert [p.thread_id for p in plans] == [s.thread_id for s in summaries]
    assert len(reads) == 1, reads


def test_plans_in_one_pass_are_the_plans_read_one_thread_at_a_time(demo_db: Path) -> None:
    """The same verdicts, actions and policies as the per-thread read and probe gave,
    the probe's clock of answers included (it now comes from the transcript in hand)."""
    jobs = Location.parse(demo_db).jobs(None).argument()
    agent = load_agent(DEFAULT_AGENT)
    with Location.parse(demo_db).open_store() as store:
        index = MarkerIndex(jobs, Location.parse(jobs).read_markers(), agent.marker_hook)
        summaries = [s for s in store.threads()]
        bulk = asyncio.run(plan_threads(store, summaries, index, strategy="rerun", agent=agent))

        async def one_by_one() -> list:
            plans = []
            for s in summaries:
                transcript = store.transcript(s.thread_id, full=True)
                probed = await probe(
                    agent, store, s, transcript, lambda a: terminated_by_markers(a, index)
                )
                plans.append(
                    plan_thread(
                        s,
                        index,
                        messages=transcript.messages(),
                        strategy="rerun",
                        policies=probed.policies,
                        ended=probed.ended,
                    )
                )
            return plans

        single = asyncio.run(one_by_one())
    as_json = lambda plans: [json.dumps(p.to_json(), sort_keys=True) for p in plans]  # noqa: E731
    assert as_json(bulk) == as_json(single)
    assert any(p.calls for p in bulk)  # some plan has calls to compare
