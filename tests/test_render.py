"""What the UI draws from the database: never markup, always bounded, timed and coloured."""

from __future__ import annotations

import json
import os
import time

from rich.text import Text

from supervisor.runner import RunnerEvent
from supervisor.store import TranscriptEntry
from supervisor.ui.render import (
    TEXT_CHARS,
    bounded,
    clock_time,
    event_text,
    pretty_json,
    transcript_entry,
)

PALETTE = {"error": "red", "primary": "blue", "secondary": "cyan", "success": "green"}


def test_pretty_json_indents_colours_and_keeps_markup_literal() -> None:
    out = pretty_json({"to": "[bold]x@y[/bold]", "n": 2})
    assert isinstance(out, Text)
    assert '"to": "[bold]x@y[/bold]"' in out.plain and out.plain.startswith("    {\n")
    assert out.spans  # coloured by the JSON highlighter
    big = pretty_json({"k": "v" * 10_000})
    assert "\n" not in big.plain  # huge values stay on one bounded line


def test_bounded_cuts_and_says_how_much_is_left() -> None:
    text = bounded("a" * (TEXT_CHARS + 1000))
    assert len(text.plain) < TEXT_CHARS + 100 and "more (o: open" in text.plain


def test_clock_time_is_local_wall_clock() -> None:
    os.environ["TZ"] = "UTC"
    time.tzset()
    assert clock_time(0.0) == "00:00:00"
    assert clock_time(None) == ""


def test_a_json_tool_result_is_pretty_printed_in_the_transcript() -> None:
    message = {
        "role": "tool_result",
        "tool_call_id": "c1",
        "content": [{"type": "text", "text": json.dumps({"status": "ok", "id": 7})}],
    }
    entry = TranscriptEntry(3, 0.0, "run1", message)
    plain = transcript_entry(entry, PALETTE).plain
    assert '"status": "ok"' in plain and '\n  "id": 7' in plain


def test_events_carry_their_time() -> None:
    event = RunnerEvent("t", "note", {"text": "hello"}, 3661.0)
    assert event_text(event, PALETTE).plain == "01:01:01 hello"
    assert event_text(RunnerEvent("t", "agent_start", {}, 0.0), PALETTE) is None


EVENTS = [
    ("queued", {"mode": "resume", "state": "mid_tool"}),
    ("run_start", {"mode": "resume", "state": "mid_tool"}),
    ("recovery", {"strategy": "rerun", "calls": [{"name": "send", "arguments": {"to": "a@b"}}]}),
    ("repair", {"calls": [{"name": "send", "arguments": {"to": "c@d"}}]}),
    ("tool_start", {"name": "charge", "arguments": {"card": "4242"}}),
    ("tool_end", {"name": "charge", "result": "ok [b]x[/b]", "is_error": False, "seconds": 1.25}),
    ("tool_end", {"name": "charge", "result": "declined", "is_error": True, "seconds": None}),
    (
        "message_end",
        {
            "role": "assistant",
            "text": "Charging now.",
            "tool_calls": [{"name": "charge", "arguments": {"card": "4242"}}],
            "stop_reason": "error",
            "error": "overloaded",
        },
    ),
    ("message_end", {"role": "user", "text": "Go on."}),
    ("hitl_request", {"summary": "approve refund(order 9)"}),
    ("hitl_answer", {"answer": {"decision": "approve"}}),
    ("error", {"message": "boom"}),
    ("aborting", {"grace": 5}),
    ("note", {"text": "abort requested"}),
    ("run_end", {"state": "finished", "outcome": "completed", "seconds": 2.0}),
    ("text", {"text": "partial"}),
    ("tool_execution_update", {}),
]


def test_the_cli_and_the_app_say_the_same_about_every_event() -> None:
    """One switch over event types: each event has a line in both or in neither."""
    from supervisor.report import event_line

    for kind, data in EVENTS:
        event = RunnerEvent("t", kind, data, 0.0)
        line = event_line(event)
        shown = event_text(event, {"error": "red", "success": "green"})
        assert (line is None) == (shown is None), kind
        if line is None:
            continue
        plain = " ".join(shown.plain.split())
        for word in line.replace("→", " ").replace("(", " ").split():
            if len(word) > 3 and "…" not in word:
                assert word.strip("[],:()") in plain, (kind, word, plain)


def test_a_message_with_tool_calls_keeps_the_space_after_its_role() -> None:
    event = RunnerEvent(
        "t",
        "message_end",
        {"role": "assistant", "text": "On it.", "tool_calls": [{"name": "f", "arguments": {}}]},
        0.0,
    )
    assert event_text(event, PALETTE).plain.splitlines()[0].endswith("assistant: On it.")
