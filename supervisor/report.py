"""Thread summaries and transcripts as JSON objects and plain-text lines.

Shared by the CLI and the UI so both describe a thread the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from supervisor.jsontext import dumps
from supervisor.leases import holder_text
from supervisor.states import State, ThreadSummary
from supervisor.store import Transcript, TranscriptEntry
from supervisor.text import clean, compact_json, counted, one_line, relative_time

if TYPE_CHECKING:
    from supervisor.fork import ForkPlan
    from supervisor.markers import Marker
    from supervisor.plan import MatchedBy, ThreadPlan

#: Enough for any real tool call: plans show arguments in full.
FULL = 10_000


def thread_json(s: ThreadSummary) -> dict[str, Any]:
    """The `list --json` object: a stable contract for scripts."""
    return {
        "thread_id": s.thread_id,
        "state": str(s.state),
        "messages": s.messages,
        "last_activity": s.last_activity,
        "pending_tool_calls": [c.to_json() for c in s.pending_tool_calls],
        "corrupt_row": s.corrupt_row,
        "corrupt_reason": s.corrupt_reason,
        "stop_reason": s.last_stop_reason,
        "error": s.last_error,
        "run_open": s.run_open,
        "last_run_id": s.last_run_id,
        "pending_request": s.request.to_json() if s.request is not None else None,
        "answer_stored": s.answer_stored,
        "holder": s.holder,
        "parent_thread_id": s.parent,
        "forked_from": None
        if s.forked_from is None
        else {"thread_id": s.forked_from, "after_run": s.forked_after},
        "attempts": s.attempt.to_json() if s.attempt is not None else None,
    }


def call_text(name: str, arguments: Any, limit: int = 60) -> str:
    return one_line(f"{name}({compact_json(arguments)})", limit)


def thread_hint(
    s: ThreadSummary, limit: int = 60, now: float | None = None, state: State | None = None
) -> str:
    """One line saying where the thread stopped, for a list row (`state` if known already)."""
    state = s.state if state is None else state
    if state is State.CORRUPT:
        return one_line(f"row {s.corrupt_row}: {s.corrupt_reason}", limit)
    if state is State.HELD and s.attempt is not None:
        why = f": {s.attempt.last_error}" if s.attempt.last_error else ""
        return one_line(f"held after {s.attempt.attempts} attempt(s){why}", limit)
    if state is State.RUNNING and s.holder:
        since = relative_time(s.holder.get("since"), now)
        return one_line(f"held by {holder_text(s.holder)}, since {since}", limit)
    pending = s.pending_tool_calls if state is State.MID_TOOL else ()
    if pending:
        first = call_text(pending[0].name, pending[0].arguments, limit)
        more = f" +{len(pending) - 1} more" if len(pending) > 1 else ""
        return one_line(first + more, limit)
    if state in (State.ABORTED, State.ERROR) and s.last_error:
        return one_line(s.last_error, limit)
    if state is State.AWAITING_INPUT:
        return s.request.short(limit) if s.request is not None else "waiting for a human answer"
    if state is State.ANSWERED:
        return "answered; resume goes on with the stored answer"
    if state is State.BETWEEN_TURNS:
        return "user message not answered yet"
    if state is State.AFTER_TOOLS:
        return "tool results in; model not called yet"
    if state is State.CHILD:
        return one_line(f"driven by {s.parent}: resumed through it", limit)
    if state is State.STOPPED:
        return "the agent ended its run after the tool results"
    if s.forked_from is not None:
        return one_line(f"⑂ {s.forked_from}: {s.last_text}", limit)
    return one_line(s.last_text, limit)


def lineage(s: ThreadSummary) -> str | None:
    """ "forked from THREAD after run RUN", for a fork; None otherwise."""
    if s.forked_from is None:
        return None
    after = f" after run {s.forked_after}" if s.forked_after else ""
    return f"forked from {s.forked_from}{after}"


def plan_lines(plan: ThreadPlan) -> list[str]:
    """A resume plan as text: the thread, what happens, then each call in full."""
    head = f"{one_line(plan.thread_id, 60)}  {plan.state}"
    if plan.refused:
        return [f"{head}  refused: {one_line(plan.refused, 200)}"]
    lines = [f"{head}  → {plan.action}"]
    for p in plan.calls:
        where = ""
        if p.marker is not None:
            where = f"  [marker {clean(str(p.marker.path))}, matched by {p.matched_by}]"
        call = call_text(p.call.name, p.call.arguments, FULL)
        if p.runs_as is not None:
            call += f" (runs as {call_text(p.runs_as.name, p.runs_as.arguments, FULL)})"
        lines.append(f"    {p.verdict:<8} {call}  — {one_line(p.reason, 200)}{where}")
    from supervisor.plan import CLOSED_WHY

    for c in plan.closed:
        call = call_text(c.name, c.arguments, FULL)
        lines.append(f"    {'closed':<8} {call}  — {CLOSED_WHY}")
    return lines


#: Keys of an entry that are ours whatever the stored message holds (a message that says
#: `"row_id": 999` or `"corrupt": true` does not speak for the row).
ENTRY_KEYS = ("row_id", "created_at", "run_id", "corrupt", "raw", "big", "size")


def entry_json(e: TranscriptEntry) -> dict[str, Any]:
    head = {"row_id": e.row_id, "created_at": e.created_at, "run_id": e.run_id}
    if e.big:  # too big to read here (`--full` reads it): not corrupt, only not parsed
        return {**head, "big": True, "size": e.size, "raw": e.raw}
    if e.message is None:
        return {**head, "corrupt": True, "error": e.error, "raw": e.raw}
    return {**head, **{k: v for k, v in e.message.items() if k not in ENTRY_KEYS}}


def transcript_json(s: ThreadSummary, t: Transcript) -> dict[str, Any]:
    return {**thread_json(s), "transcript": [entry_json(e) for e in t.entries]}


def transcript_jsonl(s: ThreadSummary, t: Transcript) -> Iterator[str]:
    """`show --format jsonl`: `transcript_json` as JSON lines, each made as it is written
    (no document of the whole thread): a `thread` line (`thread_json`), a `message` line
    per entry (`entry_json`), then a `request` line if a human is asked something.

    `type` is ours: it names the line, whatever a stored message holds.
    """
    yield _json_line({"type": "thread", **thread_json(s)})
    for e in t.entries:
        line = {"type": "message", **entry_json(e)}
        line["type"] = "message"
        yield _json_line(line)
    if s.request is not None:
        request = {"type": "request", **s.request.to_json(), "answer_stored": s.answer_stored}
        yield _json_line(request)


def _json_line(value: dict[str, Any]) -> str:
    """One JSON line, written as `print_json` writes (ASCII: safe on a terminal)."""
    return dumps(value, default=str)


def marker_json(m: Marker, matched_by: MatchedBy | None) -> dict[str, Any]:
    """A job marker as `jobs --json` prints it: the marker and how it was matched to one of
    the thread's tool calls (None: it names the thread itself)."""
    return {**m.to_json(), "matched_by": matched_by and str(matched_by)}


