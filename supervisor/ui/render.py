"""Rich `Text` for everything the UI shows from the database.

Database text never goes through markup: it is cleaned of terminal control
characters and wrapped in `Text` objects, so `[@click=app.quit]` or
`[bold red]` in a thread id or message shows literally.
"""

from __future__ import annotations

import json
import time
from typing import Any

from rich.highlighter import JSONHighlighter
from rich.text import Text

from supervisor.markers import Marker
from supervisor.plan import CLOSED_WHY, MatchedBy, PlannedCall, ThreadPlan, Verdict
from supervisor.report import FULL, call_text, describe_event, message_text, size_text, thread_hint
from supervisor.runner import RunnerEvent
from supervisor.states import State, ThreadSummary, ToolCallInfo
from supervisor.store import TranscriptEntry
from supervisor.text import clean, compact_json, counted, one_line, relative_time
from supervisor.usage import Group, Prices, Usage, cost_text, from_messages, tokens_text

#: Symbol + word, so a state reads without colour.
BADGES: dict[State, str] = {
    State.RUNNING: "▶ running",
    State.AWAITING_INPUT: "? awaiting_input",
    State.ANSWERED: "✎ answered",
    State.MID_TOOL: "◐ mid_tool",
    State.AFTER_TOOLS: "◑ after_tools",
    State.BETWEEN_TURNS: "○ between_turns",
    State.ABORTED: "■ aborted",
    State.ERROR: "✗ error",
    State.FINISHED: "✓ finished",
    State.STOPPED: "⊘ stopped",
    State.EMPTY: "· empty",
    State.CORRUPT: "‼ corrupt",
    State.HELD: "⏸ held",
    State.CHILD: "↳ child",
}

#: Which theme colour each state takes (names of Textual theme fields).
STATE_COLOUR: dict[State, str] = {
    State.RUNNING: "primary",
    State.AWAITING_INPUT: "accent",
    State.ANSWERED: "warning",
    State.MID_TOOL: "warning",
    State.AFTER_TOOLS: "warning",
    State.BETWEEN_TURNS: "warning",
    State.ABORTED: "accent",
    State.ERROR: "error",
    State.FINISHED: "success",
    State.STOPPED: "success",
    State.EMPTY: "foreground",
    State.CORRUPT: "error",
    State.HELD: "error",
    State.CHILD: "foreground",
}

Palette = dict[str, str]

#: Width of the "where it stopped" column: the list fits 55% of 160 columns.
HINT_CHARS = 38


def safe(text: Any, style: str = "") -> Text:
    """Untrusted text as a `Text`: control characters stripped, no markup."""
    return Text(clean(str(text)), style=style)


def badge(state: State, palette: Palette) -> Text:
    return Text(BADGES[state], style=f"bold {palette.get(STATE_COLOUR[state], '')}".strip())


def elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ThreadCell(Text):
    """The thread id cell, which knows its full thread id (so the table can sort by it)."""

    def __init__(self, text: str, thread_id: str) -> None:
        super().__init__(text)
        self.thread_id = thread_id


def thread_row(
    s: ThreadSummary,
    palette: Palette,
    now: float,
    marked: bool,
    running_since: float | None,
    tokens: str = "",
) -> tuple[Text, Text, Text, Text, Text, Text, Text]:
    """The cells of one thread-list row (`tokens`: its tokens, once read)."""
    state = State.RUNNING if running_since is not None else s.state
    activity = (
        f"running {elapsed(now - running_since)}"
        if running_since is not None
        else relative_time(s.last_activity, now)
    )
    hint = (
        thread_hint(s, HINT_CHARS, now)
        if running_since is None
        else one_line(s.last_text, HINT_CHARS)
    )
    return (
        Text("●" if marked else " ", style="bold"),
        badge(state, palette),
        ThreadCell(clean(one_line(s.thread_id, 40)), s.thread_id),
        Text(str(s.messages), justify="right"),
        Text(tokens, justify="right"),
        Text(activity),
        safe(hint, "dim" if state is State.FINISHED else ""),
    )


def live_warning(reason: str) -> Text:
    """The warning a resume dialog carries for a thread that may be live elsewhere."""
    return Text(
        f"\n\nThis thread {reason}. Resuming while another process runs it would run its "
        "tools twice.",
        style="bold",
    )


def counts_line(counts: dict[State, int], shown: int, total: int) -> Text:
    """`12 threads  ? 2  ✎ 1  ◐ 2 …`: by symbol (help has the legend), short enough that
    the header can put it first."""
    text = Text().append(counted(total, "thread"), style="bold")
    if shown != total:
        text.append(f" ({shown} shown)")
    for state, n in counts.items():
        if n:
            text.append(f"  {BADGES[state].split()[0]} {n}")
    return text


# -- transcript ---------------------------------------------------------------


#: Characters of one message drawn in the transcript; the rest is counted, not drawn
#: (a 50 MB message would freeze the app). The pager shows everything.
TEXT_CHARS = 8_000


