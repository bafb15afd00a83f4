"""The answer dialog: what a waiting thread asks, and the human's answer.

An approval is approved or denied (with an optional reason for the model);
a confirmation is answered yes or no; an ask gets one answer per question,
an option picked from its list or typed text. The answer is checked by the
same rules as `agent-supervisor answer` (`supervisor.hitl.answer_for`) and
returned as the value cubeloop's `Agent.respond` takes.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, RadioButton, RadioSet, SelectionList, Static

from supervisor.hitl import AnswerError, PendingRequest, Question, answer_for
from supervisor.text import one_line
from supervisor.ui.render import safe


class Choice(RadioButton):
    """A radio option whose mark says whether it is picked (Textual's tells by colour only,
    and the app promises states readable without colour)."""

    @property
    def BUTTON_INNER(self) -> str:  # noqa: N802 - Textual's name for the mark
        return "●" if self.value else " "


class AnswerScreen(ModalScreen[Any]):
    """Dismisses with the answer, or None when cancelled.

    A confirmation takes `y` and `n`, as every other dialog does. An approval opens with
    the keys in its reason box, as its placeholder invites: typing there is a reason,
    and Enter denies with it; `y` and `n` answer from the buttons (Tab). With the
    buttons focused first, a person typing "you may not" approved the call with its
    first letter (a refund ran) and the rest of the words went to the list as keys.
    An ask, whose answers are typed, is sent with ctrl+s.
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "send", "Send answer", show=False),
        Binding("y", "decide(True)", "Approve / yes", show=False),
        Binding("n", "decide(False)", "Deny / no", show=False),
    ]

    def __init__(self, thread_id: str, request: PendingRequest) -> None:
        super().__init__()
        self.thread_id = thread_id
        self.request = request

    def compose(self) -> ComposeResult:
        request = self.request
        with Vertical(classes="dialog wide", id="answer-dialog"):
            yield Static(
                Text(f"Answer {one_line(self.thread_id, 40)}: {request.kind} request"),
                classes="dialog-title",
            )
            if request.kind == "ask":
                with VerticalScroll(id="answer-questions"):
                    for i, question in enumerate(request.questions):
                        yield from self._question(i, question)
            else:
                yield Static(safe("\n".join(request.lines())), classes="dialog-body")
            if request.kind == "approve":
                yield Input(placeholder="reason, if you deny (told to the model)", id="reason")
            yield Static("", id="answer-error")
            with Horizontal(classes="dialog-buttons"):
                yield from self._buttons()
            yield Static(self._hint(), classes="dialog-hint")

    def _question(self, i: int, question: Question) -> ComposeResult:
        multi = " (pick any)" if question.multi_select else ""
        yield Static(safe(f"{question.prompt}{multi}"), classes="question")
        if question.options and question.multi_select:
            yield SelectionList[int](
                *((one_line(o.label, 60), n) for n, o in enumerate(question.options)),
                id=f"pick-{i}",
            )
        elif question.options:
            with RadioSet(id=f"pick-{i}"):
                for o in question.options:
                    label = one_line(o.label, 60) + (" — type below" if o.allow_input else "")
                    yield Choice(label)
        if not question.options or any(o.allow_input for o in question.options):
            yield Input(placeholder="your answer", id=f"text-{i}")

    def _buttons(self) -> ComposeResult:
        if self.request.kind == "approve":
            yield Button("Approve (y)", variant="primary", id="approve")
            yield Button("Deny (n)", variant="error", id="deny")
        elif self.request.kind == "confirm":
            yield Button("Yes (y)", variant="primary", id="approve")
            yield Button("No (n)", id="deny")
        else:
            yield Button("Send answer (ctrl+s)", variant="primary", id="send")
        yield Button("Cancel (esc)", id="cancel")

    def _hint(self) -> str:
        if self.request.kind == "ask":
            return (
                "Tab moves between questions · arrows and space pick · ctrl+s sends · "
                "Escape cancels"
            )
        if self.request.kind == "approve":
            return (
                "type a reason and Enter to deny with it · Tab to the buttons: y approves, "
                "n denies · Escape cancels"
            )
        return "y yes · n no · Escape cancels; the thread then runs on"

    def on_mount(self) -> None:
        if self.request.kind == "approve":
            self.query_one("#reason", Input).focus()  # typing is a reason, never an answer
            return
        if self.request.kind == "confirm":
            self.query_one("#approve", Button).focus()  # y and n answer at once
            return
        first = self.query("RadioSet, SelectionList, Input, Button").first()
        first.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "reason":  # a reason typed: Enter denies with it
            event.stop()
            self._finish(approve=False)

    def action_decide(self, approve: bool) -> None:
        if self.request.kind in ("approve", "confirm"):
            self._finish(approve=approve)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        button = event.button.id
        if button == "cancel":
            self.dismiss(None)
        elif button == "approve":
            self._finish(approve=True)
        elif button == "deny":
            self._finish(approve=False)
        else:
            self._finish()

    def action_send(self) -> None:
        """ctrl+s sends an ask's answers. It never answers an approval or a confirmation:
        typed after a reason, it approved the call the reason was to deny (a refund ran)."""
        if self.request.kind in ("approve", "confirm"):
            hint = "Tab to the buttons: y approves, n denies"
            if self.request.kind == "approve":
                hint = "Enter denies with the reason typed; " + hint
            self.query_one("#answer-error", Static).update(Text(hint, style="bold"))
            return
        self._finish()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _finish(self, approve: bool | None = None) -> None:
        reason = None
        if self.request.kind == "approve":
            reason = self.query_one("#reason", Input).value.strip() or None
        try:
            answer = answer_for(
                self.request, approve=approve, reason=reason, replies=self._replies()
            )
        except AnswerError as exc:
            self.query_one("#answer-error", Static).update(Text(str(exc), style="bold red"))
            return
        self.dismiss(answer)

    def _replies(self) -> list[tuple[str, str]]:
        """One ("option", "N") or ("text", "…") per question, as the CLI takes them."""
        replies = []
        for i, question in enumerate(self.request.questions):
            typed = self.query(f"#text-{i}")
            text = typed.first(Input).value if typed else ""
            picked = self._picked(i, question)
            chosen = [question.options[n] for n in picked]
            if text and (not question.options or any(o.allow_input for o in chosen)):
                replies.append(("text", text))
            elif picked:
                replies.append(("option", ",".join(str(n + 1) for n in picked)))
            else:
                replies.append(("text", text))
        return replies

    def _picked(self, i: int, question: Question) -> list[int]:
        if not question.options:
            return []
        widget = self.query_one(f"#pick-{i}")
        if isinstance(widget, SelectionList):
            return sorted(widget.selected)
        index = widget.pressed_index if isinstance(widget, RadioSet) else -1
        return [index] if index >= 0 else []