def message_text(blocks: Any) -> str:
    """The text blocks of a message's content (or the content, when it is a plain string)."""
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        return ""
    return "".join(
        str(b.get("text", "")) for b in blocks if isinstance(b, dict) and b.get("type") == "text"
    )


def size_text(size: int) -> str:
    """'49.8 MB' style sizes for people."""
    value = float(size)
    for unit in ("bytes", "kB", "MB"):
        if value < 1000 or unit == "MB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _body(text: str, width: int | None) -> list[str]:
    """A message body: one cut line, or (width None) every line of it, indented."""
    if width is not None:
        return ["    " + one_line(text, width)]
    return ["    " + line for line in clean(text).splitlines() or [""]]


def entry_lines(e: TranscriptEntry, width: int | None = 100) -> list[str]:
    """A transcript row as readable lines: role, run, text, tool calls, results.

    `width` cuts each text to one line; None prints every message whole.
    Whatever the row holds (it comes from the database), this never raises.
    """
    run = f" run {one_line(e.run_id, 8)}" if e.run_id else ""
    head = f"#{e.row_id}"
    cut = 100 if width is None else width
    m = e.message
    if e.big:
        more = size_text((e.size or 0) - len(e.raw))
        lines = [f"{head} message of {size_text(e.size or 0)}: its start, then … {more} more"]
        return lines + _body(e.raw, width) + ["    (show --full prints it whole)"]
    if m is None:
        return [f"{head} CORRUPT row: {e.error}", "    raw: " + one_line(e.raw, cut)]
    role = m.get("role")
    content = m.get("content")
    blocks = content if isinstance(content, list) else []
    lines: list[str] = []
    if role == "user":
        lines.append(f"{head} user{run}")
        lines += _body(message_text(content), width)
    elif role == "assistant":
        stop = one_line(str(m.get("stop_reason")), 20)
        lines.append(f"{head} assistant [{stop}]{run}")
        text = message_text(content)
        if text:
            lines += _body(text, width)
        for b in blocks:
            if isinstance(b, dict) and b.get("type") == "tool_call":
                call = call_text(
                    str(b.get("name")), b.get("arguments"), FULL if width is None else cut
                )
                lines.append(f"    → call {one_line(str(b.get('id')), 40)}: {call}")
        if m.get("error_message"):
            lines.append("    error: " + one_line(str(m["error_message"]), cut))
    elif role == "tool_result":
        flag = " ERROR" if m.get("is_error") else ""
        call_id = one_line(str(m.get("tool_call_id")), 40)
        name = one_line(str(m.get("tool_name")), 40)
        lines.append(f"{head} tool_result{flag} for {call_id} ({name}){run}")
        lines += _body(message_text(content), width)
    return lines