def bounded(text: str, limit: int = TEXT_CHARS) -> Text:
    """At most `limit` characters of untrusted text, and how much more there is."""
    if len(text) <= limit:
        return safe(text.strip())
    out = safe(text[:limit])
    more = size_text(len(text.encode("utf-8", "replace")) - limit)
    return out.append(f" … {more} more (o: open the transcript in a pager)", style="italic dim")


#: JSON bigger than this is shown on one line, not pretty-printed.
PRETTY_CHARS = 4_000
_JSON = JSONHighlighter()


def pretty_json(value: Any, indent: str = "    ") -> Text:
    """Arguments or a result as indented, syntax-coloured JSON (one line when huge)."""
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return safe(one_line(str(value), 200))
    if len(text) > PRETTY_CHARS:
        return bounded(compact_json(value), PRETTY_CHARS)
    out = safe(indent + text.replace("\n", "\n" + indent))
    _JSON.highlight(out)
    return out


def clock_time(at: float | None) -> str:
    """Local wall-clock time of a message or event, for reading a run's pace."""
    if at is None:
        return ""
    try:
        return time.strftime("%H:%M:%S", time.localtime(at))
    except (OverflowError, ValueError, OSError):
        return ""


def _json_body(text: str) -> Any:
    """A tool result's text, parsed when it is a JSON object or array; else None."""
    stripped = text.strip()
    if len(stripped) > PRETTY_CHARS or not stripped.startswith(("{", "[")):
        return None
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError):
        return None


def usage_block(entries: list[TranscriptEntry], prices: Prices) -> Text | None:
    """Tokens and cost run by run, above a transcript; None without any usage stored."""
    runs = from_messages((e.run_id, e.message) for e in entries)
    if not any(g.usage.total for g in runs.values()):
        return None
    text = Text("Tokens by run (input, output, cache read / written) and cost", style="bold")
    total = Group(("total",))
    for run_id, group in runs.items():
        u = group.usage
        cost, unpriced = group.cost(prices)
        for model, mu in group.by_model.items():
            total.by_model.setdefault(model, Usage()).add(mu)
        name = one_line(run_id or "(no run)", 14)
        text.append(f"\n  run {name}  {_replies(u.messages)}  {tokens_text(u.total)}  ")
        text.append(cost_text(cost, unpriced), style="bold")
        text.append(
            f"\n      in {tokens_text(u.input)} · out {tokens_text(u.output)} · cache "
            f"r {tokens_text(u.cache_read)} / w {tokens_text(u.cache_write)}",
            style="dim",
        )
    if len(runs) > 1:
        cost, unpriced = total.cost(prices)
        text.append(
            f"\n  all runs  {_replies(total.usage.messages)}  {tokens_text(total.usage.total)}  "
        )
        text.append(cost_text(cost, unpriced), style="bold")
    return text


def _replies(n: int) -> str:
    return f"{n:,} {'reply' if n == 1 else 'replies'}"


def transcript_entry(e: TranscriptEntry, palette: Palette) -> Text:
    """One stored message, readable: role, run, text, tool calls, results. Never raises."""
    out = Text()
    m = e.message
    if e.big:
        out.append(f"#{e.row_id} ", style="dim")
        out.append(f"message of {size_text(e.size or 0)}", style="bold")
        out.append("\n").append(safe(e.raw[:TEXT_CHARS]))
        more = size_text((e.size or 0) - min(len(e.raw), TEXT_CHARS))
        return out.append(f" … {more} more (o: open the transcript in a pager)", "italic dim")
    if m is None:
        out.append(f"#{e.row_id} CORRUPT ROW ", style=f"bold {palette.get('error', '')}")
        out.append(clean(e.error or ""))
        out.append("\n    " + one_line(e.raw, 200))
        return out
    role = str(m.get("role"))
    run = f"  run {clean(str(e.run_id))[:8]}" if e.run_id else ""
    colour = {
        "user": "primary",
        "assistant": "secondary",
        "tool_result": "success",
    }.get(role, "")
    stamp = clock_time(e.created_at)
    out.append(f"#{e.row_id} " + (f"{stamp} " if stamp else ""), style="dim")
    out.append(role, style=f"bold {palette.get(colour, '')}")
    if role == "assistant":
        out.append(f" [{one_line(str(m.get('stop_reason')), 20)}]", style="dim")
    if role == "tool_result":
        flag = " ERROR" if m.get("is_error") else ""
        out.append(f"{flag} for {one_line(str(m.get('tool_call_id')), 40)}", style="dim")
    out.append(run, style="dim")
    content = m.get("content")
    body = message_text(content)
    parsed = _json_body(body) if role == "tool_result" else None
    if parsed is not None:
        out.append("\n").append(pretty_json(parsed, indent=""))
    elif body.strip():
        out.append("\n").append(bounded(body))
    for b in content if isinstance(content, list) else ():
        if isinstance(b, dict) and b.get("type") == "tool_call":
            out.append("\n  → ", style="dim")
            out.append(safe(one_line(str(b.get("name")), 60), "bold"))
            out.append(f"  ({one_line(str(b.get('id')), 30)})", style="dim")
            out.append("\n").append(pretty_json(b.get("arguments")))
    if m.get("error_message"):
        out.append("\n  error: ", style=palette.get("error", ""))
        out.append(one_line(str(m["error_message"]), 200))
    return out


