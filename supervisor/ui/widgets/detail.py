"""The detail pane for the selected thread: title, notice, events, transcript, job markers.

It owns what it shows: which thread, the events each thread has had in this
session (and the text still streaming), the loaded transcript and markers,
and the worker that loads them. What it cannot know it is given, as Toolong
gives its log view a watcher: a `loader` that reads one thread (in a worker
thread) and a `planner` that says what a resume would do with its calls.
Loads carry their thread id, so a slow load is never drawn under the next
selection.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.widgets import DataTable, RichLog, Static, TabbedContent, TabPane

from supervisor.leases import holder_text, is_mine
from supervisor.location import Location
from supervisor.markers import Marker
from supervisor.plan import MatchedBy, ThreadPlan
from supervisor.runner import RunnerEvent
from supervisor.store import StoreError, Transcript
from supervisor.text import one_line
from supervisor.ui.messages import DetailFailed, MarkersLoaded, TranscriptLoaded
from supervisor.ui.render import (
    Palette,
    event_text,
    marker_cells,
    plan_text,
    transcript_entry,
    usage_block,
)
from supervisor.ui.widgets.event_log import EventLog
from supervisor.ui.widgets.reflow_log import ReflowLog
from supervisor.ui.widgets.search_box import SearchBox
from supervisor.usage import Prices, load_or_shipped

TABS = ("events", "transcript", "markers")

#: Events kept per thread for its log.
EVENTS_PER_THREAD = 2000
#: Transcript messages drawn per turn of the event loop (see `_write_entries`).
ENTRIES_PER_TURN = 8

#: Reads one thread's transcript and the jobs directory; runs in a worker thread.
#: Raises `StoreError` for a database it cannot read, `LookupError` when there is
#: nothing to read any more (the app is closing).
Loader = Callable[[str], tuple[Transcript, list[Marker]]]
#: The thread's markers (with how each was matched) and the plan a resume follows.
Planner = Callable[
    [str, list[Marker], Transcript | None], tuple[list[tuple[Marker, MatchedBy | None]], ThreadPlan]
]


class DetailPane(Vertical):
    def __init__(
        self,
        loader: Loader,
        planner: Planner,
        palette: Callable[[], Palette],
        clock: Callable[[], float],
        jobs_dir: Path | str,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._loader = loader
        self._planner = planner
        self._palette = palette
        self._clock = clock
        self._jobs_dir = jobs_dir
        self.thread_id: str | None = None
        #: Every thread's events in this session, and text still streaming in.
        self.events: dict[str, deque[RunnerEvent]] = {}
        self.streaming: dict[str, str] = {}
        self.transcript: Transcript | None = None
        self.markers: list[Marker] = []
        #: The notice shown above the tabs, and its height when drawn.
        self._notice: Text | None = None
        self._notice_lines = 0

    def compose(self) -> ComposeResult:
        yield Static("", id="detail-title")
        yield Static("", id="detail-request")
        with TabbedContent(initial="events", id="detail-tabs"):
            with TabPane("Events", id="events"):
                yield EventLog(id="event-log")
            with TabPane("Transcript", id="transcript"):
                yield ReflowLog(
                    id="transcript-log", wrap=True, markup=False, auto_scroll=False, min_width=1
                )
            with TabPane("Job markers", id="markers"):
                yield Static("", id="pending-calls")
                yield DataTable(id="marker-table", cursor_type="row")
        yield SearchBox(self.active_log, id="detail-search")

    def active_log(self) -> ReflowLog:
        """The log of the tab shown (the Events tab's when the markers tab is)."""
        tab = self.query_one("#detail-tabs", TabbedContent).active
        log_id = "#transcript-log" if tab == "transcript" else "#event-lines"
        return self.query_one(log_id, ReflowLog)

    @property
    def search(self) -> SearchBox:
        return self.query_one("#detail-search", SearchBox)

    def on_mount(self) -> None:
        table = self.query_one("#marker-table", DataTable)
        for label in ("STATUS", "KEY", "MATCHED BY", "STARTED", "DONE", "RESULT"):
            table.add_column(label, key=label)

    def show_tab(self, tab: str) -> None:
        """`1` `2` `3`: Events, Transcript, Job markers."""
        self.query_one("#detail-tabs", TabbedContent).active = tab

    def active_tab(self) -> str:
        return self.query_one("#detail-tabs", TabbedContent).active or "events"

    def focus_active_tab(self) -> None:
        """Focus what the open tab shows (the list gives focus here with Enter or Tab)."""
        tab = self.query_one("#detail-tabs", TabbedContent).active or "events"
        target = {"events": "#event-lines", "transcript": "#transcript-log"}.get(tab)
        self.query_one(target or "#marker-table").focus()

    # -- the head: title and notice ---------------------------------------------

    def show_title(self, title: Text | str, notice: Text | None) -> None:
        """The title line, and what needs saying above the tabs (or nothing)."""
        self.query_one("#detail-title", Static).update(title, layout=False)
        self._show_notice(notice)

    def _show_notice(self, notice: Text | None) -> None:
        """A new layout only when the box changes height: held `j` passes a notice on
        every thread, and a layout redraws the whole screen (tens of ms a key)."""
        if notice == self._notice:
            return
        box = self.query_one("#detail-request", Static)
        box.set_class(notice is not None, "visible")
        self._notice = notice
        if notice is None:
            self._notice_lines = 0
            return
        width = box.content_size.width
        lines = len(notice.wrap(self.app.console, width)) if width > 0 else -1
        box.update(notice, layout=lines != self._notice_lines or lines < 0)
        self._notice_lines = lines

    # -- events ------------------------------------------------------------------

    def show(self, thread_id: str | None) -> None:
        """Show this thread: its events at once, its transcript and markers once loaded."""
        self.thread_id = thread_id
        self._replay_events()
        self.load()

    def record(self, event: RunnerEvent) -> None:
        """Keep an event in its thread's history; draw it if that thread is shown."""
        thread_id = event.thread_id
        shown = thread_id == self.thread_id
        log = self.query_one(EventLog)
        if event.type == "text":
            self.streaming[thread_id] = self.streaming.get(thread_id, "") + event.data["text"]
            if shown:
                log.set_stream(self.streaming[thread_id])
            return
        if event.type in ("message_end", "run_end", "error"):
            self.streaming.pop(thread_id, None)
            if shown:
                log.set_stream("")
        buffer = self.events.setdefault(thread_id, deque(maxlen=EVENTS_PER_THREAD))
        buffer.append(event)
        if shown:
            line = event_text(event, self._palette())
            if line is not None:
                if len(buffer) == 1:
                    log.clear()
                log.write(line)

    def _replay_events(self) -> None:
        log = self.query_one(EventLog)
        log.clear()
        if self.thread_id is None:
            return
        palette = self._palette()
        for event in self.events.get(self.thread_id, ()):
            line = event_text(event, palette)
            if line is not None:
                log.write(line)
        log.set_stream(self.streaming.get(self.thread_id, ""))
        if not self.events.get(self.thread_id):
            summary = self.app.summaries.get(self.thread_id)
            if summary is not None and summary.holder and not is_mine(summary.holder):
                text = (
                    f"Running in another process ({holder_text(summary.holder)}): its messages "
                    "show here as they land."
                )
            else:
                text = "No events yet: this thread has not run in this session."
            log.write(Text(text, "dim"))

    # -- transcript and markers ---------------------------------------------------

    @functools.cached_property
    def prices(self) -> Prices:
        """The price table for the tokens above a transcript, read once (a broken user
        file is said once, and the shipped prices used)."""
        prices, problem = load_or_shipped()
        if problem is not None:
            self.app.notify(
                f"{problem}; using the shipped prices", severity="warning", markup=False
            )
        return prices

    def load(self) -> None:
        if self.thread_id is not None:
            self._load(self.thread_id)

    @work(thread=True, exclusive=True, group="detail", exit_on_error=False)
    def _load(self, thread_id: str) -> None:
        try:
            transcript, markers = self._loader(thread_id)
        except LookupError:
            return
        except StoreError as exc:
            self.post_message(DetailFailed(thread_id, str(exc)))
            return
        except Exception as exc:  # rows we did not write must never take the app down
            self.post_message(DetailFailed(thread_id, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(TranscriptLoaded(transcript))
        self.post_message(MarkersLoaded(thread_id, markers))

    @on(DetailFailed)
    def _failed(self, message: DetailFailed) -> None:
        message.stop()
        if message.thread_id != self.thread_id:
            return
        self.transcript = None
        log = self.query_one("#transcript-log", RichLog)
        log.clear()
        text = Text(f"Could not load {one_line(message.thread_id, 40)}: ", style="bold")
        log.write(text.append(one_line(message.error, 300), style=""))
        self.markers = []
        self.show_markers()

    @on(TranscriptLoaded)
    def _transcript_loaded(self, message: TranscriptLoaded) -> None:
        message.stop()
        transcript: Transcript = message.transcript
        if transcript.thread_id != self.thread_id:
            return  # a slow load for a thread no longer shown
        log = self.query_one("#transcript-log", RichLog)
        log.clear()
        if not transcript.entries:
            log.write(Text("No stored messages.", "dim"))
        self.transcript = transcript
        self._write_entries(transcript, 0)

    def _write_entries(self, transcript: Transcript, start: int) -> None:
        """Draw a transcript a few messages per turn of the event loop.

        Wrapping text into lines happens on the main thread; in small chunks,
        a key pressed meanwhile (j held down) is answered between them.
        """
        if self.transcript is not transcript:
            return  # another thread was selected, or the transcript reloaded
        try:
            log = self.query_one("#transcript-log", RichLog)
        except NoMatches:  # the app is closing
            return
        palette = self._palette()
        for entry in transcript.entries[start : start + ENTRIES_PER_TURN]:
            log.write(transcript_entry(entry, palette))
        if start + ENTRIES_PER_TURN < len(transcript.entries):
            self.call_later(self._write_entries, transcript, start + ENTRIES_PER_TURN)
        elif (tokens := usage_block(transcript.entries, self.prices)) is not None:
            log.write(tokens)  # last: the end of a transcript is what is read first

    @on(MarkersLoaded)
    def _markers_loaded(self, message: MarkersLoaded) -> None:
        message.stop()
        if message.thread_id != self.thread_id:
            return
        self.markers = message.markers
        self.show_markers()

    def show_markers(self) -> None:
        """The thread's job markers, and what a resume would do with its open calls."""
        table = self.query_one("#marker-table", DataTable)
        pending = self.query_one("#pending-calls", Static)
        table.clear()
        if self.thread_id is None:
            pending.update("")
            return
        transcript = self.transcript
        if transcript is not None and transcript.thread_id != self.thread_id:
            transcript = None
        try:
            mine, plan = self._planner(self.thread_id, self.markers, transcript)
        except LookupError:  # the thread is not listed (yet)
            pending.update("")
            return
        palette, now = self._palette(), self._clock()
        for marker, matched_by in mine:
            table.add_row(*marker_cells(marker, matched_by, palette, now))
        text = Text()
        text.append(f"{len(mine)} marker(s) in ", style="dim")
        text.append(Location.parse(self._jobs_dir).shown, style="dim")
        if plan.calls or plan.closed:
            text.append("\nUnanswered tool calls, and what a resume does with each:\n", "bold")
            text.append(plan_text(plan, palette))
        pending.update(text)
