"""A thread's live event log: finished lines above, text still streaming below."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import RichLog, Static

from supervisor.ui.widgets.reflow_log import ReflowLog


class EventLog(Vertical):
    """Follows the tail unless the user has scrolled up to read."""

    def compose(self) -> ComposeResult:
        yield ReflowLog(id="event-lines", wrap=True, markup=False, auto_scroll=False, min_width=1)
        yield Static("", id="event-stream")

    @property
    def lines(self) -> RichLog:
        return self.query_one("#event-lines", RichLog)

    def clear(self) -> None:
        self.lines.clear()
        self.set_stream("")

    def write(self, text: Text) -> None:
        log = self.lines
        follow = log.is_vertical_scroll_end or log.max_scroll_y == 0
        log.write(text, scroll_end=follow)

    def set_stream(self, text: str) -> None:
        """Text the model is still writing; layout changes only when it appears or goes."""
        stream = self.query_one("#event-stream", Static)
        if not text and not stream.display:
            return
        stream.update(Text(text[-2000:], style="italic"))
        if stream.display != bool(text):
            stream.display = bool(text)
