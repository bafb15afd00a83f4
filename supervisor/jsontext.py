"""JSON indented as `json.dumps(value, indent=2)` writes it, without its garbage.

With an indent, the standard library encodes in Python, and every call builds
three closures that refer to one another: a reference cycle, freed only by
the cyclic collector. A listing runs with the collector paused
(`supervisor.collector.bulk_read`), so `list --json` kept every call's cycle:
164-311 MiB at 100,000 threads against 37 MiB for the text listing. Here the
nesting is walked in Python and every scalar encoded by the C encoder, which
leaves no cycle; the text is the same, byte for byte (`tests/test_jsontext.py`).
"""

from __future__ import annotations

import json
import math
from typing import Any

_encode = json.JSONEncoder().encode  # no indent: the C encoder

#: What JSON cannot hold, written as text: a stored message may carry `NaN` (Python's
#: parser reads it), and `json` writes it bare, which strict parsers refuse.
_NOT_FINITE = {"nan": '"NaN"', "inf": '"Infinity"', "-inf": '"-Infinity"'}


def _scalar(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return _NOT_FINITE[repr(value)]
    return _encode(value)


def finite(value: Any) -> Any:
    """`value` with each NaN or infinity replaced by its name as a string."""
    if isinstance(value, float) and not math.isfinite(value):
        return json.loads(_NOT_FINITE[repr(value)])
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **options: Any) -> str:
    """`json.dumps(value, **options)`, strict JSON: a NaN or an infinity is written as a
    string (the walk happens only when there is one)."""
    try:
        return json.dumps(value, allow_nan=False, **options)
    except ValueError:
        return json.dumps(finite(value), allow_nan=False, **options)


def indented(value: Any, level: int = 0) -> str:
    """`json.dumps(value, indent=2)`, each line after the first indented by `level` more.

    One call per level of nesting and no generator frames between them: a tool's
    arguments nested 900 deep are written, as the standard encoder writes them."""
    if isinstance(value, dict):
        if not value:
            return "{}"
        parts = []
        for key, item in value.items():
            parts.append(_key(key) + ": " + indented(item, level + 1))
    elif isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        parts = []
        for item in value:
            parts.append(indented(item, level + 1))
    else:
        return _scalar(value)
    inner = "\n" + "  " * (level + 1)
    opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
    return opening + inner + ("," + inner).join(parts) + "\n" + "  " * level + closing


def _key(key: Any) -> str:
    """A key as `json.dumps` writes it: strings as they are, numbers, booleans and None
    as their JSON text, in quotes."""
    if isinstance(key, str):
        return _scalar(key)
    if key is True or key is False or key is None:
        return _scalar(_scalar(key))
    if isinstance(key, (int, float)):
        return _scalar(_scalar(key))
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")
