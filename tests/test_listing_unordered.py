"""`list` of threads that arrive in no order (`supervisor.listing.write_unordered`).

A Postgres listing reads hash partitions, so its threads arrive in no order;
their lines are made as they arrive and written sorted once the column
widths are known. Whatever the batches, the output must be the ordered
listing's, byte for byte: table (widths included) and JSON, with `--state`.
"""

from __future__ import annotations

import contextlib
import io
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import listing
from supervisor.states import State, ThreadSummary, ToolCallInfo

NOW = 1_900_000_000.0

THREADS = st.lists(
    st.tuples(
        st.text(min_size=1, max_size=45),  # past the 36-column cut, odd characters included
        st.integers(0, 123_456),  # past the MSGS header's width
        st.sampled_from([None, "user", "assistant", "tool_result"]),
        st.floats(NOW - 10**6, NOW),
        st.sampled_from([None, "aborted", "error", "stop"]),
        st.booleans(),
    ),
    unique_by=lambda t: t[0],
    max_size=30,
)


def summary(thread_id, messages, role, at, stop, calls) -> ThreadSummary:
    s = ThreadSummary(thread_id, messages, messages, at, role if messages else None)
    s.last_stop_reason = stop
    s.last_text = f"said {thread_id!r}"
    if calls:
        s.tool_calls = (ToolCallInfo("c1", "charge", {"cents": messages}),)
    return s


def output(write) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        write()
    return out.getvalue()


@settings(max_examples=60, deadline=None)
@given(
    threads=THREADS,
    as_json=st.booleans(),
    states=st.one_of(st.none(), st.sets(st.sampled_from([s.value for s in State]), min_size=1)),
    seed=st.integers(0, 2**32),
)
def test_batches_in_any_order_give_the_ordered_listing(threads, as_json, states, seed) -> None:
    options = listing.Options(
        as_json=as_json, states=frozenset(states) if states else None, now=NOW
    )
    ordered = sorted((summary(*t) for t in threads), key=lambda s: s.thread_id)
    longest = max((len(s.thread_id) for s in ordered), default=0)
    most = max((s.messages for s in ordered), default=0)
    expected_tally: list[listing.Tally] = []
    expected = output(
        lambda: expected_tally.append(listing.write_listing(ordered, (longest, most), options))
    )

    shuffled = [summary(*t) for t in threads]
    random.Random(seed).shuffle(shuffled)
    cuts = sorted(random.Random(seed + 1).sample(range(len(shuffled) + 1), k=min(3, len(shuffled))))
    batches = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(shuffled)], strict=True)]
    got_tally: list[listing.Tally] = []
    got = output(lambda: got_tally.append(listing.write_unordered(iter(batches), options)))

    assert got == expected
    assert got_tally[0].counts == expected_tally[0].counts
    assert got_tally[0].written == expected_tally[0].written


def test_lines_are_made_as_threads_arrive_not_at_the_end() -> None:
    """The writer keeps columns, not summaries: a summary changed after its batch was
    collected does not change the listing (what lets a store drop it)."""
    s = summary("t1", 3, "user", NOW - 120, None, False)
    options = listing.Options(as_json=False, states=None, now=NOW)

    def batches():
        yield [s]
        s.last_role = "assistant"  # after the batch was handed over

    text = output(lambda: listing.write_unordered(batches(), options))
    assert "between_turns" in text and "finished" not in text
