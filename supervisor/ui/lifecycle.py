"""What every part of the app needs to survive its own shutdown."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from textual.css.query import NoMatches

from supervisor.store import StoreError


class StoreClosed(StoreError):
    """The app is shutting down: a read that comes too late is simply not done."""


def while_mounted(handler: Callable[..., None]) -> Callable[..., None]:
    """Workers and timers may fire after shutdown removed the widgets: drop those calls.

    Shutdown starts before the app's own closing flags are set: Textual first
    clears `is_running`, then unmounts the screens widget by widget while the
    app still reads its queue (its test harness does so from another task).
    """

    @functools.wraps(handler)
    def guarded(self: Any, *args: object) -> None:
        try:
            handler(self, *args)
        except NoMatches:
            if self.is_running and not (
                self.quitting or self._closing or self._closed or self.reader.closed
            ):
                raise

    return guarded
