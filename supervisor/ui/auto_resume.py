"""`w`: the app itself resumes crashed threads that stay quiet, as `agent-supervisor watch` does.

The same `Watcher` as the headless command,
with the same policy defaults (its quiet period is the app's own "may still
be live" window), the same attempt records and the same held state. It
acts on the summaries of the app's own refreshes (once a second) rather
than refreshing the store itself, which would take those refreshes'
results from the list. While it is on, the header says so and other
processes see a watcher on this database.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from textual.timer import Timer

from supervisor.states import State, ThreadSummary
from supervisor.store import StoreError
from supervisor.text import one_line
from supervisor.watch import Policy, Watcher

if TYPE_CHECKING:
    from supervisor.ui.app import SupervisorApp

#: Seconds between the in-app watcher's looks.
AUTO_RESUME_EVERY = 1.0


class AutoResumer:
    """Turns the in-app watcher on and off, drives it, and releases held threads.

    It owns the watcher and its timer; from the app it takes the store, the
    runner, the summaries of the app's own refreshes, and the app's workers,
    notifications and header.
    """

    def __init__(self, app: SupervisorApp) -> None:
        self.app = app
        #: The in-app watcher while auto-resume is on.
        self.watcher: Watcher | None = None
        self._timer: Timer | None = None
        #: This process's announcement as a watcher of the database (other processes see it).
        self._announced: Any = None
        self._busy = False

    @property
    def active(self) -> bool:
        return self.watcher is not None

    def toggle(self) -> None:
        if self.watcher is None:
            self._start()
        else:
            self._stop()

    def observe(self, changed: Iterable[ThreadSummary], everything: bool) -> None:
        """The summaries a refresh changed (all of them after a full read)."""
        if self.watcher is not None:
            self.watcher.observe(changed, everything=everything)

    def _start(self) -> None:
        self.app.run_worker(
            self._start_work(), group="auto-resume", exclusive=True, exit_on_error=False
        )

    async def _start_work(self) -> None:
        ledger = self.app.runner.location.attempts()
        try:
            await asyncio.to_thread(ledger.require)  # Postgres: our table must be there
        except StoreError as exc:
            self.app.notify(one_line(str(exc), 200), severity="error", markup=False)
            return
        config = self.app.runner.config
        # Quiet for as long as the app itself deems a thread possibly live (`live_window`).
        policy = Policy(quiet=config.live_window, max_concurrent=config.max_concurrent)
        self.watcher = Watcher(
            self.app.store, self.app.runner, ledger, policy, clock=self.app.clock, log=self._log
        )
        # Classifies every thread once; after this only what refreshes change.
        self.watcher.observe(self.app.summaries.values(), everything=True)
        self._announced = await self.app.runner.leases.announce_watcher()
        self._timer = self.app.set_interval(AUTO_RESUME_EVERY, self._tick)
        states = ", ".join(sorted(policy.states))
        self.app.notify(
            f"auto-resume on: {states} after {policy.quiet:g}s quiet, "
            f"at most {policy.max_attempts} attempts",
            markup=False,
        )
        self.app.update_header()

    def _stop(self) -> None:
        watcher, self.watcher = self.watcher, None
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if watcher is not None:
            watcher.ledger.close()
        if self._announced is not None:
            lease, self._announced = self._announced, None
            self.app.run_worker(self.app.runner.leases.release(lease), exit_on_error=False)
        self.app.notify("auto-resume off (runs under way go on)", markup=False)
        self.app.update_header()

    async def _tick(self) -> None:
        watcher = self.watcher
        if watcher is None or self._busy:
            return
        self._busy = True
        try:
            await watcher.act()
        finally:
            self._busy = False

    def release_chosen(self) -> None:
        """`x`: the selected held thread, or every marked one."""
        held = self.app.actions.targets([State.HELD])
        if not held:
            self.app.notify("no held thread selected (or marked)", severity="warning")
            return
        self.release(held)

    def release(self, threads: list[str]) -> None:
        self.app.run_worker(
            functools.partial(self._release_work, threads),
            thread=True,
            group="release",
            exit_on_error=False,
        )

    def _release_work(self, threads: list[str]) -> None:
        """Clear the watcher's records of these threads, as `agent-supervisor release` does."""
        ledger = self.app.runner.location.attempts()
        try:
            released = ledger.release(threads)
        except (StoreError, OSError) as exc:
            self.app.call_from_thread(self.app.notify, one_line(str(exc), 200), severity="error")
            return
        finally:
            ledger.close()
        names = ", ".join(one_line(t, 30) for t in released[:3]) + (
            " …" if len(released) > 3 else ""
        )
        self.app.call_from_thread(self.app.notify, f"released {names}", markup=False)
        self.app.call_from_thread(self.app.request_refresh)

    def _log(self, line: str) -> None:
        """Decisions that change a thread are worth a notification; waits are not."""
        if "backing off" not in line:
            self.app.notify(one_line(line, 200), title="auto-resume", markup=False)
        self.app.request_refresh()  # attempts and held states show in the list
