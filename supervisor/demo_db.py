"""The demo database: threads in every resume state, made by real crashes.

`build_demo_db` runs the demo agent in child processes (this module's
`child` entry point) and kills each with SIGKILL at a chosen moment: after
the N-th agent event (everything up to it is checkpointed), or inside a tool
around its job-marker writes, or when it asks a human (`--human-wait`), or
right after a human's answer is stored (`--human-answer JSON`). Nothing is
written to the database by hand; the empty thread goes through the
checkpointer's own API.

The children of one build are forked, one after another, from a single
helper process (the `forked` entry point, `run_children`) that imports the agent stack once:
started afresh, each child spent 0.6 s (SQLite) to 1.2 s (Postgres) importing,
nearly all of a child's life. The helper has no threads and no connections
when it forks, so each child starts clean; each still dies by a real SIGKILL.

The crash tests use the child entry point on its own:

    python -m supervisor.demo_db child --db D --thread T --jobs-dir J \
        [--kill-at-event N | --kill-at-marker POINT:ITEM | --abort-at-event N]
        [--human-wait | --human-answer JSON]
        [--fail-turn K] [--prompt TEXT] [--tool-seconds S] [--list-events]

POINT is before_start, after_start, before_finish or after_finish.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import signal
import subprocess
import sys
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cubeloop.providers.faux import faux_assistant_message

from supervisor import demo
from supervisor.jobs import MARKERS_VARIABLE
from supervisor.location import Location
from supervisor.markers import current_thread
from supervisor.split import fork_child


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class KillingMarkers:
    """Job markers (of either backend) that SIGKILL this process at one point around one item."""

    def __init__(self, markers: Any, point: str, item: str) -> None:
        self.markers, self.point, self.item = markers, point, item

    def _hit(self, point: str, key: str) -> None:
        if self.point == point and f'"item":"{self.item}"' in key:
            _die()

    def get(self, key: str) -> Any:
        return self.markers.get(key)

    def start(self, key: str, **kwargs: Any) -> None:
        self._hit("before_start", key)
        self.markers.start(key, **kwargs)
        self._hit("after_start", key)

    def finish(self, key: str, result: Any) -> None:
        self._hit("before_finish", key)
        self.markers.finish(key, result)
        self._hit("after_finish", key)


def failing_planner(turn: int) -> Any:
    """The demo planner, except that model turn `turn` fails like an overloaded API."""

    def plan(messages: list[Any]) -> Any:
        if sum(1 for m in messages if m.role == "assistant") + 1 == turn:
            return faux_assistant_message(
                "", stop_reason="error", error_message="provider overloaded (HTTP 529)"
            )
        return demo.plan_next(messages)

    return plan


async def run_child(args: argparse.Namespace) -> None:
    # Markers in a directory or in Postgres; the ledger (the side effects) in a directory.
    ledger = Path(args.ledger_dir or args.jobs_dir)
    os.environ["JOB_DIR"] = str(ledger)  # the refund tool reads it, as the demo agent does
    jobs = Location.parse(args.jobs_dir)
    if jobs.server:
        os.environ[MARKERS_VARIABLE] = jobs.text
    markers: Any = jobs.markers()
    if args.kill_at_marker:
        markers = KillingMarkers(markers, *args.kill_at_marker.split(":", 1))
    tools = demo.demo_tools(ledger, markers=markers, seconds=args.tool_seconds)
    planner = failing_planner(args.fail_turn) if args.fail_turn else demo.plan_next
    current_thread.set(args.thread)
    async with Location.parse(args.db).checkpointer() as cp:
        if args.empty:
            await cp.save_extra(args.thread, {"note": "created, never prompted"})
            return
        if args.human_wait or args.human_answer:
            await _ask_a_human(cp, args, tools)
            return
        agent = demo.build_demo_agent(cp, args.thread, tools=tools, planner=planner)
        count = 0

        def listen(event: Any, _signal: Any = None) -> None:
            nonlocal count
            if event.type == "message_update":
                return
            count += 1
            if args.list_events:
                print(count, event.type, flush=True)
            if count == args.kill_at_event:
                _die()
            if count == args.abort_at_event:
                agent.abort()

        agent.subscribe(listen)
        await agent.prompt(args.prompt)


async def _ask_a_human(cp: Any, args: argparse.Namespace, tools: list) -> None:
    """A thread whose agent asks a human, then dies waiting or right after the answer.

    Dying while waiting is what happens to a host that keeps the question
    in memory; dying after the answer was stored leaves the `answered` state.
    """
    run_id = uuid.uuid4().hex
    agent = demo.build_demo_agent(cp, args.thread, tools=tools, run_id=run_id)

    def listen(event: Any, _signal: Any = None) -> None:
        if event.type == "hitl_request":
            if args.human_wait:
                _die()
            asyncio.get_running_loop().create_task(agent.detach())

    agent.subscribe(listen)
    await agent.prompt(args.prompt, run_id=run_id)
    pending = await cp.load_pending(args.thread)
    assert pending is not None, "the agent did not ask"
    store_answer = cp.save_hitl_answer

    async def store_then_die(*a: Any, **kw: Any) -> None:
        await store_answer(*a, **kw)
        _die()

    cp.save_hitl_answer = store_then_die  # type: ignore[method-assign]
    answering = demo.build_demo_agent(cp, args.thread, tools=tools, run_id=pending[1])
    await answering.respond(answer=json.loads(args.human_answer))


def child_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m supervisor.demo_db child")
    p.add_argument("--db", required=True)
    p.add_argument("--thread", required=True)
    p.add_argument("--jobs-dir", required=True, help="markers: a directory or a Postgres URL")
    p.add_argument("--ledger-dir", default="", help="the side-effect ledger (default: --jobs-dir)")
    p.add_argument("--prompt", default="Process items A..C")
    p.add_argument("--tool-seconds", type=float, default=0.0)
    p.add_argument("--kill-at-event", type=int, default=0)
    p.add_argument("--kill-at-marker", default="")
    p.add_argument("--abort-at-event", type=int, default=0)
    p.add_argument("--fail-turn", type=int, default=0)
    p.add_argument("--empty", action="store_true")
    p.add_argument("--human-wait", action="store_true")
    p.add_argument("--human-answer", default="", metavar="JSON")
    p.add_argument("--list-events", action="store_true")
    return p


def child_arguments(db: Path | str, thread: str, jobs: Path | str, **options: Any) -> list[str]:
    """The child entry point's arguments: keyword options become flags."""
    argv = ["--db", str(db), "--thread", thread, "--jobs-dir", str(jobs)]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return argv


