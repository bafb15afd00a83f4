"""The demo agent's script: items parsed from prompts, next step from the history."""

from __future__ import annotations

from cubeloop import TextContent, ToolCall, ToolResultMessage, UserMessage

from supervisor.demo import Ledger, parse_items, plan_next


def test_parse_items() -> None:
    assert parse_items("Process items A..D") == ["A", "B", "C", "D"]
    assert parse_items("Process items 9..12") == ["9", "10", "11", "12"]
    assert parse_items("Process items inv-1, inv-2 and inv-3.") == [
        "inv-1",
        "inv-2",
        "inv-3",
    ]
    assert parse_items("hello there") == []


def user(text: str) -> UserMessage:
    return UserMessage(content=[TextContent(text=text)])


def test_plan_calls_two_items_then_reports() -> None:
    history = [user("Process items A..C")]
    first = plan_next(history)
    calls = [b for b in first.content if isinstance(b, ToolCall)]
    assert [c.arguments for c in calls] == [{"item": "A"}, {"item": "B"}]
    assert first.stop_reason == "tool_use"
    history += [first] + [
        ToolResultMessage(tool_call_id=c.id, tool_name=c.name, content=[TextContent(text="ok")])
        for c in calls
    ]
    second = plan_next(history)
    assert [b.arguments for b in second.content if isinstance(b, ToolCall)] == [{"item": "C"}]


def test_plan_retries_an_item_whose_result_was_an_error() -> None:
    first = plan_next([user("Process items A")])
    call = next(b for b in first.content if isinstance(b, ToolCall))
    failed = ToolResultMessage(
        tool_call_id=call.id,
        tool_name=call.name,
        content=[TextContent(text="x")],
        is_error=True,
    )
    again = plan_next([user("Process items A"), first, failed, user("Continue.")])
    assert [b.arguments for b in again.content if isinstance(b, ToolCall)] == [{"item": "A"}]


def test_plan_without_items_answers_in_text() -> None:
    reply = plan_next([user("hi")])
    assert reply.stop_reason == "stop" and "Process items" in reply.content[0].text


def test_ledger_applies_each_key_once(tmp_path) -> None:
    ledger = Ledger(tmp_path)
    assert ledger.apply("k1", "t") is True
    assert ledger.apply("k1", "t") is False
    assert ledger.apply("k2", None) is True
    assert ledger.effects() == ["k1", "k2"]
    assert len((tmp_path / "attempts.log").read_text().splitlines()) == 3
