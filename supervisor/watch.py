"""The watcher: resume crashed threads by policy, with backoff and a held state.

`agent-supervisor watch DB` runs this headless for as long as it is let.
Every `poll` seconds it refreshes the store (incrementally, as the app does)
and resumes each thread that is in one of the policy's states and has been
quiet — no lease held, no row written — for `quiet` seconds, so it never
races a writer that is still alive. Each resume takes the thread's lease as
every run does: two watchers never run one thread twice.

A run that does not end `finished` (or stopped at a human's question)
counts as a failed attempt (`supervisor.attempts`): the thread is left
alone for a backoff that doubles each time, and after `max_attempts`
failures it is `held` until a person releases it. Threads waiting for a
human are never resumed; `aborted` ones only when the policy names them.

One line is logged per decision. Stopping (SIGTERM, SIGINT) aborts the
watcher's runs gracefully, so every thread stays resumable.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from supervisor import collector
from supervisor.attempts import Attempt, backoff_delay
from supervisor.events import Transitions, envelope
from supervisor.runner import Refused, Runner, RunnerEvent
from supervisor.states import State, ThreadSummary
from supervisor.text import one_line

#: What the watcher resumes unless told otherwise: every crash a resume can finish
#: without a person. Not `awaiting_input` (a human must answer), not `aborted` (a
#: person stopped it; `--states` may ask for it).
DEFAULT_STATES = frozenset(
    {State.MID_TOOL, State.AFTER_TOOLS, State.BETWEEN_TURNS, State.ERROR, State.ANSWERED}
)

#: States the watcher may be asked to resume (`--states`).
WATCHABLE = DEFAULT_STATES | {State.ABORTED}

#: The longest pause between two looks while the database does not answer.
LONGEST_PAUSE = 30.0

#: A run that ends in one of these did all it could: no failure.
SUCCESS = frozenset({State.FINISHED, State.STOPPED, State.AWAITING_INPUT})


@dataclass(frozen=True)
class Policy:
    states: frozenset[State] = DEFAULT_STATES
    max_attempts: int = 5
    #: First backoff and the longest, in seconds.
    backoff: tuple[float, float] = (10.0, 600.0)
    quiet: float = 30.0
    max_concurrent: int = 4
    poll: float = 1.0
    #: The most a thread may have cost (US dollars, `supervisor.usage`) for the watcher to
    #: resume it; past it the thread is held, with the reason. None: no budget.
    budget: float | None = None
    #: The price table the budget is counted with (`usage.Prices`).
    prices: Any = None


@dataclass
class _Ended:
    outcome: str | None
    state: str | None
    error: str | None


class Watcher:
    """Decides and starts; the runner runs, the ledger remembers."""

    def __init__(
        self,
        store: Any,
        runner: Runner,
        ledger: Any,
        policy: Policy | None = None,
        *,
        clock: Callable[[], float] = time.time,
        log: Callable[[str], None] = print,
        events: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.store, self.runner, self.ledger = store, runner, ledger
        self.policy = policy or Policy()
        self.clock, self.log = clock, log
        #: Where each event goes (`watch --events`, `--on-event`: `supervisor.events`).
        self.events = events
        #: Threads newly waiting for a person, for `events`.
        self._needs = Transitions()
        #: Runs this watcher started that ended since the last look.
        self._ended: dict[str, _Ended] = {}
        self._errors: dict[str, str] = {}
        self._started: set[str] = set()
        #: The backoff each waiting thread was last logged with (one line per wait).
        self._waiting: dict[str, float] = {}
        #: This watcher's own records, until the summaries it is given show them.
        self._decided: dict[str, Attempt] = {}
        #: Threads last seen in a policy state: the only ones a look goes through.
        self._candidates: dict[str, ThreadSummary] = {}
        #: When a candidate found not yet due (quiet, backing off) can be due at the
        #: soonest; it is not looked at again before, unless a refresh shows it changed.
        #: An idle watcher over thousands of crashed threads costs a comparison each.
        self._not_before: dict[str, float] = {}
        self._looked = False
        #: Threads whose unpriced models were said once (`--budget`).
        self._unpriced_said: set[str] = set()
        runner.subscribe(self._on_event)

    def observe(self, summaries: Iterable[ThreadSummary], *, everything: bool = False) -> None:
        """Take in what a refresh changed (`everything`: the whole list, replacing the last).

        Each thread is classified here, once per change, so a look costs the
        threads in a policy state, never the whole list (the app looks every
        second on its UI loop).
        """
        if everything:
            self._candidates = {}
            self._not_before = {}
        if self.events is not None:
            summaries = list(summaries)
            for need in self._needs.observe(summaries, everything=everything):
                if need.kind == "awaiting_input":  # held: said where this watcher holds one
                    extra = {"at_start": True} if need.at_start else {}
                    self._tell(
                        need.thread_id,
                        "awaiting_input",
                        need.state,
                        need.reason,
                        request=need.request,
                        **extra,
                    )
        for s in summaries:
            self._caught_up(s)
            self._not_before.pop(s.thread_id, None)
            if s.state in self.policy.states or _parked(s):
                self._candidates[s.thread_id] = s
            else:
                self._candidates.pop(s.thread_id, None)

    def _on_event(self, event: RunnerEvent) -> None:
        if event.thread_id not in self._started:
            return
        if event.type == "error":
            self._errors[event.thread_id] = str(event.data.get("message", ""))
        elif event.type == "run_end":
            error = self._errors.pop(event.thread_id, None)
            data = event.data
            self._ended[event.thread_id] = _Ended(data.get("outcome"), data.get("state"), error)

    async def step(self) -> list[str]:
        """One look: refresh, account for runs that ended, start what is due; the started."""
        await self._refresh()
        if await self._account():  # the records changed: read them (and the runs' rows) again
            await self._refresh()
        return await self.act()

    async def _refresh(self) -> None:
        touched = await asyncio.to_thread(self._read)
        if not self._looked:  # the store may have been read before: take all of it once
            self._looked = True
            hint = await asyncio.to_thread(self.store.index_hint)
            if hint is not None:  # every resume reads its thread; every look, for Postgres
                self.log(f"note: {hint}")
            self.observe(self.store.threads(), everything=True)
        else:
            self.observe(s for t in touched if (s := self.store.get(t)) is not None)

    def _read(self) -> set[str]:
        # The daemon's loop is a program's edge: it decides the collector's policy
        # for its own reads, as the app does for its refreshes.
        with collector.bulk_read():
            return self.store.refresh()

    async def act(self) -> list[str]:
        """Account for ended runs, then start every due candidate; the started.

        The app feeds `observe` from its own refreshes and calls this (it must
        not take the store's refresh results from the list).
        """
        await self._account()
        now = self.clock()
        started: list[str] = []
        running = len(self.runner.running())
        free = self.policy.max_concurrent - running
        not_before = self._not_before
        due: list[ThreadSummary] = []
        for s in list(self._candidates.values()):
            if len(due) >= free:
                break
            if now < not_before.get(s.thread_id, 0.0):
                continue
            if self._due(s, now):
                due.append(s)
        if due and self.policy.budget is not None:
            due = await self._within_budget(due)
        for s in due:
            if len(self.runner.running()) >= self.policy.max_concurrent:
                break
            if await self._start(s):
                started.append(s.thread_id)
        return started

    async def _within_budget(self, due: list[ThreadSummary]) -> list[ThreadSummary]:
        """The due threads whose cost is within the budget; the others are held, with the
        reason (a person raises the budget or releases them). What each cost is read in
        one pass for all of them (`Store.usage_rows`)."""
        from supervisor.usage import cost_text, grouped

        budget = self.policy.budget
        rows, copied = await asyncio.to_thread(
            self.store.usage_rows, None, [s.thread_id for s in due]
        )
        costs = {g.key[0]: g.cost(self.policy.prices) for g in grouped(rows, "thread", copied)}
        within = []
        for s in due:
            cost, unpriced = costs.get(s.thread_id, (0.0, []))
            if budget is not None and cost > budget:
                reason = (
                    f"over its budget: {cost_text(cost, unpriced)} spent, "
                    f"the budget is ${budget:,.2f}"
                )
                record = await asyncio.to_thread(self.ledger.hold, s.thread_id, reason)
                self._decided[s.thread_id] = record
                self.log(f"{_name(s.thread_id)}: held, not resumed: {reason}")
                self._tell(
                    s.thread_id,
                    "held",
                    s.state.value,
                    reason,
                    attempts=record.attempts,
                    cost_usd=round(cost, 6),
                )
                continue
            if unpriced and s.thread_id not in self._unpriced_said:
                self._unpriced_said.add(s.thread_id)
                self.log(
                    f"{_name(s.thread_id)}: no price for {', '.join(unpriced)}: "
                    "its budget counts the priced models only"
                )
            within.append(s)
        return within

    def _caught_up(self, s: ThreadSummary) -> Attempt | None:
        """This watcher's own record of the thread, until the summary shows it.

        Once a summary has shown it, the record goes, so a later release (the
        summary then shows none) makes the thread eligible again.
        """
        mine = self._decided.get(s.thread_id)
        if mine is not None and s.attempt is not None and s.attempt.attempts >= mine.attempts:
            del self._decided[s.thread_id]
            return None
        return mine

    def _due(self, s: ThreadSummary, now: float) -> bool:
        """Quiet long enough, not running, not held, not backing off (a candidate's state
        is in the policy: `observe` saw to that).

        What this watcher decided itself counts before the summary shows it
        (a summary is as old as its refresh).
        """
        if self.runner.is_running(s.thread_id):
            return False
        attempt = s.attempt
        mine = self._caught_up(s)
        if mine is not None and mine.held:
            return False
        if now - (s.last_activity or 0.0) < self.policy.quiet:
            self._not_before[s.thread_id] = (s.last_activity or 0.0) + self.policy.quiet
            return False
        next_at = max(
            attempt.next_at if attempt is not None and attempt.next_at is not None else 0.0,
            mine.next_at if mine is not None and mine.next_at is not None else 0.0,
        )
        if now < next_at:
            self._not_before[s.thread_id] = next_at
            if self._waiting.get(s.thread_id) != next_at:
                self._waiting[s.thread_id] = next_at
                self.log(f"{_name(s.thread_id)}: backing off until {_clock(next_at)}")
            return False
        return True

    async def _start(self, s: ThreadSummary) -> bool:
        attempt = (s.attempt.attempts if s.attempt else 0) + 1
        try:
            # quiet is our liveness test
            await self.runner.resume(s.thread_id, force=True, attempt=attempt)
        except Refused as exc:  # e.g. another watcher took its lease since the refresh
            self.log(f"{_name(s.thread_id)}: skipped ({one_line(str(exc), 120)})")
            return False
        except Exception as exc:  # the agent would not build: a failed attempt
            await self._failed(s.thread_id, f"{type(exc).__name__}: {exc}")
            return False
        self._started.add(s.thread_id)
        self._waiting.pop(s.thread_id, None)
        self.log(f"{_name(s.thread_id)}: resumed from {s.state} (attempt {attempt})")
        self._tell(s.thread_id, "resumed", s.state.value, None, attempt=attempt)
        return True

    def _tell(
        self, thread_id: str, kind: str, state: str | None, reason: str | None, **fields: Any
    ) -> None:
        """One event for `events` (`supervisor.events`), if anyone listens."""
        if self.events is not None:
            self.events(
                envelope(thread_id, kind, self.clock(), state=state, reason=reason, **fields)
            )

    async def _account(self) -> bool:
        """Record how each run that ended since the last look went; whether any had."""
        ended_any = bool(self._ended)
        for thread_id, ended in list(self._ended.items()):
            del self._ended[thread_id]
            self._started.discard(thread_id)
            if ended.state in SUCCESS:
                await asyncio.to_thread(self.ledger.succeeded, thread_id)
                self._decided.pop(thread_id, None)
                self.log(f"{_name(thread_id)}: {ended.state}")
                if ended.state == State.FINISHED:
                    self._tell(thread_id, "finished", ended.state, None)
            elif ended.outcome in ("aborted", "cancelled"):
                # Stopped on request (ours at shutdown, or a person's): not a failure.
                self.log(f"{_name(thread_id)}: {ended.outcome}, left {ended.state}")
            else:
                s = self.store.get(thread_id)
                why = ended.error or (s.last_error if s is not None else None)
                await self._failed(thread_id, why or f"ended {ended.state} ({ended.outcome})")
        return ended_any

    async def _failed(self, thread_id: str, why: str) -> None:
        """Count the failure; the ledger's reads and writes run off the loop (the app's UI
        loop drives the in-app watcher, and a ledger file shared with another watcher
        may be locked for a moment)."""
        known = (await asyncio.to_thread(self.ledger.all)).get(thread_id)
        attempts = (known.attempts if known else 0) + 1
        initial, longest = self.policy.backoff
        next_at = self.clock() + backoff_delay(attempts, initial, longest)
        record = await asyncio.to_thread(
            self.ledger.failed, thread_id, one_line(why, 300), next_at, self.policy.max_attempts
        )
        self._decided[thread_id] = record
        self._not_before.pop(thread_id, None)
        self._waiting[thread_id] = next_at  # said here: no second "backing off" line
        s = self.store.get(thread_id)
        state = s.state.value if s is not None else None
        self._tell(
            thread_id,
            "attempt_failed",
            state,
            one_line(why, 300),
            attempt=record.attempts,
            next_at=None if record.held else next_at,
        )
        if record.held:
            self.log(
                f"{_name(thread_id)}: held after {record.attempts} attempt(s): {one_line(why, 200)}"
            )
            self._tell(thread_id, "held", state, one_line(why, 300), attempts=record.attempts)
        else:
            self.log(
                f"{_name(thread_id)}: failed ({one_line(why, 200)}); attempt {record.attempts} "
                f"of {self.policy.max_attempts}, backing off until {_clock(next_at)}"
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Look every `poll` seconds until `stop`; then abort this watcher's runs gracefully."""
        self.log(
            f"watching {self.store.location}: resuming {', '.join(sorted(self.policy.states))} "
            f"after {self.policy.quiet:g}s quiet, at most {self.policy.max_attempts} attempt(s)"
        )
        announced = await self.runner.leases.announce_watcher()
        failing: str | None = None
        pause = self.policy.poll
        try:
            while not stop.is_set():
                try:
                    await self.step()
                except Exception as exc:  # a daemon outlives a restart, a lock, a full disk
                    why = one_line(f"{type(exc).__name__}: {exc}", 200)
                    pause = min(max(pause * 2, self.policy.poll), LONGEST_PAUSE)
                    if why != failing:
                        failing = why
                        self.log(
                            f"look failed ({why}); trying again, at most every "
                            f"{LONGEST_PAUSE:g}s, until it works"
                        )
                else:
                    if failing is not None:
                        failing = None
                        self.log("looking again: the database answers")
                    pause = self.policy.poll
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
        finally:
            running = list(self.runner.running())
            if running:
                self.log(f"stopping: aborting {len(running)} run(s) gracefully")
            await self.runner.abort_all()
            await asyncio.sleep(0)
            stopped = [
                t
                for t in running
                if (ended := self._ended.get(t)) is not None
                and ended.outcome in ("aborted", "cancelled")
            ]
            await self._account()
            for thread_id in stopped:  # the next watcher takes them up again
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.ledger.parked, thread_id)
                    self.log(f"{_name(thread_id)}: parked for the next watcher")
            if announced is not None:
                await self.runner.leases.release(announced)
            self.log("stopped")


def _parked(s: ThreadSummary) -> bool:
    """A thread a watcher stopped at its shutdown, left where the stop left it (aborted)."""
    return s.attempt is not None and s.attempt.parked and s.state is State.ABORTED


def _name(thread_id: str) -> str:
    return one_line(thread_id, 60)


def _clock(when: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(when))
