"""Making untrusted database text safe to show.

Thread ids, messages and tool arguments come from the database and may hold
terminal control sequences (an ESC that recolours or clears the screen) or
markup. Everything that prints database text to a terminal goes through
`clean`; the UI additionally escapes markup (see `supervisor.ui`).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

# C0 controls except tab and newline, DEL, and C1 controls (incl. CSI 0x9b).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

#: Characters that change how text around them reads without showing themselves: bidi
#: controls (`evil\u202egnp.exe` reads as "evilexe.png"; arguments reorder in front of
#: the person approving them) and zero-width ones (two ids that look the same).
#: Lone surrogates (legal in JSON's `\ud800`, not in UTF-8) are shown so too: printed as
#: they are, they stop the output with an encoding error.
_INVISIBLE = re.compile(
    "[\u061c\u180e\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
    "\ud800-\udfff]"
)


def _visible(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def clean(text: str) -> str:
    """Strip terminal control characters and show invisible ones escaped (`\\u202e`);
    keep newlines and tabs."""
    if text.isascii() and text.isprintable():  # the common case, checked in C
        return text
    return _INVISIBLE.sub(_visible, _CONTROL.sub("", text))


def one_line(text: str, limit: int = 80) -> str:
    """Clean text folded onto one line and cut to `limit` characters."""
    plain = len(text) <= limit and text.isascii() and text.isprintable()  # checked in C
    if plain and "  " not in text and text[:1] != " " and text[-1:] != " ":
        return text  # already one line, no runs of spaces: a list's 100,000 ids
    head = 4 * limit + 16
    if len(text) > head:
        # Only the start can show: fold a prefix (its fold is a prefix of the whole's),
        # not a 50 MB message, when that is long enough to be cut.
        flat = " ".join(clean(text[:head]).split())
        if len(flat) > limit:
            return flat[: max(0, limit - 1)] + "…"
    flat = " ".join(clean(text).split())
    return flat if len(flat) <= limit else flat[: max(0, limit - 1)] + "…"


def counted(n: int, word: str) -> str:
    """`1 message`, `3 messages`: a count and its noun (plural by `s`)."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def compact_json(value: Any) -> str:
    """JSON for people; values that JSON cannot carry still give a line, never an error."""
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except RecursionError:
        return "<nested too deeply to show>"
    except (TypeError, ValueError):
        return repr(value)


def relative_time(then: float | None, now: float | None = None) -> str:
    """'3m ago' style ages, for people scanning a list."""
    if then is None:
        return "never"
    delta = max(0.0, (time.time() if now is None else now) - then)
    if delta < 60:
        return f"{int(delta)}s ago"
    if delta < 3600:
        return f"{int(delta // 60)}m ago"
    if delta < 86400:
        return f"{int(delta // 3600)}h ago"
    return f"{int(delta // 86400)}d ago"


def utc_time(then: float | None) -> str:
    """'2026-12-06 18:03:34 UTC': a point in time that stays true when read later (a
    report, a bundle), where `relative_time` is for a screen looked at now."""
    if then is None:
        return "never"
    import datetime  # here, not at the top: a listing never writes a date

    try:
        when = datetime.datetime.fromtimestamp(then, datetime.UTC)
    except (OverflowError, OSError, ValueError):  # a stored time out of any calendar
        return f"{then!r} (unix seconds)"
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")
