"""The prompt modals: a multi-line message for the selected thread, or for a new one."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static, TextArea

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


class NewThreadScreen(ModalScreen[tuple[str, str] | None]):
    """A new thread: its id (one is offered) and its first prompt; dismisses with both."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, offered_id: str, taken: Callable[[str], bool]) -> None:
        super().__init__()
        self.offered_id = offered_id
        #: Whether an id is a thread the database already holds.
        self.taken = taken

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static(Text("Start a new thread"), classes="dialog-title")
            yield Static("Thread id (one is offered; Shift+Tab to change it):")
            yield Input(value=self.offered_id, placeholder="thread id", id="new-thread-id")
            yield Static("First prompt:")
            yield PromptTextArea(id="prompt-text", soft_wrap=True, show_line_numbers=False)
            yield Static("", id="new-thread-error")
            yield Static(
                "Enter sends · Ctrl+J new line · Shift+Tab the id · Escape cancels",
                classes="dialog-hint",
            )

    def on_mount(self) -> None:
        area = self.query_one(PromptTextArea)
        area.cursor_blink = self.app.cursor_blink
        area.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in the id: on to the prompt."""
        event.stop()
        self.query_one(PromptTextArea).focus()

    def action_send(self) -> None:
        thread_id = self.query_one("#new-thread-id", Input).value.strip()
        text = self.query_one(PromptTextArea).text
        error = self.query_one("#new-thread-error", Static)
        if not thread_id:
            error.update(Text("a thread needs an id", style="bold red"))
        elif any(c.isspace() or not c.isprintable() for c in thread_id):
            error.update(Text("an id has no spaces or control characters", style="bold red"))
        elif self.taken(thread_id):
            error.update(Text(f"{one_line(thread_id, 40)} exists: p prompts it", style="bold red"))
        elif text.strip():
            self.dismiss((thread_id, text))

    def action_cancel(self) -> None:
        self.dismiss(None)
