"""Pruning what a long-lived fleet leaves behind: job markers of finished threads.

Every guarded tool call leaves a marker, and markers are never removed by
the tools: a fleet that has run for months keeps every one. A marker
matters only while a resume could consult it, that is while its thread
may still have a tool call without a result. A thread that is `finished`
or `stopped` has none; its markers are history.

What is removed, and why it is safe:

- only markers that name their thread (`thread_id`), and only when that
  thread is in *this* database and finished or stopped: a jobs directory
  may be shared by several databases (`JOB_DIR`), so a marker of a thread
  we do not know is someone else's and is kept;
- only markers older than the cutoff (by their newest time): a thread
  prompted again re-writes the markers of the calls it repeats, and a
  fresh marker is never taken for an old one;
- each marker is removed only if it is still the record that was judged:
  a file still at its path with the same inode (every version of a marker
  is a new file, `markers.atomic_write_json`), a row still with the same
  times. A marker rewritten after the listing is kept.

Lease files nobody holds are removed as well (`leases.prune`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.location import Location
from supervisor.markers import Marker
from supervisor.states import State

#: The states whose threads no resume will ever take up again.
SETTLED_STATES = frozenset({State.FINISHED.value, State.STOPPED.value})

#: The default cutoff: a week.
DEFAULT_OLDER_THAN = 7 * 86400.0


@dataclass(frozen=True)
class Verdict:
    """One marker and whether it goes, with the reason either way."""

    marker: Marker
    remove: bool
    why: str


def judge(markers: Iterable[Marker], states: Mapping[str, str], *, cutoff: float) -> list[Verdict]:
    """Each marker's verdict: removed only if its thread is ours and settled, and it is
    older than `cutoff` (a unix time)."""
    verdicts = []
    for m in markers:
        newest = max((t for t in (m.started_at, m.done_at) if t is not None), default=None)
        state = states.get(m.thread_id) if m.thread_id is not None else None
        if m.thread_id is None:
            verdicts.append(Verdict(m, False, "names no thread"))
        elif state is None:
            verdicts.append(Verdict(m, False, "thread not in this database"))
        elif state not in SETTLED_STATES:
            verdicts.append(Verdict(m, False, "thread not finished"))
        elif newest is None or newest >= cutoff:
            verdicts.append(Verdict(m, False, "newer than the cutoff"))
        else:
            verdicts.append(Verdict(m, True, f"thread is {state}"))
    return verdicts


def remove(location: str | os.PathLike[str] | Location, marker: Marker) -> bool:
    """Remove one marker if it is still the record judged; whether it was removed."""
    place = Location.parse(location)
    if place.server:
        return place.markers().remove(marker)
    return _remove_file(marker)


def _remove_file(marker: Marker) -> bool:
    """Unlink a marker file whose content is still the judged record, and that is still
    the file at its path (a rewrite renames a new file into place)."""
    try:
        fd = os.open(marker.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        with os.fdopen(os.dup(fd), "rb") as f:
            record = json.loads(f.read())
        if not isinstance(record, dict) or (
            record.get("started_at"),
            record.get("done_at"),
            record.get("status"),
        ) != (marker.started_at, marker.done_at, marker.status):
            return False
        held, at_path = os.fstat(fd), os.stat(marker.path, follow_symlinks=False)
        if (held.st_ino, held.st_dev) != (at_path.st_ino, at_path.st_dev):
            return False
        os.unlink(marker.path)
        return True
    except (OSError, ValueError):
        return False
    finally:
        os.close(fd)


def prune_leases(database: str | os.PathLike[str]) -> int:
    """Lease files nobody holds, removed; none for Postgres (its leases are locks)."""
    from supervisor.leases import leases_dir, prune

    if Location.parse(database).server:
        return 0
    with contextlib.suppress(OSError):
        return prune(leases_dir(Path(database)))
    return 0


def as_json(verdict: Verdict, removed: bool | None) -> dict[str, Any]:
    """One line of `prune --json`: the marker, the verdict and what was done."""
    return {
        "key": verdict.marker.key,
        "thread_id": verdict.marker.thread_id,
        "status": verdict.marker.status,
        "remove": verdict.remove,
        "why": verdict.why,
        "removed": removed,
    }