# -- events -------------------------------------------------------------------


def event_text(event: RunnerEvent, palette: Palette) -> Text | None:
    """A runner event as one log line with its time, or None for events shown elsewhere."""
    line = _event_body(event, palette)
    if line is None:
        return None
    stamp = clock_time(event.at)
    return Text(f"{stamp} ", style="dim").append(line) if stamp else line


#: Styles of the tones `report.describe_event` gives that are not a theme colour.
_TONE_STYLES = {"muted": "dim", "strong": "bold", "plain": "", "note": "italic"}


def _event_body(event: RunnerEvent, palette: Palette) -> Text | None:
    """The event as `report.describe_event` says it, in the theme's colours, calls below."""
    view = describe_event(event)
    if view is None:
        return None
    colour = palette.get(view.tone, "")
    lead = _TONE_STYLES.get(view.tone, f"bold {colour}")
    bare = view.listed and view.calls and not view.text  # the calls follow on their own lines
    out = Text().append(view.lead.rstrip() if bare else view.lead, lead)
    if view.text:
        body = view.text.strip() if view.whole else one_line(view.text, view.limit)
        out.append(safe(body, "italic" if view.tone == "note" else ""))
    for name, arguments in view.calls:
        if view.listed:
            out.append("\n  → " if view.text or view.whole else "\n    ", style="dim")
        out.append(call_text(name, arguments, 80))
    error = palette.get("error", "red")
    if view.problem:
        out.append(f"\n  [{one_line(view.problem, 120)}]", style=error)
    if view.took is not None:
        out.append(f"  {view.took:.1f}s", style="dim")
    return out


# -- job markers --------------------------------------------------------------


def marker_cells(
    m: Marker, matched_by: MatchedBy | None, palette: Palette, now: float
) -> tuple[Text, ...]:
    colour = palette.get("success" if m.done else "warning", "")
    result = m.result
    if isinstance(result, dict) and "text" in result:
        result = result["text"]
    return (
        Text("✓ done" if m.done else ("! " + m.status), style=f"bold {colour}"),
        safe(one_line(m.key, 50)),
        Text(str(matched_by) if matched_by else "thread id", style="dim"),
        Text(relative_time(m.started_at, now) if m.started_at else "—"),
        Text(relative_time(m.done_at, now) if m.done_at else "—"),
        safe(one_line("" if result is None else str(result), 50)),
    )


#: What each verdict means for the user, and the colour it takes.
VERDICTS: dict[Verdict, tuple[str, str]] = {
    Verdict.REUSE: ("already done", "success"),
    Verdict.RERUN: ("runs again", "warning"),
    Verdict.SKIP: ("not run", "accent"),
    Verdict.ASK: ("asks a human first", "accent"),
    Verdict.UNKNOWN: ("unknown", "error"),
}


def planned_call(p: PlannedCall, palette: Palette) -> Text:
    """One call of a plan, arguments in full: a mail's recipient must not be cut off."""
    label, colour = VERDICTS[p.verdict]
    out = Text("• ")
    out.append(call_text(p.call.name, p.call.arguments, FULL))
    if p.runs_as is not None:
        out.append("\n    runs as ", style="dim").append(
            call_text(p.runs_as.name, p.runs_as.arguments, FULL)
        )
    out.append("\n    ")
    out.append(label, style=f"bold {palette.get(colour, '')}".strip())
    if p.reason and p.reason != label:
        out.append(" — ").append(safe(p.reason))
    if p.marker is not None:
        how = f" (matched by {p.matched_by})" if p.matched_by is not None else ""
        out.append(f"\n    marker {clean(p.marker.path.name)}{how}", style="dim")
    return out


def closed_call(call: ToolCallInfo) -> Text:
    out = Text("• ").append(call_text(call.name, call.arguments, FULL))
    return out.append(f"\n    {CLOSED_WHY}", style="dim")


def plan_text(plan: ThreadPlan, palette: Palette) -> Text:
    """The unanswered calls of a plan and the fate of each, for the preview and markers tab."""
    out = Text()
    for i, p in enumerate(plan.calls):
        out.append("\n" if i else "").append(planned_call(p, palette))
    for i, c in enumerate(plan.closed):
        out.append("\n" if i or plan.calls else "").append(closed_call(c))
    if plan.calls and not plan.policy_checked:
        out.append(
            "\n(markers only: the agent's own policy is asked when you press r)", style="dim"
        )
    return out
