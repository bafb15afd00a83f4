"""Python's cyclic collector, and the two policies that pause it.

Two costs made us pause it. A listing builds 100,000 summaries that form no
cycles, yet each full collection walks every one of them (a quarter of a
second of a 100,000-thread listing). And a key held down draws a frame every
~33 ms: a full collection of what the screen has allocated since the listing
was frozen (`gc.freeze`) takes 20-45 ms, often enough to miss a frame a
second.

The switch is process-wide, so only a program's edges flip it, each through
one of two named policies: `bulk_read` (the CLI around a listing or a plan of
many threads, the app's and the watcher's refreshes, a forked reader for its
whole life) and `HeldKey` (the app while a key repeats). Library modules never
call them (`tests/test_collector.py` holds them to it). Pauses nest and overlap
across threads (a refresh in a worker while a key is held): the collector runs
again when the last pauser resumes, and only if it ran before the first paused.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

#: How long a held key may keep the collector paused before one young collection. Its
#: cost grows with what was allocated since the last: after 10 s of holding it walked
#: 300 keys' garbage at once (135-280 ms, a stall at keys 301 and 601); every half
#: second it is a few milliseconds.
HELD_KEY_YOUNG_EVERY = 0.5

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
def bulk_read(*, keep: bool = False) -> Iterator[None]:
    """Policy one: no collection while many summaries, rows or plans are built.

    They form no cycles, and each collection would walk them all. `keep`:
    what was built lives as long as the process (the app's listing), so it is
    frozen out of every later walk before the collector runs again; without
    that, its first pass walks all of it (0.4-0.7 s at 100,000 threads).
    """
    pause()
    try:
        yield
        if keep:
            gc.freeze()
    finally:
        resume()


class HeldKey:
    """Policy two: no collection while a key repeats, until the cursor rests.

    Memory may not grow without bound under a key held for minutes, so every
    `young_every` seconds of holding one collection of the young generations
    runs: it walks what the held key allocated since the last, not what the app
    keeps (a full collection there took 140-160 ms, five missed frames), and
    often enough that each walk is short.
    """

    def __init__(self, young_every: float = HELD_KEY_YOUNG_EVERY) -> None:
        self.young_every = young_every
        self._since: float | None = None

    @property
    def held(self) -> bool:
        return self._since is not None

    def moved(self, now: float) -> None:
        """The cursor moved again within a key's repeat (`now`: a monotonic clock)."""
        if self._since is None:
            self._since = now
            pause()
        elif now - self._since > self.young_every:
            self._since = now
            gc.collect(1)

    def rested(self) -> None:
        """The cursor rests (or the app closes): collections as before."""
        if self._since is not None:
            self._since = None
            resume()
