"""The runner on real databases with the real demo agent: resume, prompt, abort, leases."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from cubeloop import AgentTool, AgentToolResult, TextContent
from pydantic import BaseModel

from supervisor import demo
from supervisor.agents import load_factory
from supervisor.location import open_store
from supervisor.runner import Refused, Runner, RunnerConfig, RunnerEvent
from supervisor.states import State
from tests.conftest import ROOT, effects, transcript_problems

pytestmark = pytest.mark.usefixtures("fast_demo")


def config(db: Path, **overrides) -> RunnerConfig:
    jobs = db.with_name(db.name + ".jobs")
    settings = dict(
        database=db,
        factory=load_factory("supervisor.demo:demo_agent"),
        jobs_dir=jobs,
        live_window=0,
    )
    settings.update(overrides)
    return RunnerConfig(**settings)


@pytest.fixture(autouse=True)
def job_dir_env(demo_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_DIR", str(demo_db.with_name("demo.db.jobs")))


def state_of(db: Path, thread: str) -> State:
    return open_store(db).get(thread).state


def assert_exactly_once(db: Path) -> None:
    counts = Counter(effects(db.with_name("demo.db.jobs")))
    assert counts and max(counts.values()) == 1, counts


@pytest.mark.parametrize(
    "thread,before",
    [
        ("job-02", State.MID_TOOL),
        ("job-03", State.MID_TOOL),
        ("job-04", State.AFTER_TOOLS),
        ("job-05", State.BETWEEN_TURNS),
        ("job-06", State.ABORTED),
        ("job-07", State.ERROR),
    ],
)
async def test_resume_each_state_ends_finished(demo_db: Path, thread: str, before: State) -> None:
    assert state_of(demo_db, thread) is before
    async with Runner(config(demo_db)) as runner:
        await runner.resume(thread)
        run = await runner.wait(thread)
    assert run.final_state is State.FINISHED
    assert state_of(demo_db, thread) is State.FINISHED
    assert transcript_problems(demo_db, thread) == []
    assert_exactly_once(demo_db)


async def test_mid_tool_rerun_uses_markers_and_ledger(demo_db: Path) -> None:
    jobs = demo_db.with_name("demo.db.jobs")
    before = effects(jobs)
    async with Runner(config(demo_db)) as runner:
        await runner.resume("job-02")
        await runner.wait("job-02")
    after = effects(jobs)
    new = [key for key in after if key not in before]
    assert sorted(new) == sorted(f'process_item:{{"item":"card-20{i}"}}' for i in (2, 3, 4))
    assert after.count('process_item:{"item":"card-201"}') == 1


async def test_interrupt_strategy_tells_the_model(demo_db: Path) -> None:
    async with Runner(config(demo_db, mid_tool_strategy="interrupt")) as runner:
        await runner.resume("job-03")
        run = await runner.wait("job-03")
    assert run.final_state is State.FINISHED
    texts = [
        e.message["content"][0]["text"]
        for e in open_store(demo_db).transcript("job-03").entries
        if e.message["role"] == "tool_result" and e.message["is_error"]
    ]
    assert len(texts) == 1 and "interrupted" in texts[0]
    assert transcript_problems(demo_db, "job-03") == []
    assert_exactly_once(demo_db)


async def test_refusals(demo_db: Path) -> None:
    async with Runner(config(demo_db)) as runner:
        for thread, reason in [
            ("job-01", "nothing to resume"),
            ("job-08", "nothing to resume"),
            ("job-09", "awaiting a human answer"),
            ("ghost", "no thread"),
        ]:
            with pytest.raises(Refused, match=reason):
                await runner.resume(thread)
        with pytest.raises(Refused, match="resume it first"):
            await runner.prompt("job-02", "hello")


async def test_double_resume_is_refused(demo_db: Path, monkeypatch) -> None:
    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOOL_SECONDS", "0.5")
    async with Runner(config(demo_db)) as runner:
        await runner.resume("job-04")
        with pytest.raises(Refused, match="already running"):
            await runner.resume("job-04")
        assert runner.is_running("job-04")
        await runner.wait("job-04")
        assert not runner.is_running("job-04")


async def test_possibly_live_thread_needs_force(demo_db: Path) -> None:
    async with Runner(config(demo_db, live_window=3600)) as runner:
        with pytest.raises(Refused, match="may still be running in another process"):
            await runner.resume("job-05")
        await runner.resume("job-05", force=True)
        run = await runner.wait("job-05")
    assert run.final_state is State.FINISHED


async def test_prompt_on_finished_thread_runs_a_new_batch(demo_db: Path) -> None:
    async with Runner(config(demo_db)) as runner:
        await runner.prompt("job-01", "Process items extra-1, extra-2")
        run = await runner.wait("job-01")
    assert run.final_state is State.FINISHED
    entries = open_store(demo_db).transcript("job-01").entries
    users = [e.message["content"][0]["text"] for e in entries if e.message["role"] == "user"]
    assert users[-1] == "Process items extra-1, extra-2"
    assert "Processed 2 items: extra-1, extra-2." in entries[-1].message["content"][0]["text"]
    assert_exactly_once(demo_db)


async def test_prompt_starts_a_new_thread(demo_db: Path) -> None:
    async with Runner(config(demo_db)) as runner:
        await runner.prompt("fresh", "Process items z-1")
        run = await runner.wait("fresh")
    assert run.final_state is State.FINISHED


async def test_events_arrive_in_order_tagged_and_coalesced(demo_db: Path, monkeypatch) -> None:
    long_text = "word " * 400
    seen: list[RunnerEvent] = []

    def planner(messages):
        from cubeloop.providers.faux import faux_assistant_message

        return faux_assistant_message(long_text)

    def factory(cp, thread_id):
        return demo.build_demo_agent(cp, thread_id, planner=planner)

    async with Runner(config(demo_db, factory=factory, coalesce_seconds=0.05)) as runner:
        runner.subscribe(seen.append)
        await runner.prompt("job-01", "say a lot")
        await runner.wait("job-01")
    types = [e.type for e in seen]
    assert all(e.thread_id == "job-01" for e in seen)
    assert types[0] == "queued" and types[1] == "run_start" and types[-1] == "run_end"
    assert types.index("assistant_start") < types.index("text") < types.index("agent_end")
    texts = [e.data["text"] for e in seen if e.type == "text"]
    assert "".join(texts) == long_text
    # FauxProvider streams ~500 deltas here with no delay; they are coalesced.
    assert len(texts) < 50
    end = next(e for e in seen if e.type == "message_end" and e.data["role"] == "assistant")
    assert types.index("text") < seen.index(end)


class SlowParams(BaseModel):
    item: str


def slow_tool_factory(honour_signal: bool, finished: list[str] | None = None):
    """A demo agent whose tool takes 30 s and may ignore the abort signal; `finished`
    gets a line each time the tool runs to its end."""

    async def execute(tool_call_id, params, *, signal=None, on_update=None):
        for _ in range(600):
            if honour_signal and signal is not None and signal.is_set():
                return AgentToolResult(content=[TextContent(text="stopped")], is_error=True)
            await asyncio.sleep(0.05)
        if finished is not None:
            finished.append(params.item)
        return AgentToolResult(content=[TextContent(text="done")])

    tool = AgentTool(
        name=demo.TOOL_NAME, description="slow", parameters=SlowParams, execute=execute
    )

    def factory(cp, thread_id):
        return demo.build_demo_agent(cp, thread_id, tools=[tool])

    return factory


async def tool_started(seen: list[RunnerEvent]) -> None:
    """Until the run's tool has started (four seconds at most)."""
    for _ in range(200):
        if any(e.type == "tool_start" for e in seen):
            return
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("honour", [True, False], ids=["honours-signal", "ignores-signal"])
async def test_abort_leaves_a_resumable_valid_thread(demo_db: Path, honour: bool) -> None:
    seen: list[RunnerEvent] = []
    finished: list[str] = []
    cfg = config(demo_db, factory=slow_tool_factory(honour, finished), abort_grace=0.5)
    async with Runner(cfg) as runner:
        runner.subscribe(seen.append)
        await runner.prompt("job-01", "Process items slow-1, slow-2")
        await tool_started(seen)
        assert await runner.abort("job-01")
        assert finished == [], "abort must not wait for the 30 s tool to finish"
        run_end = next(e for e in seen if e.type == "run_end")
    # A tool that ignores the signal is cancelled after the grace; the run ends as an
    # abort all the same (it was left after_tools, and `watch` resumed it).
    assert run_end.data["outcome"] == "aborted"
    state = state_of(demo_db, "job-01")
    assert state is State.ABORTED, state
    assert transcript_problems(demo_db, "job-01") == []
    async with Runner(config(demo_db)) as runner:
        await runner.resume("job-01")
        run = await runner.wait("job-01")
    assert run.final_state is State.FINISHED


