"""A transcript's digest, folded row by row, against its reading over the whole transcript.

`supervisor.digest` is what every plan reads of a transcript: the bulk pass
folds rows in the table's order, the single-thread plan folds its transcript.
Here the fold is held to the plain reading over the whole list of messages
(what plans did before the fold), and the bulk pass to the per-thread read.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import supervisor.sqlite.transcripts as transcripts
from supervisor.digest import TranscriptDigest
from supervisor.location import Location
from supervisor.plan import interrupted_abort
from supervisor.probe import _last_turn
from supervisor.store import BIG_ROW, summarise_assistant
from tests.conftest import insert_rows, user_json


def _dangling_over_the_whole(messages: list[dict[str, Any] | None]) -> list[str]:
    """The calls of every assistant message but the last that the results after it,
    before the next assistant message, leave unanswered: the plain reading."""
    turns: list[tuple[list[str], set[str]]] = []
    for m in messages:
        if not isinstance(m, dict):
            continue
        if m.get("role") == "assistant":
            turns.append(([c.id for c in summarise_assistant(m)[1]], set()))
        elif m.get("role") == "tool_result" and turns:
            turns[-1][1].add(str(m.get("tool_call_id")))
    return [c for calls, answered in turns[:-1] for c in calls if c not in answered]


_ids = st.sampled_from(["a", "b", "c", "d"])
_assistant = st.builds(
    lambda ids, listed: {
        "role": "assistant",
        "content": [{"type": "tool_call", "id": i, "name": "t", "arguments": {}} for i in ids]
        if listed
        else "no list: no calls",
    },
    st.lists(_ids, max_size=3),
    st.booleans(),
)
_aborted = {"hitl": {"decision": "aborted", "reason": "gone"}}
_result = st.builds(
    lambda i, aborted: {
        "role": "tool_result",
        "tool_call_id": i,
        "content": [],
        "details": _aborted if aborted else {},
    },
    _ids | st.integers(0, 2),
    st.booleans(),
)
_messages = st.lists(
    st.one_of(_assistant, _result, st.just({"role": "user", "content": "go on"}), st.none()),
    max_size=14,
)


@settings(max_examples=400, deadline=None)
@given(_messages)
def test_the_fold_reads_a_transcript_as_the_whole_list_does(messages: list) -> None:
    digest = TranscriptDigest.of_messages(messages)
    assert [c.id for c in digest.dangling] == _dangling_over_the_whole(messages)
    assert interrupted_abort(digest.last_messages()) == interrupted_abort(messages)
    assert digest.rows == len(messages)
    starts = [i for i, m in enumerate(messages) if m is not None and m["role"] == "assistant"]
    assert digest.last_messages() == messages[starts[-1] if starts else 0 :]  # only the last turn
    assert digest.unreadable == (None in messages)
    if not digest.unreadable:
        whole = _last_turn([m for m in messages if m is not None])
        last = _last_turn([m for m in digest.last_messages() if m is not None])
        assert whole == last


def _assistant_json(*calls: str) -> str:
    blocks = [{"type": "tool_call", "id": c, "name": "t", "arguments": {}} for c in calls]
    return json.dumps({"role": "assistant", "content": blocks})


def _result_json(call_id: str) -> str:
    return json.dumps({"role": "tool_result", "tool_call_id": call_id, "content": []})


def _summary(d: TranscriptDigest) -> tuple:
    return (
        d.thread_id,
        [c.id for c in d.dangling],
        [(e.row_id, e.message, e.error, e.size) for e in d.last_turn],
        d.rows,
        d.unreadable,
    )


def test_the_pass_in_the_tables_order_folds_each_thread_as_its_own_read(
    demo_db: Path, monkeypatch
) -> None:
    """Threads' rows interleaved, read a few rows a batch (a batch ends inside
    threads), corrupt and big rows among them: each digest is its thread's own."""
    monkeypatch.setattr(transcripts, "BATCH_ROWS", 3)
    rows = []
    for turn in range(3):
        for t in ("x-1", "x-2", "x-3"):
            rows += [(t, _assistant_json(f"{t}-{turn}a", f"{t}-{turn}b"))]
            rows += [(t, _result_json(f"{t}-{turn}a"))]  # the b calls are left dangling
    rows += [("x-2", "{not json"), ("x-3", user_json("y" * (BIG_ROW + 5)))]
    insert_rows(demo_db, rows)
    with Location.parse(demo_db).open_store() as store:
        ids = [s.thread_id for s in store.threads()]
        wanted = [*reversed(ids), ids[0], "no-such-thread"]
        bulk = list(store.digests(wanted))
        assert [d.thread_id for d in bulk] == sorted(set(wanted))
        for d in bulk:
            alone = TranscriptDigest.of(store.transcript(d.thread_id, full=True))
            assert _summary(d) == _summary(alone)
    by_id = {d.thread_id: d for d in bulk}
    assert [c.id for c in by_id["x-1"].dangling] == ["x-1-0b", "x-1-1b"]
    assert by_id["x-2"].unreadable and not by_id["x-1"].unreadable
    # A plan reads a big row whole, as the resume loads it.
    assert not by_id["x-3"].unreadable and by_id["x-3"].last_messages()[-1]["role"] == "user"
    assert by_id["no-such-thread"].rows == 0


def test_the_pass_reads_rows_numbered_zero_and_below(demo_db: Path) -> None:
    """cubeloop numbers rows from 1; another writer may not. A thread's own read takes
    every row by its thread, whatever its id: the pass must too."""
    conn = sqlite3.connect(demo_db)
    with conn:
        conn.executemany(
            "INSERT INTO messages (id, thread_id, message_json) VALUES (?, ?, ?)",
            [
                (-3, "z1", user_json("go")),
                (-2, "z1", _assistant_json("d1", "d2")),
                (0, "z1", _result_json("d1")),
            ],
        )
    conn.close()
    insert_rows(demo_db, [("z1", _assistant_json("t1")), ("z1", _result_json("t1"))])
    with Location.parse(demo_db).open_store() as store:
        (bulk,) = store.digests(["z1"])
        alone = TranscriptDigest.of(store.transcript("z1", full=True))
    assert [c.id for c in bulk.dangling] == ["d2"]
    assert _summary(bulk) == _summary(alone)
