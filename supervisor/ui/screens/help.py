"""Every key, in one place (`?`)."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS: list[tuple[str, str]] = [
    ("r", "resume the selected thread (or every marked thread); answer a waiting one"),
    ("a", "abort the selected running thread (or every marked one, or ask another supervisor)"),
    ("p", "send a prompt to the selected thread"),
    ("space", "mark / unmark the row; r and a then act on every marked row"),
    ("R", "resume every crashed thread (one preview of every plan)"),
    ("/", "filter by thread id, state or where it stopped; Escape clears"),
    ("c", "show only threads that need attention"),
    ("s", "sort: attention first, activity, state, thread, messages (or click a header)"),
    ("j / k, ↓ / ↑", "move in the list; g / G (Home / End) to the first / last row"),
    ("y", "copy the selected thread id to the clipboard"),
    ("enter / tab", "move focus between list and detail; enter answers a waiting thread"),
    ("1 / 2 / 3", "detail tab: events, transcript, job markers"),
    ("o", "open the selected thread's whole transcript in $PAGER"),
    ("ctrl+p", "command palette: every action, and theme switching"),
    ("?", "this help"),
    ("q", "quit (running agents are aborted gracefully first)"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
        table.add_column("key", no_wrap=True)
        table.add_column("action")
        for key, text in KEYS:
            table.add_row(key, text)
        with Vertical(classes="dialog wide"):
            yield Static("Keys", classes="dialog-title")
            with VerticalScroll():
                yield Static(table)
            yield Static("Escape closes", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
