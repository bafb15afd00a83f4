"""What a run is: its configuration, the events it reports, and its state while it lasts.

Shared by the runner and those who drive it (the CLI, the app, the watcher):
they configure runs with `RunnerConfig`, hear of them as `RunnerEvent`s, and
are told no with `Refused`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor.agents import AgentLoadError, DeferredAgent, Factory, LoadedAgent
from supervisor.plan import MarkerHook
from supervisor.states import State

if TYPE_CHECKING:
    from cubeloop import Agent

    from supervisor.run_tracing import RunSpan
    from supervisor.tracing import Tracing

DEFAULT_CONTINUE_TEXT = "Continue where you left off."

#: States `prompt` accepts: a new user message keeps the transcript valid.
PROMPTABLE = frozenset(
    {
        State.FINISHED,
        State.STOPPED,
        State.EMPTY,
        State.ABORTED,
        State.ERROR,
        State.BETWEEN_TURNS,
        State.AFTER_TOOLS,
    }
)


class Refused(Exception):
    """An action the runner will not take; the message says why."""


class PossiblyLive(Refused):
    """Refused only because the thread may be live elsewhere; `force` overrides."""


@dataclass(frozen=True)
class RunnerEvent:
    """Something that happened in a worker. `type` names it; `data` holds details.

    Agent events keep cubeloop's names (`message_end`, `tool_execution_start`,
    …); the runner adds `queued`, `run_start`, `recovery`, `text` (coalesced
    deltas), `error` and `run_end` (with the thread's state afterwards).
    """

    thread_id: str
    type: str
    data: dict[str, Any]
    at: float


@dataclass
class RunnerConfig:
    #: A SQLite file, or a `postgresql://` URL (`supervisor.location`).
    database: Path | str
    #: The agent, loaded (`factory`, `marker_hook`, `agent_ref`) or `deferred` (the
    #: app's: imported after its first frame); read it through `agent()`.
    factory: Factory | None = field(default=None, kw_only=True)
    deferred: DeferredAgent | None = field(default=None, kw_only=True)
    #: A directory, or a Postgres URL (`Location.markers`).
    jobs_dir: Path | str
    #: Who named `jobs_dir` ("--jobs-dir", "$JOB_DIR"); None: the default place, which
    #: tools that keep no markers never make (`Location.missing_markers`).
    jobs_named_by: str | None = field(default=None, kw_only=True)
    agent_ref: str = "agent"
    #: Whether the agent was named (`--agent`, `$AGENT_SUPERVISOR_AGENT`), not the
    #: built-in demo taken for want of one (`Runner._check_agent_fits`).
    agent_named: bool = field(default=True, kw_only=True)
    max_concurrent: int = 4
    continue_text: str = DEFAULT_CONTINUE_TEXT
    mid_tool_strategy: str = "rerun"  # or "interrupt"
    abort_grace: float = 5.0
    #: An open run written to this recently may be live in another process.
    live_window: float = 120.0
    #: Streaming text is delivered at most this often per thread.
    coalesce_seconds: float = 0.05
    clock: Callable[[], float] = time.time
    #: Measures tool durations; tests that snapshot the screen pass a fixed one.
    stopwatch: Callable[[], float] = time.monotonic
    #: The agent module's marker hook, for plans (see `supervisor.plan`).
    marker_hook: MarkerHook | None = None
    #: How often a run checks for another process's abort request.
    abort_poll: float = 0.25
    #: How often a run checks that it still holds its lease (a lost one is taken back).
    lease_check: float = 1.0
    #: Each run exported as an OpenTelemetry trace (`--otel`); None: not traced.
    tracing: Tracing | None = None

    def agent(self) -> LoadedAgent:
        """The agent runs are built with; a deferred one is imported here if it is not
        yet (blocking: call it from a thread where that matters)."""
        if self.deferred is not None:
            return self.deferred.load()
        if self.factory is None:
            raise AgentLoadError("no agent configured")
        return LoadedAgent(self.agent_ref, self.factory, self.marker_hook)


@dataclass
class Run:
    """One worker: a thread being resumed or prompted."""

    thread_id: str
    mode: str
    started_at: float
    task: asyncio.Task[None] | None = None
    agent: Agent | None = None
    #: A file lease or a Postgres advisory lease (see `Location.leases`).
    lease: Any = None
    signal: asyncio.Event = field(default_factory=asyncio.Event)
    #: "queued", "running", then "finishing" (its end is being written: an abort waits).
    phase: str = "queued"
    outcome: str | None = None
    final_state: State | None = None
    text: list[str] = field(default_factory=list)
    flush_handle: asyncio.TimerHandle | None = None
    tool_started: dict[str, float] = field(default_factory=dict)
    #: The run id given to the factory and to cubeloop (a HITL channel's must match).
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: For `answer` runs: the human's answer, or None to use the stored one.
    answer: Any = None
    #: The run stopped to wait for a human (its request is in the database).
    suspended: bool = False
    #: The run closed an abort its host began (`Runner._finish_abort`): `aborted` is its due end.
    closed_abort: bool = False
    #: Set while the run holds its lease; cleared while a lost lease is being taken back
    #: (no tool call starts meanwhile: `LeaseKeeper.gate_tools`).
    lease_ok: asyncio.Event = field(default_factory=asyncio.Event)
    #: Another process took the lease while it was lost: the run writes nothing more.
    lease_gone: bool = False
    #: The watcher's count of this thread's resumes, this one included; None: not the watcher's.
    attempt: int | None = None
    #: The run's span when runs are traced (`RunnerConfig.tracing`).
    trace: RunSpan | None = None


@dataclass(frozen=True)
class Carried:
    """What a resume found: the thread's state, and the run it goes on in."""

    state: State
    #: None: a new run (an aborted or failed thread is continued by a prompt).
    run_id: str | None
    #: A pending request whose question the transcript shows settled, and its run:
    #: cubeloop was stopped between saving the result and clearing the request.
    stale_request: tuple[str, str | None] | None = None
    #: An abort `abort_pending` began and a crash cut short (its reason).
    abort: str | None = None
