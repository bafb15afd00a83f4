"""`F`: fork the selected thread after one of its completed runs, the ledger shown first.

The runs are listed oldest first, each with the prompt that began it; the
highlighted one's plan (`supervisor.fork.plan_from`, the lines `fork`
prints) says for every later tool call whether its side effect happened and
whether a fork calling it again would repeat it. Enter forks after the
highlighted run; the screen dismisses with the plan, the app makes the fork.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from supervisor.fork import ForkPlan, ForkRefused, plan_from
from supervisor.plan import MarkerIndex
from supervisor.report import fork_plan_lines
from supervisor.store import Transcript
from supervisor.text import one_line

HINT = "Enter forks after the highlighted run · Tab to the id · Escape cancels"


def run_prompts(transcript: Transcript) -> dict[str, str]:
    """The first user text of each run: what a person remembers a run by."""
    found: dict[str, str] = {}
    for entry in transcript.entries:
        m = entry.message
        if entry.run_id is None or entry.run_id in found or not isinstance(m, dict):
            continue
        if m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, list):
                found[entry.run_id] = "".join(
                    str(b.get("text", "")) for b in content if isinstance(b, dict)
                )
            else:
                found[entry.run_id] = str(content or "")
    return found


class RunList(OptionList):
    """The runs, moved through with j/k as the thread list is."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]


class ForkScreen(ModalScreen[ForkPlan | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        source: str,
        offered: str,
        runs: list[tuple[str, int | None]],
        transcript: Transcript,
        index: MarkerIndex,
        taken: Callable[[str], bool],
        markers_note: str | None = None,
    ) -> None:
        super().__init__()
        #: Why the markers could not be consulted (`ForkPlan.markers_note`), said in the plan.
        self.markers_note = markers_note
        self.source = source
        self.offered = offered
        self.runs = runs
        self.transcript = transcript
        self.index = index
        #: Whether an id is a thread the database already holds.
        self.taken = taken
        self.completed = [run for run, seq in runs if seq is not None]
        self.plan: ForkPlan | None = None

    def compose(self) -> ComposeResult:
        prompts = run_prompts(self.transcript)
        with Vertical(classes="dialog wide"):
            yield Static(Text(f"Fork {one_line(self.source, 50)}"), classes="dialog-title")
            yield Static(
                "The fork ends with the run you pick (cubeloop's fork copies it and every "
                "run before; this thread is not changed):"
            )
            yield RunList(
                *(
                    Option(
                        Text(f"after {one_line(run, 14)}  {one_line(prompts.get(run, ''), 60)}"),
                        id=f"run-{n}",
                    )
                    for n, run in enumerate(self.completed)
                ),
                id="fork-runs",
            )
            yield Static("New thread id:")
            yield Input(value=self.offered, placeholder="thread id", id="fork-id")
            with VerticalScroll(classes="plan", id="fork-plan"):
                yield Static(id="fork-plan-text")
            yield Static(HINT, id="fork-hint", classes="dialog-hint")

    def on_mount(self) -> None:
        runs = self.query_one("#fork-runs", RunList)
        runs.highlighted = len(self.completed) - 1  # the newest: the usual "from here"
        runs.focus()
        self._show_plan()

    @on(OptionList.OptionHighlighted, "#fork-runs")
    def _highlighted(self) -> None:
        self._show_plan()

    @on(Input.Changed, "#fork-id")
    def _renamed(self) -> None:
        self.query_one("#fork-hint", Static).update(HINT)  # an earlier refusal no longer holds
        self._show_plan()

    def _show_plan(self) -> None:
        runs = self.query_one("#fork-runs", RunList)
        if runs.highlighted is None:
            return
        new = self.query_one("#fork-id", Input).value.strip() or self.offered
        try:
            self.plan = plan_from(
                self.source,
                self.completed[runs.highlighted],
                new,
                self.runs,
                self.transcript,
                self.index,
            )
        except ForkRefused as exc:
            self.plan = None
            self.query_one("#fork-plan-text", Static).update(Text(str(exc)))
            return
        self.plan.markers_note = self.markers_note
        text = Text()
        for line in fork_plan_lines(self.plan):
            text.append(line + "\n", style="bold red" if line.lstrip().startswith("!") else "")
        self.query_one("#fork-plan-text", Static).update(text)

    @on(OptionList.OptionSelected, "#fork-runs")
    @on(Input.Submitted, "#fork-id")
    def _fork(self) -> None:
        new = self.query_one("#fork-id", Input).value.strip()
        hint = self.query_one("#fork-hint", Static)
        if not new:
            hint.update(Text("Give the new thread an id."))
            return
        if self.taken(new):
            hint.update(Text(f"A thread {one_line(new, 40)} exists already: give another id."))
            return
        if self.plan is not None:
            self.dismiss(self.plan)

    def action_cancel(self) -> None:
        self.dismiss(None)
