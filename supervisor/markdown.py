"""A thread's transcript as Markdown, for a bug report (`show --format md`, a bundle).

Everything read from the database is untrusted, and here it must not become the
report's own structure: a user message holding `# Fixed` or `<script>` would be
a heading or raw HTML wherever the report is rendered, and one holding three
backticks would close its block and write the rest of the report itself. So
every stored text goes in a fenced block whose fence is longer than any run of
backticks inside it (in CommonMark a fence is closed only by a run at least as
long), and every stored name or id on the report's own lines in a code span
chosen the same way. Both are `clean`ed first, as for a terminal: a report is
read in terminals and editors as well as rendered.

Times are absolute (UTC), so the report stays true when read later.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from supervisor.hitl import PendingRequest
from supervisor.leases import holder_text
from supervisor.report import message_text, size_text
from supervisor.states import ThreadSummary
from supervisor.store import Transcript, TranscriptEntry
from supervisor.text import clean, compact_json, one_line, utc_time

_BACKTICKS = re.compile(r"`+")


def _longest_run(text: str) -> int:
    return max((len(run) for run in _BACKTICKS.findall(text)), default=0)


def fenced(text: str, info: str = "text") -> list[str]:
    """`text` as a fenced code block (its lines; the text `clean`ed): nothing inside can
    close it, so nothing inside is Markdown."""
    body = clean(text)
    fence = "`" * max(3, _longest_run(body) + 1)
    # Lines split at "\n" alone: the only line ending `clean` leaves (CR is a control).
    return [fence + info, *body.split("\n"), fence]


def code(text: str, limit: int = 200) -> str:
    """`text` folded onto one line as a code span: shown as it is, never read as Markdown
    or HTML (its delimiter is longer than any run of backticks in it)."""
    flat = one_line(text, limit)
    if not flat:
        return "(none)"
    ticks = "`" * (_longest_run(flat) + 1)
    pad = " " if flat[0] == "`" or flat[-1] == "`" else ""  # CommonMark strips one each side
    return f"{ticks}{pad}{flat}{pad}{ticks}"


def json_block(value: Any) -> list[str]:
    """A value as an indented JSON block (what JSON cannot write, as text)."""
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (RecursionError, TypeError, ValueError):
        text = compact_json(value)
    return fenced(text, "json")


def transcript_markdown(s: ThreadSummary, t: Transcript) -> Iterator[str]:
    """The report's lines: the thread, each message in order, the pending request, and a
    warning if a row is corrupt. Pass a whole transcript (`full=True`): it is a report."""
    yield f"# Thread {code(s.thread_id)}"
    yield ""
    yield f"- State: {s.state}"
    yield f"- Messages: {s.messages:,}"
    yield f"- Last activity: {utc_time(s.last_activity)}"
    if s.forked_from is not None:
        after = f" after run {code(s.forked_after)}" if s.forked_after else ""
        yield f"- Forked from {code(s.forked_from)}{after}"
    if s.parent is not None:
        yield f"- Driven by {code(s.parent)} (a child thread, resumed through it)"
    if s.holder:
        yield f"- Running: held by {code(holder_text(s.holder))} since {utc_time(_since(s))}"
    if s.corrupt_row is not None:
        yield ""
        reason = code(str(s.corrupt_reason), 300)
        yield f"**Warning:** row {s.corrupt_row} is corrupt: {reason}"
    yield ""
    yield "## Messages"
    for e in t.entries:
        yield ""
        yield from entry_markdown(e)
    if s.request is not None:
        yield ""
        yield from request_markdown(s.request, s.answer_stored)


def _since(s: ThreadSummary) -> float | None:
    since = (s.holder or {}).get("since")
    return since if isinstance(since, int | float) else None


def entry_markdown(e: TranscriptEntry) -> Iterator[str]:
    """One stored row: a heading naming it, then its text, calls, results and errors fenced.
    Whatever the row holds, this never raises."""
    head = f"### #{e.row_id}"
    when = f" · {utc_time(e.created_at)}" if e.created_at is not None else ""
    run = f" · run {code(e.run_id, 100)}" if e.run_id else ""
    m = e.message
    if e.big:
        more = size_text((e.size or 0) - len(e.raw))
        yield f"{head} · message of {size_text(e.size or 0)}{run}{when}"
        yield ""
        yield f"Its start ({more} more not read: `show --full` reads it whole):"
        yield ""
        yield from fenced(e.raw)
        return
    if m is None:
        yield f"{head} · corrupt row{run}{when}"
        yield ""
        yield f"Why: {code(str(e.error), 300)}. Stored as:"
        yield ""
        yield from fenced(e.raw)
        return
    role = m.get("role")
    content = m.get("content")
    blocks = content if isinstance(content, list) else []
    if role == "user":
        yield f"{head} · user{run}{when}"
        yield ""
        yield from fenced(message_text(content))
    elif role == "assistant":
        yield f"{head} · assistant (stop: {code(str(m.get('stop_reason')), 40)}){run}{when}"
        text = message_text(content)
        if text:
            yield ""
            yield from fenced(text)
        for b in blocks:
            if isinstance(b, dict) and b.get("type") == "tool_call":
                yield ""
                yield f"Tool call {code(str(b.get('name')), 100)}, id {code(str(b.get('id')))}:"
                yield ""
                yield from json_block(b.get("arguments"))
        if m.get("error_message"):
            yield ""
            yield "Error:"
            yield ""
            yield from fenced(str(m["error_message"]))
    elif role == "tool_result":
        name = code(str(m.get("tool_name")), 100)
        flag = " · **error**" if m.get("is_error") else ""
        call = code(str(m.get("tool_call_id")))
        yield f"{head} · tool result for {call} ({name}){flag}{run}{when}"
        yield ""
        yield from fenced(message_text(content))
    else:
        yield f"{head} · role {code(str(role), 40)}{run}{when}"
        yield ""
        yield from json_block(m)
        return
    other = _other_blocks(blocks)
    if other:
        yield ""
        yield f"Not shown: {other}."


def _other_blocks(blocks: list[Any]) -> str:
    """What a message holds besides text and tool calls (images, thinking), counted."""
    kinds: dict[str, int] = {}
    for b in blocks:
        kind = b.get("type") if isinstance(b, dict) else type(b).__name__
        if kind not in ("text", "tool_call"):
            kinds[str(kind)] = kinds.get(str(kind), 0) + 1
    return ", ".join(
        f"{n} {code(kind, 40)} block{'s' if n > 1 else ''}" for kind, n in kinds.items()
    )


def request_markdown(request: PendingRequest, answer_stored: bool) -> Iterator[str]:
    """The human-in-the-loop request the thread waits on, as `show` describes it, and as
    cubeloop stored it."""
    yield "## Pending request"
    yield ""
    state = "an answer is stored; a resume goes on with it" if answer_stored else "not answered yet"
    run = f", run {code(request.run_id, 100)}" if request.run_id else ""
    yield f"Question {code(request.question_id)} ({code(request.kind, 20)}{run}): {state}."
    yield ""
    yield from fenced("\n".join(request.lines()))
    yield ""
    yield "As stored:"
    yield ""
    yield from json_block(request.raw)
