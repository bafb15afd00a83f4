"""Background workers that resume, prompt and abort threads — headless.

One asyncio task per thread, at most one per thread in this process (and,
through a lease, across processes), with a limit on how many run at once.
Every agent event reaches subscribers in order as a `RunnerEvent`, with
streaming text coalesced so a fast model cannot flood them. The UI and the
headless CLI both drive this class; neither reaches into its state.

How each resume state is brought back (docs/design.md, docs/resume.md):

- `between_turns`, `after_tools`: load the history, `resume()`.
- `mid_tool`: run the unanswered tool calls through the agent's own tools
  (their job markers make a re-run safe), persist each result, then
  `resume()`; or, with the `interrupt` strategy, record each unanswered
  call as interrupted and let the model decide.
- `aborted`, `error`: close any dangling tool calls, then continue with a
  user message.
- `finished`, `empty`: nothing to resume; a prompt starts a new run.
- `awaiting_input`: `answer` gives the human's answer through
  `Agent.respond`, with the agent built for the pending request's run.
- `answered` (the answer was stored, then the process died): resumed by
  `respond` with the stored answer; nobody is asked again.
- `corrupt`, `running`: refused with a reason.

A run that raises a human-in-the-loop request is detached (cubeloop's
`Agent.detach`) so it ends as `awaiting_input` instead of waiting in memory.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from supervisor import leases, runs
from supervisor.agents import (
    DEFAULT_AGENT,
    AgentLoadError,
    LoadedAgent,
    build_agent,
    demo_lacks_tool,
)
from supervisor.children import parent_of
from supervisor.extra import save_extra_after_each_result
from supervisor.hitl import parse_request
from supervisor.lease_keeping import LeaseKeeper
from supervisor.location import Location
from supervisor.markers import current_thread
from supervisor.plan import live_reason, markers_in_doubt, refusal
from supervisor.run_events import EventRelay, first_line
from supervisor.run_model import (
    DEFAULT_CONTINUE_TEXT,
    PROMPTABLE,
    Carried,
    PossiblyLive,
    Refused,
    Run,
    RunnerConfig,
    RunnerEvent,
)
from supervisor.states import RESUMABLE, State, ThreadSummary
from supervisor.store import summary_from_dicts

__all__ = [
    "DEFAULT_CONTINUE_TEXT",
    "PROMPTABLE",
    "PossiblyLive",
    "Refused",
    "Run",
    "Runner",
    "RunnerConfig",
    "RunnerEvent",
]

# The agent stack is imported when an agent first runs (`supervisor.tool_calls`):
# the app draws its first screen before it, and `list` never needs it.
if TYPE_CHECKING:
    from cubeloop import Agent
    from cubeloop.providers.base import Message

#: Seconds an abort waits, past its grace, for a run that has stopped and is winding down
#: (its final state read, its lease let go) before it cancels that too. Less than what the
#: watcher (`cli.watch.SHUTDOWN_MARGIN`) and `serve` (`END_MARGIN`) allow past the grace
#: before they stop waiting: an abort that outlasted them ended in a hard exit.
FINISHING_WAIT = 3.0


class Runner:
    """Runs threads of one database as background asyncio tasks."""

    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        self._runs: dict[str, Run] = {}
        self._subscribers: list[Callable[[RunnerEvent], None]] = []
        self._checkpointer: Any = None
        self._open_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(config.max_concurrent)
        self.location = Location.parse(config.database)
        self.jobs = Location.parse(config.jobs_dir)
        self.leases = self.location.leases()
        self.keeper = LeaseKeeper(
            self.leases, self._emit, self.abort, config.abort_poll, config.lease_check
        )
        self.relay = EventRelay(self._emit, config.stopwatch, config.coalesce_seconds)

    # -- subscribers ----------------------------------------------------

    def subscribe(self, callback: Callable[[RunnerEvent], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def _emit(self, thread_id: str, type_: str, **data: Any) -> None:
        event = RunnerEvent(thread_id, type_, data, self.config.clock())
        run = self._runs.get(thread_id)
        if run is not None and run.trace is not None:
            run.trace.event(type_, data)
        for callback in tuple(self._subscribers):
            try:
                callback(event)
            except Exception:  # a broken subscriber must not stop a worker
                continue

    # -- queries --------------------------------------------------------

    def running(self) -> dict[str, Run]:
        """Threads with a worker in this process (queued or running)."""
        return dict(self._runs)

    def is_running(self, thread_id: str) -> bool:
        return thread_id in self._runs

    # -- lifecycle ------------------------------------------------------

    async def _agent(self) -> LoadedAgent:
        """The agent, its import waited for (or done, in a thread) if it was deferred.

        Whatever imports cubeloop waits for this first: while the app's thread
        imports the agent (and cubeloop with it), an import of a cubeloop module
        here found the package half initialised and failed ("cannot import name
        ... from partially initialized module").
        """
        return await asyncio.to_thread(self.config.agent)

    async def _cp(self) -> Any:
        """Open the checkpointer on first use: looking never writes, acting may."""
        async with self._open_lock:
            if self._checkpointer is None:
                await self._agent()  # the checkpointer is cubeloop's: see `_agent`
                self._checkpointer = await self.location.open_checkpointer()
            return self._checkpointer

    async def close(self) -> None:
        """Abort every worker gracefully, export their spans, then close the database."""
        await self.abort_all()
        if self.config.tracing is not None:
            await self.config.tracing.flush()
        if self._checkpointer is not None:
            await self._checkpointer.__aexit__(None, None, None)
            self._checkpointer = None
        self.leases.close()

    async def __aenter__(self) -> Runner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- reading one thread ---------------------------------------------

    async def inspect(self, thread_id: str) -> tuple[ThreadSummary, list[Message]]:
        """Classify one thread from its stored messages, as the runner will act.

        A thread cubeloop cannot load (a tool call without an id, text that
        is not UTF-8, …) is refused with the reason; it never takes the
        other threads down.
        """
        cp = await self._cp()
        try:
            data = await cp.load(thread_id)
        except Exception as exc:
            raise Refused(
                f"{thread_id} cannot be loaded by cubeloop ({type(exc).__name__}: "
                f"{first_line(exc)})"
            ) from None
        messages = list(data.messages) if data else []
        summary = summary_from_dicts(thread_id, [m.model_dump() for m in messages])
        summary.run_open = await runs.newest_run_open(cp, thread_id) is True
        if summary.last_role == "tool_result" and summary.last_run_id:
            summary.run_done = await runs.run_complete(cp, thread_id, summary.last_run_id)
        summary.parent = parent_of(data.extra) if data else None
        await self._read_pending(cp, summary)
        summary.running = self.is_running(thread_id)
        return summary, messages

    async def _read_pending(self, cp: Any, summary: ThreadSummary) -> None:
        """The pending request, and whether its answer is already stored."""
        try:
            loaded = await cp.load_pending(summary.thread_id)
        except Exception as exc:
            raise Refused(
                f"{summary.thread_id}: its pending request cannot be read "
                f"({type(exc).__name__}: {first_line(exc)})"
            ) from None
        if loaded is None:
            return
        request, run_id = loaded
        summary.pending_request = True
        summary.request = parse_request(request.model_dump_json(), run_id)
        stored = await cp.load_hitl_answer(summary.thread_id, request.question_id, run_id=run_id)
        summary.answer_stored = stored is not None

    # -- actions --------------------------------------------------------

    async def resume(
        self, thread_id: str, *, force: bool = False, attempt: int | None = None
    ) -> Run:
        """Start bringing a thread back; raises `Refused` with the reason. `attempt`: the
        watcher's count of this thread's resumes, this one included (for its trace)."""
        if self.is_running(thread_id):
            raise Refused(f"{thread_id} is already running")
        summary, messages = await self.inspect(thread_id)
        state = summary.state
        if not messages and not summary.pending_request:
            known = await self._known(thread_id)
            if not known:
                raise Refused(f"no thread {thread_id!r}")
        reason = refusal(summary)
        if reason is not None:
            raise Refused(f"{thread_id} {reason}")
        live = live_reason(summary, self.config.clock(), self.config.live_window)
        if live is not None and not force:
            raise PossiblyLive(f"{thread_id} {live}")
        # An answered thread goes on with its stored answer: nobody is asked again.
        mode = "answer" if state is State.ANSWERED else "resume"
        run = await self._start(thread_id, mode, state, None)
        run.attempt = attempt
        return run

    async def prompt(self, thread_id: str, text: str) -> Run:
        """Send a user message to an idle thread and run it."""
        if not text.strip():
            raise Refused("empty prompt")
        if self.is_running(thread_id):
            raise Refused(f"{thread_id} is already running")
        summary, _ = await self.inspect(thread_id)
        state = summary.state
        if state not in PROMPTABLE:
            hint = "; resume it first" if state is State.MID_TOOL else ""
            raise Refused(f"{thread_id} is {state}: cannot take a prompt now{hint}")
        return await self._start(thread_id, "prompt", state, text)

    async def answer(self, thread_id: str, answer: Any) -> Run:
        """Answer a thread's pending request and run it on (`Agent.respond`)."""
        if self.is_running(thread_id):
            raise Refused(f"{thread_id} is already running")
        summary, _ = await self.inspect(thread_id)
        if summary.state not in (State.AWAITING_INPUT, State.ANSWERED):
            raise Refused(f"{thread_id} is {summary.state}: it is not waiting for an answer")
        run = await self._start(thread_id, "answer", summary.state, None)
        run.answer = answer
        return run

    async def check_agent(self, thread_id: str) -> None:
        """Build the agent once before any run, so a broken factory fails at start.

        Raises `AgentLoadError` with one full line; the agent is discarded.
        """
        cp = await self._cp()
        await self._build_agent(cp, thread_id)

    async def _build_agent(self, cp: Any, thread_id: str, run_id: str | None = None) -> Agent:
        loaded = await self._agent()
        return await build_agent(loaded.factory, cp, thread_id, loaded.reference, run_id=run_id)

    async def _known(self, thread_id: str) -> bool:
        cp = await self._cp()
        return await cp.load(thread_id) is not None

    async def _start(self, thread_id: str, mode: str, state: State, text: str | None) -> Run:
        """Queue a run; its lease is taken when it gets a slot (`_work`), so threads queued
        behind `max_concurrent` are not shown as running to other supervisors, nor kept
        from them. A lease held elsewhere now is refused at once."""
        holder = await asyncio.to_thread(self.leases.held_elsewhere, thread_id)
        if holder is not None:
            raise Refused(str(leases.LeaseHeld(thread_id, holder)))
        if self.is_running(thread_id):  # started by another call meanwhile
            raise Refused(f"{thread_id} is already running")
        run = Run(thread_id, mode, self.config.clock())
        run.lease_ok.set()
        self._runs[thread_id] = run
        run.task = asyncio.create_task(self._work(run, state, text), name=f"run:{thread_id}")
        self._emit(thread_id, "queued", mode=mode, state=str(state))
        return run

    async def wait(self, thread_id: str) -> Run | None:
        run = self._runs.get(thread_id)
        if run is not None and run.task is not None:
            await asyncio.gather(run.task, return_exceptions=True)
        return run

    async def wait_all(self) -> None:
        tasks = [r.task for r in self._runs.values() if r.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def abort(self, thread_id: str) -> bool:
        """Ask the agent to stop; cancel it if still going after the grace period."""
        run = self._runs.get(thread_id)
        if run is None or run.task is None:
            return False
        self._emit(thread_id, "aborting", grace=self.config.abort_grace)
        run.signal.set()
        if run.phase == "queued":
            run.task.cancel()
        deadline = time.monotonic() + self.config.abort_grace
        while not run.task.done() and time.monotonic() < deadline:
            if run.agent is not None:
                run.agent.abort()
            await asyncio.wait({run.task}, timeout=0.05)
        # A run already stopped and winding down (reading its final state, letting go of
        # its lease) is given a while more: a cancel there leaves its final state unknown.
        if not run.task.done() and run.phase == "finishing":
            await asyncio.wait({run.task}, timeout=FINISHING_WAIT)
        if not run.task.done():
            run.task.cancel()
        # `wait`, not `gather`: a caller cancelled meanwhile (the run's own abort guard,
        # which the run cancels as it ends) must not cancel the run a second time. That
        # second cancel cut its final read short: the state was "unknown", and the read,
        # left running, failed on the closed database as an asyncio error line.
        await asyncio.wait({run.task})
        return True

    async def abort_all(self) -> None:
        await asyncio.gather(*(self.abort(t) for t in list(self._runs)))

    # -- the worker -----------------------------------------------------

    async def _read_held(self, run: Run) -> tuple[ThreadSummary, list[Message]]:
        """The thread as this run finds it, read with the lease held (another process may
        have run it while this one waited for a slot)."""
        summary, messages = await self.inspect(run.thread_id)
        summary.running = False  # this very run: not another's
        return summary, messages

    @staticmethod
    def _moved_on(run: Run, state: State) -> State | None:
        """The thread's state, if it no longer takes this run; else None."""
        if run.mode == "prompt":
            return None if state in PROMPTABLE else state
        if run.mode == "answer":
            return None if state in (State.AWAITING_INPUT, State.ANSWERED) else state
        return None if state in RESUMABLE and state is not State.RUNNING else state

    async def _work(self, run: Run, state: State, text: str | None) -> None:
        thread_id = run.thread_id
        token = current_thread.set(thread_id)
        watcher: asyncio.Task[None] | None = None
        try:
            async with self._slots:
                try:
                    run.lease = await self.leases.acquire(thread_id)
                except (leases.LeaseHeld, leases.LeaseError) as exc:  # taken while it queued
                    run.outcome = "refused"
                    self._emit(thread_id, "error", message=f"not run: {exc}")
                    return
                watcher = asyncio.create_task(self.keeper.guard(run))
                found, messages = await self._read_held(run)
                moved = self._moved_on(run, found.state)
                if moved is not None:  # another process ran it while this one queued
                    run.outcome = "skipped"
                    self._emit(thread_id, "note", text=f"nothing left to do: it is {moved} now")
                    return
                run.phase = "running"
                if self.config.tracing is not None:
                    run.trace = await self._traced(run, found, messages)
                self._emit(thread_id, "run_start", mode=run.mode, state=str(state))
                cp = await self._cp()
                request = None
                carried: Carried | None = None
                if run.mode == "answer":
                    request, run.run_id = await self._pending_for_answer(cp, thread_id)
                elif run.mode == "resume":
                    carried = await self._what_to_carry_on(cp, thread_id)
                    self._say_markers_place(run, carried.state)
                    if carried.run_id is not None:
                        run.run_id = carried.run_id
                agent = await self._build_agent(cp, thread_id, run.run_id)
                self._check_agent_fits(agent, messages)
                run.agent = agent
                if run.trace is not None:  # a resume's run id is known by now
                    run.trace.set({"run_id": run.run_id})
                    run.trace.attach(agent)
                self._answer_dangling_in_model_view(run, agent)
                self.keeper.gate_tools(run, agent)
                save_extra_after_each_result(agent)  # a crash later in the turn keeps it
                agent.subscribe(lambda event, _signal=None: self.relay.on_agent_event(run, event))
                if run.mode == "prompt":
                    await self._close_dangling_calls(run, cp)
                    if not run.signal.is_set():
                        await agent.prompt(text or "", run_id=run.run_id)
                elif run.mode == "answer":
                    await self._respond(run, agent, cp, request)
                else:
                    assert carried is not None
                    await self._resume(run, agent, cp, carried)
            run.outcome = (
                "aborted" if run.signal.is_set() else "suspended" if run.suspended else "completed"
            )
        except asyncio.CancelledError:
            run.outcome = "cancelled"
            if run.signal.is_set() and run.agent is not None and not run.lease_gone:
                await self._close_cancelled_abort(run)
        except AgentLoadError as exc:
            run.outcome = "error"
            self._emit(thread_id, "error", message=str(exc))
        except Exception as exc:
            run.outcome = "error"
            self.relay.flush_text(run)
            self._emit(thread_id, "error", message=f"{type(exc).__name__}: {exc}")
        except BaseException as exc:
            # cubeloop's human-in-the-loop control flow is a BaseException: a detach
            # or an abort that reaches here ends the run as what it is, never silently.
            if not _hitl_control(exc):
                raise
            run.outcome = "suspended" if type(exc).__name__ == "HitlDetached" else "aborted"
        finally:
            run.phase = "finishing"
            if watcher is not None:
                watcher.cancel()
            current_thread.reset(token)
            self.relay.flush_text(run)
            await self._finish(run)

    async def _traced(self, run: Run, found: ThreadSummary, messages: list[Message]) -> Any:
        """The run's span (`supervisor.tracing`), current from here to `_finish`, with what is
        known before it starts; a resume's plan is counted by job markers, as the app's Job
        markers tab plans. Tracing that fails leaves the run untraced, never stopped."""
        assert self.config.tracing is not None
        facts: dict[str, Any] = {
            "mode": run.mode,
            "thread_id": run.thread_id,
            "state_before": str(found.state),
            "attempt": run.attempt,
            "agent": self.config.agent_ref,
        }
        try:
            tracer = await asyncio.to_thread(self.config.tracing.load)
            if run.mode != "prompt":
                counts = await asyncio.to_thread(self._plan_counts, found, messages)
                if counts:
                    facts.update(counts, strategy=self.config.mid_tool_strategy)
            return tracer.start(run.mode, run.thread_id, facts)
        except Exception as exc:
            self._emit(run.thread_id, "note", text=f"not traced: {first_line(exc)}")
            return None

    def _plan_counts(self, found: ThreadSummary, messages: list[Message]) -> dict[str, int]:
        """How many calls the plan gives each verdict (`plan.reuse`, ...), and closes as
        interrupted (`plan.interrupted`); nothing for a thread a resume does not plan."""
        from supervisor.plan import MarkerIndex, plan_thread

        hook = self.config.agent().marker_hook
        index = MarkerIndex(self.config.jobs_dir, self.jobs.read_markers(), hook)
        dicts = [m.model_dump() for m in messages]
        plan = plan_thread(found, index, messages=dicts, strategy=self.config.mid_tool_strategy)
        if plan.refused is not None:
            return {}
        return {f"plan.{verdict}": n for verdict, n in plan.counts().items()}

    def _answer_dangling_in_model_view(self, run: Run, agent: Agent) -> None:
        """Wrap the agent's `convert_to_llm` so no model call sees a dangling call."""
        from supervisor.tool_calls import answer_dangling_calls

        original = agent.convert_to_llm
        reported: set[str] = set()

        async def convert(messages: list[Message], **kwargs: Any) -> list[Message]:
            converted = original(messages, **kwargs)
            if inspect.isawaitable(converted):
                converted = await converted
            repaired, closed = answer_dangling_calls(list(converted))
            fresh = [c for c in closed if c.id not in reported]
            if fresh:
                reported.update(c.id for c in fresh)
                self._emit(
                    run.thread_id,
                    "repair",
                    calls=[{"id": c.id, "name": c.name, "arguments": c.arguments} for c in fresh],
                )
            return repaired

        agent.convert_to_llm = convert

    async def _finish(self, run: Run) -> None:
        """The run's final state, its span closed, its lease let go, and `run_end` told:
        told even if this is cancelled (the app's list showed the thread running for
        ever when a cancel came while the final state was read)."""
        try:
            summary, _ = await asyncio.shield(self.inspect(run.thread_id))
            summary.running = False
            run.final_state = summary.state
        except Exception:
            run.final_state = None
        finally:
            try:
                if run.trace is not None:
                    state = run.final_state
                    run.trace.end(run.outcome, None if state is None else str(state))
                if run.lease is not None:
                    await self.leases.release(run.lease)
            finally:
                self._runs.pop(run.thread_id, None)
                self._emit(
                    run.thread_id,
                    "run_end",
                    outcome=run.outcome,
                    state=str(run.final_state) if run.final_state else None,
                    seconds=self.config.clock() - run.started_at,
                )

    async def _what_to_carry_on(self, cp: Any, thread_id: str) -> Carried:
        """The thread as a resume finds it, and the run it goes on in.

        A crashed run is carried on under its own id (the last message's run),
        so the agent is built for it: a human-in-the-loop channel bound to that
        run finds the answers stored under it, and cubeloop accepts the results.
        An aborted or failed thread takes a new run: a new prompt continues it.
        """
        from supervisor.continuation import run_of
        from supervisor.plan import interrupted_abort

        data = await cp.load(thread_id)
        if data is None:
            raise Refused(f"no thread {thread_id!r}")
        messages = list(data.messages)
        dicts = [m.model_dump() for m in messages]
        state = summary_from_dicts(thread_id, dicts).state
        if state in (State.ABORTED, State.ERROR):
            return Carried(state, None)
        if state not in (State.MID_TOOL, State.AFTER_TOOLS, State.BETWEEN_TURNS):
            raise Refused(f"{thread_id} is {state}: nothing to resume")
        run_id = run_of(messages, mid_tool=state is State.MID_TOOL) or uuid.uuid4().hex
        pending = await cp.load_pending(thread_id)  # settled, or the state would say so
        stale = (pending[0].question_id, pending[1]) if pending is not None else None
        abort = interrupted_abort(dicts) if state is State.AFTER_TOOLS else None
        return Carried(state, run_id, stale, abort)

    async def _resume(self, run: Run, agent: Agent, cp: Any, carried: Carried) -> None:
        """Bring the thread back as the agent's own run would have gone on.

        Aborted/failed: dangling calls closed, then a "continue" prompt.
        Otherwise the crashed run is carried on inside cubeloop's loop
        (`supervisor.continuation`): unanswered calls run through the agent's
        own pipeline, after its `after_model_response` is asked again where a
        crash may have lost its decision.
        """
        from supervisor.continuation import RunCompleted, bring_back, join_run

        if carried.state in (State.ABORTED, State.ERROR):
            await self._close_dangling_calls(run, cp)
            if not run.signal.is_set():
                await agent.prompt(self.config.continue_text, run_id=run.run_id)
            return
        if carried.stale_request is not None:  # what cubeloop would have done next
            question, pending_run = carried.stale_request
            # The answers first: left behind, one would approve a later call with that id.
            await cp.clear_hitl_answers(run.thread_id, run_id=pending_run)
            await cp.save_pending_request(run.thread_id, None)
            self._emit(
                run.thread_id,
                "note",
                text=f"cleared the request for {question}: its call has its result already",
            )
        if carried.abort is not None:
            await self._finish_abort(run, cp, carried.abort)
            return
        try:
            run_id = await join_run(cp, run.thread_id, carried.run_id)
        except RunCompleted as exc:
            raise Refused(f"{run.thread_id}: {exc}") from None
        if run.signal.is_set():
            return
        await bring_back(
            agent,
            run_id,
            mid_tool=carried.state is State.MID_TOOL,
            strategy=self.config.mid_tool_strategy,
            report=lambda kind, details: self._emit(run.thread_id, kind, **details),
            terminated=self._terminated,
        )

    def _say_markers_place(self, run: Run, state: State) -> None:
        """Say so, before calls that may have run are resumed, when their markers' place
        was named but is missing (`Location.missing_markers`)."""
        config = self.config
        jobs = Location.parse(config.jobs_dir)
        why = markers_in_doubt(jobs, config.jobs_named_by, config.mid_tool_strategy, [state])
        if why is not None:
            self._emit(run.thread_id, "note", text=f"warning: {why}")

    def _check_agent_fits(self, agent: Agent, messages: list[Message]) -> None:
        """Refuse, before anything runs, a thread that called tools the agent has not, when
        the agent is the built-in demo only because none was named.

        Forgetting `--agent` ran the demo on a user's own thread: each unanswered
        call was answered "Tool send_email not found" (the charge it stood for
        closed for good), and the demo's scripted model wrote the next reply. An
        agent named on purpose lacking a tool is its own business (a model may
        call a tool that does not exist; the agent answers so).
        """
        if self.config.agent_ref != DEFAULT_AGENT or self.config.agent_named:
            return
        have = {t.name for t in agent.state.tools or ()}
        called = (
            block.name
            for m in messages
            if m.role == "assistant"
            for block in m.content
            if block.type == "tool_call"
        )
        for name in called:
            if name not in have:
                raise Refused(demo_lacks_tool(name))

    def _terminated(self, assistant: Any) -> bool:
        """Whether every call of this turn came from a tool whose job marker recorded that
        it ended the run (`jobs.idempotent` keeps `terminate`). Reads the jobs directory."""
        from supervisor.plan import MarkerIndex, terminated_by_markers

        hook = self.config.agent().marker_hook
        index = MarkerIndex(self.config.jobs_dir, self.jobs.read_markers(), hook)
        return terminated_by_markers(assistant, index)

    async def _close_cancelled_abort(self, run: Run) -> None:
        """An abort whose grace ran out ends as an abort, not where the cancel left it.

        A tool that ignores the agent's abort signal is cancelled after
        `abort_grace`; cubeloop then answers its calls "cancelled by user" and
        writes nothing more, so the thread was left `after_tools`, and `watch`
        (which leaves threads a person aborted alone) resumed it. The message
        cubeloop writes when an abort is honoured in time closes it instead.
        """
        from supervisor.tool_calls import aborted_message

        try:
            cp = await self._cp()
            data = await cp.load(run.thread_id)
            last = data.messages[-1] if data is not None and data.messages else None
            if last is None or getattr(last, "stop_reason", None) == "aborted":
                return
            why = "the run was cancelled: a tool went on past the abort signal"
            await cp.append(run.thread_id, [aborted_message(why, run.run_id)])
            run.outcome = "aborted"
        except Exception as exc:  # noqa: BLE001 - the run is ending: say it, never mask it
            self._emit(run.thread_id, "note", text=f"the abort was not recorded: {first_line(exc)}")

    async def _finish_abort(self, run: Run, cp: Any, reason: str) -> None:
        """Write the message that closes an abort `abort_pending` began: nothing else runs."""
        from supervisor.tool_calls import aborted_message

        data = await cp.load(run.thread_id)
        owner = (
            next((m.run_id for m in reversed(data.messages) if m.role == "assistant"), None)
            if data is not None
            else None
        )
        await cp.append(run.thread_id, [aborted_message(reason, owner)])
        run.closed_abort = True
        self._emit(run.thread_id, "note", text=f"finished the abort a host began: {reason}")

    async def _pending_for_answer(self, cp: Any, thread_id: str) -> tuple[Any, str]:
        """The pending request and its run: the agent must be built for that run."""
        loaded = await cp.load_pending(thread_id)
        if loaded is None:
            raise Refused(f"{thread_id} has no pending request any more")
        request, run_id = loaded
        return request, run_id or uuid.uuid4().hex

    async def _respond(self, run: Run, agent: Agent, cp: Any, request: Any) -> None:
        """Give the answer through cubeloop's own API; the run then goes on (with the
        channel's question counter set to the run's: `continuation.seed_questions`)."""
        from supervisor.continuation import (
            load_into,
            merged_counts,
            question_counts,
            seed_questions,
            waiting_count,
        )

        counts = await question_counts(agent, await load_into(agent), run.run_id)
        seed_questions(agent, merged_counts(counts, waiting_count(request.question_id)))
        answer = run.answer
        if answer is None:  # answered before a crash: use what was stored
            answer = await cp.load_hitl_answer(
                run.thread_id, request.question_id, run_id=run.run_id
            )
            self._emit(
                run.thread_id,
                "note",
                text="continuing with the answer a human gave before the crash",
            )
        if agent.channel is None:
            raise Refused(
                "the agent has no human-in-the-loop channel: its factory must take run_id "
                "and pass CheckpointedChannel(checkpointer=, thread_id=, run_id=run_id) "
                "as Agent(channel=...)"
            )
        self._emit(run.thread_id, "hitl_answer", question_id=request.question_id, answer=answer)
        await agent.respond(question_id=request.question_id, answer=answer)

    async def _close_dangling_calls(self, run: Run, cp: Any) -> None:
        """An aborted/error message may carry tool calls that never ran: close them."""
        from supervisor.tool_calls import INTERRUPTED_TEXT, stand_in_result, unanswered_calls

        data = await cp.load(run.thread_id)
        if data is None:
            return
        assistant, pending = unanswered_calls(list(data.messages))
        if assistant is not None and pending:
            await cp.append(
                run.thread_id,
                [stand_in_result(c, INTERRUPTED_TEXT, assistant.run_id) for c in pending],
            )

    # -- events ---------------------------------------------------------


def _hitl_control(exc: BaseException) -> bool:
    """A cubeloop human-in-the-loop control exception (loaded by then: an agent ran)."""
    from cubeloop.hitl.exceptions import HitlControlException

    return isinstance(exc, HitlControlException)
