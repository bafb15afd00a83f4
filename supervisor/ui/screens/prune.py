"""`D`: remove old finished threads (as `prune --finished --older-than AGE`), after asking.

The dialog takes an age and says, as it is typed, how many threads would go
and why the others stay (`retention.choose` over the list the app holds);
Enter removes them. What runs then is `prune`'s own batches, leases first.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from supervisor.retention import FINISHED, Candidate, age_seconds, choose
from supervisor.states import ThreadSummary
from supervisor.text import counted


class PruneScreen(ModalScreen[list[Candidate] | None]):
    """Dismisses with the threads chosen (verdicts and all), or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        summaries: Callable[[], Iterable[ThreadSummary]],
        clock: Callable[[], float] = time.time,
        age: str = "30d",
    ) -> None:
        super().__init__()
        self.summaries = summaries
        self.clock = clock
        self.age = age
        self.chosen: list[Candidate] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static(Text("Remove old threads"), classes="dialog-title")
            yield Static(
                "Finished and stopped threads last written longer ago than this (30d, 12h, "
                "2w) are removed from the database with their job markers:"
            )
            yield Input(value=self.age, id="prune-age")
            yield Static(id="prune-summary", classes="dialog-body")
            yield Static(
                "Enter removes them (they cannot be brought back) · Escape cancels",
                classes="dialog-hint",
            )

    def on_mount(self) -> None:
        self.query_one("#prune-age", Input).focus()
        self._judge(self.age)

    @on(Input.Changed, "#prune-age")
    def _changed(self, event: Input.Changed) -> None:
        self._judge(event.value)

    def _judge(self, value: str) -> None:
        summary = self.query_one("#prune-summary", Static)
        try:
            age = age_seconds(value)
        except ValueError as exc:
            self.chosen = []
            summary.update(Text(str(exc)))
            return
        self.chosen = choose(self.summaries(), set(FINISHED), self.clock() - age)
        going = [c for c in self.chosen if c.remove]
        kept = Counter(c.why for c in self.chosen if not c.remove)
        messages = counted(sum(c.messages for c in going), "message")
        text = Text(
            f"{counted(len(going), 'thread')} ({messages}) would go.",
            style="bold" if going else "",
        )
        if kept:
            text.append(
                " Kept: " + ", ".join(f"{n} {why}" for why, n in sorted(kept.items())) + "."
            )
        summary.update(text)

    @on(Input.Submitted, "#prune-age")
    def _submitted(self) -> None:
        if any(c.remove for c in self.chosen):
            self.dismiss(self.chosen)

    def action_cancel(self) -> None:
        self.dismiss(None)
