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

import pytest

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


def test_a_plan_of_every_crashed_thread_reads_the_messages_table_at_most_twice(
    demo_db: Path,
) -> None:
    """Sketches of every thread in one read; the threads whose unanswered calls the
    agent's hooks are asked about, whole, in a second."""
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
    assert len(reads) == 2, reads
    assert "X'75'" in reads[0] and "X'75'" not in reads[1]  # sketches, then whole transcripts


def _assistant(*calls: str, text: str = "on it") -> str:
    blocks = [{"type": "text", "text": text}]
    blocks += [
        {"type": "tool_call", "id": c, "name": "process", "arguments": {"item": c}} for c in calls
    ]
    return json.dumps({"role": "assistant", "content": blocks, "stop_reason": "tool_use"})


def _result(call_id: str, details: dict | None = None, escaped: bool = False) -> str:
    text = json.dumps(
        {
            "role": "tool_result",
            "tool_call_id": call_id,
            "tool_name": "process",
            "content": [{"type": "text", "text": "done"}],
            "details": details,
            "is_error": False,
        }
    )
    if escaped:  # the same id, spelt with an escape: only a parser reads it right
        text = text.replace(
            f'"{call_id}"', '"' + call_id[:-1] + f"\\u{ord(call_id[-1]):04x}" + '"', 1
        )
    return text


#: Threads whose rows a sketch must not get wrong: each crashed after its tools.
HOSTILE = {
    "h-plain": [user_json("go"), _assistant("p1"), _result("p1")],
    "h-vetoed": [
        user_json("go"),
        _assistant("v1"),
        _result("v1", {"agent_supervisor": {"not_run": "the policy said no"}}),
    ],
    "h-aborted": [
        user_json("go"),
        _assistant("a1"),
        _result("a1", {"hitl": {"decision": "aborted", "reason": "host went away"}}),
    ],
    # An earlier turn's answer spelt with an escape: misread, its call would dangle.
    "h-escaped-id": [
        user_json("go"),
        _assistant("e1"),
        _result("e1", escaped=True),
        _assistant("e2"),
        _result("e2"),
    ],
    # An earlier turn's call whose type is spelt with an escape: it dangles, unanswered.
    "h-escaped-type": [
        user_json("go"),
        _assistant("x1").replace('"tool_call"', '"tool\\u005fcall"'),
        user_json("again"),
        _assistant("t1"),
        _result("t1"),
    ],
    # A result stored as a blob (SQLite keeps what a writer gives it): read as text.
    "h-blob": [user_json("go"), _assistant("b1"), _result("b1").encode()],
    "h-dangling": [
        user_json("go"),
        _assistant("d1", "d2"),
        _result("d1"),
        _assistant("d3"),
        _result("d3"),
    ],
}


def _insert_hostile(db: Path) -> None:
    insert_rows(db, [(thread, row) for thread, rows in HOSTILE.items() for row in rows])


@pytest.mark.parametrize("reference", [DEFAULT_AGENT, "tests.crashes.agents:budget"])
def test_plans_in_one_pass_are_the_plans_read_one_thread_at_a_time(
    demo_db: Path, reference: str
) -> None:
    """The same verdicts, actions and policies as the per-thread read and probe gave,
    the probe's clock of answers included (it now comes from the transcript in hand);
    over the demo's threads and rows a sketch could misread, with an agent that has
    no hooks and one whose `should_stop_after_turn` ends runs."""
    _insert_hostile(demo_db)
    jobs = Location.parse(demo_db).jobs(None).argument()
    agent = load_agent(reference)
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
    by_thread = {p.thread_id: p for p in bulk}
    assert {t: by_thread[t].state.value for t in HOSTILE} == dict.fromkeys(HOSTILE, "after_tools")
    assert "vetoed" in by_thread["h-vetoed"].action
    assert "host went away" in by_thread["h-aborted"].action
    assert [c.id for c in by_thread["h-dangling"].closed] == ["d2"]
    assert [c.id for c in by_thread["h-escaped-type"].closed] == ["x1"]
    assert by_thread["h-escaped-id"].closed == ()
    ended = "should_stop_after_turn" in by_thread["h-dangling"].action
    assert ended == reference.endswith("budget")  # two turns: the budget's hook ends the run
