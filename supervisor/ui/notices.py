"""What the app says about its state in words: the header line, the detail's notice.

The header leads with what changes what the list shows (still reading, a
watcher, a filter, no match), then the database and its counts per state.
The detail says one thing at most about a thread not running here, the most
pressing first: another supervisor holds it; the watcher tried it (or holds
it); a human's question waits; or it may still be live in a process that is
no supervisor.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text

from supervisor.leases import holder_text, is_mine
from supervisor.plan import may_be_live
from supervisor.states import ORDERS, RESUMABLE, State, ThreadSummary
from supervisor.text import clean, counted, one_line, relative_time
from supervisor.ui.render import Palette, counts_line, safe


def header_line(
    database: str,
    table: Any,
    palette: Palette,
    *,
    reading: bool,
    auto_resume: bool,
    watchers: list[str],
    search: str | None = None,
    planning: int = 0,
) -> Text:
    """The header: the counts first, then what narrows or drives the list, the database's
    name last (a narrow terminal cuts the end: never a count)."""
    what = []
    if table.attention_only:
        what.append("needs attention")
    if table.filter_text:
        what.append(f"filter {one_line(table.filter_text, 30)!r}")
    if search:  # `~words`: the messages' text
        shown = one_line(search, 30)
        what.append(
            f"searching messages for {shown!r}…"
            if table.found is None
            else f"messages with {shown!r}"
        )
    if table.order != ORDERS[0]:
        what.append(f"by {table.order}")
    if table.reversed:
        what.append("reversed")
    counts = {s: table.counts.get(s, 0) for s in State}
    lead = counts_line(counts, len(table), len(table.summaries))
    lead.append("  ")
    if reading:
        lead.append(
            "reading the whole database: the newest threads so far, counts partial  ",
            style=f"bold {palette.get('accent', '')}",
        )
    if planning:
        lead.append(
            f"planning {counted(planning, 'thread')} for the preview…  ",
            style=f"bold {palette.get('accent', '')}",
        )
    if auto_resume:
        lead.append("auto-resume on  ", style=f"bold {palette.get('primary', '')}")
    if watchers:
        lead.append(
            f"watched by {', '.join(watchers[:2])}  ", style=f"bold {palette.get('primary', '')}"
        )
    if what:
        lead.append("[" + ", ".join(what) + "]  ", style="bold italic")
    if table.summaries and not len(table):
        lead.append("no thread matches  ", style=f"bold {palette.get('warning', '')}")
    return lead.append("│  ").append(clean(database), style="bold")


def thread_notice(
    s: ThreadSummary, now: float, live_window: float, gone: dict[str, Any] | None = None
) -> Text | None:
    """What needs saying above the tabs. `gone`: the lease holder this app last saw on
    the thread, now gone (its process ended or died)."""
    if s.holder and not is_mine(s.holder):
        since = relative_time(s.holder.get("since"), now)
        text = Text("Running in another supervisor — a asks it to abort:\n", style="bold")
        return text.append(safe(f"{holder_text(s.holder)}, lease taken {since}"))
    if s.attempt is not None:
        return attempt_notice(s)
    if s.request is not None:
        if s.answer_stored:
            head = "Answered before the process stopped; r goes on with that answer:\n"
        else:
            head = "Waiting for a human — r or Enter answers:\n"
        return Text(head, style="bold").append(safe("\n".join(s.request.lines())))
    if s.state in RESUMABLE and may_be_live(s, now, live_window):
        ago = relative_time(s.last_activity, now)
        run = one_line(s.last_run_id or "?", 40)
        if gone is not None:
            head = f"Its supervisor ({holder_text(gone)}) let go or died mid-run:\n"
            why = f"its run {run} is open and was last written {ago}; r asks before resuming it."
        else:
            head = "May still be running elsewhere: no supervisor holds it.\n"
            why = (
                f"Its run {run} is open and was last written {ago}, by a process that is not "
                "a supervisor or one that died; r asks before resuming it."
            )
        return Text(head, style="bold").append(safe(why))
    return None


def attempt_notice(s: ThreadSummary) -> Text:
    """What the watcher made of this thread: attempts, the last failure, what comes next."""
    a = s.attempt
    if a.held:
        head = (
            f"Held by the watcher after {a.attempts} failed attempt(s) — r resumes it by hand, "
            "x (or 'agent-supervisor release') lets the watcher try again:\n"
        )
    elif a.next_at is not None:
        when = time.strftime("%H:%M:%S", time.localtime(a.next_at))
        head = f"The watcher tried {a.attempts} time(s); it tries again at {when}:\n"
    else:
        head = f"The watcher tried {a.attempts} time(s):\n"
    return Text(head, style="bold").append(safe(f"last failure: {a.last_error or '?'}"))
