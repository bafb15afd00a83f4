"""The detail pane for the selected thread: events, transcript, job markers."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, RichLog, Static, TabbedContent, TabPane

from supervisor.ui.widgets.event_log import EventLog

TABS = ("events", "transcript", "markers")


class DetailPane(Vertical):
    def compose(self) -> ComposeResult:
        yield Static("", id="detail-title")
        yield Static("", id="detail-request")
        with TabbedContent(initial="events", id="detail-tabs"):
            with TabPane("Events", id="events"):
                yield EventLog(id="event-log")
            with TabPane("Transcript", id="transcript"):
                yield RichLog(
                    id="transcript-log", wrap=True, markup=False, auto_scroll=False, min_width=1
                )
            with TabPane("Job markers", id="markers"):
                yield Static("", id="pending-calls")
                yield DataTable(id="marker-table", cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one("#marker-table", DataTable)
        for label in ("STATUS", "KEY", "MATCHED BY", "STARTED", "DONE", "RESULT"):
            table.add_column(label, key=label)
