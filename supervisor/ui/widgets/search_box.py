"""`/` in a transcript or an event log: find text in it, marked, `n`/`N` to jump.

The box searches the lines as drawn (`ReflowLog.find`): what a message shows,
not the stored JSON (the pager, `o`, has every byte). Its border says which
match is shown of how many ("3/17").
"""

from __future__ import annotations

from collections.abc import Callable

from textual import on
from textual.widgets import Input

from supervisor.ui.widgets.reflow_log import ReflowLog


class SearchBox(Input):
    def __init__(self, log: Callable[[], ReflowLog], **kwargs: object) -> None:
        super().__init__(placeholder="search…  (Enter: next · Escape: done)", **kwargs)  # type: ignore[arg-type]
        #: The log searched: the active tab's, asked each time.
        self._log = log
        self.matches: list[int] = []
        self.at = -1

    @property
    def active(self) -> bool:
        return self.has_class("visible")

    def open(self) -> None:
        """Show the box and take the keys now (as the list's filter does)."""
        self.add_class("visible")
        self.screen.set_focus(self, scroll_visible=False)
        if self.value:
            self._search(self.value)

    def close(self) -> None:
        """Hide the box, unmark the log, give it the keys back."""
        log = self._log()
        self.remove_class("visible")
        self.value = ""
        self.matches, self.at = [], -1
        self.border_title = None
        log.find("")
        log.focus()

    def step(self, by: int) -> None:
        """The next (`by` 1) or previous (-1) match, round the end."""
        if not self.matches:
            return
        self.at = (self.at + by) % len(self.matches)
        self._log().show_line(self.matches[self.at])
        self.border_title = f"{self.at + 1}/{len(self.matches)}"

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        event.stop()
        self._search(event.value)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        """Enter: the next match, and the keys go back to the log (`n`/`N` jump on). An empty
        box closes: left on screen without the keys, what was typed next went to the
        screen behind it as keys (`o` opened the pager)."""
        event.stop()
        if not self.value.strip():
            self.close()
            return
        self.step(1)
        self._log().focus()

    def _search(self, text: str) -> None:
        log = self._log()
        self.matches = log.find(text.strip())
        top = round(log.scroll_y)
        first = next((i for i, line in enumerate(self.matches) if line >= top), 0)
        self.at = first - 1
        if self.matches:
            self.step(1)
        else:
            self.border_title = "no match" if text.strip() else None
