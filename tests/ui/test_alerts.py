"""The app tells its person when a thread newly needs them: a toast, and a bell or a
desktop notification written to the real terminal (read here from a pseudo-terminal)."""

from __future__ import annotations

import re
from pathlib import Path

from supervisor.attempts import FileAttempts
from supervisor.notifications import NotifyPolicy, alert, desktop_protocol, desktop_sequence
from tests.conftest import run_demo_child
from tests.ui.pty_screen import PtyScreen

#: Operating system commands (OSC ... BEL or ST): what is left outside them is a bell.
OSC = re.compile(rb"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def bells(raw: bytes) -> int:
    return OSC.sub(b"", raw).count(b"\x07")


def desktop(raw: bytes) -> list[bytes]:
    return [
        m.group() for m in OSC.finditer(raw) if m.group().startswith((b"\x1b]9;", b"\x1b]777;"))
    ]


def test_a_new_question_rings_once_and_what_was_waiting_at_start_does_not(workdir: Path) -> None:
    """The demo has two threads waiting at start: the list the person sees, not news."""
    term = PtyScreen(workdir, "demo.db", TERM_PROGRAM="WezTerm")  # OSC 9 by `auto`
    try:
        assert term.wait_for(lambda text: "job-09" in text and "job-12" in text), term.text()
        assert term.wait_for(lambda text: "awaiting" in text.lower(), 10)
        start = len(term.written())
        run_demo_child(  # asks, then dies waiting (as a real process left waiting would)
            workdir / "demo.db", "ask-\u202eevil", workdir / "demo.db.jobs",
            prompt="Refund order 77 (EUR 9)", human_wait=True,
        )  # fmt: skip
        assert term.wait_for(lambda text: "waiting for you" in text, 20), term.text()
        after = term.written()[start:]
    finally:
        term.close()
    [sent] = desktop(after)
    text = sent.decode()
    assert text.startswith("\x1b]9;agent-supervisor: waiting for you: ask-\\u202eevil: ")
    assert "refund" in text and "\u202e" not in text  # the id's bidi override shown, not obeyed
    assert bells(after) == 0  # a desktop notification instead


def test_a_held_thread_rings_the_bell_when_asked_for(workdir: Path) -> None:
    term = PtyScreen(workdir, "demo.db", "--notify", "bell", "--notify-on", "held")
    try:
        assert term.wait_for(lambda text: "job-07" in text), term.text()
        start = len(term.written())
        ledger = FileAttempts(workdir / "demo.db")  # as a watcher holds one
        ledger.failed("job-07", "provider down (HTTP 503)", None, 1)
        ledger.close()
        assert term.wait_for(lambda text: "provider down" in text and "held" in text, 20)
        after = term.written()[start:]
    finally:
        term.close()
    assert bells(after) == 1 and desktop(after) == []


def test_what_the_terminal_is_sent_never_ends_the_sequence_early() -> None:
    hostile = "x\x07\x1b]0;pwned\x1b\\\x9b2J\u2066y;z\n"
    for protocol in ("osc9", "osc777"):
        sequence = desktop_sequence(protocol, "a;b", hostile)
        body = sequence[:-1] if protocol == "osc9" else sequence[:-2]
        assert "\x07" not in body and "\x1b" not in body[1:] and "\x9b" not in body
        assert "\n" not in sequence and "\\u2066" in sequence
    assert desktop_sequence("osc777", "a;b", "c").startswith("\x1b]777;notify;a,b;c")
    wrapped = desktop_sequence("osc9", "t", "b", tmux=True)
    assert wrapped == "\x1bPtmux;\x1b\x1b]9;t: b\x07\x1b\\"


def test_auto_rings_where_the_terminal_is_not_known_to_show_notifications() -> None:
    auto = NotifyPolicy()
    assert desktop_protocol({"TERM": "xterm-256color"}) is None
    assert alert(auto, {"TERM": "xterm-256color"}, "t", "b") == "\x07"
    assert alert(auto, {"TERM_PROGRAM": "iTerm.app"}, "t", "b").startswith("\x1b]9;")
    assert alert(auto, {"TERM": "foot"}, "t", "b").startswith("\x1b]777;")
    assert alert(auto, {"TERM_PROGRAM": "WezTerm", "TMUX": "/tmp/x"}, "t", "b") == "\x07"
    assert alert(NotifyPolicy("desktop"), {"TMUX": "/x"}, "t", "b").startswith("\x1bPtmux;")
    assert alert(NotifyPolicy("off"), {"TERM_PROGRAM": "WezTerm"}, "t", "b") == ""