@dataclass
class EventView:
    """What a runner event says, decided once: the CLI prints it as a line, the UI styles it.

    `tone` names how it is coloured (the UI maps tones to theme colours);
    `lead` is the styled opening; `text` the untrusted body; `calls` the
    tool calls listed under it; `problem` a stop reason's complaint; `took`
    a duration.
    """

    tone: str
    lead: str
    text: str = ""
    calls: list[tuple[str, Any]] = field(default_factory=list)
    problem: str = ""
    took: float | None = None
    #: At most this much of `text` on the CLI's one line.
    limit: int = 200
    #: The UI lists the calls under the line (else they follow the lead).
    listed: bool = True
    #: The UI shows `text` whole (a message), not cut to one line.
    whole: bool = False


def describe_event(event: Any) -> EventView | None:
    """The one switch over runner event types; None for events not worth a line."""
    d = event.data
    kind = event.type
    calls = [(c["name"], c["arguments"]) for c in d.get("calls", []) or d.get("tool_calls", [])]
    if kind == "queued":
        return EventView("muted", f"queued ({d.get('mode')} from {d.get('state')})")
    if kind == "run_start":
        return EventView("strong", f"▶ {d.get('mode')} from {d.get('state')}")
    if kind == "recovery":
        if d.get("strategy") == "rerun":  # the agent's pipeline decides: run, reuse, or block
            lead = "↻ unanswered call(s) through the agent's own checks again: "
        else:
            lead = "↻ marking unanswered call(s) interrupted: "
        return EventView("plain", lead, calls=calls)
    if kind == "skipped":
        return EventView(
            "accent", f"⊘ not run ({d.get('reason') or 'the agent said no'}): ", calls=calls
        )
    if kind == "repair":
        lead = "↻ earlier unanswered call(s) shown to the model as interrupted: "
        return EventView("plain", lead, calls=calls)
    if kind == "tool_start":
        return EventView("plain", "⚙ ", calls=[(d["name"], d.get("arguments"))], listed=False)
    if kind == "tool_end":
        tone, mark = ("error", "✗ ") if d.get("is_error") else ("success", "✓ ")
        text = f"{d['name']} → {d.get('result') or ''}"
        return EventView(tone, mark, text, took=d.get("seconds"))
    if kind == "message_end" and d.get("role") in ("assistant", "user"):
        role = d["role"]
        stop = d.get("stop_reason")
        problem = f"{stop}: {d.get('error') or ''}" if stop in ("aborted", "error") else ""
        tone = "secondary" if role == "assistant" else "primary"
        text = d.get("text") or ""
        return EventView(tone, f"{role}: ", text, calls, problem, limit=80, whole=True)
    if kind == "hitl_request":
        return EventView("accent", "? waiting for a human: ", d.get("summary") or "")
    if kind == "hitl_answer":
        return EventView("success", "✓ answered: ", compact_json(d.get("answer")))
    if kind == "error":
        return EventView("error", "error: ", d.get("message") or "", limit=1000)
    if kind == "aborting":
        return EventView("accent", f"aborting (cancel after {d.get('grace', 0):g}s)")
    if kind == "note":
        return EventView("note", "", d.get("text") or "")
    if kind == "elsewhere":  # a message another process wrote, seen by a refresh
        writer = d.get("holder") or "another process"
        lead = f"↻ {d.get('role') or 'message'} (written by {writer}): "
        return EventView("muted", lead, d.get("text") or "", calls, limit=80)
    if kind == "run_end":
        state, took = d.get("state") or "unknown", d.get("seconds", 0)
        return EventView("strong", f"■ {state} ({d.get('outcome')}, {took:.1f}s)")
    return None


