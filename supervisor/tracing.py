"""Runs exported as OpenTelemetry traces (`--otel`): asked for early, built on first use.

The exporting is cubeloop's own (`cubeloop.tracing.Tracer`, attached to each
run's agent: its `invoke_agent`, `chat` and `execute_tool` spans) under one span
of ours per run that says what the supervisor knows: the thread, the state it
was in, the plan's verdicts, how the run ended (`supervisor.run_tracing`).

The OpenTelemetry packages are an optional extra, imported only when tracing
is asked for: `check` looks for them without importing them (the app draws
its first frame first), `load` imports them and builds the tracer, once.
"""

from __future__ import annotations

import importlib.util
import threading
import urllib.parse
from typing import TYPE_CHECKING

from supervisor.text import one_line
from supervisor.urls import redact

if TYPE_CHECKING:
    from supervisor.run_tracing import RunTracer

#: What to install for `--otel`.
EXTRA = "cubeloop-supervisor[otel]"

#: The modules tracing needs: the SDK, and the OTLP/HTTP exporter.
NEEDED = ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter")

#: Where OTLP/HTTP takes traces, below the collector's base URL.
TRACES_PATH = "/v1/traces"


class TracingUnavailable(Exception):
    """The OpenTelemetry packages are missing or broken; one line that names the extra."""


def missing_packages(why: BaseException) -> TracingUnavailable:
    return TracingUnavailable(
        f"--otel needs the OpenTelemetry packages: pip install '{EXTRA}' "
        f"({one_line(str(why), 120)})"
    )


def traces_url(value: str) -> str:
    """The traces endpoint for a collector URL given to `--otel`: its base URL (as
    $OTEL_EXPORTER_OTLP_ENDPOINT takes it) gets `/v1/traces`; a URL that already ends
    there is taken as it is. Raises ValueError, with the URL's password left out."""
    try:
        parts = urllib.parse.urlsplit(value.strip())
        host = parts.hostname
        parts.port  # noqa: B018 - raises on "host:notaport"
    except ValueError:
        host = None
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise ValueError(
            f"not an http:// or https:// URL: {one_line(redact(value), 80)!r} "
            "(give the collector as --otel=URL, or put a bare --otel after every other argument)"
        )
    path = parts.path.rstrip("/")
    if not path.endswith(TRACES_PATH):
        path += TRACES_PATH
    return urllib.parse.urlunsplit(parts._replace(path=path))


class Tracing:
    """What `--otel` asked for. `endpoint`: the traces URL (`traces_url`), or None for
    the standard variables ($OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    $OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4318).

    A process whose host already set an OpenTelemetry SDK tracer provider (a program
    embedding the supervisor, `opentelemetry-instrument`) has its runs' spans go to
    that provider, and `endpoint` is not used (`host_provider` says so once loaded).
    """

    def __init__(self, endpoint: str | None = None) -> None:
        self.endpoint = endpoint
        self._lock = threading.Lock()
        self._tracer: RunTracer | None = None

    def check(self) -> None:
        """Raise `TracingUnavailable` if the packages are not installed (nothing imported
        but their parent packages)."""
        for name in NEEDED:
            try:
                found = importlib.util.find_spec(name)
            except (ImportError, ValueError) as exc:
                raise missing_packages(exc) from None
            if found is None:
                raise missing_packages(ModuleNotFoundError(f"No module named {name!r}"))

    def load(self) -> RunTracer:
        """The tracer, built by the first caller (blocking: imports OpenTelemetry)."""
        with self._lock:
            if self._tracer is None:
                try:
                    from supervisor.run_tracing import RunTracer
                except ImportError as exc:
                    raise missing_packages(exc) from None
                try:
                    self._tracer = RunTracer.build(self.endpoint)
                except Exception as exc:  # a bad OTEL_* variable, say
                    why = one_line(f"{type(exc).__name__}: {exc}", 200)
                    raise TracingUnavailable(f"--otel: cannot export traces ({why})") from None
            return self._tracer

    @property
    def host_provider(self) -> bool:
        """Whether the spans go to a tracer provider the host process had set."""
        return self._tracer is not None and not self._tracer.owns_provider

    async def flush(self) -> None:
        """Export every span ended so far (nothing to do if no run was traced)."""
        if self._tracer is not None:
            await self._tracer.flush()

    def flush_now(self, timeout: float) -> None:
        """Export what is buffered, waiting at most `timeout` seconds: for a process about
        to leave without its event loop (`watch` past its stop deadline)."""
        if self._tracer is not None:
            self._tracer.flush_now(timeout)
