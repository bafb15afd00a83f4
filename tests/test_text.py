"""Cleaning untrusted text, ages and compact JSON: what every screen and line relies on."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.text import clean, compact_json, one_line, relative_time


def test_clean_strips_terminal_controls_and_keeps_lines() -> None:
    assert clean("a\x1b[31mred\x1b[0m\tb\nc\x9bJ\x07") == "a[31mred[0m\tb\ncJ"
    assert clean("plain ascii") == "plain ascii"


def test_one_line_folds_whitespace_and_cuts_with_an_ellipsis() -> None:
    assert one_line("a\n  b\tc") == "a b c"
    assert one_line("x" * 10, 5) == "xxxx…"
    assert one_line("short", 5) == "short"


def test_relative_time_in_the_units_people_scan() -> None:
    now = 1_000_000.0
    assert relative_time(None, now) == "never"
    assert relative_time(now - 5, now) == "5s ago"
    assert relative_time(now - 240, now) == "4m ago"
    assert relative_time(now - 3 * 3600, now) == "3h ago"
    assert relative_time(now - 3 * 86400, now) == "3d ago"


def test_compact_json_survives_what_json_cannot_print() -> None:
    deep: list = []
    cur = deep
    for _ in range(5000):
        cur.append([])
        cur = cur[0]
    assert isinstance(compact_json(deep), str)  # RecursionError caught
    assert compact_json({"b": 1, "a": [1, 2]}) == '{"a": [1, 2], "b": 1}'
    assert compact_json({1, 2}) == '"{1, 2}"'  # not JSON: shown as text, not raised


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(
        alphabet=st.sampled_from(["a", "b", " ", "\n", "\t", "\x1b", "é", "\x9b", "\u2028", "\xa0"])
    )
    | st.text(),
    limit=st.integers(min_value=1, max_value=20),
)
def test_one_line_shortcuts_agree_with_folding_the_whole_text(text: str, limit: int) -> None:
    flat = " ".join(clean(text).split())
    whole = flat if len(flat) <= limit else flat[: limit - 1] + "…"
    assert one_line(text, limit) == whole
    long = text * 50  # long enough for the prefix shortcut
    flat = " ".join(clean(long).split())
    assert one_line(long, limit) == (flat if len(flat) <= limit else flat[: limit - 1] + "…")


def test_bidi_and_zero_width_characters_show_escaped() -> None:
    from supervisor.text import clean, one_line

    assert clean("evil\u202egnp.exe") == "evil\\u202egnp.exe"  # not "evilexe.png"
    assert one_line("pay\u2066 100\u2069 \u200bEUR") == "pay\\u2066 100\\u2069 \\u200bEUR"
    assert clean("caf\u00e9 \u65e5\u672c") == "caf\u00e9 \u65e5\u672c"  # other text as it is


def test_a_spoofed_thread_id_and_argument_are_listed_escaped(tmp_path) -> None:
    import json

    from tests.conftest import cli, insert_rows, run_demo_child, user_json

    db = tmp_path / "s.db"
    run_demo_child(db, "seed", tmp_path / "jobs")
    call = {"type": "tool_call", "id": "c1", "name": "send", "arguments": {"to": "x\u202etxt.exe"}}
    assistant = {"role": "assistant", "content": [call], "stop_reason": "tool_use"}
    insert_rows(
        db, [("evil\u202egnp.exe", user_json("hi")), ("evil\u202egnp.exe", json.dumps(assistant))]
    )
    out = cli("list", str(db)).stdout
    assert "evil\\u202egnp.exe" in out and "x\\u202etxt.exe" in out and "\u202e" not in out
