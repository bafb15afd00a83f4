"""Resume preview: what `r` will do to a mid-tool thread, call by call."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Static

from supervisor.plan import ThreadPlan, Verdict
from supervisor.states import State
from supervisor.text import counted, one_line
from supervisor.ui.render import Palette, live_warning, plan_text
from supervisor.ui.screens.dialog import YesNoScreen


class ResumePreview(YesNoScreen):
    """The same plan `resume --dry-run` prints, with a yes/no."""

    BINDINGS = [Binding("r", "answer(True)", "Resume")]

    def __init__(self, plan: ThreadPlan, palette: Palette, live: str | None = None) -> None:
        super().__init__()
        self.plan = plan
        self.palette = palette
        #: Why the thread may be live elsewhere (`plan.live_reason`); None: it is not.
        self.live = live

    def compose(self) -> ComposeResult:
        calls = self.plan.calls
        count = {v: sum(p.verdict is v for p in calls) for v in Verdict}
        with Vertical(classes="dialog wide"):
            yield Static(
                Text(f"Resume {one_line(self.plan.thread_id, 40)} ({self.plan.state})"),
                classes="dialog-title",
            )
            parts = [
                f"{count[Verdict.RERUN]} will really run again",
                f"{count[Verdict.REUSE]} already done by their markers",
            ]
            if count[Verdict.SKIP]:
                parts.append(f"{count[Verdict.SKIP]} not run (the agent's policy or a human)")
            if count[Verdict.ASK]:
                parts.append(f"{count[Verdict.ASK]} wait for a human's answer first")
            if count[Verdict.UNKNOWN]:
                parts.append(f"{count[Verdict.UNKNOWN]} unknown (the supervisor cannot tell)")
            intro = f"{len(calls)} unanswered call(s): " + ", ".join(parts) + "."
            if not calls:
                intro = f"{len(self.plan.closed)} unanswered call(s) are not run."
            if self.plan.closed:
                intro += (
                    f" {len(self.plan.closed)} call(s) are closed as interrupted: "
                    "the model decides whether to call them again."
                )
            intro += f" Then: {self.plan.action}."
            body = Text(intro)
            if self.live is not None:
                body.append(live_warning(self.live))
            yield Static(body, classes="dialog-body")
            with VerticalScroll(classes="plan"):
                yield Static(plan_text(self.plan, self.palette), classes="plan-call")
            with Horizontal(classes="dialog-buttons"):
                label = "Resume anyway (y)" if self.live is not None else "Resume (y)"
                yield Button(label, variant="primary", id="yes")
                yield Button("Cancel (n)", id="no")


#: A bulk preview lists each plan up to this many threads, and threads with calls up to
#: this many; past it, the threads without calls are counted by what happens to them.
LISTED = 200

#: Thread ids named under each group of a long preview.
NAMED = 3


class BulkResumePreview(YesNoScreen):
    """Several threads at once: each one's plan, as the single preview shows it.

    Mid-tool threads list their calls and verdicts; aborted and error
    threads say which message continues them; the rest say what happens.
    Past `LISTED` threads the ones whose calls are planned are listed (the
    side effects a person must see), up to `LISTED` of them, and the rest
    are counted by state and what happens: the plans of 60,000 crashed
    threads, one line each, made a text the screen took minutes to lay out.
    """

    BINDINGS = [Binding("r", "answer(True)", "Resume")]

    def __init__(
        self,
        title: str,
        plans: list[ThreadPlan],
        palette: Palette,
        continue_text: str,
        skipped: int = 0,
        aborted_left_out: int = 0,
        live: list[str] | None = None,
        live_window: float = 0.0,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.plans = plans
        self.palette = palette
        self.continue_text = continue_text
        self.skipped = skipped
        #: Aborted threads `R` leaves alone: a person stopped them (as `watch` does).
        self.aborted_left_out = aborted_left_out
        #: Threads that may be live elsewhere (`plan.live_reason`): resumed anyway on yes.
        self.live = live or []
        self.live_window = live_window

    def compose(self) -> ComposeResult:
        runs = sum(p.verdict is Verdict.RERUN for plan in self.plans for p in plan.calls)
        intro = (
            f"{counted(len(self.plans), 'thread')}; "
            f"{counted(runs, 'tool call')} will really run again."
        )
        if self.skipped:
            intro += f" {self.skipped} marked thread(s) cannot be resumed and are skipped."
        if self.aborted_left_out:
            intro += (
                f" {self.aborted_left_out} aborted thread(s) are left out: someone stopped them"
                " (r resumes one; space marks several)."
            )
        body = Text(intro)
        if self.live:
            names = ", ".join(one_line(t, 24) for t in self.live[:5])
            more = f" and {len(self.live) - 5} more" if len(self.live) > 5 else ""
            body.append(
                f"\n\n{len(self.live)} may still be running in another process (an open run "
                f"written less than {self.live_window:g}s ago): {names}{more}. Resuming while "
                "another process runs one would run its tools twice; yes resumes them too.",
                style="bold",
            )
        with Vertical(classes="dialog wide"):
            yield Static(Text(self.title_text), classes="dialog-title")
            yield Static(body, classes="dialog-body")
            with VerticalScroll(classes="plan bulk", id="bulk-plans"):
                yield Static(self._body(), classes="plan-call")
            with Horizontal(classes="dialog-buttons"):
                label = "Resume all anyway (y)" if self.live else "Resume all (y)"
                yield Button(label, variant="primary", id="yes")
                yield Button("Cancel (n)", id="no")

    def _body(self) -> Text:
        if len(self.plans) <= LISTED:
            return self._each(self.plans)
        with_calls = [p for p in self.plans if p.calls or p.closed]
        groups: dict[tuple[State, str], list[str]] = {}
        for plan in self.plans:
            if not (plan.calls or plan.closed):
                groups.setdefault((plan.state, self._what(plan)), []).append(plan.thread_id)
        out = Text()
        if with_calls:
            out.append(f"{counted(len(with_calls), 'thread')} with unanswered calls:\n", "bold")
            out.append(self._each(with_calls[:LISTED]))
            if len(with_calls) > LISTED:
                out.append(
                    f"\n… and {counted(len(with_calls) - LISTED, 'more thread')} with calls "
                    "(`resume --all --dry-run` prints every plan)",
                    style="dim",
                )
            out.append("\n\n" if groups else "")
        ordered = sorted(groups.items(), key=lambda g: (-len(g[1]), g[0][0], g[0][1]))
        for i, ((state, what), ids) in enumerate(ordered[:LISTED]):
            out.append("\n" if i else "")
            out.append(f"{counted(len(ids), 'thread')}  ", style="bold")
            out.append(f"{state}  → {what}\n    ")
            out.append(", ".join(one_line(t, 24) for t in ids[:NAMED]), style="dim")
            if len(ids) > NAMED:
                out.append(f", … {len(ids) - NAMED:,} more", style="dim")
        if len(ordered) > LISTED:  # actions that name a reason each (an abort's, an end's)
            rest = sum(len(ids) for _, ids in ordered[LISTED:])
            out.append(
                f"\n… and {counted(rest, 'more thread')} "
                "(`resume --all --dry-run` prints every plan)",
                style="dim",
            )
        return out

    def _each(self, plans: list[ThreadPlan]) -> Text:
        """Each plan as the single preview shows it."""
        out = Text()
        for i, plan in enumerate(plans):
            out.append("\n" if i else "")
            out.append(one_line(plan.thread_id, 40), style="bold")
            out.append(f"  {plan.state}  → {self._what(plan)}")
            if plan.calls or plan.closed:
                out.append("\n").append(plan_text(plan, self.palette))
        return out

    def _what(self, plan: ThreadPlan) -> str:
        if plan.refused is not None:
            return f"refused: {one_line(plan.refused, 200)}"
        if plan.state in (State.ABORTED, State.ERROR):
            return f"continue with {self.continue_text!r}"
        return plan.action
