"""Plans of many threads from one pass over the messages table (`supervisor.plans`).

Read one thread at a time, a plan of every crashed thread of a file without
the thread index scanned the whole table per thread (220 s at 5,000 threads).
These tests hold the pass to one read of the table, and the transcripts and
plans it gives to what the per-thread reads gave.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
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
    # The newest row, one batch of the pass in the table's order, and one copy of the
    # threads whose hooks are asked over their whole transcript: not a read per thread.
    assert not [sql for sql in reads if "thread_id = ?" in sql], reads
    assert sum("ORDER BY id LIMIT" in sql for sql in reads) == 1, reads
    assert sum("ORDER BY thread_id, id" in sql for sql in reads) <= 1, reads
    assert len(reads) <= 3 < len(summaries), reads


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


def _plans_both_ways(
    db: Path, threads: list[str] | None, reference: str, strategy: str = "rerun"
) -> tuple[list, list]:
    """(the plans of one pass, the plans read and probed one thread at a time) of these
    threads (None: every thread)."""
    jobs = Location.parse(db).jobs(None).argument()
    agent = load_agent(reference)
    asked = agent if strategy == "rerun" else None
    with Location.parse(db).open_store() as store:
        index = MarkerIndex(jobs, Location.parse(jobs).read_markers(), agent.marker_hook)
        summaries = store.threads() if threads is None else [store.get(t) for t in threads]
        assert all(s is not None for s in summaries)

        async def one_by_one() -> list:
            plans = []
            for s in summaries:
                transcript = store.transcript(s.thread_id, full=True)
                probed = None
                if asked is not None:
                    probed = await probe(
                        asked, store, s, transcript, lambda a: terminated_by_markers(a, index)
                    )
                plans.append(
                    plan_thread(
                        s,
                        index,
                        messages=transcript.messages(),
                        strategy=strategy,
                        policies=None if probed is None else probed.policies,
                        ended=None if probed is None else probed.ended,
                    )
                )
            return plans

        single = asyncio.run(one_by_one())
        bulk = asyncio.run(plan_threads(store, summaries, index, strategy=strategy, agent=asked))
    return bulk, single


def _as_json(plans: list) -> list[str]:
    return [json.dumps(p.to_json(), sort_keys=True) for p in plans]


@pytest.mark.parametrize("reference", [DEFAULT_AGENT, "tests.crashes.agents:budget"])
def test_plans_in_one_pass_are_the_plans_read_one_thread_at_a_time(
    demo_db: Path, reference: str
) -> None:
    """The same verdicts, actions and policies as the per-thread read and probe gave,
    the probe's clock of answers included (it now comes from the transcript in hand);
    over the demo's threads and rows the quick probe could misread, with an agent that
    has no hooks and one whose `should_stop_after_turn` ends runs."""
    _insert_hostile(demo_db)
    bulk, single = _plans_both_ways(demo_db, None, reference)
    assert _as_json(bulk) == _as_json(single)
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


VETO = {"agent_supervisor": {"not_run": "the policy said no"}}
ABORT = {"hitl": {"decision": "aborted", "reason": "host went away"}}
CALL_Q1 = json.dumps({"type": "tool_call", "id": "q1", "name": "process", "arguments": {}})


def _then(text: str, members: str) -> str:
    """JSON members added at the end of an object: a key repeated there is the last one."""
    return text[:-1] + ", " + members + "}"


def _deep(n: int) -> str:
    """An assistant message whose call's argument nests `n` arrays deep."""
    text = json.dumps(
        {
            "role": "assistant",
            "content": [
                {"type": "tool_call", "id": "k1", "name": "process", "arguments": {"a": 0}}
            ],
        }
    )
    return text.replace('"a": 0', '"a": ' + "[" * n + "]" * n)


