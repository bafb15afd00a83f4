"""Keeping a run's lease: another process's abort request honoured, a lost lease taken back.

A Postgres lease lives on a connection the server may end on its own
(`idle_session_timeout`, a restart, a proxy). While it is lost no tool call
starts; it is taken back on a new connection, and if another process took it
meanwhile that process runs the thread now: this run is fenced off the
database (`Fenced`: writes refused) and cancelled, writing nothing more.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from supervisor import leases
from supervisor.run_model import Run

if TYPE_CHECKING:
    from cubeloop import Agent


class LeaseKeeper:
    """Watches the leases of one runner's runs."""

    def __init__(
        self,
        board: Any,
        emit: Callable[..., None],
        abort: Callable[[str], Awaitable[bool]],
        abort_poll: float,
        lease_check: float,
    ) -> None:
        #: The lease board (`Location.leases`): files beside a database, or the server's.
        self.leases = board
        self.emit, self.abort = emit, abort
        #: How often a run checks for another process's abort request, and for its lease.
        self.abort_poll, self.lease_check = abort_poll, lease_check

    async def guard(self, run: Run) -> None:
        """Honour another process's request to abort this run (see `leases`), and keep
        the lease: checked every `lease_check` seconds, taken back when lost."""
        checked = time.monotonic()
        while run.lease is not None:
            await asyncio.sleep(self.abort_poll)
            who = self.leases.abort_requested(run.lease)
            if who is not None:
                by = leases.holder_text(who) if who else "another process"
                self.emit(run.thread_id, "note", text=f"abort requested by {by}")
                await self.abort(run.thread_id)
                return
            if time.monotonic() - checked < self.lease_check:
                continue
            checked = time.monotonic()
            if not await self.leases.alive(run.lease):
                await self.take_back(run)
                if run.lease_gone:
                    return

    async def take_back(self, run: Run) -> None:
        """A lost lease: hold every new tool call until it is taken back (retrying while the
        server is away). If another process took it meanwhile, that process now runs the
        thread: this run is fenced off from the database and cancelled, writing nothing."""
        run.lease_ok.clear()
        self.emit(
            run.thread_id,
            "note",
            text="lease lost (its connection ended): no tool call starts until it is taken back",
        )
        delay = 0.2
        while run.task is not None and not run.task.done():
            try:
                await self.leases.retake(run.lease)
            except leases.LeaseHeld as exc:
                run.lease_gone = True
                if run.agent is not None:
                    run.agent.checkpointer = Fenced(run.agent.checkpointer)
                run.lease_ok.set()
                self.emit(
                    run.thread_id,
                    "error",
                    message=f"lease taken by {leases.holder_text(exc.holder)} while it was lost:"
                    " this run stops here and writes nothing more",
                )
                run.task.cancel()
                return
            except Exception:  # the server is away: keep trying, tools keep waiting
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            run.lease_ok.set()
            self.emit(run.thread_id, "note", text="lease taken back")
            return

    def gate_tools(self, run: Run, agent: Agent) -> None:
        """No tool call starts while the run's lease is lost (`take_back`)."""
        original = agent.before_tool_call

        async def gated(ctx: Any, *, signal: Any = None) -> Any:
            await run.lease_ok.wait()
            if run.lease_gone:
                raise asyncio.CancelledError  # fenced: the task is being cancelled
            return None if original is None else await original(ctx, signal=signal)

        agent.before_tool_call = gated


class Fenced:
    """A run's checkpointer once another process took its lease: reads pass, writes fail.

    cubeloop writes on every way out of a run (an aborted message, cancelled
    results); none of that may land while another process runs the thread.
    """

    _WRITES = frozenset(
        {
            "append",
            "save_extra",
            "save_pending_request",
            "save_hitl_answer",
            "clear_hitl_answers",
            "claim_run",
            "mark_run_complete",
            "clear_pending_request_if_matches",
        }
    )

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name in self._WRITES:

            async def refused(*_args: Any, **_kwargs: Any) -> None:
                raise RuntimeError("this supervisor lost the thread's lease to another process")

            return refused
        return getattr(self._inner, name)
