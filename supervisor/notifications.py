"""Telling a person at their terminal that a thread needs them: a bell or a desktop notification.

The app rings when a thread newly waits for a human answer (and, if asked,
when one is held): the slowest part of a human-in-the-loop agent is a
person who does not know a question is waiting.

A desktop notification is an escape sequence the terminal turns into one:
OSC 9 (iTerm2, WezTerm, kitty, Ghostty) or OSC 777 (foot, urxvt; WezTerm
and Ghostty read it too). Terminals that know neither ignore them silently,
so `auto` sends one only where the terminal is known to show it, and rings
the bell (which every terminal and tmux pass on) everywhere else. Inside
tmux a desktop notification needs `set -g allow-passthrough on`: `auto`
rings the bell there; `desktop` wraps the sequence for tmux.

What the notification says comes from the database: it is folded to one
line and stripped of control, bidi and zero-width characters first, so it
cannot end the sequence early or write to the screen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from supervisor.text import one_line

#: `--notify`: what the app does when a thread newly needs a person.
MODES = ("auto", "bell", "desktop", "off")

#: `--notify-on`: which needs it tells of (`supervisor.events.Need.kind`).
KINDS = ("awaiting_input", "held")

BEL = "\x07"
ST = "\x1b\\"


@dataclass(frozen=True)
class NotifyPolicy:
    """What the app does on news (`mode`) and which news counts (`kinds`)."""

    mode: str = "auto"
    kinds: frozenset[str] = frozenset({"awaiting_input"})


def desktop_protocol(env: Mapping[str, str]) -> str | None:
    """`osc9` or `osc777` where this terminal is known to show a desktop notification;
    None where it is not known to (the bell is the safe choice there)."""
    if env.get("TMUX"):
        return None  # only with allow-passthrough, which we cannot see
    program = env.get("TERM_PROGRAM", "")
    term = env.get("TERM", "")
    if program in ("iTerm.app", "WezTerm", "ghostty") or env.get("KITTY_WINDOW_ID"):
        return "osc9"
    if term.startswith(("foot", "rxvt")):
        return "osc777"
    return None


def desktop_sequence(protocol: str, title: str, body: str, *, tmux: bool = False) -> str:
    """The escape sequence that asks the terminal for a desktop notification."""
    title, body = _safe(title, 60), _safe(body, 200)
    if protocol == "osc777":
        sequence = f"\x1b]777;notify;{title.replace(';', ',')};{body}{ST}"
    else:  # a text that starts with a number and ';' is a progress report to some terminals
        sequence = f"\x1b]9;{title}: {body}{BEL}"
    if tmux:  # tmux hands on what is inside a DCS tmux; ... with each ESC doubled
        sequence = "\x1bPtmux;" + sequence.replace("\x1b", "\x1b\x1b") + ST
    return sequence


def alert(policy: NotifyPolicy, env: Mapping[str, str], title: str, body: str) -> str:
    """What to write to the terminal for one piece of news ("" for nothing)."""
    if policy.mode == "off":
        return ""
    if policy.mode == "bell":
        return BEL
    protocol = desktop_protocol(env)
    if policy.mode == "desktop":
        return desktop_sequence(protocol or "osc9", title, body, tmux=bool(env.get("TMUX")))
    return desktop_sequence(protocol, title, body) if protocol else BEL


def _safe(text: str, limit: int) -> str:
    """One line without control, bidi or zero-width characters (`text.one_line`), and
    without the characters that end an OSC sequence."""
    return one_line(text, limit).replace(BEL, "").replace("\x1b", "")
