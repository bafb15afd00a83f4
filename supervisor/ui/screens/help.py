"""Every key, in one place (`?`)."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from supervisor.states import MEANINGS
from supervisor.ui.keys import help_rows
from supervisor.ui.render import BADGES


class HelpScreen(ModalScreen[None]):
    """The keys, then a legend of the state symbols; it scrolls from the moment it opens."""

    BINDINGS = [
        Binding("escape,q,question_mark", "close", "Close"),
        Binding("j", "scroll('down')", "Down", show=False),
        Binding("k", "scroll('up')", "Up", show=False),
    ]

    def compose(self) -> ComposeResult:
        keys = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
        keys.add_column("key", no_wrap=True)
        keys.add_column("action")
        for key, text in help_rows():
            keys.add_row(key, text)
        legend = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
        legend.add_column("state", no_wrap=True)
        legend.add_column("meaning")
        for state, meaning in MEANINGS.items():
            legend.add_row(BADGES[state], meaning)
        with Vertical(classes="dialog wide"):
            yield Static("Keys", classes="dialog-title")
            with VerticalScroll(id="help-body"):
                yield Static(keys)
                yield Static(legend, id="legend")
            yield Static("j/k, arrows, PgUp/PgDn scroll · Escape closes", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#help-body", VerticalScroll).focus()  # its keys scroll it at once

    def action_scroll(self, way: str) -> None:
        body = self.query_one("#help-body", VerticalScroll)
        if way == "down":
            body.scroll_down(animate=False)
        else:
            body.scroll_up(animate=False)

    def action_close(self) -> None:
        self.dismiss(None)
