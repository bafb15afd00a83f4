"""Pausing Python's cyclic collector, from any thread, for as long as any pauser needs.

Two reasons to pause it. A listing builds 100,000 summaries that form no
cycles, yet each full collection walks every one of them (a quarter of a
second of a 100,000-thread listing). And a key held down draws a frame every
~33 ms: a full collection of what the screen has allocated since the listing
was frozen (`gc.freeze`) takes 20-45 ms, often enough to miss a frame a
second. Pauses nest and overlap across threads (a refresh in a worker while a
key is held): the collector runs again when the last pauser resumes, and only
if it ran before the first paused.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_pauses = 0
_was_enabled = True


def pause() -> None:
    """Stop cyclic collections until a matching `resume()` (reference counting goes on)."""
    global _pauses, _was_enabled
    with _lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1


def resume() -> None:
    """End one `pause()`; the last one lets the collector run again."""
    global _pauses
    with _lock:
        if _pauses == 0:
            raise RuntimeError("resume() without pause()")
        _pauses -= 1
        if _pauses == 0 and _was_enabled:
            gc.enable()


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """The collector paused for the block."""
    pause()
    try:
        yield
    finally:
        resume()
