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

from textual.events import Resize
from textual.widgets import RichLog


class ReflowLog(RichLog):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Every write since the last `clear`, with its options: what a rewrap writes again.
        self._kept: list[tuple[object, dict[str, Any]]] = []
        #: The width the lines now shown were wrapped at (0: none yet).
        self._wrapped_at = 0

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

    def _rewrap(self) -> None:
        at_end = self.is_vertical_scroll_end or self.max_scroll_y == 0
        kept = self._kept
        super().clear()  # also drops RichLog's deferred writes: they are in `kept`
        for content, options in kept:
            super().write(content, **{**options, "scroll_end": False, "animate": False})
        if at_end:
            self.scroll_end(animate=False, immediate=True)
