"""`--otel`: each run the supervisor starts arrives at a real OTLP receiver as one trace.

The runs are real: agents of tests/crashes SIGKILLed mid-batch, then resumed
by `agent-supervisor` in a child process that exports to a collector started
here (`tests.otlp_receiver`: HTTP on 127.0.0.1, protobuf decoded with
`opentelemetry.proto`).
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cubeloop.tracing.recorder import Recorder
from cubeloop.tracing.tracer import Tracer
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from opentelemetry.util._once import Once

from supervisor.agents import load_factory
from supervisor.attempts import FileAttempts
from supervisor.cli import run
from supervisor.location import open_store
from supervisor.runner import Runner, RunnerConfig
from supervisor.states import State
from supervisor.tracing import Tracing, traces_url
from supervisor.watch import Policy, Watcher
from tests.conftest import cli
from tests.crashes.harness import ROOT, Case, built_once
from tests.otlp_receiver import Receiver, Span

OURS = "agent_supervisor."


def _build(c: Case) -> None:
    # A parallel batch [process, write_todos]: killed after process's effect (its marker
    # done: reused) and, in u, before it (marker started: run again).
    c.crash("t", "todo B", "tool:process:after")
    c.crash("u", "todo C", "tool:process:before")


@pytest.fixture
def crashed(tmp_path: Path) -> Case:
    return built_once("todos-otel", "todos", _build, tmp_path)


def facts(span: Span) -> dict[str, object]:
    return {k[len(OURS) :]: v for k, v in span.attributes.items() if k.startswith(OURS)}


def trace_of(receiver: Receiver, root: Span) -> list[Span]:
    return [s for s in receiver.spans if s.trace_id == root.trace_id]


def test_a_resume_exports_each_run_as_one_trace(crashed: Case) -> None:
    with Receiver() as receiver:
        crashed.env = {"OTEL_SERVICE_NAME": "night-shift"}
        out = crashed.cli("resume", crashed.database, "t", "u", "--force", "--otel", receiver.url)
        assert out.returncode == 0, out.stdout + out.stderr
        roots = {facts(s)["thread_id"]: s for s in receiver.named(f"{OURS}resume")}
    assert set(roots) == {"t", "u"}  # flushed before the process left: no wait here
    assert roots["t"].trace_id != roots["u"].trace_id

    t, u = facts(roots["t"]), facts(roots["u"])
    assert t["mode"] == "resume" and t["state_before"] == "mid_tool"
    assert (t["plan.reuse"], t["plan.rerun"], t["plan.interrupted"]) == (1, 1, 0)
    assert (u["plan.reuse"], u["plan.rerun"]) == (0, 2)
    for found in (t, u):
        assert found["outcome"] == "completed" and found["state_after"] == "finished"
        assert found["strategy"] == "rerun" and "attempt" not in found
        assert found["agent"] == "tests.crashes.agents:todos"
    assert roots["t"].status_code == 0  # UNSET: nothing failed
    assert roots["t"].attributes["gen_ai.conversation.id"] == "t"
    assert roots["t"].parent_id == ""  # a trace of its own
    assert roots["t"].resource["service.name"] == "night-shift"
    assert [name for name, _ in roots["t"].events] == [f"{OURS}recovery"]

    spans = trace_of(receiver, roots["t"])
    (invoke,) = [s for s in spans if s.name == "invoke_agent"]
    assert invoke.parent_id == roots["t"].span_id
    assert invoke.attributes["cubeloop.run_id"] == t["run_id"]
    turns = {s.span_id for s in spans if s.name == "cubeloop.turn"}
    assert all(s.parent_id == invoke.span_id for s in spans if s.name == "cubeloop.turn")
    tools = sorted(s.attributes["gen_ai.tool.name"] for s in spans if s.name.startswith("execute"))
    chats = [s for s in spans if s.name.startswith("chat ")]
    # The resumed batch, then the model's reply; the turn after the resumed calls is
    # traced too (cubeloop starts it without announcing it).
    assert tools == ["process", "write_todos"]
    assert len(chats) == 1 and chats[0].parent_id in turns
    assert all(s.parent_id in turns for s in spans if s.name.startswith("execute"))


def test_watch_exports_its_runs_when_stopped_by_sigterm(crashed: Case) -> None:
    """Spans are batched for a minute here: only the flush at the SIGTERM sends them."""
    store = open_store(crashed.database)

    def both_finished() -> bool:
        store.refresh()
        return all(store.get(t).state is State.FINISHED for t in ("t", "u"))

    with Receiver() as receiver:
        crashed.env = {"OTEL_BSP_SCHEDULE_DELAY": "60000"}
        out = crashed.watch(both_finished, 60.0, "--otel", receiver.url)
        assert "stopped" in out, out
        roots = {facts(s)["thread_id"]: s for s in receiver.named(f"{OURS}resume")}
    store.close()
    assert set(roots) == {"t", "u"}, out
    assert all(facts(r)["attempt"] == 1 for r in roots.values())
    assert all(facts(r)["state_after"] == "finished" for r in roots.values())


@pytest.mark.usefixtures("fast_demo")
def test_a_run_the_sampler_leaves_out_exports_nothing_and_says_nothing(
    demo_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cubeloop read the attributes of a span that records nothing at each model request."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    monkeypatch.setenv("JOB_DIR", str(demo_db.with_name("demo.db.jobs")))
    with Receiver() as receiver:
        done = cli("prompt", str(demo_db), "s", "Process items Q..R", "--otel", receiver.url)
        assert done.returncode == 0, done.stderr
        assert receiver.spans == []
    assert done.stderr.strip() == "", done.stderr


@pytest.mark.usefixtures("fast_demo")
def test_a_mistyped_otel_variable_never_prints_its_secret(
    demo_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenTelemetry prints a header it cannot parse whole, and an endpoint without a scheme
    with its password: an API key in a journal."""
    monkeypatch.setenv("JOB_DIR", str(demo_db.with_name("demo.db.jobs")))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key:sk-SECRET-1")  # ':' for '='
    with Receiver() as receiver:
        done = cli("prompt", str(demo_db), "h", "Process items Q..R", "--otel", receiver.url)
    assert done.returncode == 0 and "OTEL_EXPORTER_OTLP_HEADERS" in done.stderr, done.stderr
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "alice:SECRET-2@127.0.0.1:9")
    again = cli("prompt", str(demo_db), "h2", "Process items Q..R", "--otel")
    assert again.returncode == 0 and "alice:***@" in again.stderr, again.stderr
    assert "SECRET" not in done.stderr + again.stderr


