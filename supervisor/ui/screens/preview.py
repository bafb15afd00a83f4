"""Resume preview: what `r` will do to a mid-tool thread, call by call."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Static

from supervisor.plan import ThreadPlan, Verdict
from supervisor.text import one_line
from supervisor.ui.render import Palette, plan_text
from supervisor.ui.screens.dialog import YesNoScreen


class ResumePreview(YesNoScreen):
    """The same plan `resume --dry-run` prints, with a yes/no."""

    BINDINGS = [Binding("r", "answer(True)", "Resume")]

    def __init__(self, plan: ThreadPlan, palette: Palette) -> None:
        super().__init__()
        self.plan = plan
        self.palette = palette

    def compose(self) -> ComposeResult:
        calls = self.plan.calls
        runs = sum(p.verdict is Verdict.RERUN for p in calls)
        reused = sum(p.verdict is Verdict.REUSE for p in calls)
        unknown = len(calls) - runs - reused
        with Vertical(classes="dialog wide"):
            yield Static(
                Text(f"Resume {one_line(self.plan.thread_id, 40)} ({self.plan.state})"),
                classes="dialog-title",
            )
            parts = [f"{runs} will really run again", f"{reused} already done by their markers"]
            if unknown:
                parts.append(f"{unknown} unknown (the supervisor cannot tell)")
            intro = f"{len(calls)} unanswered call(s): " + ", ".join(parts) + "."
            if not calls:
                intro = f"{len(self.plan.closed)} unanswered call(s) are not run."
            if self.plan.closed:
                intro += (
                    f" {len(self.plan.closed)} call(s) are closed as interrupted: "
                    "the model decides whether to call them again."
                )
            yield Static(Text(intro + " Then the model is called."), classes="dialog-body")
            with VerticalScroll(classes="plan"):
                yield Static(plan_text(self.plan, self.palette), classes="plan-call")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Resume (y)", variant="primary", id="yes")
                yield Button("Cancel (n)", id="no")