def child_command(db: Path | str, thread: str, jobs: Path | str, **options: Any) -> list[str]:
    """The command that runs one child in a process of its own."""
    return [
        sys.executable,
        "-m",
        "supervisor.demo_db",
        "child",
        *child_arguments(db, thread, jobs, **options),
    ]


def _child_env() -> dict[str, str]:
    """The children's environment: the demo model answers at once (no streaming delay)."""
    return {**os.environ, "AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND": "0"}


def run_child_process(db: Path | str, thread: str, jobs: Path | str, **options: Any) -> int:
    """Run one child; its exit code (negative SIGKILL when killed on purpose)."""
    done = subprocess.run(
        child_command(db, thread, jobs, **options),
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode


@dataclass(frozen=True)
class DemoThread:
    thread_id: str
    prompt: str
    options: dict[str, Any]
    expect: str  # the state the thread must end in


#: Event numbers count agent events other than message_update for the demo
#: agent (2 tool calls per turn): 5 = first model call started, 7 = first tool
#: started, 11 = second tool of the batch started, 17 = model call after tools.
DEMO_THREADS = (
    DemoThread("job-01", "Process items inv-101, inv-102, inv-103", {}, "finished"),
    DemoThread(
        "job-02",
        "Process items card-201, card-202, card-203, card-204",
        {"kill_at_marker": "after_start:card-202"},
        "mid_tool",
    ),
    DemoThread(
        "job-03",
        "Process items mail-301, mail-302, mail-303",
        {"kill_at_event": 11},
        "mid_tool",
    ),
    DemoThread(
        "job-04",
        "Process items vid-401, vid-402, vid-403, vid-404",
        {"kill_at_event": 17},
        "after_tools",
    ),
    DemoThread(
        "job-05",
        "Process items doc-501, doc-502",
        {"kill_at_event": 5},
        "between_turns",
    ),
    DemoThread(
        "job-06",
        "Process items img-601, img-602, img-603",
        {"abort_at_event": 7, "tool_seconds": 0.3},
        "aborted",
    ),
    DemoThread("job-07", "Process items sms-701, sms-702, sms-703", {"fail_turn": 2}, "error"),
    DemoThread("job-08", "", {"empty": True}, "empty"),
    DemoThread("job-09", "Refund order 9001 (EUR 420)", {"human_wait": True}, "awaiting_input"),
    DemoThread("job-10", "Process items 1..6", {}, "finished"),
    DemoThread("job-11", "Pick a size for order 9002", {"human_wait": True}, "awaiting_input"),
    DemoThread(
        "job-12",
        "Refund order 9003 (EUR 35)",
        {"human_answer": '{"decision": "approve"}'},
        "answered",
    ),
)


class DemoExists(Exception):
    pass


class DemoFailed(Exception):
    """The process that runs the demo's children failed (its last line of stderr)."""


def build_demo_db(
    path: Path | str,
    *,
    force: bool = False,
    jobs_dir: Path | str | None = None,
    ledger_dir: Path | None = None,
) -> Path | str:
    """Create the demo database and its jobs directory; refuse to overwrite.

    `ledger_dir`: where the demo records its side effects when the markers
    are in Postgres (default: `demo.ledger_dir_for`, which the demo agent
    also finds on its own).
    """
    place = Location.parse(path)
    if place.server:
        return _build_demo_postgres(
            place.text, force=force, jobs=place.jobs(jobs_dir, {}), ledger_dir=ledger_dir
        )
    path = place.path
    jobs = place.jobs(jobs_dir, {}).path
    if path.exists() and not force:
        raise DemoExists(f"{path}: already exists (use --force to replace it)")
    if path.exists():
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        if jobs.is_dir():
            for marker in jobs.iterdir():
                if marker.is_file():
                    marker.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    _run_demo_children(path, jobs)
    return path


def _build_demo_postgres(dsn: str, *, force: bool, jobs: Location, ledger_dir: Path | None) -> str:
    """The demo threads in a Postgres database: cubeloop's schema made if missing.

    Refuses a database that already holds threads unless `force`, which
    empties cubeloop's tables (and our markers table when the markers live
    there). The ledger, the demo's record of side effects, is a directory.
    """
    from supervisor.pg.schema import prepare_demo_database

    try:
        held = asyncio.run(prepare_demo_database(dsn, force=force, markers=jobs.server))
    except Exception as exc:
        from supervisor.pg.client import describe

        raise DemoExists(describe(dsn, exc)) from None
    if held:
        raise DemoExists(f"{held}: already holds threads (use --force to replace them)")
    ledger = ledger_dir or (demo.ledger_dir_for(dsn) if jobs.server else jobs.path)
    ledger.mkdir(parents=True, exist_ok=True)
    if force:
        for entry in ledger.iterdir():
            if entry.is_file():
                entry.unlink()
    _run_demo_children(dsn, jobs.argument(), ledger)
    return dsn


def _demo_child_argv(
    db: Path | str, t: DemoThread, jobs: Path | str, ledger: Path | None
) -> list[str]:
    """The child entry point's arguments for one demo thread."""
    options: dict[str, Any] = dict(t.options)
    if t.prompt:
        options["prompt"] = t.prompt
    if ledger is not None:
        options["ledger_dir"] = str(ledger)
    return child_arguments(db, t.thread_id, jobs, **options)


def _run_demo_children(db: Path | str, jobs: Path | str, ledger: Path | None = None) -> None:
    """Every demo thread, in order (their ids and times are in that order)."""
    run_children([_demo_child_argv(db, t, jobs, ledger) for t in DEMO_THREADS])


def run_children(children: list[list[str]]) -> list[int]:
    """Run children (each the child entry point's arguments) in turn; their exit codes.

    One helper process imports the agent stack and forks each child from it
    (see the module's docstring). A code is negative for a signal: -9 for
    a child that died by SIGKILL, as `subprocess` reports it.
    """
    done = subprocess.run(
        [sys.executable, "-m", "supervisor.demo_db", "forked"],
        input=json.dumps(children),
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=60 + 30 * len(children),
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise DemoFailed(f"running the demo's agents failed: {last}")
    return json.loads(lines[-1])


def _fork_children(children: list[list[str]]) -> list[int]:
    """The `forked` entry point: import once, then fork each child in turn."""
    parsed = [child_parser().parse_args(argv) for argv in children]
    for db in {a.db for a in parsed}:
        Location.parse(db).import_checkpointer()
    if any(Location.parse(a.jobs_dir).server for a in parsed):
        import supervisor.pg.markers  # noqa: F401  (imported before the forks, not in each)
    codes = []
    for args in parsed:
        sys.stdout.flush()
        pid = fork_child(functools.partial(_child_after_fork, args))
        _, status = os.waitpid(pid, 0)
        codes.append(os.waitstatus_to_exitcode(status))
    return codes


def _child_after_fork(args: argparse.Namespace) -> None:
    """One child, in a forked process (`split.fork_child`: it leaves without the parent's
    cleanup). Its standard output goes nowhere: the parent's carries the exit codes."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        asyncio.run(run_child(args))
    except BaseException:
        traceback.print_exc()
        raise
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        asyncio.run(run_child(child_parser().parse_args(sys.argv[2:])))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "forked":
        print(json.dumps(_fork_children(json.loads(sys.stdin.read()))))
        return
    print(__doc__)


if __name__ == "__main__":
    main()
