"""`w`: the app itself resumes crashed threads that stay quiet, as `agent-supervisor watch` does.

A mixin of `SupervisorApp`. The same `Watcher` as the headless command,
with the same policy defaults (its quiet period is the app's own "may still
be live" window), the same attempt records and the same held state. It
acts on the summaries of the app's own refreshes (once a second) rather
than refreshing the store itself, which would take those refreshes'
results from the list. While it is on, the header says so and other
processes see a watcher on this database.
"""

from __future__ import annotations

import asyncio
from typing import Any

from textual import work
from textual.timer import Timer

from supervisor.states import State
from supervisor.store import StoreError
from supervisor.text import one_line
from supervisor.watch import Policy, Watcher

#: Seconds between the in-app watcher's looks.
AUTO_RESUME_EVERY = 1.0


class AutoResume:
    """Turns the in-app watcher on and off, and drives it."""

    _auto: Watcher | None = None
    _auto_timer: Timer | None = None
    _auto_announced: Any = None
    _auto_busy = False

    @property
    def auto_resume(self) -> bool:
        return self._auto is not None

    def action_auto_resume(self) -> None:
        if self._auto is None:
            self._start_auto_resume()
        else:
            self._stop_auto_resume()

    @work(group="auto-resume", exclusive=True, exit_on_error=False)
    async def _start_auto_resume(self) -> None:
        ledger = self.runner.location.attempts()
        try:
            if hasattr(ledger, "require"):  # Postgres: our table must be there
                await asyncio.to_thread(ledger.require)
        except StoreError as exc:
            self.notify(one_line(str(exc), 200), severity="error", markup=False)
            return
        config = self.runner.config
        # Quiet for as long as the app itself deems a thread possibly live (`live_window`).
        policy = Policy(quiet=config.live_window, max_concurrent=config.max_concurrent)
        self._auto = Watcher(
            self.store, self.runner, ledger, policy, clock=self.clock, log=self._auto_log
        )
        # Classifies every thread once; after this only what refreshes change.
        self._auto.observe(self.summaries.values(), everything=True)
        self._auto_announced = await self.runner.leases.announce_watcher()
        self._auto_timer = self.set_interval(AUTO_RESUME_EVERY, self._auto_tick)
        states = ", ".join(sorted(policy.states))
        self.notify(
            f"auto-resume on: {states} after {policy.quiet:g}s quiet, "
            f"at most {policy.max_attempts} attempts",
            markup=False,
        )
        self._update_summary_line()

    def _stop_auto_resume(self) -> None:
        watcher, self._auto = self._auto, None
        if self._auto_timer is not None:
            self._auto_timer.stop()
            self._auto_timer = None
        if watcher is not None:
            watcher.ledger.close()
        if self._auto_announced is not None:
            lease, self._auto_announced = self._auto_announced, None
            self.run_worker(self.runner.leases.release(lease), exit_on_error=False)
        self.notify("auto-resume off (runs under way go on)", markup=False)
        self._update_summary_line()

    async def _auto_tick(self) -> None:
        watcher = self._auto
        if watcher is None or self._auto_busy:
            return
        self._auto_busy = True
        try:
            await watcher.act()
        finally:
            self._auto_busy = False

    def action_release(self) -> None:
        held = self._targets([State.HELD])
        if not held:
            self.notify("no held thread selected (or marked)", severity="warning")
            return
        self._release(held)

    @work(thread=True, group="release", exit_on_error=False)
    def _release(self, threads: list[str]) -> None:
        """Clear the watcher's records of these threads, as `agent-supervisor release` does."""
        ledger = self.runner.location.attempts()
        try:
            released = ledger.release(threads)
        except (StoreError, OSError) as exc:
            self.call_from_thread(self.notify, one_line(str(exc), 200), severity="error")
            return
        finally:
            ledger.close()
        names = ", ".join(one_line(t, 30) for t in released[:3]) + (
            " …" if len(released) > 3 else ""
        )
        self.call_from_thread(self.notify, f"released {names}", markup=False)
        self.call_from_thread(self.request_refresh)

    def _auto_log(self, line: str) -> None:
        """Decisions that change a thread are worth a notification; waits are not."""
        if "backing off" not in line:
            self.notify(one_line(line, 200), title="auto-resume", markup=False)
        self.request_refresh()  # attempts and held states show in the list
