"""Human-in-the-loop requests as stored by cubeloop, and the answers they take.

A thread waiting for a human has a row in `thread_pending_request`: the
request JSON (`HitlRequest`: question id, and a payload that is an
`AskRequest`, `ApproveRequest` or `ConfirmRequest`) and the run it belongs
to. The row is untrusted text: parsing never raises, and a payload we do
not know is shown raw and cannot be answered here.

Answers take cubeloop's shapes: an approval `{"decision": "approve"}` or
`{"decision": "deny", "reason": ...}`, a confirmation `true`/`false`, an
ask `{question_key: value}` (a list of values for a multi-select).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from supervisor.text import compact_json, one_line

KINDS = ("ask", "approve", "confirm")


class AnswerError(ValueError):
    """The answer given does not fit the request; the message says how."""


@dataclass(frozen=True)
class Option:
    label: str
    value: str
    description: str | None = None
    #: The option asks for typed text ("Other: …").
    allow_input: bool = False


@dataclass(frozen=True)
class Question:
    key: str
    prompt: str
    options: tuple[Option, ...] = ()
    multi_select: bool = False
    required: bool = True


@dataclass(frozen=True)
class PendingRequest:
    """One pending request, parsed leniently from its stored JSON."""

    question_id: str
    kind: str  # "ask", "approve", "confirm", or "?" when unknown
    run_id: str | None = None
    questions: tuple[Question, ...] = ()
    tool_name: str = ""
    tool_call_id: str = ""
    args: Any = None
    prompt: str = ""
    details: Any = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def answerable(self) -> bool:
        return self.kind in KINDS and bool(self.question_id)

    def short(self, limit: int = 80) -> str:
        """One line for the list: what the human is asked."""
        if self.kind == "approve":
            text = f"approve {self.tool_name}({compact_json(self.args)})?"
        elif self.kind == "confirm":
            text = f"confirm: {self.prompt}"
        elif self.kind == "ask":
            text = "ask: " + " / ".join(q.prompt for q in self.questions)
        else:
            text = "waiting for a human answer (unknown request)"
        return one_line(text, limit)

    def lines(self) -> list[str]:
        """The whole request, for `show` and the detail pane."""
        if self.kind == "approve":
            out = [
                f"approval requested for tool call {self.tool_call_id}:",
                f"  {self.tool_name}({json.dumps(self.args, ensure_ascii=False, default=str)})",
            ]
        elif self.kind == "confirm":
            out = ["confirmation requested:", f"  {self.prompt}"]
        elif self.kind == "ask":
            out = ["question(s) asked:"]
            for q in self.questions:
                multi = " (pick any)" if q.multi_select else ""
                out.append(f"  [{q.key}] {q.prompt}{multi}")
                for i, o in enumerate(q.options, start=1):
                    extra = " (type your own)" if o.allow_input else ""
                    desc = f" — {o.description}" if o.description else ""
                    out.append(f"    {i}. {o.label}{desc}{extra}")
        else:
            out = ["unknown request:", "  " + compact_json(self.raw)]
        if self.details:
            out.append(f"  details: {compact_json(self.details)}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "question_id": self.question_id,
            "kind": self.kind,
            "run_id": self.run_id,
            "summary": self.short(200),
            "request": self.raw,
        }


def parse_request(text: Any, run_id: Any = None) -> PendingRequest:
    """A stored `request_json`, whatever it holds; never raises."""
    try:
        data = json.loads(text) if isinstance(text, str | bytes) else None
    except (ValueError, RecursionError):
        data = None
    run = run_id if isinstance(run_id, str) else None
    if not isinstance(data, dict):
        return PendingRequest("", "?", run, raw={"request_json": one_line(str(text), 200)})
    qid = data.get("question_id")
    payload = data.get("payload")
    qid = qid if isinstance(qid, str) else ""
    if not isinstance(payload, dict):
        return PendingRequest(qid, "?", run, raw=data)
    kind = payload.get("kind")
    common = {"question_id": qid, "run_id": run, "raw": data, "details": payload.get("details")}
    if kind == "approve":
        return PendingRequest(
            kind="approve",
            tool_name=_str(payload.get("tool_name")),
            tool_call_id=_str(payload.get("tool_call_id")),
            args=payload.get("args"),
            **common,
        )
    if kind == "confirm":
        return PendingRequest(kind="confirm", prompt=_str(payload.get("prompt")), **common)
    if kind == "ask" and isinstance(payload.get("questions"), list):
        questions = tuple(q for q in map(_question, payload["questions"]) if q is not None)
        if questions:
            return PendingRequest(kind="ask", questions=questions, **common)
    return PendingRequest(qid, "?", run, raw=data)


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _question(data: Any) -> Question | None:
    if not isinstance(data, dict) or not isinstance(data.get("key"), str):
        return None
    options = data.get("options") if isinstance(data.get("options"), list) else []
    return Question(
        key=data["key"],
        prompt=_str(data.get("prompt")),
        options=tuple(
            Option(
                label=_str(o.get("label")) or _str(o.get("value")),
                value=_str(o.get("value")),
                description=o.get("description") if isinstance(o.get("description"), str) else None,
                allow_input=o.get("allow_input") is True,
            )
            for o in options
            if isinstance(o, dict)
        ),
        multi_select=data.get("multi_select") is True,
        required=data.get("required") is not False,
    )


# -- answers ---------------------------------------------------------------


def approval(approve: bool, reason: str | None = None) -> dict[str, Any]:
    """An approval answer; a denial carries its reason to the model."""
    if approve:
        return {"decision": "approve"}
    return {"decision": "deny", "reason": reason or "denied by a human"}


def answer_for(
    request: PendingRequest,
    *,
    approve: bool | None = None,
    reason: str | None = None,
    replies: list[tuple[str, str]] = (),  # type: ignore[assignment]
) -> Any:
    """The answer cubeloop expects, from what a person chose; `AnswerError` if unfit.

    `replies` are ("option", "N") or ("text", "…") pairs, one per question
    of an ask, in order (a multi-select takes comma-separated numbers).
    """
    if not request.answerable:
        raise AnswerError("this request is not one the supervisor knows how to answer")
    if request.kind in ("approve", "confirm"):
        if approve is None or replies:
            if request.kind == "approve":
                raise AnswerError("an approval takes --approve or --deny [REASON]")
            raise AnswerError("a confirmation takes --approve (yes) or --deny (no)")
        return approval(approve, reason) if request.kind == "approve" else approve
    if approve is not None:
        raise AnswerError("an ask request takes --option N or --text TEXT per question")
    if len(replies) != len(request.questions):
        raise AnswerError(
            f"the request asks {len(request.questions)} question(s); "
            f"got {len(replies)} answer(s) (--option N or --text TEXT, in order)"
        )
    pairs = zip(request.questions, replies, strict=True)
    return {q.key: _reply(q, kind, value) for q, (kind, value) in pairs}


def _reply(question: Question, kind: str, value: str) -> str | list[str]:
    if kind == "text":
        if question.options and not any(o.allow_input for o in question.options):
            labels = ", ".join(f"{i}. {o.label}" for i, o in enumerate(question.options, 1))
            raise AnswerError(f"[{question.key}] takes one of its options: {labels}")
        if question.required and not value.strip():
            raise AnswerError(f"[{question.key}] needs an answer")
        return value
    picks = [p.strip() for p in value.split(",") if p.strip()]
    if not question.options:
        raise AnswerError(f"[{question.key}] has no options; answer with --text")
    if not picks or (len(picks) > 1 and not question.multi_select):
        raise AnswerError(f"[{question.key}] takes one option number")
    values = []
    for pick in picks:
        if not pick.isdigit() or not 1 <= int(pick) <= len(question.options):
            raise AnswerError(
                f"[{question.key}] has options 1..{len(question.options)}; got {pick!r}"
            )
        values.append(question.options[int(pick) - 1].value)
    return values if question.multi_select else values[0]
