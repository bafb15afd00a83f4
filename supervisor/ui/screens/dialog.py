"""A modal that answers yes or no, by its buttons or by `y`/`n`/Escape."""

from __future__ import annotations

from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Button


class YesNoScreen(ModalScreen[bool]):
    """Subclasses compose a `Button(id="yes")` and a `Button(id="no")`."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
        # The plan a dialog shows scrolls whichever widget has focus (a button, at first).
        Binding("down,j", "scroll_plan('scroll_down')", "Scroll the plan", show=False),
        Binding("up,k", "scroll_plan('scroll_up')", "Scroll the plan back", show=False),
        Binding("pagedown", "scroll_plan('scroll_page_down')", "Page down", show=False),
        Binding("pageup", "scroll_plan('scroll_page_up')", "Page up", show=False),
        Binding("end", "scroll_plan('scroll_end')", "End of the plan", show=False),
        Binding("home", "scroll_plan('scroll_home')", "Start of the plan", show=False),
    ]

    def on_mount(self) -> None:
        self.query_one("#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)

    def action_scroll_plan(self, how: str) -> None:
        """Scroll the dialog's plan (`.plan`), if it has one: at 80x24 a bulk plan is
        longer than the room it has, and the focused button would take the keys."""
        for plan in self.query(".plan"):
            getattr(plan, how)(animate=False)
