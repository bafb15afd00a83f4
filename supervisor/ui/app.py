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
import contextlib
import functools
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import events, on, work
from textual.app import App, SystemCommand
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Input, Static

from supervisor import collector
from supervisor.agents import AgentLoadError
from supervisor.leases import holder_text, is_mine
from supervisor.location import Location
from supervisor.markers import Marker
from supervisor.notifications import NotifyPolicy
from supervisor.plan import (
    MarkerHook,
    MarkerIndex,
    MatchedBy,
    ThreadPlan,
    plan_thread,
)
from supervisor.report import lineage
from supervisor.runner import Runner, RunnerConfig, RunnerEvent
from supervisor.states import (
    State,
    ThreadSummary,
)
from supervisor.store import Store, StoreError, Transcript
from supervisor.text import counted, one_line
from supervisor.ui.actions import ThreadActions
from supervisor.ui.alerts import Alerts
from supervisor.ui.auto_resume import AutoResumer
from supervisor.ui.keys import KEYS
from supervisor.ui.lifecycle import while_mounted
from supervisor.ui.message_search import MessageSearch
from supervisor.ui.messages import (
    AgentEvent,
    AgentImported,
    IndexHint,
    RefreshFailed,
    StoreNotices,
    ThreadsRefreshed,
)
from supervisor.ui.notices import header_line, thread_notice
from supervisor.ui.reading import LEASE_POLL, SERVER_POLL, StoreReader
from supervisor.ui.render import Palette
from supervisor.ui.screens.confirm import ConfirmScreen
from supervisor.ui.screens.main import MainScreen
from supervisor.ui.themes import all_themes, install_themes, palette_of, save_theme
from supervisor.ui.usage_column import UsageColumn
from supervisor.ui.widgets.detail import DetailPane
from supervisor.ui.widgets.filter_box import FilterBox
from supervisor.ui.widgets.thread_table import ThreadTable
from supervisor.urls import short_name

if TYPE_CHECKING:
    from supervisor.probe import Probed

#: Below this width the list and the detail stack vertically.
NARROW = 110
#: Below this width (and from `NARROW`) the list takes more of the screen: at 55% of 120
#: columns WHERE IT STOPPED, what a person scans the list for, had ten characters.
MEDIUM = 150
#: At most one transcript reload per this many seconds while a thread runs.
RELOAD_DELAY = 0.3
#: Seconds the cursor rests on a row before its detail is loaded.
DETAIL_DELAY = 0.08
#: Cursor moves closer together than this are a held key; the detail then waits longer.
HELD_KEY = 0.15
HELD_DETAIL_DELAY = 0.3


#: What an empty database says, and how to start a thread.
EMPTY_STATE = Text.assemble(
    ("This database holds no threads yet.\n", "bold"),
    "+ (or p) starts one here: a thread id and its first prompt, run by the agent. Or run "
    "your agent, or 'agent-supervisor prompt DB THREAD TEXT'; threads show here as they "
    "are written.",
)


