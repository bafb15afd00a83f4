"""The supervisor app: a thin Textual layer over the store and the runner.

Threading rule (as Harlequin's): database work happens in thread workers
that never touch widgets; they post messages, and `@on` handlers own every
state change. Agents run in the runner's asyncio tasks on the app's loop;
their events arrive as `AgentEvent` messages, in order.

Everything that varies between runs comes in through `make_app`: the clock,
the paths, whether to watch files. Tests pass a fixed clock and no watching.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import shlex
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SuspendNotSupported, SystemCommand
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Input, Static, TabbedContent

from supervisor.jobs import Marker, read_markers
from supervisor.leases import holder_text, is_mine, leases_dir
from supervisor.location import shown
from supervisor.plan import MarkerIndex, MatchedBy, ThreadPlan, may_be_live, plan_thread
from supervisor.report import entry_lines
from supervisor.runner import Runner, RunnerConfig, RunnerEvent
from supervisor.states import (
    ORDERS,
    RESUMABLE,
    State,
    ThreadSummary,
)
from supervisor.store import Store, StoreError, Transcript
from supervisor.text import one_line, relative_time
from supervisor.ui.actions import ThreadActions
from supervisor.ui.auto_resume import AutoResume
from supervisor.ui.keys import KEYS, bindings
from supervisor.ui.messages import (
    AgentEvent,
    RefreshFailed,
    StoreNotices,
    ThreadsRefreshed,
)
from supervisor.ui.render import (
    Palette,
    counts_line,
    safe,
)
from supervisor.ui.screens.confirm import ConfirmScreen
from supervisor.ui.screens.help import HelpScreen
from supervisor.ui.screens.transcript import TranscriptScreen
from supervisor.ui.themes import DEFAULT_THEME, all_themes, save_theme, saved_theme
from supervisor.ui.widgets.detail import DetailPane
from supervisor.ui.widgets.thread_table import ThreadTable

#: Below this width the list and the detail stack vertically.
NARROW = 110
#: Seconds between looks at the leases (runs held by other supervisors).
LEASE_POLL = 0.5
#: Seconds between looks at a Postgres database (a refresh reads only what changed).
SERVER_POLL = 1.0
#: Seconds after the last keystroke before a filter is applied.
FILTER_DELAY = 0.15
#: At most one transcript reload per this many seconds while a thread runs.
RELOAD_DELAY = 0.3
#: Seconds the cursor rests on a row before its detail is loaded.
DETAIL_DELAY = 0.08
#: Cursor moves closer together than this are a held key; the detail then waits longer.
HELD_KEY = 0.15
HELD_DETAIL_DELAY = 0.3


def _while_mounted(handler: Callable[..., None]) -> Callable[..., None]:
    """Workers and timers may fire after shutdown removed the widgets: drop those calls."""

    @functools.wraps(handler)
    def guarded(self: SupervisorApp, *args: object) -> None:
        try:
            handler(self, *args)
        except NoMatches:
            if not (self._quitting or self._closing or self._closed or self._store_closed):
                raise

    return guarded


class StoreClosed(StoreError):
    """The app is shutting down: a read that comes too late is simply not done."""


class SupervisorApp(ThreadActions, AutoResume, App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "agent-supervisor"
    AUTO_FOCUS = "#threads"

    # Textual sets the class on the screen; app.tcss stacks list and detail when narrow.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW, "-wide")]
    BINDINGS = bindings()  # supervisor/ui/keys.py: bindings, help and palette in one table

    def __init__(
        self,
        store: Store,
        runner_config: RunnerConfig,
        *,
        clock: Callable[[], float] = time.time,
        watch: bool = True,
        theme: str | None = None,
        remember_theme: bool = False,
        cursor_blink: bool = True,
    ) -> None:
        super().__init__()
        self.store = store
        #: What the header shows: a path, or a URL without its password.
        self.database = store.location
        #: The file to watch; None for a server, which is polled instead.
        self.database_path: Path | None = getattr(store, "path", None)
        self.jobs_dir = runner_config.jobs_dir
        self.clock = clock
        self.watch_files = watch
        self.cursor_blink = cursor_blink
        runner_config.clock = clock
        self.runner = Runner(runner_config)
        self.selected: str | None = None
        self._store_lock = threading.Lock()
        self._store_closed = False
        self._quitting = False
        self._stop_watching = asyncio.Event()
        self._detail_timer: Timer | None = None
        self._filter_timer: Timer | None = None
        self._reload_timer: Timer | None = None
        self._last_move = 0.0
        self._leases_seen: dict[str, dict[str, Any]] | None = None
        #: Live `agent-supervisor watch` processes on this database (the header says so).
        self._watchers_seen: list[dict[str, Any]] = []
        self._refresh_running = False
        self._refresh_again = False
        # An explicit theme wins; else the one picked last time (when remembering).
        self._initial_theme = theme or (remember_theme and saved_theme()) or DEFAULT_THEME
        self._remember_theme = remember_theme
        #: The list shows a preview while the first whole pass runs.
        self._reading = False
        self._table = ThreadTable(lambda: self.clock(), {}, id="threads")
        self._detail = DetailPane(
            loader=self._load_thread,
            planner=self._markers_and_plan,
            palette=lambda: self.palette,
            clock=lambda: self.clock(),
            jobs_dir=self.jobs_dir,
            id="detail",
        )

    # -- layout -----------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static("", id="summary")
        yield Static(self._context_line(), id="context")
        with Horizontal(id="main"):
            yield self._table
            yield self._detail
        yield Input(placeholder="filter by thread id or state…", id="filter")
        yield Footer()

    def _context_line(self) -> Text:
        """Which agent and which jobs directory this app runs with."""
        config = self.runner.config
        text = Text("agent ", style="dim").append(safe(config.agent_ref))
        return text.append("  ·  jobs ", style="dim").append(safe(shown(config.jobs_dir)))

    def action_copy_id(self) -> None:
        """Put the selected thread id on the clipboard (OSC 52: works over ssh too)."""
        if self.selected is None:
            return
        self.copy_to_clipboard(self.selected)
        self.notify(f"copied {one_line(self.selected, 40)}", markup=False)

    def on_mount(self) -> None:
        themes, problems = all_themes()
        for theme in themes:
            self.register_theme(theme)
        for problem in problems:
            self.notify(one_line(problem, 200), title="themes", severity="warning", markup=False)
        if self._initial_theme not in self.available_themes:  # a user theme since removed
            self._initial_theme = DEFAULT_THEME
        self.theme = self._initial_theme
        self.table.set_palette(self.palette)  # the theme is set: badges take its colours
        self.query_one("#filter", Input).cursor_blink = self.cursor_blink
        self.runner.subscribe(lambda event: self.post_message(AgentEvent(event)))
        self.table.loading = True
        self.request_refresh()
        self.set_interval(1.0, self._tick_running)
        self.set_interval(LEASE_POLL, self._poll_leases)
        self.set_interval(15.0, self._tick_ages)
        if self.watch_files and self.database_path is not None:
            self._watch()
        elif self.watch_files:  # a server: no file to watch, so look every second
            self.set_interval(SERVER_POLL, self.request_refresh)

    def on_resize(self, _event) -> None:
        if self.selected is not None:
            self._reload_detail_soon()  # the transcript wraps to the pane's new width

    @property
    def palette(self) -> Palette:
        theme = self.current_theme
        return {
            name: str(getattr(theme, name) or theme.foreground or "")
            for name in (
                "primary",
                "secondary",
                "accent",
                "warning",
                "error",
                "success",
            )
        } | {"foreground": ""}

    def watch_theme(self, theme: str) -> None:
        if self.is_mounted:
            if self._remember_theme:
                save_theme(theme)
            self.table.set_palette(self.palette)

    # -- reading the database ---------------------------------------------

    def request_refresh(self) -> None:
        """Refresh now, or right after the refresh under way."""
        if self._refresh_running:
            self._refresh_again = True
            return
        self._refresh_running = True
        self._refresh_worker(full=not self.summaries)

    @work(thread=True, group="refresh", exit_on_error=False)
    def _refresh_worker(self, full: bool) -> None:
        try:
            if full:
                self._post_preview()
            with self._store_lock:
                if self._store_closed:
                    return
                changed = self.store.refresh()
                notices = self.store.take_notices()
                found = (self.store.get(t) for t in changed)
                copies = {s.thread_id: s.copy() for s in found if s is not None}
        except StoreError as exc:
            self.post_message(RefreshFailed(str(exc)))
            return
        if notices:
            self.post_message(StoreNotices(notices))
        self.post_message(ThreadsRefreshed(copies, full))

    @work(thread=True, group="check", exit_on_error=False)
    def _check_rows_worker(self) -> None:
        """Validate every row the first listing took on trust, in the background.

        The scan runs on its own connection without the app's lock (a
        refresh can go on meanwhile); threads found corrupt are shown so.
        """
        check = getattr(self.store, "check_rows", None)
        if check is None or self._store_closed:
            return
        try:
            bad = check()
        except StoreError as exc:
            self.post_message(RefreshFailed(str(exc)))
            return
        if not bad:
            return
        with self._store_lock:
            found = (self.store.get(t) for t in bad)
            copies = {s.thread_id: s.copy() for s in found if s is not None}
        self.post_message(ThreadsRefreshed(copies, full=False))

    def _post_preview(self) -> None:
        """On a big database, the threads of its newest rows first, while the whole pass runs."""
        preview = getattr(self.store, "preview", None)
        if preview is None:
            return
        with self._store_lock:
            early = None if self._store_closed else preview()
        if early:
            summaries = {s.thread_id: s for s in early}
            self.post_message(ThreadsRefreshed(summaries, full=True, provisional=True))

    @on(StoreNotices)
    def _store_notices(self, message: StoreNotices) -> None:
        for notice in message.notices:
            self.notify(one_line(notice, 300), title="database", markup=False, timeout=10)

    @on(RefreshFailed)
    @_while_mounted
    def _refresh_failed(self, message: RefreshFailed) -> None:
        self._refresh_running = False
        self.notify(
            one_line(message.error, 200), title="refresh failed", severity="error", markup=False
        )

    @on(ThreadsRefreshed)
    @_while_mounted
    def _threads_refreshed(self, message: ThreadsRefreshed) -> None:
        table = self.table
        if table.loading:
            table.loading = False
            if self.focused is None or isinstance(self.focused, Input):
                table.focus()
        self._reading = message.provisional
        if message.full:
            changed = message.summaries
            table.replace_all(changed)
        else:
            # Unchanged summaries stay as they are: their cached rows stay valid.
            changed = {t: s for t, s in message.summaries.items() if table.summaries.get(t) != s}
            table.update(changed)
        self._update_summary_line()  # the counts change in the same frame as the rows
        if message.provisional:
            return  # the whole pass is still under way
        if message.full:
            # The listing's objects live as long as the app: keep the collector's
            # full passes off them, or each walks 100,000 summaries mid-keypress.
            gc.freeze()
            if getattr(self.store, "checks_in_background", False):
                self._check_rows_worker()
        if self.selected in changed:
            self._show_detail_title()
            self._reload_detail_soon()
        elif self.selected is None:
            self._select(table.current_thread)
        self._refresh_running = False
        if self._refresh_again:
            self._refresh_again = False
            self.request_refresh()

    # -- the list ---------------------------------------------------------
    # The table owns the list's state; these read it for the actions.

    @property
    def table(self) -> ThreadTable:
        """The list, held directly: timers ask for it during shutdown, when queries fail."""
        return self._table

    @property
    def summaries(self) -> dict[str, ThreadSummary]:
        return self.table.summaries

    @property
    def shown(self) -> list[str]:
        return self.table.shown

    @property
    def marked(self) -> set[str]:
        return self.table.marked

    @property
    def running_since(self) -> dict[str, float]:
        return self.table.running

    @property
    def order(self) -> str:
        return self.table.order

    @property
    def filter_text(self) -> str:
        return self.table.filter_text

    def state_of(self, thread_id: str) -> State:
        return self.table.state_of(thread_id)

    def _update_summary_line(self) -> None:
        table = self.table
        ordered = {s: table.counts.get(s, 0) for s in State}
        # What narrows the list comes first: a narrow terminal cuts the end, never this.
        what = []
        if table.attention_only:
            what.append("needs attention")
        if table.filter_text:
            what.append(f"filter {one_line(table.filter_text, 30)!r}")
        if table.order != ORDERS[0]:
            what.append(f"by {table.order}")
        lead = Text()
        if self._reading:
            lead.append(
                "reading the whole database: the newest threads so far, counts partial  ",
                style=f"bold {self.palette.get('accent', '')}",
            )
        if self.auto_resume:
            lead.append("auto-resume on  ", style=f"bold {self.palette.get('primary', '')}")
        others = [w for w in self._watchers_seen if not is_mine(w)]
        if others:
            who = ", ".join(holder_text(w) for w in others[:2])
            lead.append(f"watched by {who}  ", style=f"bold {self.palette.get('primary', '')}")
        if what:
            lead.append("[" + ", ".join(what) + "] ", style="bold italic")
        if table.summaries and not len(table):
            lead.append("no thread matches  ", style=f"bold {self.palette.get('warning', '')}")
        line = counts_line(self.database, ordered, len(table), len(table.summaries))
        self.query_one("#summary", Static).update(lead.append(line))

    @_while_mounted
    def _tick_ages(self) -> None:
        """Keep "3m ago" honest: rows draw their age from the clock, so a repaint does."""
        self.table.refresh()

    @_while_mounted
    def _tick_running(self) -> None:
        if self.running_since:
            self.table.refresh()  # "running 1m02s" counts up

    @work(thread=True, exclusive=True, group="leases", exit_on_error=False)
    def _poll_leases(self) -> None:
        """Leases change without a database write (a holder that dies touches no file).

        Twice a second, look at the live leases and refresh when they differ
        from the last look, so another supervisor's run shows (and stops
        showing) within a second. It compares with its own last look, not with
        the list: it runs in a thread and must not read the app's state.
        """
        live = self.store.leases.live()
        watchers = self.store.leases.watchers()
        if watchers != self._watchers_seen and not self._quitting:
            self._watchers_seen = watchers
            self.call_from_thread(self._update_summary_line)
        if live != self._leases_seen and not self._quitting:
            self._leases_seen = live
            self.call_from_thread(self.request_refresh)

    @on(ThreadTable.Highlighted)
    def _row_highlighted(self, event: ThreadTable.Highlighted) -> None:
        self._select(event.thread_id)

    @on(ThreadTable.Chosen)
    def _row_selected(self, _event: ThreadTable.Chosen) -> None:
        if self.selected is not None and self.state_of(self.selected) is State.AWAITING_INPUT:
            self._answer_one(self.selected)
            return
        self.action_toggle_focus()

    def _select(self, thread_id: str | None) -> None:
        """Show a thread; the detail follows once the cursor rests (j held down stays fast)."""
        if thread_id == self.selected:
            return
        self.selected = thread_id
        self._show_detail_title()
        # A key held down moves the cursor every ~33 ms: while it does, wait longer,
        # so one slow frame does not start a transcript load in the middle of the run.
        moved, self._last_move = self._last_move, time.monotonic()
        delay = DETAIL_DELAY if self._last_move - moved > HELD_KEY else HELD_DETAIL_DELAY
        if self._detail_timer is not None:
            self._detail_timer.stop()
        self._detail_timer = self.set_timer(delay, self._show_selected_detail)

    def _reload_detail_soon(self) -> None:
        """Coalesce reloads while a thread writes message after message."""
        if self._reload_timer is None:
            self._reload_timer = self.set_timer(RELOAD_DELAY, self._reload_detail)

    @_while_mounted
    def _reload_detail(self) -> None:
        self._reload_timer = None
        self._detail.load()

    @_while_mounted
    def _show_selected_detail(self) -> None:
        self._detail_timer = None
        self._detail.show(self.selected)

    def _show_detail_title(self) -> None:
        if self.selected is None or self.selected not in self.summaries:
            self._detail.show_title("no thread selected", None)
            return
        s = self.summaries[self.selected]
        text = Text()
        text.append(one_line(s.thread_id, 40), style="bold")
        text.append(f"  {self.state_of(s.thread_id)}  ·  {s.messages} messages")
        self._detail.show_title(text, self._notice(s))

    @property
    def events(self) -> dict[str, deque[RunnerEvent]]:
        """Each thread's events in this session (the detail pane keeps them)."""
        return self._detail.events

    def _notice(self, s: ThreadSummary) -> Text | None:
        """What needs saying above the tabs: a question, another holder, signs of life."""
        if s.thread_id in self.running_since:
            return None
        if s.holder and not is_mine(s.holder):
            since = relative_time(s.holder.get("since"), self.clock())
            text = Text("Running in another supervisor — a asks it to abort:\n", style="bold")
            return text.append(safe(f"{holder_text(s.holder)}, lease taken {since}"))
        if s.attempt is not None:
            return self._attempt_notice(s)
        if s.request is not None:
            if s.answer_stored:
                head = "Answered before the process stopped; r goes on with that answer:\n"
            else:
                head = "Waiting for a human — r or Enter answers:\n"
            return Text(head, style="bold").append(safe("\n".join(s.request.lines())))
        config = self.runner.config
        if s.state in RESUMABLE and may_be_live(s, self.clock(), config.live_window):
            ago = relative_time(s.last_activity, self.clock())
            text = Text("May still be running in a process that is not a supervisor:\n", "bold")
            return text.append(
                safe(
                    f"its run {one_line(s.last_run_id or '?', 40)} is open and was last "
                    f"written {ago}; r asks before resuming it."
                )
            )
        return None

    def _attempt_notice(self, s: ThreadSummary) -> Text:
        """What the watcher made of this thread: attempts, the last failure, what comes next."""
        a = s.attempt
        if a.held:
            head = (
                f"Held by the watcher after {a.attempts} failed attempt(s) — r resumes it by hand, "
            )
            head += "'agent-supervisor release' lets the watcher try again:\n"
        elif a.next_at is not None:
            when = time.strftime("%H:%M:%S", time.localtime(a.next_at))
            head = f"The watcher tried {a.attempts} time(s); it tries again at {when}:\n"
        else:
            head = f"The watcher tried {a.attempts} time(s):\n"
        return Text(head, style="bold").append(safe(f"last failure: {a.last_error or '?'}"))

    # -- what the detail pane is given ------------------------------------------

    def _read_transcript(self, thread_id: str, full: bool = False) -> Transcript:
        """Every transcript read, from a thread: waits for a query in flight, never after close."""
        with self._store_lock:
            if self._store_closed:
                raise StoreClosed("the database is closed")
            return self.store.transcript(thread_id, full=full)

    def _load_thread(self, thread_id: str) -> tuple[Transcript, list[Marker]]:
        """The detail pane's loader (in its worker): the transcript, then the markers."""
        try:
            transcript = self._read_transcript(thread_id)
        except StoreClosed:
            raise LookupError(thread_id) from None
        return transcript, read_markers(self.jobs_dir)

    def _markers_and_plan(
        self, thread_id: str, markers: list[Marker], transcript: Transcript | None
    ) -> tuple[list[tuple[Marker, MatchedBy | None]], ThreadPlan]:
        """The detail pane's planner: this thread's markers and what a resume does."""
        if thread_id not in self.summaries:
            raise LookupError(thread_id)
        calls = transcript.tool_calls() if transcript is not None else []
        index = MarkerIndex(self.jobs_dir, markers, self.runner.config.marker_hook)
        return index.markers_of(thread_id, calls), self._plan(thread_id, markers, transcript)

    def _plan(
        self, thread_id: str, markers: list[Marker], transcript: Transcript | None
    ) -> ThreadPlan:
        """The same plan `resume --dry-run` prints, from what the detail has loaded."""
        config = self.runner.config
        index = MarkerIndex(self.jobs_dir, markers, config.marker_hook)
        messages = transcript.messages() if transcript is not None else ()
        return plan_thread(
            self.summaries[thread_id],
            index,
            messages=messages,
            strategy=config.mid_tool_strategy,
        )

    # -- agent events -----------------------------------------------------

    @on(AgentEvent)
    @_while_mounted
    def _agent_event(self, message: AgentEvent) -> None:
        event = message.event
        thread_id = event.thread_id
        if event.type == "queued":
            self.table.set_running(thread_id, event.at)
            self._update_summary_line()
        self._detail.record(event)
        if event.type == "text":
            return
        if event.type in ("message_end", "run_end"):
            self.request_refresh()
        if event.type == "run_end":
            self.table.set_running(thread_id, None)
            self._update_summary_line()
            state = event.data.get("state") or "unknown"
            done = state == "finished"
            self.notify(
                f"{one_line(thread_id, 40)} {'finished' if done else 'ended ' + state}",
                severity="information" if done else "warning",
                markup=False,
            )
        if event.type == "error":
            self.notify(
                f"{one_line(thread_id, 40)}: {one_line(event.data.get('message', ''), 120)}",
                severity="error",
                markup=False,
            )

    def action_mark(self) -> None:
        table = self.table
        thread_id = table.current_thread
        if thread_id is None:
            return
        table.toggle_mark(thread_id)
        table.action_cursor_down()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("visible")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        """Apply the filter once typing pauses: each keystroke stays instant."""
        if self._filter_timer is not None:
            self._filter_timer.stop()
        value = event.value.strip()
        self._filter_timer = self.set_timer(FILTER_DELAY, lambda: self._apply_filter(value))

    @_while_mounted
    def _apply_filter(self, value: str) -> None:
        self._filter_timer = None
        if value != self.table.filter_text:
            self._set_view(filter_text=value)

    def _set_view(self, **view: Any) -> None:
        self.table.set_view(**view)
        self._update_summary_line()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._apply_filter(event.value.strip())
        self.table.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_class("visible") or self.table.filter_text:
            if self._filter_timer is not None:
                self._filter_timer.stop()
            box.value = ""
            box.remove_class("visible")
            self._set_view(filter_text="")
            self.table.focus()

    def action_sort(self, order: str | None = None) -> None:
        """Cycle the list's order (or take one, from a header click); the cursor stays put."""
        if order is None:
            order = ORDERS[(ORDERS.index(self.table.order) + 1) % len(ORDERS)]
        self._set_view(order=order)

    @on(ThreadTable.HeaderClicked)
    def _header_clicked(self, event: ThreadTable.HeaderClicked) -> None:
        self.action_sort(event.order)

    def action_attention(self) -> None:
        self._set_view(attention_only=not self.table.attention_only)

    def action_tab(self, tab: str) -> None:
        self.query_one("#detail-tabs", TabbedContent).active = tab

    def action_toggle_focus(self) -> None:
        table = self.table
        if table.has_focus:
            tabs = self.query_one("#detail-tabs", TabbedContent)
            target = {
                "events": "#event-lines",
                "transcript": "#transcript-log",
                "markers": "#marker-table",
            }[tabs.active or "events"]
            self.query_one(target).focus()
        else:
            table.focus()

    def action_full_transcript(self) -> None:
        thread_id = self.selected
        if thread_id is None:
            return
        self.push_screen(
            TranscriptScreen(thread_id, lambda: self._read_transcript(thread_id), self.palette)
        )

    @work(group="pager", exclusive=True, exit_on_error=False)
    async def action_open_pager(self) -> None:
        """The whole transcript, however big, in `$PAGER` (the app suspends meanwhile)."""
        thread_id = self.selected
        if thread_id is None:
            return
        try:
            path = await asyncio.to_thread(self._write_full_transcript, thread_id)
        except StoreError as exc:
            self.notify(one_line(str(exc), 200), severity="error", markup=False)
            return
        pager = shlex.split(os.environ.get("PAGER") or "less -R") + [str(path)]
        try:
            with self.suspend():
                subprocess.run(pager, check=False)
        except SuspendNotSupported:
            self.notify(
                f"this terminal cannot suspend the app; the transcript is in {path}",
                markup=False,
            )
            return
        except OSError as exc:
            self.notify(f"cannot run {pager[0]}: {exc}", severity="error", markup=False)
        path.unlink(missing_ok=True)

    def _write_full_transcript(self, thread_id: str) -> Path:
        transcript = self._read_transcript(thread_id, full=True)
        fd, name = tempfile.mkstemp(prefix="agent-supervisor-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as f:
            f.write(f"thread {one_line(thread_id, 200)}\n")
            for entry in transcript.entries:
                f.write("\n".join(entry_lines(entry, None)) + "\n")
        return Path(name)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def exit(self, *args: Any, **kwargs: Any) -> None:
        """Every way out (q, the palette, a worker): timers firing now must not crash."""
        self._quitting = True
        super().exit(*args, **kwargs)

    async def action_quit(self) -> None:
        """Textual's Quit (palette, ctrl+q) would cancel agents mid-tool: ask first."""
        self.action_quit_app()

    def action_quit_app(self) -> None:
        running = list(self.running_since)
        if not running:
            self.exit()
            return
        body = Text(
            f"{len(running)} agent(s) are running. Abort them gracefully and quit? "
            "Their threads stay resumable."
        )

        def go(ok: bool | None) -> None:
            if ok:
                self._abort_and_quit()

        self.push_screen(ConfirmScreen("Quit", body, "Abort and quit"), go)

    @work(group="shutdown", exit_on_error=False)
    async def _abort_and_quit(self) -> None:
        self.notify("aborting running agents…")
        await self.runner.close()
        self.exit()

    async def on_unmount(self) -> None:
        self._stop_watching.set()
        await self.runner.close()
        await asyncio.to_thread(self._close_store)

    def _close_store(self) -> None:
        """Wait for a worker's query in flight; a connection closed under it crashes."""
        with self._store_lock:
            self._store_closed = True
            self.store.close()

    # -- files --------------------------------------------------------------

    @work(exclusive=True, group="watch", exit_on_error=False)
    async def _watch(self) -> None:
        from watchfiles import awatch

        database = self.database_path
        assert database is not None  # only files are watched
        # The database, and the watcher's attempt records beside it (`supervisor.attempts`).
        names = {database.name + s + j for s in ("", ".watch") for j in ("", "-wal", "-journal")}
        jobs = Path(self.jobs_dir).resolve() if isinstance(self.jobs_dir, Path) else None
        paths = {str(database.resolve().parent)}
        if jobs is not None and jobs.is_dir():
            paths.add(str(jobs))

        leases = leases_dir(database.resolve())

        def relevant(_change: object, path: str) -> bool:
            p = Path(path)
            return p.name in names or p.parent == jobs or p.parent == leases

        async for changes in awatch(
            *paths,
            watch_filter=relevant,
            debounce=200,
            step=50,
            stop_event=self._stop_watching,
            rust_timeout=500,
        ):
            if any(Path(p).name in names for _, p in changes):
                self.request_refresh()
            if jobs is not None and any(Path(p).parent == jobs for _, p in changes):
                self._reload_detail_soon()

    # -- command palette ---------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for key in KEYS:
            if key.command:
                run = functools.partial(self.run_action, key.action)
                yield SystemCommand(key.command, key.help, run)


def make_app(store: Store, runner_config: RunnerConfig, **options: Any) -> SupervisorApp:
    """Build the app from its dependencies (clock, watch, theme, cursor_blink).

    The CLI and the tests both build it here, so tests swap what varies between runs.
    """
    return SupervisorApp(store, runner_config, **options)


def theme_names() -> list[str]:
    from textual.theme import BUILTIN_THEMES

    return sorted({t.name for t in all_themes()[0]} | set(BUILTIN_THEMES))


__all__ = ["SupervisorApp", "make_app", "theme_names"]