def event_line(event: Any) -> str | None:
    """One plain-text line for a runner event (the headless commands' log)."""
    view = describe_event(event)
    if view is None:
        return None
    line = view.lead + one_line(view.text, view.limit)
    if view.calls:
        shown = ", ".join(call_text(name, arguments, 60) for name, arguments in view.calls)
        line += f" → {shown}" if view.text else shown
    if view.problem:
        line += f" [{one_line(view.problem, 80)}]"
    if view.took is not None:
        line += f" ({view.took:.1f}s)"
    return line.rstrip()


def fork_plan_lines(plan: ForkPlan) -> list[str]:
    """A fork plan for people (`fork` prints it; the app's fork dialog shows it)."""
    kept = ", ".join(one_line(r, 30) for r in plan.runs_kept[-3:])
    more = "…, " if len(plan.runs_kept) > 3 else ""
    lines = [
        f"fork {one_line(plan.source, 60)} after run {one_line(plan.after_run, 40)} "
        f"as {one_line(plan.new_thread, 60)}",
        f"  copies {counted(len(plan.runs_kept), 'run')} ({more}{kept}) and "
        f"{counted(plan.messages, 'message')}; leaves out "
        f"{counted(len(plan.runs_after), 'later run')}",
    ]
    if plan.markers_note:
        lines.append(f"  ! {plan.markers_note}")
    if not plan.calls:
        lines.append("  no tool calls after that run: nothing to repeat")
        return lines
    lines.append(
        f"  tool calls after that run ({len(plan.calls)}), and what a fork calling each "
        "again with the same arguments does:"
    )
    for c in plan.calls:
        arguments = one_line(compact_json(c.call.arguments), 60)
        mark = "!" if c.repeats else " "
        run = one_line(c.run_id or "-", 20)
        lines.append(f"  {mark} {one_line(c.call.name, 30)} {arguments}  (run {run})")
        lines.append(f"      happened: {c.happened} · {c.words()}")
    repeats = plan.repeats
    if repeats:
        names = ", ".join(dict.fromkeys(one_line(c.call.name, 30) for c in repeats))
        lines.append(
            f"  ! {counted(len(repeats), 'side effect')} a fork would repeat if it calls "
            f"{'it' if len(repeats) == 1 else 'them'} again: {names}"
        )
    return lines