class SupervisorApp(App[None]):
    """The shell: layout, keys routed to their owners, runner events, themes, quitting.

    What it routes to owns its state: `reader` (the store and every read of it),
    `actions` (resume, abort, prompt, answer), `auto` (the in-app watcher), the
    list (`ThreadTable`: marks, filter, order), the detail (`DetailPane`: tabs).
    """

    CSS_PATH = "app.tcss"
    TITLE = "agent-supervisor"
    AUTO_FOCUS = "#threads"

    # Textual sets the class on the screen; app.tcss stacks list and detail when narrow.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW, "-medium"), (MEDIUM, "-wide")]

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
        notify: NotifyPolicy | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        #: What the header shows: a path, or a URL without its password.
        #: The database as the header names it: a file's name, a server's host/database.
        self.database = store.path.name if store.path is not None else short_name(store.location)
        self.jobs_dir = runner_config.jobs_dir
        self.clock = clock
        self.watch_files = watch
        self.cursor_blink = cursor_blink
        runner_config.clock = clock
        self.runner = Runner(runner_config)
        self.reader = StoreReader(self, store)
        self.actions = ThreadActions(self)
        self.auto = AutoResumer(self)
        self.selected: str | None = None
        #: The last refresh's failure, said once until a refresh works again.
        self._refresh_error: str | None = None
        self.quitting = False
        self._detail_timer: Timer | None = None
        self._reload_timer: Timer | None = None
        self._last_move = 0.0
        #: While a key is held the cyclic collector waits (`supervisor.collector`): a
        #: collection at fleet size takes 20-45 ms, a missed frame.
        self.held_key = collector.HeldKey()
        #: Another supervisor's lease this app saw on a thread, since gone (`thread_notice`).
        self.gone_holders: dict[str, dict[str, Any]] = {}
        self._remember_theme = remember_theme
        #: Set when the agent, imported after the first frame, fails: the app closes
        #: and the CLI prints it as the one error line it would have printed before.
        self.agent_error: str | None = None
        #: The list shows a preview while the first whole pass runs.
        self._reading = False
        #: Seconds since ages were last repainted (`_tick_ages`).
        self._ages_ticks = 0
        self.usage = UsageColumn(self, str(self.runner.config.database), self.store.busy_timeout)
        self.message_search = MessageSearch(self)
        #: A bell or a desktop notification when a thread newly needs a person.
        self.alerts = Alerts(self, notify)
        self._table = ThreadTable(lambda: self.clock(), {}, id="threads")
        self.detail = DetailPane(
            loader=self.reader.load_thread,
            planner=self._markers_and_plan,
            palette=lambda: self.palette,
            clock=lambda: self.clock(),
            jobs_dir=self.jobs_dir,
            id="detail",
        )
        # Set before the stylesheet is first read: set in `on_mount`, the theme's change
        # re-parses the stylesheet and restyles every widget before the first frame (0.1 s).
        self._theme_problems = install_themes(self, theme, remember_theme)

    # -- layout -----------------------------------------------------------

    def get_default_screen(self) -> Screen:
        return MainScreen(id="_default")

    def main_screen_mounted(self) -> None:
        """Everything that needs the main screen's widgets, once they are mounted (the
        app's own `on_mount` comes before its default screen composes)."""
        for problem in self._theme_problems:
            self.notify(one_line(problem, 200), title="themes", severity="warning", markup=False)
        self.table.set_palette(self.palette)  # the theme is set: badges take its colours
        self.runner.subscribe(lambda event: self.post_message(AgentEvent(event)))
        self.watch(self.table, "highlighted", self._select, init=False)
        self._show_early_preview()
        self.request_refresh()
        self.set_interval(1.0, self._tick_running)
        self.set_interval(LEASE_POLL, self.reader.poll_leases)
        self.set_interval(1.0, self._tick_ages)
        # After the first frame: the agent's import (a third of a second) would
        # otherwise come before it; the file watcher starts once it is done.
        self.call_after_refresh(self._load_agent)
        if self.watch_files and self.reader.path is None:  # a server: look every second
            self.set_interval(SERVER_POLL, self._poll_server)

    @work(thread=True, group="agent", exit_on_error=False)
    def _load_agent(self) -> None:
        """Import the agent in a thread, the screen already drawn. A broken agent
        closes the app, as it stopped the start before: there is nothing to run with.

        Nothing else may import a package the agent's import is initialising: the
        runner waits for it (`Runner._agent`), the planners too (`_marker_hook`), and
        the file watcher (watchfiles, anyio) starts after it.
        """
        try:
            self.runner.config.agent()
        except AgentLoadError as exc:
            self.post_message(AgentImported(str(exc)))
        else:
            self.post_message(AgentImported(None))

    @on(AgentImported)
    @while_mounted
    def _agent_imported(self, message: AgentImported) -> None:
        if message.error is not None:
            self.agent_error = message.error
            self.exit(return_code=2)
        elif self.watch_files and self.reader.path is not None:
            self.reader.watch_files()

    def marker_hook(self) -> MarkerHook | None:
        """The agent's marker hook, for plans. The readers that plan (`_load_thread`,
        `ThreadActions._plans`) call this first in their threads, so an import still
        under way is waited for there, not on the screen's thread."""
        try:
            return self.runner.config.agent().marker_hook
        except AgentLoadError:
            return None  # the app is closing on it (`_agent_imported`)

    def _show_early_preview(self) -> None:
        """Rows in the first frame when the store's preview is already read (`preview_soon`);
        else the loading indicator, and the worker shows the preview when it has it."""
        try:
            early = self.store.preview() if self.store.preview_ready() else None
        except StoreError:  # the worker reads again, and says so if it fails too
            early = None
        if early:
            summaries = {s.thread_id: s for s in early}
            self._threads_refreshed(ThreadsRefreshed(summaries, full=True, provisional=True))
        else:
            self.table.loading = True

    def on_resize(self, _event) -> None:
        if self.selected is not None:
            self.reload_detail_soon()  # the transcript wraps to the pane's new width

    @property
    def palette(self) -> Palette:
        return palette_of(self.current_theme)

    def watch_theme(self, theme: str) -> None:
        if self.is_mounted:
            if self._remember_theme:
                save_theme(theme)
            self.table.set_palette(self.palette)

    # -- reading the database ---------------------------------------------

    def on_key(self, event: events.Key) -> None:
        """Runs before the app's bindings. Keys typed right after `/` in one burst (a
        paste, a fast typist) were handed to the list or the log before the box `/`
        opened had the focus; they reach the app unhandled, where its bindings would run
        them as commands (`/job-10` ran `j` and `o`). While a box has the focus, such a
        key is typed into it instead (a key the box saw never gets here: an `Input`
        stops every printable key)."""
        box = self.focused
        if isinstance(box, Input) and event.is_printable and event.character:
            event.stop()
            event.prevent_default()  # the app's bindings
            box.insert_text_at_cursor(event.character)

    @on(IndexHint)
    @while_mounted
    def _index_hint(self, message: IndexHint) -> None:
        self.main.show_index_hint(message.hint)

    @on(StoreNotices)
    def _store_notices(self, message: StoreNotices) -> None:
        for notice in message.notices:
            self.notify(one_line(notice, 300), title="database", markup=False, timeout=10)

    @on(RefreshFailed)
    @while_mounted
    def _refresh_failed(self, message: RefreshFailed) -> None:
        """Said once per kind of failure, not every second it lasts; the list stays as it
        was, and the next refresh that works says so."""
        if message.refresh:
            self.reader.failed()
        if message.error == self._refresh_error:
            return
        self._refresh_error = message.error
        self.notify(
            one_line(message.error, 200) + " (the list keeps its last state; trying again)",
            title="refresh failed",
            severity="error",
            markup=False,
        )

    @on(ThreadsRefreshed)
    @while_mounted
    def _threads_refreshed(self, message: ThreadsRefreshed) -> None:
        if self._refresh_error is not None:
            self._refresh_error = None
            self.notify("the database answers again", title="refresh", markup=False)
        table = self.table
        if table.loading:
            table.loading = False
            if self.focused is None or isinstance(self.focused, Input):
                table.focus()
        self._reading = message.provisional
        if message.full:
            changed = message.summaries
            # 100,000 new sort keys; once whole, they live as long as the app.
            with collector.bulk_read(keep=not message.provisional):
                table.replace_all(changed)
        else:
            # Unchanged summaries stay as they are: their cached rows stay valid.
            changed = {t: s for t, s in message.summaries.items() if table.summaries.get(t) != s}
            self._note_gone_holders(changed)
            table.update(changed)
        self.update_header()  # the counts change in the same frame as the rows
        self.auto.observe(changed.values(), everything=message.full)  # only what changed
        self.alerts.observe(
            changed.values(), everything=message.full, provisional=message.provisional
        )
        if message.provisional:
            return  # the whole pass is still under way
        if message.full:  # the rows are counted: is this a big file without the index?
            self.reader.look_for_index()
        if message.full and self.store.checks_in_background:
            # Once the whole list is drawn: the scan takes a core for seconds.
            self.call_after_refresh(self.reader.check_rows)
        if self.selected in changed:
            self._show_detail_title()
            self.reload_detail_soon()
        elif self.selected is None:
            self._select(table.current_thread)
            if self.selected is None:  # an empty list: say so, and how to start a thread
                self._show_detail_title()
        if message.full or changed:  # the TOKENS column: everything once, then what is new
            self.usage.read_soon(() if message.full else changed)
        if changed and not message.full:
            self.message_search.search()  # new messages may match now
        if self.reader.refreshed():  # another was asked for meanwhile
            self.request_refresh()

    def _note_gone_holders(self, changed: dict[str, ThreadSummary]) -> None:
        """Another supervisor's lease seen on a thread, then gone: say so, not "a process
        that is not a supervisor", if the thread is left open (`thread_notice`). And a
        thread another process runs: its new messages go to its events as they land."""
        for thread_id, s in changed.items():
            old = self.table.summaries.get(thread_id)
            if s.holder and not is_mine(s.holder) and old and s.messages > old.messages:
                landed = counted(s.messages - old.messages, "new message")
                self._record_elsewhere(s, s.holder, f"{landed}, the last {s.last_role}")
            if s.holder:
                self.gone_holders.pop(thread_id, None)
            elif old is not None and old.holder and not is_mine(old.holder):
                self.gone_holders[thread_id] = old.holder
                self._record_elsewhere(s, old.holder, f"its run there ended: {s.state}")

    def _record_elsewhere(self, s: ThreadSummary, holder: dict[str, Any], what: str) -> None:
        """An event line for what another process did to a thread. The listing knows the
        newest row's role and the last assistant message's text and calls: the text and
        calls are shown only when that message is the newest row."""
        assistant = s.last_role == "assistant"
        calls = [{"name": c.name, "arguments": c.arguments} for c in s.tool_calls]
        data = {
            "role": what,
            "text": s.last_text if assistant else "",
            "calls": calls if assistant else [],
            "holder": holder_text(holder),
        }
        at = s.last_activity or self.clock()
        self.detail.record(RunnerEvent(s.thread_id, "elsewhere", data, at))

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

    def update_header(self) -> None:
        table = self.table
        others = [w for w in self.reader.watchers_seen if not is_mine(w)]
        header = header_line(
            self.database,
            table,
            self.palette,
            reading=self._reading,
            auto_resume=self.auto.active,
            watchers=[holder_text(w) for w in others],
            search=self.message_search.text,
            planning=self.actions.planning,
        )
        self.query_one("#summary", Static).update(header, layout=False)  # one line, always

    @while_mounted
    def _tick_ages(self) -> None:
        """Keep "18s ago" honest: rows draw their age from the clock, so a repaint does.

        Every second while a row on screen was written less than a minute ago, whose
        age counts in seconds; every 15 s otherwise (minutes). The detail's notice
        too, while its thread's age counts in seconds. Repainted every 15 s, "18s ago"
        sat beside "33s ago" for threads written a second apart, and the detail's
        "last written 0s ago" stayed a minute. Nothing while another screen covers the
        list (the full transcript, a dialog): the next tick after it catches up.
        """
        self._ages_ticks += 1
        if self.screen is not self.main:
            return
        now = self.clock()
        recent = self.table.newest_shown_activity()
        if recent is not None and now - recent < 60 or self._ages_ticks >= 15:
            self._ages_ticks = 0
            self.table.refresh()
        shown = self.summaries.get(self.selected) if self.selected is not None else None
        if (
            shown is not None
            and shown.last_activity is not None
            and now - shown.last_activity < 61  # and once more as it turns a minute
            and self.selected not in self.running_since
        ):
            self._show_detail_title()

    @while_mounted
    def _tick_running(self) -> None:
        if self.running_since:
            self.table.refresh()  # "running 1m02s" counts up

    @on(ThreadTable.Chosen)
    def _row_selected(self, _event: ThreadTable.Chosen) -> None:
        if self.selected is not None and self.state_of(self.selected) is State.AWAITING_INPUT:
            self.actions.answer_one(self.selected)
            return
        self.main.action_toggle_focus()

    def _select(self, thread_id: str | None) -> None:
        """Show a thread; the detail follows once the cursor rests (j held down stays fast)."""
        if thread_id == self.selected:
            return
        self.selected = thread_id
        self._show_detail_title()
        # A key held down moves the cursor every ~33 ms: while it does, wait longer,
        # so one slow frame does not start a transcript load in the middle of the run.
        moved, self._last_move = self._last_move, time.monotonic()
        held = self._last_move - moved <= HELD_KEY
        if held:
            self.held_key.moved(self._last_move)
        delay = HELD_DETAIL_DELAY if held else DETAIL_DELAY
        if self._detail_timer is not None:
            self._detail_timer.stop()
        self._detail_timer = self.set_timer(delay, self._show_selected_detail)

    def reload_detail_soon(self) -> None:
        """Coalesce reloads while a thread writes message after message."""
        if self._reload_timer is None:
            self._reload_timer = self.set_timer(RELOAD_DELAY, self._reload_detail)

    @while_mounted
    def _reload_detail(self) -> None:
        self._reload_timer = None
        self.detail.load()

    @while_mounted
    def _show_selected_detail(self) -> None:
        self._detail_timer = None
        self.held_key.rested()  # the cursor rests: the key is no longer held
        self.detail.show(self.selected)

    def _show_detail_title(self) -> None:
        if self.selected is None or self.selected not in self.summaries:
            if not self.summaries and not self._reading and not self.table.loading:
                self.detail.show_title("no threads yet", EMPTY_STATE)
            else:
                self.detail.show_title("no thread selected", None)
            return
        s = self.summaries[self.selected]
        text = Text()
        text.append(one_line(s.thread_id, 40), style="bold")
        text.append(f"  {self.state_of(s.thread_id)}  ·  {counted(s.messages, 'message')}")
        if (forked := lineage(s)) is not None:
            text.append(f"  ·  ⑂ {one_line(forked, 60)}", style="dim")
        self.detail.show_title(text, self._notice(s))

    @property
    def events(self) -> dict[str, deque[RunnerEvent]]:
        """Each thread's events in this session (the detail pane keeps them)."""
        return self.detail.events

    def _notice(self, s: ThreadSummary) -> Text | None:
        """What needs saying above the tabs (see `notices.thread_notice`)."""
        if s.thread_id in self.running_since:
            return None
        gone = self.gone_holders.get(s.thread_id)
        return thread_notice(s, self.clock(), self.runner.config.live_window, gone)

    # -- what the detail pane is given ------------------------------------------

    def _markers_and_plan(
        self, thread_id: str, markers: list[Marker], transcript: Transcript | None
    ) -> tuple[list[tuple[Marker, MatchedBy | None]], ThreadPlan]:
        """The detail pane's planner: this thread's markers and what a resume does."""
        if thread_id not in self.summaries:
            raise LookupError(thread_id)
        calls = transcript.tool_calls() if transcript is not None else []
        index = MarkerIndex(self.jobs_dir, markers, self.marker_hook())
        return index.markers_of(thread_id, calls), self.plan(thread_id, markers, transcript)

    def plan(
        self,
        thread_id: str,
        markers: list[Marker],
        transcript: Transcript | None,
        probed: Probed | None = None,
    ) -> ThreadPlan:
        """The same plan `resume --dry-run` prints, from what the detail has loaded
        (`probed`: what the agent's own hooks said, when they were asked)."""
        config = self.runner.config
        index = MarkerIndex(self.jobs_dir, markers, self.marker_hook())
        messages = transcript.messages() if transcript is not None else ()
        return plan_thread(
            self.summaries[thread_id],
            index,
            messages=messages,
            strategy=config.mid_tool_strategy,
            policies=None if probed is None else probed.policies,
            ended=None if probed is None else probed.ended,
        )

    # -- agent events -----------------------------------------------------

    @on(AgentEvent)
    @while_mounted
    def _agent_event(self, message: AgentEvent) -> None:
        event = message.event
        thread_id = event.thread_id
        if event.type == "queued":
            self.table.set_running(thread_id, event.at)
            self.update_header()
        self.detail.record(event)
        if event.type == "text":
            return
        if event.type in ("message_end", "run_end"):
            self.request_refresh()
        if event.type == "run_end":
            self.table.set_running(thread_id, None)
            self.update_header()
            state = event.data.get("state") or "unknown"
            done = state in ("finished", "stopped")
            self.notify(
                f"{one_line(thread_id, 40)} {state if done else 'ended ' + state}",
                severity="information" if done else "warning",
                markup=False,
            )
        if event.type == "error":
            self.notify(
                f"{one_line(thread_id, 40)}: {one_line(event.data.get('message', ''), 120)}",
                severity="error",
                markup=False,
            )

    @on(FilterBox.Applied)
    @while_mounted
    def _filter_applied(self, event: FilterBox.Applied) -> None:
        if not self.message_search.apply(event.value) and event.value != self.table.filter_text:
            self.set_view(filter_text=event.value)
        if event.submitted:
            self.table.focus()

    @on(ThreadTable.HeaderClicked)
    def _header_clicked(self, event: ThreadTable.HeaderClicked) -> None:
        self.main.action_sort(event.order)

    def exit(self, *args: Any, **kwargs: Any) -> None:
        """Every way out (q, the palette, a worker): timers firing now must not crash."""
        self.quitting = True
        super().exit(*args, **kwargs)

    async def action_quit(self) -> None:
        """Textual's Quit (palette, ctrl+q) would cancel agents mid-tool: ask first."""
        self.quit_app()

    def quit_app(self) -> None:
        running = list(self.running_since)
        if not running:
            self.exit()
            return
        # Runs live in this process: quitting stops them (said plainly), and where to run
        # agents that outlive a window is named (docs/app.md, "Quitting").
        names = ", ".join(one_line(t, 24) for t in running[:3]) + ("…" if len(running) > 3 else "")
        where = self.runner.config.database
        body = Text(
            f"{len(running)} agent(s) run in this window ({names}). Quitting stops them: each "
            "is aborted gracefully and parked, so a watcher takes it up again.\n\nTo keep "
            "agents going without a window, run the watcher in a terminal that stays (tmux, "
            "a service):\n"
        )
        body.append(f"  agent-supervisor watch {where}", style="bold")

        def go(ok: bool | None) -> None:
            if ok:
                self._abort_and_quit()

        self.clear_notifications()  # at 80x24 the toasts covered the dialog's buttons
        self.push_screen(ConfirmScreen("Quit", body, "Abort and quit"), go)

    @work(group="shutdown", exit_on_error=False)
    async def _abort_and_quit(self) -> None:
        """Abort the runs gracefully, and park them as a watcher parks its own when it
        stops: the next watcher takes them up again (an aborted thread it otherwise
        leaves alone, as a person's abort)."""
        running = list(self.running_since)
        self.notify("aborting running agents…")
        await self.runner.close()
        ledger = Location.parse(self.runner.config.database).attempts()
        for thread_id in running:
            with contextlib.suppress(Exception):  # quitting must not fail on a record
                await asyncio.to_thread(ledger.parked, thread_id)
        self.exit()

    async def on_unmount(self) -> None:
        self.held_key.rested()
        self.reader.stop_watching.set()
        await self.runner.close()
        await asyncio.to_thread(self.reader.close)
        await asyncio.to_thread(self.usage.close)

    # -- keys, routed to what owns each ------------------------------------------

    def _poll_server(self) -> None:
        """A server's timer: refresh, unless the last refresh was costly enough that the
        next must wait (`StoreReader.poll_due`)."""
        if self.reader.poll_due():
            self.request_refresh()

    def request_refresh(self) -> None:
        """Refresh now, or right after the refresh under way (`StoreReader`). A preview is
        not a listing: the pass after it replaces it whole."""
        full = not self.summaries or self._reading
        self.reader.request_refresh(full=full, preview=full and not self._reading)

    def set_view(self, **view: Any) -> None:
        self.table.set_view(**view)
        self.update_header()

    def write_to_terminal(self, sequence: str) -> None:
        """Write an escape sequence (a bell, a desktop notification) to the real terminal,
        as Textual writes its own (the clipboard's OSC 52): not in a headless run."""
        if sequence and not self.is_headless and self._driver is not None:
            self._driver.write(sequence)

    @property
    def main(self) -> MainScreen:
        """The main screen (the default one), whichever screen is on top."""
        return self.screen_stack[0]  # type: ignore[return-value]

    # -- command palette ---------------------------------------------------

    #: Textual's own palette entries this app replaces or has no use for: its "Quit" quits
    #: at once (ours asks first, with agents running), "Keys" is our help (?), and
    #: "Maximize" a pane the layout does not offer.
    DROPPED_COMMANDS = frozenset({"Quit", "Keys", "Maximize", "Minimize"})

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for command in super().get_system_commands(screen):
            if command.title not in self.DROPPED_COMMANDS:
                yield command
        yield SystemCommand("Quit", "quit (running agents are aborted first)", self.quit_app)
        yield self.alerts.switch_command()
        for key in KEYS:
            if key.command:
                run = functools.partial(self.main.run_action, key.action)
                yield SystemCommand(key.command, key.help, run)


#: The one way the app is built, by the CLI (`cli.app`), the tests, the benches and the
#: screenshot script alike: `SupervisorApp` itself, whose keyword options are what varies
#: between runs (tests fix the clock and turn watching files off).
make_app = SupervisorApp


def theme_names() -> list[str]:
    from textual.theme import BUILTIN_THEMES

    return sorted({t.name for t in all_themes()[0]} | set(BUILTIN_THEMES))


__all__ = ["SupervisorApp", "make_app", "theme_names"]
