"""The main screen: the list, the detail, the filter and the footer, and every key on them.

Keys are bound here, not on the app: a screen pushed over this one (the full
transcript, a dialog, help) answers only its own keys. Each key goes to what
owns what it changes: the app's `actions` (resume, abort, prompt, answer),
`auto` (the in-app watcher), the list, the detail pane.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Static

from supervisor.store import StoreError
from supervisor.text import clean, one_line
from supervisor.ui.keys import bindings
from supervisor.ui.pager import open_in_pager
from supervisor.ui.render import safe
from supervisor.ui.screens.confirm import ConfirmScreen
from supervisor.ui.screens.help import HelpScreen
from supervisor.ui.screens.transcript import TranscriptScreen
from supervisor.ui.widgets.filter_box import FilterBox

if TYPE_CHECKING:
    from supervisor.ui.app import SupervisorApp


class MainScreen(Screen[None]):
    """The list and the detail side by side (stacked when narrow), and their keys."""

    app: SupervisorApp  # type: ignore[assignment]  (the app it runs in)

    BINDINGS = bindings()  # supervisor/ui/keys.py: bindings, help and palette in one table

    #: Why the database wants the index `I` adds (None: it has it, or is small).
    _index_hint: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="summary")
        yield Static(self._context_line(), id="context")
        yield Static("", id="index-hint")
        with Horizontal(id="main"):
            yield self.app.table
            yield self.app.detail
        yield FilterBox(id="filter")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(FilterBox).cursor_blink = self.app.cursor_blink
        self.app.main_screen_mounted()

    def _context_line(self) -> Text:
        """Which agent and which jobs directory this app runs with."""
        config = self.app.runner.config
        text = Text("agent ", style="dim").append(safe(config.agent_ref))
        return text.append("  ·  jobs ", style="dim").append(safe(self.app.runner.jobs.shown))

    def show_index_hint(self, hint: str | None) -> None:
        """A line under the header while the database lacks the index (`I` adds it)."""
        line = self.query_one("#index-hint", Static)
        self._index_hint = hint
        if hint is not None:
            line.update(
                Text("⚠ ", style="bold")
                .append(one_line(hint, 300))
                .append("  (I adds it)", style="bold")
            )
        line.display = hint is not None

    def action_add_index(self) -> None:
        """Add the index the line names, after asking: it writes to the database."""
        hint = self._index_hint
        if hint is None:
            self.app.notify("nothing to add: the database is small or has the index", markup=False)
            return
        body = safe(one_line(hint, 300))
        body.append(
            "\n\nThis writes an index into the database (a few percent of its size). "
            "Agents may keep running; a SQLite file is locked for writing while it is built."
        )
        self.app.push_screen(ConfirmScreen("Add the index", body, "Add index"), self._add_index)

    def _add_index(self, agreed: bool | None) -> None:
        if agreed:
            self.app.notify("adding the index…", markup=False)
            self._adding_index()

    @work(thread=True, group="index", exclusive=True, exit_on_error=False)
    def _adding_index(self) -> None:
        try:
            added = self.app.reader.add_indexes()
        except StoreError as exc:
            self.app.call_from_thread(
                self.app.notify, one_line(str(exc), 300), severity="error", markup=False
            )
            return
        self.app.call_from_thread(self.show_index_hint, None)
        self.app.call_from_thread(
            self.app.notify, f"added index {', '.join(added) or '(none missing)'}", markup=False
        )

    def action_copy_id(self) -> None:
        """Put the selected thread id on the clipboard (OSC 52: works over ssh too)."""
        if self.app.selected is None:
            return
        shown_id = clean(self.app.selected)  # what the screen shows: invisible characters escaped
        self.app.copy_to_clipboard(shown_id)
        # Whether the terminal took it (OSC 52) cannot be known: say how to get it if not.
        self.app.notify(
            f"sent {one_line(shown_id, 60)} to the clipboard (OSC 52). Not there? Your "
            "terminal ignores OSC 52: shift-drag over the id in the detail's title instead",
            markup=False,
        )

    def action_quit_app(self) -> None:
        self.app.quit_app()

    def action_resume(self) -> None:
        self.app.actions.resume_chosen()

    def action_resume_all(self) -> None:
        self.app.actions.resume_all()

    def action_abort(self) -> None:
        self.app.actions.abort_chosen()

    def action_prune(self) -> None:
        self.app.actions.prune_old()

    def action_fork(self) -> None:
        self.app.actions.fork_selected()

    def action_new_thread(self) -> None:
        self.app.actions.new_thread()

    def action_prompt(self) -> None:
        self.app.actions.prompt_selected()

    def action_auto_resume(self) -> None:
        self.app.auto.toggle()

    def action_release(self) -> None:
        self.app.auto.release_chosen()

    def action_mark(self) -> None:
        self.app.table.mark_current()

    def action_filter(self) -> None:
        """`/`: the list's filter; with the keys in the detail pane, a search of its tab."""
        detail = self.app.detail
        if detail.has_focus_within and detail.active_tab() != "markers":
            detail.search.open()
            return
        self.query_one(FilterBox).open()

    def action_search_step(self, by: int) -> None:
        """`n` / `N`: the detail's next or previous match, while it searches."""
        if self.app.detail.search.active:
            self.app.detail.search.step(by)

    def action_clear_filter(self) -> None:
        if self.app.detail.search.active:
            self.app.detail.search.close()
            return
        if self.query_one(FilterBox).close() or self.app.table.filter_text:
            self.app.set_view(filter_text="")
            self.app.table.focus()

    def action_sort(self, order: str | None = None) -> None:
        self.app.table.next_order(order)
        self.app.update_header()

    def action_reverse_sort(self) -> None:
        self.app.table.reverse_order()
        self.app.update_header()

    def action_attention(self) -> None:
        self.app.set_view(attention_only=not self.app.table.attention_only)

    def action_tab(self, tab: str) -> None:
        self.app.detail.show_tab(tab)

    def action_toggle_focus(self) -> None:
        if self.app.table.has_focus:
            self.app.detail.focus_active_tab()
        else:
            self.app.table.focus()

    def action_full_transcript(self) -> None:
        thread_id = self.app.selected
        if thread_id is not None:
            read = functools.partial(self.app.reader.read_transcript, thread_id)
            self.app.push_screen(TranscriptScreen(thread_id, read, self.app.palette))

    @work(group="pager", exclusive=True, exit_on_error=False)
    async def action_open_pager(self) -> None:
        """The whole transcript, however big, in `$PAGER` (the app suspends meanwhile)."""
        if self.app.selected is not None:
            await open_in_pager(self.app, self.app.selected)

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())
