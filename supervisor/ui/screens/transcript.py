"""A thread's transcript, full screen: the same rendering as the tab, with room to read."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, RichLog, Static

from supervisor.store import Transcript
from supervisor.text import one_line
from supervisor.ui.render import Palette, transcript_entry
from supervisor.ui.widgets.reflow_log import ReflowLog
from supervisor.ui.widgets.search_box import SearchBox


class TranscriptScreen(Screen[None]):
    """Given a loader (run in a thread worker), so the screen never touches the store."""

    BINDINGS = [
        Binding("escape,f,q", "close", "Close"),
        Binding("o", "pager", "Open in pager"),
        Binding("slash", "search", "Search"),
        Binding("n", "search_step(1)", "Next match", show=False),
        Binding("N", "search_step(-1)", "Previous match", show=False),
    ]

    def __init__(self, thread_id: str, load: Callable[[], Transcript], palette: Palette) -> None:
        super().__init__()
        self.thread_id = thread_id
        self.load = load
        self.palette = palette

    def compose(self) -> ComposeResult:
        yield Static(Text(f"Transcript of {one_line(self.thread_id, 80)}", "bold"), id="full-title")
        yield ReflowLog(
            id="full-transcript", wrap=True, markup=False, auto_scroll=False, min_width=1
        )
        yield SearchBox(lambda: self.query_one(ReflowLog), id="search")
        yield Footer()

    def on_mount(self) -> None:
        log = self.query_one(RichLog)
        log.write(Text("loading…", "dim"))
        log.focus()
        self._load()

    @work(thread=True, exit_on_error=False)
    def _load(self) -> None:
        try:
            transcript = self.load()
        except Exception as exc:  # rows we did not write must not take the screen down
            self.app.call_from_thread(self._show_error, f"{type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self._show, transcript)

    def _show(self, transcript: Transcript) -> None:
        log = self.query_one(RichLog)
        log.clear()
        for entry in transcript.entries:
            log.write(transcript_entry(entry, self.palette))
        if not transcript.entries:
            log.write(Text("No stored messages.", "dim"))

    def _show_error(self, error: str) -> None:
        log = self.query_one(RichLog)
        log.clear()
        log.write(Text(f"Could not load {one_line(self.thread_id, 40)}: {one_line(error, 300)}"))

    def action_close(self) -> None:
        search = self.query_one(SearchBox)
        if search.active:  # Escape leaves the search first, then the screen
            search.close()
            return
        self.dismiss()

    def action_search(self) -> None:
        self.query_one(SearchBox).open()

    def action_search_step(self, by: int) -> None:
        self.query_one(SearchBox).step(by)

    def action_pager(self) -> None:
        self.dismiss()
        self.app.run_action("open_pager")