#: Rows SQLite's JSON functions and Python's json read differently (repeated keys, keys
#: spelt with escapes, NUL characters, deep nesting, bytes that are not UTF-8): a plan that
#: took any row's reading from SQLite (tried, and found out by these) was not the resume's.
#: Rows given as bytes are stored as TEXT.
MISREAD = {
    # A repeated key: SQLite's JSON functions read the first, Python's json the last.
    "dup-details-veto": [
        user_json("go"),
        _assistant("v1"),
        _then(_result("v1"), '"details": ' + json.dumps(VETO)),
    ],
    "dup-details-abort": [
        user_json("go"),
        _assistant("a1"),
        _then(_result("a1"), '"details": ' + json.dumps(ABORT)),
    ],
    "dup-call-id": [
        user_json("go"),
        _assistant("d1", "d2"),
        _result("d1"),
        _then(_result("d2"), '"tool_call_id": "zz"'),
        _assistant("d3"),
        _result("d3"),
    ],
    "dup-role": [
        user_json("go"),
        _then(user_json("x"), f'"role": "assistant", "content": [{CALL_Q1}]'),
        user_json("again"),
        _assistant("t1"),
        _result("t1"),
    ],
    "dup-content": [
        user_json("go"),
        _then(_assistant(), f'"content": [{CALL_Q1}]'),
        user_json("again"),
        _assistant("t1"),
        _result("t1"),
    ],
    "dup-block-type": [
        user_json("go"),
        _assistant().replace('"text": "on it"}', '"text": "on it", ' + CALL_Q1[1:]),
        user_json("again"),
        _assistant("t1"),
        _result("t1"),
    ],
    "dup-content-aborted": [
        user_json("go"),
        _then(_assistant(), f'"content": [{CALL_Q1}]'),
        user_json("again"),
        json.dumps({"role": "assistant", "content": [], "stop_reason": "aborted"}),
    ],
    # A key spelt with an escape: SQLite 3.40's paths ($.details.hitl) do not find it.
    "esc-details-key": [
        user_json("go"),
        _assistant("a1"),
        _result("a1", ABORT).replace('"details"', '"det\\u0061ils"'),
    ],
    "esc-hitl-key": [
        user_json("go"),
        _assistant("a1"),
        _result("a1", ABORT).replace('"hitl"', '"h\\u0069tl"'),
    ],
    "esc-veto-key": [
        user_json("go"),
        _assistant("v1"),
        _result("v1", VETO).replace('"agent_supervisor"', '"agent\\u005fsupervisor"'),
    ],
    "esc-type-key": [
        user_json("go"),
        _assistant("x1").replace('"type": "tool_call"', '"\\u0074ype": "tool_call"'),
        user_json("again"),
        _assistant("t1"),
        _result("t1"),
    ],
    # \u0000 in a string: json_extract cuts the string there; json(value) keeps it whole.
    "nul-in-result-id": [
        user_json("go"),
        _assistant("d1", "d2"),
        _result("d1"),
        _result("d2\u0000x"),
        _assistant("d3"),
        _result("d3"),
    ],
    "nul-in-both-ids": [
        user_json("go"),
        _assistant("d1", "d2\u0000x"),
        _result("d1"),
        _result("d2\u0000x"),
        _assistant("d3"),
        _result("d3"),
    ],
    # A row SQLite reads and Python does not (corrupt on the whole path): SQLite stops at a
    # NUL byte, nests 2,000 deep (Python 1,000), and takes surrogates encoded raw.
    "trailing-nul": [
        user_json("go"),
        _assistant("k1", "k2") + "\x00junk",
        _result("k1"),
        _assistant("t1"),
        _result("t1"),
    ],
    "deep-text": [
        user_json("go"),
        _then(_assistant("k1", "k2"), '"deep": ' + "[" * 1200 + "]" * 1200),
        _result("k1"),
        _assistant("t1"),
        _result("t1"),
    ],
    "nul-user-in-abort-tail": [
        user_json("go"),
        _assistant("a1"),
        _result("a1", {"hitl": {"decision": "aborted", "reason": "first"}}),
        user_json("hm") + "\x00",
        _result("a1", {"hitl": {"decision": "aborted", "reason": "second"}}),
    ],
    "raw-surrogate-id": [
        user_json("go"),
        _assistant("s1", "s2\ud800"),
        _result("s1"),
        _result("s2").encode().replace(b'"s2"', b'"s2\xed\xa0\x80"'),
        _assistant("t1"),
        _result("t1"),
    ],
}

#: Rows a reading other than Python's own raised on.
UNREADABLE = {
    "bad-utf8-args": [
        user_json("go"),
        _assistant("u1").encode().replace(b'"item": "u1"', b'"item": "\xff"'),
        _result("u1"),
        _assistant("t1"),
        _result("t1"),
    ],
    "bad-utf8-result-id": [
        user_json("go"),
        _assistant("u1", "u2"),
        _result("u1"),
        _result("u2").encode().replace(b'"u2"', b'"u2\xff"'),
        _assistant("t1"),
        _result("t1"),
    ],
    "deep-args": [user_json("go"), _deep(1200), _result("k1"), _assistant("t1"), _result("t1")],
}


def _insert(db: Path, threads: dict[str, list]) -> None:
    conn = sqlite3.connect(db)
    with conn:
        for thread, rows in threads.items():
            for row in rows:  # bytes as TEXT, as a writer with no UTF-8 check stores them
                value = "CAST(? AS TEXT)" if isinstance(row, bytes) else "?"
                conn.execute(
                    f"INSERT INTO messages (thread_id, message_json) VALUES (?, {value})",
                    (thread, row),
                )
    conn.close()


@pytest.mark.parametrize(
    ("reference", "strategy"),
    [
        (DEFAULT_AGENT, "rerun"),
        ("tests.crashes.agents:budget", "rerun"),
        ("tests.crashes.agents:budget", "interrupt"),
    ],
)
def test_rows_read_differently_elsewhere_plan_as_the_resume_reads_them(
    demo_db: Path, reference: str, strategy: str
) -> None:
    """Every row is read by Python's own json, as the resume reads it: plans of one pass
    are the per-thread plans, and no row raises, over the rows found to differ."""
    _insert(demo_db, {**MISREAD, **UNREADABLE})
    plans, single = _plans_both_ways(demo_db, [*MISREAD, *UNREADABLE], reference, strategy)
    bulk = _as_json(plans)
    assert bulk == _as_json(single)
    if strategy == "rerun" and reference == DEFAULT_AGENT:
        by_thread = dict(zip([*MISREAD, *UNREADABLE], bulk, strict=True))
        assert "vetoed" in by_thread["dup-details-veto"]  # the last of two `details` counts
        assert "host went away" in by_thread["esc-hitl-key"]  # an escaped key is a key
