"""Each run one trace: cubeloop's tracer on the run's agent, under a span of ours.

Imported only through `supervisor.tracing.Tracing.load` (it imports
OpenTelemetry). A run's trace:

    agent_supervisor.resume   ours: the thread, its state before and after, the plan's
    │                         verdicts, the attempt, how the run ended
    └── invoke_agent          cubeloop's, for the agent's run
        └── cubeloop.turn
            ├── chat MODEL
            └── execute_tool NAME

Ours is the current span while the run lasts, so the agent's spans are its
children (and ours is the child of whatever span was current where the run was
started: a host's request, say). Tracing never fails a run: what goes wrong in
it is logged and the run goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import cubeloop
from cubeloop.mcp import _tracing as mcp_tracing
from cubeloop.tracing.recorder import Recorder, _active_run
from cubeloop.tracing.schema import SCHEMA_URL, SCOPE_NAME
from cubeloop.tracing.tracer import Tracer
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from supervisor import __version__
from supervisor.text import one_line

#: The service name when $OTEL_SERVICE_NAME gives none.
SERVICE_NAME = "agent-supervisor"

#: Our attributes' namespace, and our spans' instrumentation scope.
PREFIX = "agent_supervisor."
SCOPE = "agent_supervisor"

#: The GenAI semantic conventions' switch for recording prompts and replies
#: (cubeloop's `record_content`): off unless set to `true`.
CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

#: Runner events that become events of the run's span (`RunSpan.event`).
SPAN_EVENTS = frozenset({"recovery", "skipped", "repair", "note", "error", "aborting"})

#: How long the last flush of a process may take (the OTLP exporter gives up on
#: an unreachable collector after its own timeout, 10 s unless set).
FLUSH_SECONDS = 30.0

#: How often the exporter may say the same trouble (`_Quieter`).
REPEAT_SECONDS = 60.0

log = logging.getLogger("agent_supervisor.tracing")

#: The logger of the OTLP/HTTP span exporter cubeloop's wraps.
_OTLP_LOGGER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"


class _Quieter(logging.Filter):
    """Lets each of the OTLP exporter's messages through once a minute: it says three
    lines per batch while the collector is down, and a watcher exports every few
    seconds for as long as it runs."""

    def __init__(self) -> None:
        super().__init__()
        self._said: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        key = str(record.msg)
        if now - self._said.get(key, -REPEAT_SECONDS) < REPEAT_SECONDS:
            return False
        self._said[key] = now
        return True


class _NoSecrets(logging.Filter):
    """What OpenTelemetry logs, without the secrets it would print: a header it cannot parse
    from `OTEL_EXPORTER_OTLP_HEADERS` is printed whole (an API key with a typo in it, in the
    watcher's journal), and an endpoint without a scheme with its `user:password@`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Header format invalid"):
            record.msg = (
                "a header in OTEL_EXPORTER_OTLP_HEADERS (or _TRACES_HEADERS) is not "
                "name=value, URL-encoded: left out (its value is not shown)"
            )
            record.args = ()
            return True
        text = record.getMessage()
        hidden = _CREDENTIALS.sub(r"\1:***@", text)
        if hidden != text:
            record.msg, record.args = hidden, ()
        return True


#: `user:password@` in a URL, with or without a scheme before it.
_CREDENTIALS = re.compile(r"([^\s:/@]+):[^\s/@]+@")


class _Recorder(Recorder):
    """cubeloop's span recorder, told of the turn its resume loop starts unannounced.

    cubeloop 0.15.3 carries a run on after resumed tool calls (its own
    `respond()`, and `supervisor.continuation`) into a turn it starts without a
    TurnStartEvent: the recorder, with no turn open, dropped that turn's `chat`
    and `execute_tool` spans. A model request made with no turn open opens one. And a
    run a sampler left out (`OTEL_TRACES_SAMPLER`) has a span that records nothing, whose
    attributes cubeloop reads at each model request: an AttributeError each time.
    """

    def _on_provider_request(self, payload: dict, model: Any) -> None:
        run = self._run
        if run is not None and not run.agent_span.is_recording():
            return  # sampled out: nothing is recorded (cubeloop would read its attributes)
        if run is not None and run.turn_span is None and _active_run.get() is run:
            self._on_turn_start()
        super()._on_provider_request(payload, model)


class _Tracer(Tracer):
    """cubeloop's `Tracer`, over a host's provider when given one; one flush at a time.

    Every run's detach asks for a flush, and each holds a worker thread of the
    event loop's pool until its export ends: with the collector down that is
    ten seconds each, and a watcher's runs would take every worker thread
    (which the runner and the watcher need for their own reads). A flush asked
    for while one runs waits for that one instead.
    """

    def __init__(self, provider: TracerProvider | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.owns_provider = provider is None
        if provider is not None:
            # cubeloop 0.15.3's Tracer builds a provider of its own and takes none: these
            # are the attributes it and its Recorder reach the provider through.
            self._provider = provider
            self._resource = provider.resource
            self._otel_tracer = provider.get_tracer(
                SCOPE_NAME, cubeloop.__version__, schema_url=SCHEMA_URL
            )
        self._flushing: asyncio.Future[bool] | None = None

    @property
    def provider(self) -> TracerProvider:
        return self._provider

    def attach(self, agent: Any) -> Callable[[], Any]:
        """cubeloop's `Tracer.attach` (the agent's spans, and its MCP clients' through the
        same provider), with `_Recorder` for cubeloop's."""
        recorder = _Recorder(
            self,
            record_content=self._record_content,
            record_stream=self._record_stream,
            stream_dir=self._stream_dir,
            redact=self._redact,
        )
        detach_recorder = recorder.attach(agent)
        try:
            token = mcp_tracing.register_provider(
                self._provider, record_content=self._record_content
            )
        except BaseException:
            detach_recorder()
            raise

        def detach() -> Any:
            try:
                return detach_recorder()
            finally:
                with contextlib.suppress(Exception):
                    mcp_tracing.unregister_provider(token)

        return detach

    def _running_flush(self) -> asyncio.Future[bool] | None:
        running = self._flushing
        if running is None or running.done():
            return None
        return running if running.get_loop() is asyncio.get_running_loop() else None

    async def force_flush(self, timeout_seconds: float = 30.0) -> bool:
        running = self._running_flush()
        if running is None:
            running = asyncio.ensure_future(super().force_flush(timeout_seconds))
            self._flushing = running
        return await asyncio.shield(running)

    async def flush_all(self, timeout_seconds: float = FLUSH_SECONDS) -> bool:
        """A flush begun now, after any running one: that may have begun before the last
        spans ended."""
        running = self._running_flush()
        if running is not None:
            await asyncio.gather(running, return_exceptions=True)
        return await super().force_flush(timeout_seconds)

    async def shutdown(self, timeout_seconds: float = 30.0) -> None:
        if self.owns_provider:
            await super().shutdown(timeout_seconds)
        else:  # the host's provider is the host's to shut down
            await self.flush_all(timeout_seconds)


class RunTracer:
    """Starts each run's span (`start`) and exports them (`flush`)."""

    def __init__(self, tracer: _Tracer) -> None:
        self.tracer = tracer
        self.spans = tracer.provider.get_tracer(SCOPE, __version__)
        #: The flushes runs' detaches began (awaited by `flush`).
        self._pending: set[asyncio.Task[Any]] = set()

    @classmethod
    def build(cls, endpoint: str | None) -> RunTracer:
        """The host's SDK provider if it set one (its exporters, its resource), else one
        of ours exporting over OTLP/HTTP to `endpoint` (None: the standard variables)."""
        record_content = os.environ.get(CAPTURE_CONTENT, "").strip().lower() == "true"
        host = trace.get_tracer_provider()
        if isinstance(host, TracerProvider):
            return cls(_Tracer(host, record_content=record_content, atexit_flush=False))
        from cubeloop.tracing.exporters import OTLPSpanExporter

        logging.getLogger(OTLPSpanExporter.__module__).addFilter(_Quieter())
        for name in ("opentelemetry.util.re", OTLPSpanExporter.__module__, _OTLP_LOGGER):
            logging.getLogger(name).addFilter(_NoSecrets())
        return cls(
            _Tracer(
                None,
                service_name=os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME,
                service_version=__version__,
                exporters=[OTLPSpanExporter(endpoint=endpoint)],
                record_content=record_content,
            )
        )

    @property
    def owns_provider(self) -> bool:
        return self.tracer.owns_provider

    def start(self, mode: str, thread_id: str, facts: dict[str, Any]) -> RunSpan:
        """The span of one run, current from now until `RunSpan.end`: call it in the task
        that runs the agent, and end it there."""
        return RunSpan(self, f"{PREFIX}{mode}", thread_id, facts)

    def track(self, flush: Any) -> None:
        """Keep a detach's flush task until it ends (the loop holds tasks weakly)."""
        if not isinstance(flush, asyncio.Future):
            return
        self._pending.add(flush)
        flush.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Future[Any]) -> None:
        self._pending.discard(task)  # type: ignore[arg-type]
        if not task.cancelled() and task.exception() is not None:
            log.warning("exporting spans failed: %s", one_line(str(task.exception()), 200))

    async def flush(self) -> None:
        """Export every span ended so far; a failure is logged, never raised."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        try:
            await self.tracer.flush_all()
        except Exception as exc:
            log.warning("exporting spans failed: %s", one_line(str(exc), 200))

    def flush_now(self, timeout: float) -> None:
        """Export what is buffered from a thread of its own, waiting at most `timeout`."""
        worker = threading.Thread(target=self.tracer.provider.force_flush, daemon=True)
        worker.start()
        worker.join(timeout)


class RunSpan:
    """One run's span: made the current span at once, so the agent's spans are its
    children; ended, with how the run went, by `end`."""

    def __init__(self, owner: RunTracer, name: str, thread_id: str, facts: dict[str, Any]) -> None:
        self._owner = owner
        attributes = {"gen_ai.conversation.id": thread_id, **_ours(facts)}
        self.span = owner.spans.start_span(name, attributes=attributes)
        self._token = otel_context.attach(trace.set_span_in_context(self.span))
        self._detach_agent: Callable[[], Any] | None = None
        self._ended = False

    def attach(self, agent: Any) -> None:
        """cubeloop's tracer on the run's agent: its spans, children of this one."""
        try:
            self._detach_agent = self._owner.tracer.attach(agent)
        except Exception as exc:
            log.warning("the agent's spans are not traced: %s", one_line(str(exc), 200))

    def set(self, facts: dict[str, Any]) -> None:
        self.span.set_attributes(_ours(facts))

    def event(self, kind: str, data: dict[str, Any]) -> None:
        """A runner event worth seeing on the span: what it says, and the names of the
        calls it is about (never their arguments, which may hold anything)."""
        if kind not in SPAN_EVENTS or self._ended:
            return
        attributes: dict[str, Any] = {}
        calls = data.get("calls")
        if isinstance(calls, list):
            attributes["calls"] = len(calls)
            attributes["tools"] = [str(c.get("name")) for c in calls if isinstance(c, dict)]
        for key in ("text", "message", "reason", "strategy"):
            if isinstance(data.get(key), str):
                attributes[key] = one_line(data[key], 500)
        self.span.add_event(f"{PREFIX}{kind}", attributes)
        if kind == "error":
            self.span.set_status(Status(StatusCode.ERROR, attributes.get("message", "")))
        elif kind == "skipped" and isinstance(calls, list):
            # The agent's policy ran none of the turn's calls: that is their verdict.
            self.set({"plan.skip": len(calls), "plan.reuse": 0, "plan.rerun": 0, "plan.unknown": 0})

    def end(self, outcome: str | None, state_after: str | None) -> None:
        """Close what a cut-off agent run left open, record how the run ended, end the
        span and stop it being current."""
        if self._ended:
            return
        self._ended = True
        try:
            if self._detach_agent is not None:
                self._owner.track(self._detach_agent())
            self.set({"outcome": outcome, "state_after": state_after})
            failed = outcome == "error" or state_after == "error"  # a model call failed
            if failed and self.span.status.status_code is StatusCode.UNSET:
                self.span.set_status(Status(StatusCode.ERROR, f"ended {state_after} ({outcome})"))
            self.span.end()
        except Exception as exc:
            log.warning("the run's span could not be ended: %s", one_line(str(exc), 200))
        finally:
            otel_context.detach(self._token)


def _ours(facts: dict[str, Any]) -> dict[str, Any]:
    """Facts as attributes in our namespace; those not known (None) left out."""
    return {f"{PREFIX}{key}": value for key, value in facts.items() if value is not None}
