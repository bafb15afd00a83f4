"""`jsontext.indented` is `json.dumps(indent=2)`, byte for byte, and leaves no garbage."""

from __future__ import annotations

import gc
import json

from hypothesis import given
from hypothesis import strategies as st

from supervisor.jsontext import dumps, finite, indented

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text() | st.integers() | st.booleans(), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(values)
def test_the_text_is_json_dumps_indented(value) -> None:
    """Byte for byte, but strict: NaN and infinities as the strings `dumps` writes."""
    assert indented(value) == json.dumps(finite(value), indent=2)
    assert indented(value) == dumps(value, indent=2)
    json.loads(indented(value), parse_constant=reject)  # strict JSON


def reject(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")


def test_what_json_cannot_hold_is_written_as_text() -> None:
    value = {"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5]}
    assert json.loads(dumps(value), parse_constant=reject) == {
        "a": "NaN",
        "b": ["Infinity", "-Infinity", 1.5],
    }


def test_nesting_below_the_top_indents_every_line() -> None:
    value = {"a": [1, {"b": None}], "c": {}}
    lines = json.dumps(value, indent=2).split("\n")
    assert indented(value, 1) == "\n  ".join(lines)


def test_no_cycle_is_left_for_the_collector() -> None:
    """The standard library's indenting encoder leaves a cycle per call; this leaves none."""
    value = {"thread": "t", "calls": [{"id": "c1", "arguments": {"x": [1, 2]}}]}
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(100):
            json.dumps(value, indent=2)
        assert gc.collect() > 0  # the check can see the standard library's cycles
        for _ in range(100):
            indented(value)
        assert gc.collect() == 0
    finally:
        if was:
            gc.enable()


def test_deep_nesting_is_written_as_json_writes_it() -> None:
    """A tool's arguments nested 900 deep (a hostile row) once broke `list --json`."""
    deep: object = {"item": "Z"}
    for _ in range(900):
        deep = {"x": deep}
    assert indented([deep], 1) == "\n  ".join(json.dumps([deep], indent=2).split("\n"))
