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

from cubeloop import AssistantMessage, ToolResultMessage, UserMessage
from hypothesis import given, settings
from hypothesis import strategies as st

import supervisor.sqlite.transcripts as transcripts
from supervisor.digest import TranscriptDigest
from supervisor.location import Location
from supervisor.plan import interrupted_abort
from supervisor.probe import _last_turn
from supervisor.store import BIG_ROW
from supervisor.tool_calls import answer_dangling_calls
from tests.conftest import insert_rows, user_json


def _closed_by_the_resume(messages: list[dict[str, Any] | None]) -> list[str] | None:
    """The calls of every assistant message but the last that the resume answers as
    interrupted in what it shows the model (`answer_dangling_calls`, over cubeloop's own
    models); None where cubeloop could not load the messages at all."""
    if None in messages:
        return None
    models = [MODELS[m["role"]].model_validate(m) for m in messages]
    starts = [i for i, m in enumerate(models) if isinstance(m, AssistantMessage)]
    before_the_last = models[: starts[-1]] if starts else models
    # A user message after them: an assistant message at the very end is the runner's own.
    _, closed = answer_dangling_calls([*before_the_last, UserMessage(content=[])])
    return [c.id for c in closed]


MODELS = {"assistant": AssistantMessage, "tool_result": ToolResultMessage, "user": UserMessage}

_ids = st.sampled_from(["a", "b", "c", "d"])
_assistant = st.builds(
    lambda ids: {
        "role": "assistant",
        "content": [{"type": "tool_call", "id": i, "name": "t", "arguments": {}} for i in ids],
    },
    st.lists(_ids, max_size=3),
)
_aborted = {"hitl": {"decision": "aborted", "reason": "gone"}}
_result = st.builds(
    lambda i, aborted: {
        "role": "tool_result",
        "tool_call_id": i,
        "tool_name": "t",
        "content": [],
        "details": _aborted if aborted else {},
    },
    _ids,
    st.booleans(),
)
_user = st.just({"role": "user", "content": [{"type": "text", "text": "go on"}]})
_messages = st.lists(st.one_of(_assistant, _result, _user, st.none()), max_size=14)


@settings(max_examples=400, deadline=None)
@given(_messages)
def test_the_fold_reads_a_transcript_as_the_resume_does(messages: list) -> None:
    """The dangling calls are those the resume closes (no result before the next assistant
    message); the last turn is the rows from the newest assistant message on."""
    digest = TranscriptDigest.of_messages(messages)
    closed = _closed_by_the_resume(messages)
    if closed is not None:
        assert [c.id for c in digest.dangling] == closed
    assert interrupted_abort(digest.last_messages()) == interrupted_abort(messages)
    assert digest.rows == len(messages)
    starts = [i for i, m in enumerate(messages) if m is not None and m["role"] == "assistant"]
    assert digest.last_messages() == messages[starts[-1] if starts else 0 :]  # only the last turn
    assert digest.unreadable == (None in messages)
    if not digest.unreadable:
        whole = _last_turn([m for m in messages if m is not None])
        last = _last_turn([m for m in digest.last_messages() if m is not None])
        assert whole == last


def test_a_result_stored_after_another_message_still_answers_its_call() -> None:
    """A user message written while the tool ran, then the tool's result: the call ran.
    The resume shows the result right after its call (the API wants it there); told the
    call was interrupted, the model asked for it again and it ran twice. The plan agrees."""
    call = {"type": "tool_call", "name": "t", "arguments": {}}
    messages = [
        {"role": "assistant", "content": [{**call, "id": "d1"}, {**call, "id": "d2"}]},
        {"role": "tool_result", "tool_call_id": "d1", "tool_name": "t", "content": []},
        {"role": "user", "content": [{"type": "text", "text": "and?"}]},
        {"role": "tool_result", "tool_call_id": "d2", "tool_name": "t", "content": []},
        {"role": "assistant", "content": []},
    ]
    assert TranscriptDigest.of_messages(messages).dangling == []
    assert _closed_by_the_resume(messages) == []
    shown, closed = answer_dangling_calls([MODELS[m["role"]].model_validate(m) for m in messages])
    assert closed == []
    order = [(m.role, getattr(m, "tool_call_id", None)) for m in shown]
    assert order == [
        ("assistant", None),
        ("tool_result", "d1"),
        ("tool_result", "d2"),
        ("user", None),
        ("assistant", None),
    ]


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
