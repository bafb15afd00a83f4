"""The one output layer: JSON, notes and refusals, the same way in every command."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from supervisor.cli.options import UsageError
from supervisor.jsontext import dumps
from supervisor.location import Location
from supervisor.store import Store
from supervisor.text import one_line


def print_json(value: Any) -> None:
    """A JSON document on stdout, indented; what JSON cannot hold is written as text."""
    sys.stdout.write(dumps(value, indent=2, default=str) + "\n")


def write_json_array(items: Iterable[Any]) -> None:
    """A JSON array on stdout, each item written as it comes (as `print_json` indents)."""
    from supervisor.jsontext import indented

    out = sys.stdout
    first = True
    for item in items:
        out.write(("[\n  " if first else ",\n  ") + indented(item, 1))
        first = False
    out.write("[]\n" if first else "\n]\n")


def agreed(refusal: str, question: str, prog: str = "agent-supervisor") -> bool:
    """Whether the person agrees to a write to their database (`index`, `prune`): asked
    on a terminal; without one, refused with `refusal` (the commands take `--yes`).
    A no is said ("not changed")."""
    if not sys.stdin.isatty():
        raise UsageError(refusal, prog)
    if input(f"{question} [y/N] ").strip().lower() in ("y", "yes"):
        return True
    print("not changed")
    return False


def print_notices(store: Store) -> None:
    say_notes(store.take_notices())


def say_notes(notes: Iterable[str]) -> None:
    for note in notes:
        print(f"agent-supervisor: note: {one_line(note, 300)}", file=sys.stderr)


def no_thread(where: Location, thread_id: str) -> UsageError:
    """The refusal for a thread the database does not hold."""
    return UsageError(f"{where.shown}: no thread {one_line(thread_id, 60)!r}")
