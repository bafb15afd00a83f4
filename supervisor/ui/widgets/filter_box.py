"""`/`: the list's filter box, applied once typing pauses so each keystroke stays instant."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Input

#: Seconds after the last keystroke before a filter is applied.
FILTER_DELAY = 0.15


class FilterBox(Input):
    """Shown by `/`, hidden again by Escape; says what to filter by with `Applied`."""

    @dataclass
    class Applied(Message):
        """The filter to apply; `submitted`: Enter was pressed (the list takes focus)."""

        value: str
        submitted: bool = False

    def __init__(self, **kwargs: object) -> None:
        super().__init__(
            placeholder="thread id, state or where it stopped; ~words searches the messages",
            **kwargs,  # type: ignore[arg-type]
        )
        self._timer: Timer | None = None

    def open(self) -> None:
        """Show the box and take the keys now (`focus()` would take them on the next turn
        of the loop, after keys already queued). Keys the list was handed before this are
        passed on by `SupervisorApp.on_key`."""
        self.add_class("visible")
        self.screen.set_focus(self, scroll_visible=False)

    def close(self) -> bool:
        """Empty and hide the box; whether there was anything to close."""
        was_open = self.has_class("visible") or bool(self.value)
        self._stop()
        self.value = ""
        self.remove_class("visible")
        return was_open

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        event.stop()
        self._stop()
        value = event.value.strip()
        self._timer = self.set_timer(FILTER_DELAY, lambda: self._apply(value))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._stop()
        self.post_message(self.Applied(event.value.strip(), submitted=True))

    def _apply(self, value: str) -> None:
        self._timer = None
        self.post_message(self.Applied(value))
