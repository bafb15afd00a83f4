"""A stored message is read as `json.loads` reads it, whichever parser reads it.

`supervisor.sqlite.rows.loads` takes msgspec's answer where msgspec gives
one; the resume reads the same row with `json.loads` (cubeloop's
checkpointer). These compare the two over generated texts, valid and not.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.sqlite.rows import MAX_NESTING, loads, parse_message


def _same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down, a float's sign and its bits included."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a.hex() == b.hex() if math.isfinite(a) else repr(a) == repr(b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _either(text: str) -> tuple[str, Any]:
    try:
        return "value", json.loads(text)
    except RecursionError:
        return "error", "RecursionError"
    except ValueError as exc:
        return "error", str(exc)


def _ours(text: str) -> tuple[str, Any]:
    try:
        return "value", loads(text)
    except RecursionError:
        return "error", "RecursionError"
    except ValueError as exc:
        return "error", str(exc)


def _agrees(text: str) -> None:
    expected, got = _either(text), _ours(text)
    assert expected[0] == got[0], (text, expected, got)
    if expected[0] == "value":
        assert _same(expected[1], got[1]), (text, expected[1], got[1])
    else:
        assert expected[1] == got[1], text  # the same words: `parse_message` quotes them


#: Pieces JSON is made of, and the pieces parsers differ on: escapes, surrogates, BOMs,
#: control characters, the non-JSON spaces, the names `json` accepts and JSON does not.
PIECES = [
    *'[]{}",:0123456789eE+-.\\/ ',
    "\t", "\n", "\r", "\x0b", "\x0c", "\x00", "\x1f", "\x7f", "\ufeff", "\u2028", "\u3000",
    "\ud800", "\udc00", "é", "😀", "\\u", "\\u0000", "\\u0061", "\\ud800", "\\udc00",
    "\\ud83d\\ude00", "true", "false", "null", "NaN", "Infinity", "-Infinity", "1e400",
    "18446744073709551616", "-9223372036854775809", '"a"', '"role"',
]  # fmt: skip

_texts = st.lists(st.sampled_from(PIECES), max_size=24).map("".join)

_numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: f"{f:.25e}"),
    st.integers().map(str),
    st.from_regex(r"\A-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,40})?([eE][+-]?[0-9]{1,3})?\Z"),
)

_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(_texts)
def test_any_text_reads_as_json_loads_reads_it(text: str) -> None:
    _agrees(text)


@settings(max_examples=400, deadline=None)
@given(_numbers)
def test_every_number_reads_to_the_same_bits(text: str) -> None:
    _agrees(text)
    _agrees(f'{{"role": "assistant", "n": [{text}, -{text}]}}')


@settings(max_examples=400, deadline=None)
@given(_values, st.data())
def test_messages_written_and_then_damaged_read_alike(value: Any, data: st.DataObject) -> None:
    text = json.dumps(value, ensure_ascii=data.draw(st.booleans()))
    _agrees(text)
    cut = data.draw(st.integers(0, len(text)))
    piece = data.draw(st.sampled_from(PIECES))
    _agrees(text[:cut] + piece + text[cut + data.draw(st.integers(0, 2)) :])


@pytest.mark.parametrize(
    "text",
    [
        '{"role": "user", "role": "assistant"}',  # the last of a repeated key, in the first's place
        '{"a": 1, "b": 2, "a": 3}',
        '{"\\u0061": 1, "a": 2}',  # a key spelt with an escape is the same key
        '{"n": 123456789012345678901234567890}',  # past 64 bits: an exact int, not a float
        '{"n": -9223372036854775809}',
        '{"n": 18446744073709551616}',
        '{"n": NaN}',  # `json` reads these names; msgspec refuses them
        '{"n": -Infinity}',
        '{"n": 1e400}',
        '{"s": "\\ud800"}',  # a lone surrogate, escaped
        '{"s": "\ud800"}',  # and raw
        '{"s": "a\\u0000b"}',
        "\ufeff{}",
        '{"a": 1}\x0b',
        "[" * 200 + "]" * 200,
        "[" * 300 + "]" * 300,  # deeper than cubeloop reads, not than we do
    ],
)
def test_the_texts_parsers_are_known_to_read_apart_read_alike(text: str) -> None:
    _agrees(text)


def test_a_corrupt_row_is_named_in_json_loads_words() -> None:
    message, why = parse_message('{"role": "user", "content": [1,]}')
    assert message is None
    try:
        json.loads('{"role": "user", "content": [1,]}')
    except json.JSONDecodeError as exc:
        assert why == f"message_json is not valid JSON ({exc.msg} at char {exc.pos})"


def _at_depth(frames: int, text: str) -> tuple[str, Any]:
    """`_ours(text)` called from `frames` frames deeper than here."""
    return _at_depth(frames - 1, text) if frames else _ours(text)


@pytest.mark.parametrize(
    "text",
    [
        "[" * MAX_NESTING + "]" * MAX_NESTING,
        '{"role": "assistant", "a": ' + "[" * 480 + '"]]"' + "]" * 480 + "}",
        "[" * (MAX_NESTING + 1) + "]" * (MAX_NESTING + 1),
        '{"role": "user", "a": ' + "[" * 970 + "]" * 970 + "}",  # within reach of the limit
        "[" * 990,  # cut short, past the limit
        "[" * 700 + "x",
    ],
)
def test_a_row_reads_the_same_from_any_call_depth(text: str) -> None:
    """Python's parsers stop at the interpreter's recursion limit, which counts the
    caller's frames: a plan reads a row at one depth and again at another, the app
    from a worker's deep stack. The answer must be the row's alone."""
    answers = {repr(_at_depth(frames, text))[:200] for frames in (0, 100, 300, 450)}
    assert len(answers) == 1, answers
    expected = "value" if text.count("[") <= MAX_NESTING else "error"
    assert _ours(text)[0] == expected
    if expected == "error":
        assert parse_message(text)[1] == "message_json is nested too deeply to parse"
