"""Resuming many threads across worker processes (`resume --processes N`).

One process runs every agent on one event loop; past a few dozen threads at
once that loop is the limit (every step of every agent is Python on one
core). `run_sharded` splits the threads among N worker processes, each running
its share exactly as a single `resume` does (`headless.run_threads`), and
waits for them. Each worker takes its threads' leases like every run, so no
thread runs twice, even when another supervisor races us.

Workers inherit stdout and stderr and write whole lines, each prefixed by
its thread, so their output interleaves line by line. They run in a session
of their own: a Ctrl-C reaches this process only, which passes one SIGINT per
press to each worker (the first aborts gracefully, a second cancels), as a
single process behaves. A SIGTERM is passed on as a SIGINT, a graceful abort.
A SIGKILLed parent leaves its workers to finish their threads.

The worker's orders travel as JSON on its stdin, so a database URL's
password never shows in a process listing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from supervisor.location import Location

if TYPE_CHECKING:
    from supervisor.runner import RunnerConfig

#: A worker that could not start its threads (bad agent, unreadable database).
EXIT_BAD_INPUT = 2
#: Some thread did not end finished (or waiting on a human).
EXIT_UNFINISHED = 1


#: The `RunnerConfig` settings a worker takes as they are (plain values; the
#: agent and the locations are rebuilt in the worker from their references).
SETTINGS = (
    # Whether an agent and the jobs place were named: a worker refuses what the parent's
    # runner would (without them, the demo agent closed a user's calls as "not found").
    "agent_named",
    "jobs_named_by",
    "max_concurrent",
    "continue_text",
    "mid_tool_strategy",
    "abort_grace",
    "live_window",
    "coalesce_seconds",
    "abort_poll",
    "lease_check",
)


@dataclass(frozen=True)
class Shard:
    """What one worker process resumes, and how (the `resume` options)."""

    database: str
    threads: list[str]
    agent: str
    jobs_dir: str
    force: bool
    #: `RunnerConfig` fields named in `SETTINGS`, this worker's share of max_concurrent.
    settings: dict[str, Any]
    #: `--otel`: the traces endpoint ("" for the standard variables); None: not traced.
    otel: str | None = None


def shards_for(
    config: RunnerConfig, threads: list[str], processes: int, force: bool
) -> list[Shard]:
    """`config`'s run of these threads, dealt to at most `processes` workers."""
    settings = {name: getattr(config, name) for name in SETTINGS}
    return [
        Shard(
            database=str(config.database),
            threads=part,
            agent=config.agent_ref,
            jobs_dir=str(config.jobs_dir),
            force=force,
            settings={**settings, "max_concurrent": share},
            otel=None if config.tracing is None else config.tracing.endpoint or "",
        )
        for part, share in split(threads, processes, config.max_concurrent)
    ]


def split(threads: list[str], processes: int, max_concurrent: int) -> list[tuple[list[str], int]]:
    """Threads dealt round-robin to at most `processes` workers, with each one's share of
    `max_concurrent` (never more workers than threads or than runs allowed at once)."""
    n = max(1, min(processes, len(threads), max_concurrent))
    return [
        (threads[i::n], max_concurrent // n + (1 if i < max_concurrent % n else 0))
        for i in range(n)
    ]


def run_sharded(shards: list[Shard]) -> int:
    """Run each shard in a worker process; the worst exit status of them (0, 1 or 2)."""
    workers: list[subprocess.Popen[bytes]] = []

    def forward(_signum: int, _frame: FrameType | None) -> None:
        for worker in workers:
            if worker.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.send_signal(signal.SIGINT)

    before = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for shard in shards:
            worker = subprocess.Popen(
                [sys.executable, "-m", "supervisor.shards"],
                stdin=subprocess.PIPE,
                start_new_session=True,
            )
            workers.append(worker)
            assert worker.stdin is not None
            worker.stdin.write(json.dumps(asdict(shard)).encode())
            worker.stdin.close()
        codes = [_wait(worker) for worker in workers]
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    return max((code if code in (0, 1, 2) else EXIT_UNFINISHED for code in codes), default=0)


def _wait(worker: subprocess.Popen[bytes]) -> int:
    while True:
        with contextlib.suppress(InterruptedError):
            return worker.wait()


def _work(shard: Shard) -> int:
    """One worker: resume this shard's threads as a single `resume` would."""
    from supervisor.agents import agent_reference, export_environment, load_agent
    from supervisor.headless import run_threads
    from supervisor.runner import RunnerConfig

    jobs_dir = Location.parse(shard.jobs_dir).argument()
    export_environment(jobs_dir)  # agents written like the recipe read it at import
    agent = load_agent(agent_reference(shard.agent))
    tracing = None
    if shard.otel is not None:
        from supervisor.tracing import Tracing

        tracing = Tracing(shard.otel or None)
        tracing.load()
    config = RunnerConfig(
        tracing=tracing,
        database=Location.parse(shard.database).argument(),
        factory=agent.factory,
        jobs_dir=jobs_dir,
        agent_ref=agent.reference,
        marker_hook=agent.marker_hook,
        **shard.settings,
    )
    starts = [
        (lambda runner, t=thread_id: runner.resume(t, force=shard.force))
        for thread_id in shard.threads
    ]
    ok = asyncio.run(run_threads(config, starts, prefix=True))
    return 0 if ok else EXIT_UNFINISHED


def main() -> int:
    from supervisor.agents import AgentLoadError
    from supervisor.store import StoreError
    from supervisor.tracing import TracingUnavailable

    try:
        return _work(Shard(**json.load(sys.stdin)))
    except (StoreError, AgentLoadError, TracingUnavailable) as exc:
        print(f"agent-supervisor: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:  # before its runs began: nothing to abort
        return 130


if __name__ == "__main__":
    sys.exit(main())
