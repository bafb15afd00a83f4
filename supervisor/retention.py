"""Retention: threads past their use removed from every cubeloop table, safely, in batches.

Checkpoint tables grow without bound: every message of every thread is kept.
`prune --finished --older-than 30d` removes whole threads (their messages,
runs, extra, pending requests and answers), their job markers and the
watcher's records of them. What is never removed:

- a thread not in the states asked for, or written to since the cutoff;
- a thread a supervisor holds (its lease), or whose newest run is open: it
  may be live, or a resume may still want it;
- a thread a fork names as its source (the fork's lineage, and on Postgres
  cubeloop's foreign key, point at it);
- a thread written to between the listing and its batch (its rows are
  counted again inside the batch's transaction).

Each batch takes its threads' leases first (so no supervisor starts one of
them meanwhile), checks them again and deletes them in one transaction;
a batch is small, so the database is never locked for long.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from supervisor.leases import LeaseError, LeaseHeld, holder_text
from supervisor.markers import Marker
from supervisor.states import ThreadSummary

#: `--finished`: the states no resume takes up again.
FINISHED = frozenset({"finished", "stopped"})


@dataclass(frozen=True)
class Candidate:
    """A thread in a state asked for, and whether it goes (with the reason either way)."""

    thread_id: str
    state: str
    messages: int
    last_row: int
    remove: bool
    why: str

    def to_json(self, removed: bool | None) -> dict[str, Any]:
        return {
            "thread_id": self.thread_id,
            "state": self.state,
            "messages": self.messages,
            "remove": self.remove,
            "why": self.why,
            "removed": removed,
        }


def choose(summaries: Iterable[ThreadSummary], states: set[str], cutoff: float) -> list[Candidate]:
    """The threads in `states`, each with its verdict (`cutoff`: a unix time)."""
    listed = list(summaries)
    sources = {s.forked_from for s in listed if s.forked_from is not None}
    found = []
    for s in sorted(listed, key=lambda s: s.thread_id):
        state = s.state.value
        if state not in states:
            continue
        why = ""
        if s.holder:
            why = f"held by {holder_text(s.holder)}"
        elif s.run_open:
            why = "its newest run is open (resume or finish it first)"
        elif s.last_activity is not None and s.last_activity >= cutoff:
            why = "written since the cutoff"
        elif s.thread_id in sources:
            why = "a fork's source (its forks name it)"
        found.append(
            Candidate(s.thread_id, state, s.messages, s.last_row, not why, why or f"{state}, old")
        )
    return found


@dataclass
class Pruned:
    """What removing the chosen threads did."""

    removed: list[str] = field(default_factory=list)
    messages: int = 0
    #: Threads left after all, and why (leased meanwhile, written meanwhile...).
    skipped: dict[str, str] = field(default_factory=dict)
    markers: int = 0
    records: int = 0


async def remove_in_batches(
    remover: Any, board: Any, chosen: list[Candidate], batch: int = 100
) -> Pruned:
    """Remove the chosen threads batch by batch: each batch's leases taken first, then one
    transaction of the backend's `remover` (`Location.thread_remover`) that checks them
    again and deletes them."""
    done = Pruned()
    going = [c for c in chosen if c.remove]
    try:
        for start in range(0, len(going), batch):
            part = going[start : start + batch]
            leases, ready = [], []
            try:
                for c in part:
                    try:
                        leases.append(await board.acquire(c.thread_id))
                        ready.append(c)
                    except LeaseHeld as exc:
                        done.skipped[c.thread_id] = f"held by {holder_text(exc.holder)}"
                    except LeaseError as exc:
                        done.skipped[c.thread_id] = f"its lease cannot be taken ({exc})"
                removed, messages, skipped = await remover.remove(ready)
            finally:
                for lease in leases:
                    with contextlib.suppress(Exception):
                        await board.release(lease)
            done.removed += removed
            done.messages += messages
            done.skipped.update(skipped)
    finally:
        await remover.close()
    return done


def forget(
    done: Pruned,
    markers: Iterable[Marker],
    remove_marker: Callable[[Marker], bool],
    ledger: Any,
) -> None:
    """The removed threads' job markers and the watcher's records of them, removed too."""
    gone = set(done.removed)
    if not gone:
        return
    done.markers = sum(1 for m in markers if m.thread_id in gone and remove_marker(m))
    done.records = len(ledger.release(sorted(gone)))


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def age_seconds(text: str) -> float:
    """`30d`, `12h`, `90m`, `2w`, `45s` in seconds; ValueError for anything else."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:]) if value else None
    if unit is None:
        raise ValueError(f"not an age: {text!r} (a number and a unit: 30d, 12h, 90m, 2w)")
    try:
        number = float(value[:-1])
    except ValueError:
        raise ValueError(f"not an age: {text!r} (a number and a unit: 30d, 12h, 90m, 2w)") from None
    if not math.isfinite(number) or not 0 <= number <= 100_000:
        raise ValueError(f"not an age: {text!r} (a number and a unit: 30d, 12h, 90m, 2w)")
    return number * unit


def unchanged(c: Candidate, count: int, last: int | None) -> bool:
    """Whether a thread's rows are as the listing saw them (no row written since)."""
    return count == c.messages and (last or 0) == c.last_row


def ids_json(candidates: Iterable[Candidate]) -> str:
    return json.dumps([c.thread_id for c in candidates])
