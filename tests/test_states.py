"""The pure resume-state rules, one case per row of the states table in docs/design.md."""

from __future__ import annotations

from supervisor.states import State, ThreadSummary, ToolCallInfo, classify

A = ToolCallInfo("c1", "charge", {"amount": 5})
B = ToolCallInfo("c2", "mail", {"to": "x"})


def thread(*rows: tuple[str, str | None], **last: object) -> ThreadSummary:
    """Fold (role, tool_call_id) rows; `last` fills the last assistant's details."""
    s = ThreadSummary("t")
    for i, (role, call_id) in enumerate(rows, start=1):
        s.fold_row(i, role, float(i), call_id)
    if s.last_assistant_row is not None:
        s.set_last_assistant(last.get("stop", "stop"), tuple(last.get("calls", ())), "", None)
    return s


def test_no_messages_is_empty() -> None:
    assert classify(ThreadSummary("t")) is State.EMPTY


def test_unanswered_user_message_is_between_turns() -> None:
    assert thread(("user", None)).state is State.BETWEEN_TURNS


def test_assistant_with_unanswered_calls_is_mid_tool() -> None:
    s = thread(("user", None), ("assistant", None), stop="tool_use", calls=[A])
    assert s.state is State.MID_TOOL
    assert s.pending_tool_calls == (A,)


def test_some_results_of_a_batch_is_still_mid_tool() -> None:
    s = thread(
        ("user", None),
        ("assistant", None),
        ("tool_result", "c1"),
        stop="tool_use",
        calls=[A, B],
    )
    assert s.state is State.MID_TOOL
    assert s.pending_tool_calls == (B,)


def test_every_result_in_is_after_tools() -> None:
    s = thread(
        ("user", None),
        ("assistant", None),
        ("tool_result", "c1"),
        ("tool_result", "c2"),
        stop="tool_use",
        calls=[A, B],
    )
    assert s.state is State.AFTER_TOOLS


def test_results_from_an_earlier_turn_do_not_answer_this_one() -> None:
    s = thread(
        ("user", None),
        ("assistant", None),
        ("tool_result", "c1"),
        ("assistant", None),
        stop="tool_use",
        calls=[A],
    )
    assert s.answered == set()
    assert s.state is State.MID_TOOL


def test_stop_reasons() -> None:
    rows = (("user", None), ("assistant", None))
    assert thread(*rows, stop="aborted").state is State.ABORTED
    assert thread(*rows, stop="error").state is State.ERROR
    assert thread(*rows, stop="stop").state is State.FINISHED
    assert thread(*rows, stop="length").state is State.FINISHED


def test_precedence_corrupt_running_awaiting() -> None:
    s = thread(("user", None), ("assistant", None), stop="tool_use", calls=[A])
    s.pending_request = True
    assert s.state is State.AWAITING_INPUT
    s.running = True
    assert s.state is State.RUNNING
    s.fold_corrupt(9, None, "bad json")
    assert s.state is State.CORRUPT
    assert s.corrupt_row == 9


def test_a_request_whose_call_has_its_result_is_settled() -> None:
    """cubeloop clears a request after saving its call's result: killed in between, the
    request is left behind, and the thread is what its messages say."""
    s = thread(("user", None), ("assistant", None), ("tool_result", "c1"), calls=[A])
    s.pending_request = s.answer_stored = True
    assert s.state is State.AFTER_TOOLS
    s = thread(("user", None), ("assistant", None), calls=[A])
    s.pending_request = s.answer_stored = True
    assert s.state is State.ANSWERED


def test_first_corrupt_row_is_the_one_reported() -> None:
    s = ThreadSummary("t")
    s.fold_corrupt(3, None, "first")
    s.fold_corrupt(7, None, "second")
    assert (s.corrupt_row, s.corrupt_reason, s.messages) == (3, "first", 2)


def test_last_activity_is_the_newest_row() -> None:
    s = ThreadSummary("t")
    s.fold_row(1, "user", 50.0)
    s.fold_row(2, "assistant", 40.0)
    assert s.last_activity == 50.0
    assert (s.last_row, s.last_assistant_row, s.messages) == (2, 2, 2)