async def test_an_abort_while_the_run_winds_down_still_ends_it(
    demo_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run stopped at the signal, but reading its final state outlasts the grace (a
    loaded machine, a slow database): the abort waits for it; the run's end is told (the
    app's list showed the thread running for ever) and its lease is let go."""
    seen: list[RunnerEvent] = []
    cfg = config(demo_db, factory=slow_tool_factory(True), abort_grace=0.3)
    async with Runner(cfg) as runner:
        inspect = runner.inspect

        async def slow_inspect(thread_id: str):
            await asyncio.sleep(1.0)
            return await inspect(thread_id)

        monkeypatch.setattr(runner, "inspect", slow_inspect)
        runner.subscribe(seen.append)
        await runner.prompt("job-01", "Process items slow-1")
        await tool_started(seen)
        assert await runner.abort("job-01")
        ends = [e for e in seen if e.type == "run_end"]
        assert [e.data["outcome"] for e in ends] == ["aborted"]
        assert ends[0].data["state"] is not None
        assert not runner.running()
    assert runner.leases.held_elsewhere("job-01") is None
    assert transcript_problems(demo_db, "job-01") == []


async def test_close_aborts_running_threads(demo_db: Path) -> None:
    runner = Runner(config(demo_db, factory=slow_tool_factory(True), abort_grace=0.5))
    await runner.prompt("job-01", "Process items slow-1")
    await asyncio.sleep(0.3)
    await runner.close()
    assert not runner.running()
    assert transcript_problems(demo_db, "job-01") == []
    assert state_of(demo_db, "job-01") in {State.ABORTED, State.BETWEEN_TURNS}


async def test_factory_error_is_reported_and_state_stays_honest(demo_db: Path) -> None:
    seen: list[RunnerEvent] = []

    def broken(cp, thread_id):
        raise RuntimeError("no API key configured")

    async with Runner(config(demo_db, factory=broken)) as runner:
        runner.subscribe(seen.append)
        await runner.resume("job-02")
        run = await runner.wait("job-02")
    errors = [e.data["message"] for e in seen if e.type == "error"]
    assert errors and "no API key configured" in errors[0]
    assert run.outcome == "error"
    assert run.final_state is State.MID_TOOL


HOLDER = """
import sys, time
from pathlib import Path
from supervisor import leases
leases.acquire(Path(sys.argv[1]), sys.argv[2])
print("held", flush=True)
time.sleep(60)
"""


async def test_lease_held_by_another_process_is_respected(demo_db: Path) -> None:
    from supervisor.leases import leases_dir

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(leases_dir(demo_db)), "job-05"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        async with Runner(config(demo_db)) as runner:
            with pytest.raises(Refused, match=f"another supervisor \\(pid {holder.pid}"):
                await runner.resume("job-05")
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=10)
            await runner.resume("job-05")  # the dead holder's lease is gone
            run = await runner.wait("job-05")
        assert run.final_state is State.FINISHED
    finally:
        holder.kill()