@pytest.fixture
def host_provider() -> Iterator[InMemorySpanExporter]:
    """A global SDK tracer provider, as a host program sets one; unset afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    yield exporter
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


@pytest.mark.usefixtures("fast_demo")
async def test_a_host_tracer_provider_gets_the_watchers_runs(
    host_provider: InMemorySpanExporter, demo_db: Path
) -> None:
    """Two failed attempts at a thread whose model is down: two traces, through the
    provider the host set, which is still the host's (and working) afterwards."""
    tracing = Tracing("http://127.0.0.1:9/v1/traces")  # not used: the host's provider is
    config = RunnerConfig(
        database=demo_db,
        factory=load_factory("tests.agents.crashloop:agent"),
        jobs_dir=demo_db.with_name("demo.db.jobs"),
        tracing=tracing,
    )
    store, ledger = open_store(demo_db), FileAttempts(demo_db)
    policy = Policy(states=frozenset({State.ERROR}), max_attempts=2, backoff=(0.0, 0.0), quiet=0)
    async with Runner(config) as runner:
        watcher = Watcher(store, runner, ledger, policy, log=lambda _line: None)
        for _ in range(2):
            assert await watcher.step() == ["job-07"]
            await runner.wait_all()
        await watcher.step()  # the second failure counted: held
    assert tracing.host_provider
    spans = host_provider.get_finished_spans()
    roots = sorted(
        (s for s in spans if s.name == f"{OURS}resume"),
        key=lambda s: s.attributes[f"{OURS}attempt"],
    )
    assert [r.attributes[f"{OURS}attempt"] for r in roots] == [1, 2]
    assert roots[0].context.trace_id != roots[1].context.trace_id
    for root in roots:
        assert root.attributes[f"{OURS}thread_id"] == "job-07"
        assert root.attributes[f"{OURS}state_before"] == "error"
        assert root.attributes[f"{OURS}state_after"] == "error"
        assert root.status.status_code is StatusCode.ERROR
        (invoke,) = [
            s
            for s in spans
            if s.name == "invoke_agent" and s.context.trace_id == root.context.trace_id
        ]
        assert invoke.parent.span_id == root.context.span_id
    assert store.get("job-07").state is State.HELD
    store.close()
    ledger.close()

    with trace.get_tracer("host").start_as_current_span("after"):
        pass
    assert host_provider.get_finished_spans()[-1].name == "after"  # not shut down


def test_otel_without_its_packages_is_one_line_and_exit_2(tmp_path: Path, demo_db: Path) -> None:
    """The exporter's module made unimportable, as in an install without the extra: a
    prompt to a new database, and the app."""
    db = tmp_path / "none.db"
    code = (
        "import sys\n"
        "sys.modules['opentelemetry.exporter.otlp.proto.http.trace_exporter'] = None\n"
        "from supervisor.cli import run\n"
        "print(run(['prompt', sys.argv[1], 't', 'hi', '--otel']), flush=True)\n"
        "print(run(['--otel=http://127.0.0.1:9', sys.argv[2]]), flush=True)\n"
    )
    env = {**os.environ, "AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND": "0"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(db), str(demo_db)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.stdout.split() == ["2", "2"], done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2, done.stderr
    for line in lines:
        assert "--otel needs the OpenTelemetry packages" in line
        assert "pip install 'cubeloop-supervisor[otel]'" in line
    assert not db.exists()  # refused before anything was made


def test_otel_urls(capsys: pytest.CaptureFixture[str]) -> None:
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("https://c.example/otlp/") == "https://c.example/otlp/v1/traces"
    assert traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"
    # A database where the URL would go (`--otel DB THREAD`), a secret in a bad URL.
    assert run(["resume", "--otel", "x.db", "t"]) == 2
    assert run(["resume", "x.db", "t", "--otel=grpc://me:s3cret@c:4317"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("not an http:// or https:// URL" in line for line in err)
    assert "--otel=URL" in err[0] and "s3cret" not in err[1]


def test_the_cubeloop_tracer_internals_run_tracing_reaches_are_there() -> None:
    """cubeloop 0.15.3's Tracer takes no provider, and its Recorder misses the turn its
    resume loop starts unannounced: `supervisor.run_tracing` reaches into both. A cubeloop
    that moves them must fail here, by name."""
    tracer = Tracer(atexit_flush=False)
    for name in ("_provider", "_otel_tracer", "_resource", "_record_content", "_redact"):
        assert hasattr(tracer, name), name
    assert hasattr(tracer, "_record_stream") and hasattr(tracer, "_stream_dir")
    attach = inspect.getsource(Tracer.attach)  # ours is this, with our Recorder
    assert "Recorder(" in attach and "register_provider(" in attach
    assert "run.turn_span is None" in inspect.getsource(Recorder._on_provider_request)
    assert list(inspect.signature(Recorder._on_turn_start).parameters) == ["self"]
