"""What the keys do to threads: resume (with its previews), abort, prompt, answer, fork.

The app routes its keys here (`action_resume` calls `resume_chosen`...); the
flows read the app's list, runner and store, and push its dialogs. The app
keeps lifecycle and routing; reading the database is `reading.StoreReader`;
the list and the detail keep their own state.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.screen import Screen

from supervisor.agents import AgentLoadError
from supervisor.leases import holder_text, is_mine
from supervisor.location import Location
from supervisor.markers import Marker
from supervisor.plan import ACTIONS, MarkerIndex, ThreadPlan, live_reason, plan_thread, refusal
from supervisor.runner import PROMPTABLE, PossiblyLive, Refused
from supervisor.states import RESUMABLE, State
from supervisor.store import StoreError, Transcript
from supervisor.text import counted, one_line
from supervisor.ui.render import live_warning, safe
from supervisor.ui.screens.answer import AnswerScreen
from supervisor.ui.screens.confirm import ConfirmScreen
from supervisor.ui.screens.preview import BulkResumePreview, ResumePreview
from supervisor.ui.screens.prompt import NewThreadScreen, PromptScreen

if TYPE_CHECKING:
    from supervisor.ui.app import SupervisorApp


class ThreadActions:
    """Resume, abort, prompt and answer, for the selected or marked threads.

    It owns one thing: how many threads a preview is being planned for (the
    header says so). Otherwise it reads the app's list and store (through the
    app's reader), starts runs on the app's runner, and asks the person
    through the app's dialogs.
    """

    def __init__(self, app: SupervisorApp) -> None:
        self.app = app
        #: Threads whose plans a bulk preview is reading now (0: none). At 100,000
        #: threads that takes tens of seconds, which passed with nothing on screen.
        self.planning = 0

    def targets(self, states: Iterable[State] | None = None) -> list[str]:
        chosen = self.app.table.marked_shown() or ([self.app.selected] if self.app.selected else [])
        if states is not None:
            wanted = set(states)
            chosen = [t for t in chosen if self.app.state_of(t) in wanted]
        return chosen

    def resume_chosen(self) -> None:
        marked = self.app.table.marked_shown()
        if marked:
            resumable = [t for t in marked if self.app.state_of(t) in RESUMABLE]
            skipped = len(marked) - len(resumable)
            if not resumable:
                self.app.notify("none of the marked threads can be resumed", severity="warning")
                return
            self._confirm_many(resumable, skipped)
            return
        if self.app.selected is None:
            return
        self._resume_one(self.app.selected)

    def _confirm_many(
        self,
        threads: list[str],
        skipped: int,
        title: str = "Resume marked threads",
        aborted_left_out: int = 0,
    ) -> None:
        work = self._confirm_many_work(threads, skipped, title, aborted_left_out)
        self.app.run_worker(work, group="actions", exit_on_error=False)

    async def _confirm_many_work(
        self,
        threads: list[str],
        skipped: int,
        title: str = "Resume marked threads",
        aborted_left_out: int = 0,
    ) -> None:
        """One preview for many threads, with the plan a single resume would show; it
        names the threads that may be live elsewhere, and its yes resumes them too (one
        dialog, not one more per such thread)."""
        if self.planning:
            self.app.notify(
                f"a preview of {counted(self.planning, 'thread')} is still being planned",
                severity="warning",
            )
            return
        self.planning = len(threads)
        self.app.update_header()
        try:
            plans = await asyncio.to_thread(self._plans, threads)
        finally:
            self.planning = 0
            self.app.update_header()
        config = self.app.runner.config
        now = config.clock()
        live = {
            t
            for t in threads
            if (s := self.app.summaries.get(t)) is not None
            and live_reason(s, now, config.live_window) is not None
        }
        preview = BulkResumePreview(
            f"{title} ({len(threads):,})",
            plans,
            self.app.palette,
            config.continue_text,
            skipped,
            aborted_left_out,
            live=sorted(live),
            live_window=config.live_window,
        )
        if not await self.app.push_screen_wait(preview):
            return
        self.app.table.clear_marks()
        for t in threads:
            self._start_resume(t, force=t in live)

    def _plans(self, threads: list[str]) -> list[ThreadPlan]:
        """Plans for a preview, the transcripts they need read in one pass
        (`supervisor.plans`). In a thread: the plans need the agent's marker hook,
        waited for here if its import is still under way."""
        hook = self.app.marker_hook()  # first: the agent stack comes with the agent's import
        from supervisor.plans import plan_threads, unserved_by_the_demo

        index = MarkerIndex(self.app.jobs_dir, self.app.runner.jobs.read_markers(), hook)
        config = self.app.runner.config
        loaded = None
        if config.mid_tool_strategy == "rerun":
            with contextlib.suppress(AgentLoadError):
                loaded = config.agent()
        summaries = [s for t in threads if (s := self.app.summaries.get(t)) is not None]
        with self.app.reader.lock:
            if self.app.reader.closed:
                return []
            try:
                plans = asyncio.run(
                    plan_threads(
                        self.app.store,
                        summaries,
                        index,
                        strategy=config.mid_tool_strategy,
                        agent=loaded,
                    )
                )
                return unserved_by_the_demo(plans, config.agent_named, config.agent_ref)
            except StoreError:  # the database went away: plans from the listing alone
                return [plan_thread(s, index, strategy=config.mid_tool_strategy) for s in summaries]

    def _resume_one(self, thread_id: str) -> None:
        self.app.run_worker(self._resume_one_work(thread_id), group="actions", exit_on_error=False)

    async def _resume_one_work(self, thread_id: str) -> None:
        state = self.app.state_of(thread_id)
        if state is State.HELD:  # a person may resume what the watcher gave up on
            state = self.app.summaries[thread_id].resume_state
        if state is State.RUNNING:
            self.app.notify(
                f"resume refused: {one_line(thread_id, 40)} is already running",
                severity="warning",
                markup=False,
            )
            return
        if state is State.AWAITING_INPUT:
            self.answer_one(thread_id)
            return
        if state is State.CHILD:  # the refusal names its parent
            reason = refusal(self.app.summaries[thread_id]) or ""
            self.app.notify(f"{one_line(thread_id, 40)} {reason}", severity="warning", markup=False)
            return
        if state not in RESUMABLE:
            hint = "; press p to prompt" if state in PROMPTABLE else ""
            self.app.notify(
                f"nothing to resume: {one_line(thread_id, 40)} is {state}{hint}",
                severity="warning",
                markup=False,
            )
            return
        # One dialog says both what the resume does and that the thread may be live
        # elsewhere; agreeing to it is agreeing to both (no second "Resume anyway").
        summary = self.app.summaries[thread_id]
        config = self.app.runner.config
        live = live_reason(summary, config.clock(), config.live_window)
        if state in (State.MID_TOOL, State.ANSWERED):
            plans = await asyncio.to_thread(self._plans, [thread_id])
            if not plans:  # the app is closing
                return
            if plans[0].refused is not None:  # as the runner would refuse it: say so now
                self.app.notify(
                    f"resume refused: {one_line(plans[0].refused, 200)}",
                    severity="warning",
                    markup=False,
                )
                return
            preview = ResumePreview(plans[0], self.app.palette, live=live)
            if not await self.app.push_screen_wait(preview):
                return
        elif state in (State.ABORTED, State.ERROR) or live is not None:
            if state in (State.ABORTED, State.ERROR):
                title = f"Continue {state} thread"
                body = Text(
                    f"{one_line(thread_id, 40)} stopped with '{state}'. "
                    "Continue it with the message:\n"
                )
                body.append(repr(config.continue_text), style="italic")
            else:
                title = f"Resume {one_line(thread_id, 40)} ({state})"
                body = Text(f"Then: {ACTIONS[state]}.")
            if live is not None:
                body.append(live_warning(live))
            yes = "Resume anyway" if live is not None else "Continue"
            if not await self.app.push_screen_wait(ConfirmScreen(title, body, yes)):
                return
        await self._resume(thread_id, force=live is not None)

    def _start_resume(self, thread_id: str, force: bool) -> None:
        self.app.run_worker(self._resume(thread_id, force), group="agents", exit_on_error=False)

    async def _resume(self, thread_id: str, force: bool) -> None:
        try:
            await self.app.runner.resume(thread_id, force=force)
        except PossiblyLive as exc:
            body = safe(str(exc))
            body.append("\n\nResuming while another process runs it would run its tools twice.")
            if await self._ask(
                ConfirmScreen("Thread may be live elsewhere", body, "Resume anyway")
            ):
                await self._resume(thread_id, force=True)
            return
        except Refused as exc:
            self.app.notify(
                f"resume refused: {one_line(str(exc), 200)}", severity="warning", markup=False
            )
            return
        except Exception as exc:  # the runner must never fail silently in a worker
            self.app.notify(
                f"resume of {one_line(thread_id, 40)} failed: {type(exc).__name__}: "
                f"{one_line(str(exc), 200)}",
                severity="error",
                markup=False,
            )
            return
        self.app.notify(f"resumed {one_line(thread_id, 40)}", markup=False)
        await self.app.runner.wait(thread_id)

    async def _ask(self, screen: Screen[bool]) -> bool:
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.app.push_screen(screen, lambda ok: answer.set_result(bool(ok)))
        return await answer

    def resume_all(self) -> None:
        """Every crashed thread but those a person aborted (as `watch` leaves them)."""
        states = {t: self.app.state_of(t) for t in self.app.summaries}
        summaries = self.app.summaries

        def by_a_person(t: str) -> bool:  # not parked by a quitting app or a stopping watcher
            attempt = summaries[t].attempt
            return states[t] is State.ABORTED and not (attempt is not None and attempt.parked)

        crashed = [t for t, s in states.items() if s in RESUMABLE and not by_a_person(t)]
        # In the list's order (those a filter hides after, by id), so the preview reads as
        # the list does and the same each time.
        shown = {t: i for i, t in enumerate(self.app.table.shown)}
        crashed.sort(key=lambda t: (shown.get(t, len(shown)), t))
        aborted = sum(by_a_person(t) for t in states)
        if not crashed:
            more = f" ({aborted} aborted: r resumes one)" if aborted else ""
            self.app.notify(f"no crashed thread to resume{more}")
            return
        self._confirm_many(crashed, 0, "Resume every crashed thread", aborted_left_out=aborted)

    def abort_chosen(self) -> None:
        targets = [t for t in self.targets() if t in self.app.running_since]
        elsewhere = [
            t
            for t in self.targets()
            if t not in self.app.running_since
            and self.app.summaries[t].holder
            and not is_mine(self.app.summaries[t].holder)
        ]
        if not targets and elsewhere:
            self._abort_elsewhere(elsewhere)
            return
        if not targets:
            self.app.notify(
                "nothing to abort: the selected thread is not running",
                severity="warning",
            )
            return
        names = ", ".join(one_line(t, 30) for t in targets[:8])
        body = Text(
            f"Abort {names}? The agent is asked to stop; after "
            f"{self.app.runner.config.abort_grace:g}s it is cancelled. The thread stays resumable."
        )

        def go(ok: bool | None) -> None:
            if ok:
                for t in targets:
                    self.app.run_worker(
                        self.app.runner.abort(t), group="aborts", exit_on_error=False
                    )
                self.app.notify(f"aborting {names}", markup=False)

        self.app.push_screen(ConfirmScreen("Abort", body, "Abort"), go)

    def _abort_elsewhere(self, threads: list[str]) -> None:
        holders = {holder_text(self.app.summaries[t].holder or {}) for t in threads}
        names = ", ".join(one_line(t, 30) for t in threads[:8])
        body = Text(
            f"{names}: running in another supervisor ({', '.join(sorted(holders))}). "
            "Ask it to abort? It stops gracefully; the thread stays resumable."
        )

        def go(ok: bool | None) -> None:
            if ok:
                for t in threads:
                    self.app.run_worker(
                        self._stop_elsewhere(t), group="aborts", exit_on_error=False
                    )

        self.app.push_screen(ConfirmScreen("Abort in another supervisor", body, "Ask to abort"), go)

    async def _stop_elsewhere(self, thread_id: str) -> None:
        self.app.notify(f"asked the holder of {one_line(thread_id, 40)} to abort", markup=False)
        outcome, holder = await self.app.store.leases.stop_elsewhere(thread_id)
        who = holder_text(holder) if holder else "nobody holds it"
        severity = "warning" if outcome == "still running" else "information"
        self.app.notify(
            f"{one_line(thread_id, 40)}: {outcome} ({who})", severity=severity, markup=False
        )
        self.app.request_refresh()

    def fork_selected(self) -> None:
        """`F`: fork the selected thread after a run it completed, its ledger shown first."""
        if self.app.selected is not None:
            work = self._fork(self.app.selected)
            self.app.run_worker(work, group="actions", exit_on_error=False)

    async def _fork(self, thread_id: str) -> None:
        from supervisor.fork import (
            ForkRefused,
            completed_runs,
            fork_name,
            fork_thread,
            read_runs,
        )
        from supervisor.ui.screens.fork import ForkScreen

        where = Location.parse(self.app.runner.config.database)

        def read() -> tuple[list[tuple[str, int | None]], Transcript, list[Marker]]:
            return (
                read_runs(where, thread_id),
                self.app.reader.read_transcript(thread_id),
                self.app.runner.jobs.read_markers(),
            )

        name = one_line(thread_id, 40)
        try:
            runs, transcript, markers = await asyncio.to_thread(read)
        except Exception as exc:  # noqa: BLE001 - a read that failed is said, not raised
            self.app.notify(f"cannot fork {name}: {one_line(str(exc), 200)}", severity="error")
            return
        if not completed_runs(runs):
            self.app.notify(
                f"{name} has no completed run to fork after", severity="warning", markup=False
            )
            return
        summaries = self.app.summaries
        index = MarkerIndex(self.app.jobs_dir, markers, self.app.marker_hook())
        offered = fork_name(thread_id, set(summaries))
        jobs = Location.parse(self.app.jobs_dir)
        note = None
        if not jobs.server and not jobs.path.is_dir() and index.hook is None:
            note = f"no job markers at {jobs.shown} (no such directory): no call is known done"
        screen = ForkScreen(
            thread_id, offered, runs, transcript, index, summaries.__contains__, note
        )
        plan = await self.app.push_screen_wait(screen)
        if plan is None:
            return
        try:
            await asyncio.to_thread(fork_thread, where, plan)
        except ForkRefused as exc:
            self.app.notify(f"fork refused: {one_line(str(exc), 200)}", severity="warning")
            return
        repeats = len(plan.repeats)
        warn = (
            f"; {counted(repeats, 'side effect')} would repeat if called again" if repeats else ""
        )
        self.app.notify(
            f"forked {one_line(plan.new_thread, 40)} from {name}{warn if repeats else ''}",
            severity="warning" if repeats else "information",
            markup=False,
        )
        self.app.request_refresh()

    def prune_old(self) -> None:
        """`D`: remove old finished threads, after the dialog says which."""
        from supervisor.ui.screens.prune import PruneScreen

        def go(chosen: list[Any] | None) -> None:
            if chosen:
                self.app.run_worker(self._prune(chosen), group="actions", exit_on_error=False)

        screen = PruneScreen(lambda: list(self.app.summaries.values()), self.app.clock)
        self.app.push_screen(screen, go)

    async def _prune(self, chosen: list[Any]) -> None:
        from supervisor import retention
        from supervisor.prune import remove

        where = Location.parse(self.app.runner.config.database)
        jobs = Location.parse(self.app.jobs_dir)
        remover = where.thread_remover(self.app.store.busy_timeout)
        try:
            done = await retention.remove_in_batches(remover, where.leases(), chosen)
            ledger = where.attempts()
            try:
                markers = await asyncio.to_thread(jobs.read_markers)
                await asyncio.to_thread(
                    retention.forget, done, markers, lambda m: remove(jobs, m), ledger
                )
            finally:
                ledger.close()
        except Exception as exc:  # noqa: BLE001 - said, never raised into the app
            self.app.notify(f"prune failed: {one_line(str(exc), 200)}", severity="error")
            return
        kept = f"; {counted(len(done.skipped), 'thread')} kept" if done.skipped else ""
        self.app.notify(
            f"removed {counted(len(done.removed), 'thread')} "
            f"({counted(done.messages, 'message')}), {counted(done.markers, 'job marker')}"
            f"{kept}",
            markup=False,
        )
        self.app.reader.read_again()  # removed threads: only a whole read notices

    def new_thread(self) -> None:
        """`+` (and `p` on an empty database): a new thread, its id and its first prompt."""
        offered = f"thread-{time.strftime('%Y%m%d-%H%M%S', time.localtime(self.app.clock()))}"

        def send(chosen: tuple[str, str] | None) -> None:
            if chosen is not None:
                thread_id, text = chosen
                work = self._prompt(thread_id, text)
                self.app.run_worker(work, group="agents", exit_on_error=False)

        screen = NewThreadScreen(offered, lambda t: t in self.app.summaries)
        self.app.push_screen(screen, send)

    def prompt_selected(self) -> None:
        if self.app.selected is None:
            if not self.app.summaries:  # nothing to prompt yet: start a thread
                self.new_thread()
            return
        thread_id = self.app.selected
        state = self.app.state_of(thread_id)
        if state is State.AWAITING_INPUT:  # the thread waits on a question: answer it
            self.answer_one(thread_id)
            return

        def send(text: str | None) -> None:
            if text:
                self.app.run_worker(
                    self._prompt(thread_id, text), group="agents", exit_on_error=False
                )

        self.app.push_screen(PromptScreen(thread_id, str(state)), send)

    def answer_one(self, thread_id: str) -> None:
        """Open the answer dialog for a waiting thread; the answer runs it on."""
        request = self.app.summaries[thread_id].request
        if request is None or not request.answerable:
            self.app.notify(
                f"{one_line(thread_id, 40)} waits on a request the supervisor cannot answer",
                severity="warning",
                markup=False,
            )
            return

        def send(answer: Any) -> None:
            if answer is not None:
                self.app.run_worker(
                    self._answer(thread_id, answer), group="agents", exit_on_error=False
                )

        self.app.push_screen(AnswerScreen(thread_id, request), send)

    async def _answer(self, thread_id: str, answer: Any) -> None:
        await self._act("answer", thread_id, self.app.runner.answer(thread_id, answer))

    async def _prompt(self, thread_id: str, text: str) -> None:
        await self._act("prompt", thread_id, self.app.runner.prompt(thread_id, text))

    async def _act(self, verb: str, thread_id: str, start: Awaitable[Any]) -> None:
        """Start a run, say so (or why not), and keep the worker until it ends."""
        try:
            await start
        except Refused as exc:
            self.app.notify(
                f"{verb} refused: {one_line(str(exc), 200)}", severity="warning", markup=False
            )
            return
        self.app.notify(f"{verb}ed {one_line(thread_id, 40)}", markup=False)
        await self.app.runner.wait(thread_id)
