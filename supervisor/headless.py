"""`resume` and `prompt` without a UI: run, print events as they happen, exit.

Ctrl-C aborts every running thread gracefully (the agent's signal, then a
cancel after the grace period) so their threads stay resumable; a second
Ctrl-C cancels at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TextIO

from supervisor.events import envelope, line
from supervisor.report import event_line
from supervisor.runner import Refused, Run, Runner, RunnerConfig, RunnerEvent
from supervisor.states import State
from supervisor.text import one_line


class Printer:
    """Writes one line per event, prefixed by the thread id when there are several."""

    def __init__(self, out: TextIO, prefix: bool) -> None:
        self.out = out
        self.prefix = prefix

    def __call__(self, event: RunnerEvent) -> None:
        line = event_line(event)
        if line is None:
            return
        head = f"{one_line(event.thread_id, 24)}  " if self.prefix else ""
        self.out.write(head + line + "\n")
        self.out.flush()


class JsonLines:
    """Writes one JSON object per event (`--json`), in the schema every command's events
    share (`supervisor.events`): `thread`, `type`, `at`, `time`, then the event's own
    fields; each run ends with a `type: "outcome"` line."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, event: RunnerEvent) -> None:
        self.write(envelope(event.thread_id, event.type, event.at, **event.data))

    def refused(self, thread_id: str, state: State, reason: str, mode: str = "resume") -> None:
        """The outcome of a thread refused before any run started (its fields as a run's)."""
        self.write(
            envelope(
                thread_id,
                "outcome",
                mode=mode,
                outcome="refused",
                state=state.value,
                reason=reason,
            )
        )

    def outcome(self, run: Run, state: State | None, extra: dict[str, object]) -> None:
        self.write(
            envelope(
                run.thread_id,
                "outcome",
                mode=run.mode,
                outcome=run.outcome,
                state=None if state is None else state.value,
                **extra,
            )
        )

    def write(self, item: dict[str, object]) -> None:
        self.out.write(line(item) + "\n")
        self.out.flush()


async def run_threads(
    config: RunnerConfig,
    starts: list[Callable[[Runner], Awaitable[Run]]],
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    *,
    probe: str | None = None,
    prefix: bool | None = None,
    accept: frozenset[State] = frozenset({State.FINISHED, State.STOPPED, State.AWAITING_INPUT}),
    as_json: bool = False,
    outcome_extra: dict[str, object] | None = None,
) -> bool:
    """Start each thread's run, wait for all; True if every thread ended in `accept`.

    By default a thread that stops to ask a human counts as done: the run
    did all it could, and the question is in the database for `answer`.

    With `probe`, the agent factory is first called for that thread, so a
    factory that cannot build an agent raises `AgentLoadError` before any
    thread runs. `prefix` puts the thread id before each line (default: when
    there are several threads). `as_json`: JSON lines instead (`JsonLines`), each
    run's outcome line carrying `outcome_extra` too.
    """
    ok = True
    async with Runner(config) as runner:
        if probe is not None:
            await runner.check_agent(probe)
        lines = JsonLines(out) if as_json else None
        runner.subscribe(
            lines or Printer(out, prefix=len(starts) > 1 if prefix is None else prefix)
        )
        finals: dict[str, State | None] = {}
        runs: list[Run] = []
        for started in await _start_all(runner, starts):
            if isinstance(started, Refused):
                err.write(f"refused: {one_line(str(started), 200)}\n")
                ok = False
            else:
                runs.append(started)
        _install_interrupt(runner)
        await runner.wait_all()
        for run in runs:  # an abort its host began and the resume closed ends as it should
            finals[run.thread_id] = State.FINISHED if run.closed_abort else run.final_state
            if lines is not None:
                lines.outcome(run, finals[run.thread_id], outcome_extra or {})
        ok = ok and all(state in accept for state in finals.values())
        # A run that failed did not do what was asked, whatever the thread shows after it
        # (a prompt to a finished thread that errored before writing is still finished).
        ok = ok and all(run.outcome not in ("error", "cancelled") for run in runs)
    return ok


#: Threads whose start (its load, its lease) is under way at once.
STARTS_AT_ONCE = 32


async def _start_all(
    runner: Runner, starts: list[Callable[[Runner], Awaitable[Run]]]
) -> list[Run | Refused]:
    """Each start's run or refusal, in the order given; many under way at once.

    A start waits on the database (cubeloop loads the thread). One at a time,
    each waited behind the writes of every run already going: at 320 threads
    the last began 13 s after the first, and the runs, 3.6 s each, ended
    17 s after the start. A few workers take the starts in turn, so a
    100,000-thread `resume --all` does not hold 100,000 of them. The first
    error that is not a refusal stops the taking and is raised.
    """
    results: list[Run | Refused | None] = [None] * len(starts)
    queue = iter(enumerate(starts))
    failed: list[Exception] = []

    async def take() -> None:
        for index, start in queue:
            if failed:
                return
            try:
                results[index] = await start(runner)
            except Refused as exc:
                results[index] = exc
            except Exception as exc:  # noqa: BLE001 - raised below, once the others stop
                failed.append(exc)
                return

    await asyncio.gather(*(take() for _ in range(min(STARTS_AT_ONCE, len(starts)))))
    if failed:
        raise failed[0]
    return [r for r in results if r is not None]


def _install_interrupt(runner: Runner) -> None:
    loop = asyncio.get_running_loop()
    presses = 0

    def on_interrupt() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            sys.stderr.write("interrupt: aborting gracefully (Ctrl-C again to cancel now)\n")
            loop.create_task(runner.abort_all())
        else:
            for run in runner.running().values():
                if run.task is not None:
                    run.task.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError):  # non-Unix
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