async def test_our_lease_is_visible_to_another_process(demo_db: Path, monkeypatch) -> None:
    from supervisor.leases import leases_dir

    monkeypatch.setenv("AGENT_SUPERVISOR_DEMO_TOOL_SECONDS", "1")
    probe = (
        "import sys, json; from pathlib import Path; from supervisor import leases; "
        "print(json.dumps(leases.live_leases(Path(sys.argv[1]))))"
    )
    async with Runner(config(demo_db)) as runner:
        run = await runner.resume("job-04")
        while run.phase != "running":  # the lease is taken when the run gets its slot
            await asyncio.sleep(0.01)
        seen = subprocess.run(
            [sys.executable, "-c", probe, str(leases_dir(demo_db))],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        await runner.wait("job-04")
    live = json.loads(seen.stdout)
    assert list(live) == ["job-04"]
    assert live["job-04"]["pid"] > 0


def test_a_headless_run_starts_its_threads_together_and_reports_refusals_in_order(
    demo_db: Path,
) -> None:
    """`resume --all` starts many threads at once (one at a time, each start waited behind
    the writes of the runs already going); refusals still print in the order asked."""
    import io

    from supervisor.headless import run_threads

    starting, most = [0], [0]

    async def start(runner: Runner, thread_id: str):
        starting[0] += 1
        most[0] = max(most[0], starting[0])
        try:
            return await runner.resume(thread_id, force=True)
        finally:
            starting[0] -= 1

    threads = ["job-02", "job-03", "job-04", "job-05", "nope", "job-01"]
    starts = [(lambda runner, t=t: start(runner, t)) for t in threads]
    out, err = io.StringIO(), io.StringIO()
    ok = asyncio.run(run_threads(config(demo_db), starts, out, err, prefix=True))
    assert most[0] == len(threads)  # every start under way at once
    refused = err.getvalue().splitlines()
    assert [line.split()[1] for line in refused] == ["no", "job-01"]
    assert not ok
    for thread in threads[:4]:
        assert state_of(demo_db, thread) is State.FINISHED


def test_a_start_that_fails_otherwise_than_by_refusal_fails_the_run(demo_db: Path) -> None:
    import io

    from supervisor.headless import run_threads

    async def broken(_runner: Runner):
        raise OSError("the jobs directory is gone")

    starts = [broken, lambda runner: runner.resume("job-05", force=True)]
    with pytest.raises(OSError, match="jobs directory is gone"):
        asyncio.run(run_threads(config(demo_db), starts, io.StringIO(), io.StringIO()))


def test_an_abort_never_outlasts_what_the_watcher_and_serve_wait_for() -> None:
    """The watcher and `serve` stop waiting this long past the grace, then exit hard: an
    abort waiting for a run to wind down must be done before that (`FINISHING_WAIT`)."""
    from supervisor.cli.serve import END_MARGIN
    from supervisor.cli.watch import SHUTDOWN_MARGIN
    from supervisor.runner import FINISHING_WAIT

    assert min(SHUTDOWN_MARGIN, END_MARGIN) >= FINISHING_WAIT + 1.0
