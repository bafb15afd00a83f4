"""The prompt modal: a multi-line message for the selected thread."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static, TextArea

from supervisor.text import one_line


class PromptTextArea(TextArea):
    """Enter sends; Ctrl+J (or Shift+Enter where the terminal reports it) breaks a line."""

    BINDINGS = [
        Binding("enter", "submit", "Send", priority=True),
        Binding("ctrl+j,shift+enter", "newline", "New line", priority=True),
    ]

    def action_submit(self) -> None:
        self.screen.action_send()

    def action_newline(self) -> None:
        self.insert("\n")


class PromptScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, thread_id: str, state: str) -> None:
        super().__init__()
        self.thread_id = thread_id
        self.state = state

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static(
                Text(f"Prompt {one_line(self.thread_id, 40)} ({self.state})"),
                classes="dialog-title",
            )
            yield PromptTextArea(id="prompt-text", soft_wrap=True, show_line_numbers=False)
            yield Static("Enter sends · Ctrl+J new line · Escape cancels", classes="dialog-hint")

    def on_mount(self) -> None:
        area = self.query_one(PromptTextArea)
        area.cursor_blink = self.app.cursor_blink
        area.focus()

    def action_send(self) -> None:
        text = self.query_one(PromptTextArea).text
        if text.strip():
            self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)
