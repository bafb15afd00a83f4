"""Hosts that drive an agent the way `child.py` does not, in this process, until it dies.

    python -m tests.crashes.more_child fork AGENT DATABASE SOURCE NEW PROMPT... --then PROMPT
    python -m tests.crashes.more_child steer AGENT DATABASE THREAD PROMPT --at ITEM --text TEXT
    python -m tests.crashes.more_child cancel AGENT DATABASE THREAD PROMPT --at TOOL
    python -m tests.crashes.more_child abort-pending AGENT DATABASE THREAD PROMPT --how HOW

- `fork`: every PROMPT runs on SOURCE to its end, each under a run id of its
  own, with the kill points disarmed; then `Agent.fork(SOURCE, NEW,
  after_run_id=<the first prompt's run>)`, then `--then` is prompted on NEW
  with the kill points armed.
- `steer`: when `process(ITEM)` starts, `agent.steer(TEXT)` (a user message),
  as a host does while a tool runs.
- `cancel`: when TOOL starts, the task running `agent.prompt` is cancelled a
  moment later (cubeloop answers the calls left as cancelled), then the
  process SIGKILLs itself, as a host dies right after.
- `abort-pending`: the run asks a human; the host aborts the pending request
  with `Agent.abort_pending`, either while the run waits for the answer in
  memory (`inflight`) or after it detached (`detached`: a new agent, as a
  later request would). The process then exits normally; with
  `--die-after-deny` it SIGKILLs itself inside `abort_pending`, right after
  the deny results were saved and before the closing message.

Kill points come from `$CRASH_KILL` (see `agents.py` and `more_agents.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import uuid
from typing import Any

from cubeloop import TextContent, UserMessage

from supervisor.location import Location
from tests.crashes.agents import KILL_VAR


def factory_of(reference: str) -> Any:
    module, _, name = reference.rpartition(":")
    return getattr(importlib.import_module(module or "tests.crashes.more_agents"), name)


async def fork(args: argparse.Namespace, cp: Any) -> None:
    factory = factory_of(args.agent)
    kill = os.environ.pop(KILL_VAR, None)
    runs = []
    for prompt in args.prompts:
        run_id = uuid.uuid4().hex
        agent = factory(cp, args.source, run_id=run_id)
        await agent.prompt(prompt, run_id=run_id)
        runs.append(run_id)
    await factory(cp, args.source).fork(args.source, args.new, after_run_id=runs[0])
    if kill is not None:
        os.environ[KILL_VAR] = kill
    run_id = uuid.uuid4().hex
    agent = factory(cp, args.new, run_id=run_id)
    await agent.prompt(args.then, run_id=run_id)


async def steer(args: argparse.Namespace, cp: Any) -> None:
    run_id = uuid.uuid4().hex
    agent = factory_of(args.agent)(cp, args.thread, run_id=run_id)

    def on_event(event: Any, _signal: Any = None) -> None:
        if event.type == "tool_execution_start" and event.args.get("item") == args.at:
            agent.steer(UserMessage(content=[TextContent(text=args.text)]))

    agent.subscribe(on_event)
    await agent.prompt(args.prompt, run_id=run_id)


async def cancel(args: argparse.Namespace, cp: Any) -> None:
    run_id = uuid.uuid4().hex
    agent = factory_of(args.agent)(cp, args.thread, run_id=run_id)
    task = asyncio.create_task(agent.prompt(args.prompt, run_id=run_id))

    def on_event(event: Any, _signal: Any = None) -> None:
        if event.type == "tool_execution_start" and event.tool_name == args.at:
            asyncio.get_running_loop().call_later(args.after, task.cancel)

    agent.subscribe(on_event)
    await asyncio.gather(task, return_exceptions=True)
    print("cancelled" if task.cancelled() else f"not cancelled: {task.exception()!r}", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


class DiesAfterDeny:
    """A checkpointer that SIGKILLs the process once it saved an `aborted` tool result:
    inside `abort_pending`, between its deny results and its closing message."""

    def __init__(self, checkpointer: Any) -> None:
        self._checkpointer = checkpointer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._checkpointer, name)

    async def append(self, thread_id: str, messages: list[Any]) -> None:
        await self._checkpointer.append(thread_id, messages)
        for m in messages:
            details = getattr(m, "details", None)
            if isinstance(details, dict) and details.get("hitl", {}).get("decision") == "aborted":
                os.kill(os.getpid(), signal.SIGKILL)


async def abort_pending(args: argparse.Namespace, cp: Any) -> None:
    if args.die_after_deny:
        cp = DiesAfterDeny(cp)
    run_id = uuid.uuid4().hex
    factory = factory_of(args.agent)
    agent = factory(cp, args.thread, run_id=run_id)
    aborting: list[asyncio.Task[None]] = []

    def on_event(event: Any, _signal: Any = None) -> None:
        if event.type != "hitl_request":
            return
        loop = asyncio.get_running_loop()
        if args.how == "inflight":
            aborting.append(loop.create_task(agent.abort_pending(args.reason)))
        else:
            loop.create_task(agent.detach())

    agent.subscribe(on_event)
    await agent.prompt(args.prompt, run_id=run_id)
    if aborting:
        await aborting[0]
    if args.how == "detached":
        loaded = await cp.load_pending(args.thread)
        assert loaded is not None, "the run did not suspend"
        later = factory(cp, args.thread, run_id=loaded[1])
        await later.abort_pending(args.reason)


async def host(args: argparse.Namespace) -> None:
    cp = Location.parse(args.database).checkpointer()
    await cp.__aenter__()
    try:
        await args.run(args, cp)
    finally:
        await cp.__aexit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(required=True)

    p = sub.add_parser("fork")
    p.add_argument("agent")
    p.add_argument("database")
    p.add_argument("source")
    p.add_argument("new")
    p.add_argument("prompts", nargs="+")
    p.add_argument("--then", required=True)
    p.set_defaults(run=fork)

    for name, run in (("steer", steer), ("cancel", cancel), ("abort-pending", abort_pending)):
        p = sub.add_parser(name)
        p.add_argument("agent")
        p.add_argument("database")
        p.add_argument("thread")
        p.add_argument("prompt")
        p.set_defaults(run=run)
        if name == "steer":
            p.add_argument("--at", required=True, help="the item whose process call is steered")
            p.add_argument("--text", required=True)
        elif name == "cancel":
            p.add_argument("--at", required=True, help="the tool whose start cancels the task")
            p.add_argument("--after", type=float, default=0.2)
        else:
            p.add_argument("--how", choices=["inflight", "detached"], required=True)
            p.add_argument("--reason", default="the host aborted it")
            p.add_argument("--die-after-deny", action="store_true")
    asyncio.run(host(parser.parse_args()))


if __name__ == "__main__":
    main()
