"""Resume preview: what `r` will do to a mid-tool thread, call by call."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Static

from supervisor.plan import PlannedCall
from supervisor.text import one_line
from supervisor.ui.render import Palette, planned_call
from supervisor.ui.screens.dialog import YesNoScreen


class ResumePreview(YesNoScreen):
    BINDINGS = [Binding("r", "answer(True)", "Resume")]

    def __init__(
        self, thread_id: str, plan: list[PlannedCall], strategy: str, palette: Palette
    ) -> None:
        super().__init__()
        self.thread_id = thread_id
        self.plan = plan
        self.strategy = strategy
        self.palette = palette

    def compose(self) -> ComposeResult:
        runs = sum(p.will_run for p in self.plan)
        reused = len(self.plan) - runs
        with Vertical(classes="dialog wide"):
            yield Static(
                Text(f"Resume {one_line(self.thread_id, 40)} (mid_tool)"),
                classes="dialog-title",
            )
            if self.strategy == "interrupt":
                intro = (
                    f"{len(self.plan)} unanswered call(s) will be recorded as interrupted; "
                    "the model decides whether to call them again."
                )
            else:
                intro = (
                    f"{len(self.plan)} unanswered call(s): {runs} will really run again, "
                    f"{reused} already done by their job markers. Then the model is called."
                )
            yield Static(Text(intro), classes="dialog-body")
            with VerticalScroll(classes="plan"):
                for p in self.plan:
                    yield Static(planned_call(p, self.palette), classes="plan-call")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Resume (y)", variant="primary", id="yes")
                yield Button("Cancel (n)", id="no")
