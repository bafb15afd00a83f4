"""A `RichLog` that wraps what it holds again whenever its width changes.

`RichLog` wraps each write once, at the width it has then. A log written
while its tab was hidden has no width: its lines were wrapped one character
each (the Events tab after a run watched from the Job markers tab, the
Transcript tab after the cursor moved under another tab) and stayed so until
they were written again. This log keeps what was written and writes it all
again at the new width, so every pane is whole whichever tab was open while
it was filled. The cost, a full rewrap, is paid only when the width changes.
"""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.style import Style
from textual.events import Resize
from textual.strip import Strip
from textual.widgets import RichLog

#: How a search's matches are drawn (readable without colour: reversed), and the one
#: the search is on (underlined too).
MATCH = Style(reverse=True, bold=True)
CURRENT = Style(reverse=True, bold=True, underline=True)


class ReflowLog(RichLog):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Every write since the last `clear`, with its options: what a rewrap writes again.
        self._kept: list[tuple[object, dict[str, Any]]] = []
        #: The width the lines now shown were wrapped at (0: none yet).
        self._wrapped_at = 0
        #: What a search looks for, lower-cased ("" : no search); drawn reversed.
        self.query = ""
        #: The line of the match the search is on (-1: none), drawn `CURRENT`.
        self.current = -1

    def write(self, content: object, *args: Any, **kwargs: Any) -> ReflowLog:
        names = ("width", "expand", "shrink", "scroll_end", "animate")
        options = dict(zip(names, args, strict=False)) | kwargs
        self._kept.append((content, options))
        if self._size_known and not self.scrollable_content_region.width:
            self._wrapped_at = 0  # hidden: written when it is shown (`on_resize`)
            return self
        return super().write(content, **options)

    def clear(self) -> ReflowLog:
        self._kept.clear()
        return super().clear()

    def on_resize(self, event: Resize) -> None:
        # In place of RichLog's own handler, which writes the writes it deferred until
        # its size was known: here every write is written again at the new width.
        event.prevent_default()
        width = event.size.width
        if not width or (self._size_known and width == self._wrapped_at):
            return
        self._size_known = True
        self._wrapped_at = width
        self._rewrap()

    def find(self, query: str) -> list[int]:
        """The lines (as wrapped now) holding `query`, any case; they are drawn marked."""
        self.query = query.lower()
        self.current = -1
        self._line_cache.clear()
        self.refresh()
        if not self.query:
            return []
        return [i for i, strip in enumerate(self.lines) if self.query in strip.text.lower()]

    def show_line(self, index: int) -> None:
        """The match on line `index` is the current one: in view, a third of the way down."""
        self.current = index
        self.scroll_to(y=max(0, index - self.scrollable_content_region.height // 3), animate=False)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        if not self.query:
            return strip
        line = round(self.scroll_y) + y
        return _marked(strip, self.query, CURRENT if line == self.current else MATCH)

    def _rewrap(self) -> None:
        at_end = self.is_vertical_scroll_end or self.max_scroll_y == 0
        kept = self._kept
        super().clear()  # also drops RichLog's deferred writes: they are in `kept`
        for content, options in kept:
            super().write(content, **{**options, "scroll_end": False, "animate": False})
        if at_end:
            self.scroll_end(animate=False, immediate=True)


def _marked(strip: Strip, query: str, style: Style) -> Strip:
    """`strip` with every occurrence of `query` (lower-cased) drawn in `style`."""
    text = strip.text
    lowered = text.lower()
    at = lowered.find(query)
    if at < 0:
        return strip
    cuts: list[int] = []
    while at >= 0:
        cuts += [cell_len(text[:at]), cell_len(text[: at + len(query)])]
        at = lowered.find(query, at + len(query))
    parts = strip.divide([*cuts, strip.cell_length])
    return Strip.join(part.apply_style(style) if i % 2 else part for i, part in enumerate(parts))
