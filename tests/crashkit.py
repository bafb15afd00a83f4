"""Run the demo agent in this process and SIGKILL it at a chosen point.

Used by the crash tests as a child process: a real agent, a real SQLite
file, a real SIGKILL. Points:

  --kill-at-event N         after the N-th agent event (message_update not
                            counted), i.e. after everything up to it was
                            checkpointed
  --kill-at-marker P:ITEM   inside process_item for ITEM, where P is
                            before_start, after_start, before_finish or
                            after_finish (around the job marker writes)
  --abort-at-event N        call agent.abort() after the N-th event instead
  --fail-turn K             the model answers turn K with stop_reason=error
  --list-events             print the counted event types and exit normally

Without a kill point the run simply completes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from cubeloop.checkpointer import SQLiteCheckpointer
from cubeloop.providers.faux import faux_assistant_message

from supervisor import demo
from supervisor.jobs import JobMarkers, current_thread


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class KillingMarkers(JobMarkers):
    def __init__(self, directory: Path, point: str, item: str) -> None:
        super().__init__(directory)
        self.point, self.item = point, item

    def _hit(self, point: str, key: str) -> None:
        if self.point == point and f'"item":"{self.item}"' in key:
            die()

    def start(self, key: str, **kwargs) -> None:
        self._hit("before_start", key)
        super().start(key, **kwargs)
        self._hit("after_start", key)

    def finish(self, key: str, result) -> None:
        self._hit("before_finish", key)
        super().finish(key, result)
        self._hit("after_finish", key)


def failing_planner(turn: int):
    def plan(messages):
        assistant_turns = sum(1 for m in messages if m.role == "assistant")
        if assistant_turns + 1 == turn:
            return faux_assistant_message(
                "", stop_reason="error", error_message="provider overloaded (529)"
            )
        return demo.plan_next(messages)

    return plan


async def run(args: argparse.Namespace) -> None:
    jobs = Path(args.jobs_dir)
    markers = (
        KillingMarkers(jobs, *args.kill_at_marker.split(":", 1))
        if args.kill_at_marker
        else JobMarkers(jobs)
    )
    tools = demo.demo_tools(jobs, markers=markers, seconds=args.tool_seconds)
    planner = failing_planner(args.fail_turn) if args.fail_turn else demo.plan_next
    current_thread.set(args.thread)
    async with SQLiteCheckpointer(args.db) as cp:
        agent = demo.build_demo_agent(cp, args.thread, tools=tools, planner=planner)
        count = 0

        def listen(event, _signal=None):
            nonlocal count
            if event.type == "message_update":
                return
            count += 1
            if args.list_events:
                print(count, event.type, flush=True)
            if count == args.kill_at_event:
                die()
            if count == args.abort_at_event:
                agent.abort()

        agent.subscribe(listen)
        await agent.prompt(args.prompt)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--thread", required=True)
    p.add_argument("--jobs-dir", required=True)
    p.add_argument("--prompt", default="Process items A..C")
    p.add_argument("--tool-seconds", type=float, default=0.0)
    p.add_argument("--kill-at-event", type=int, default=0)
    p.add_argument("--kill-at-marker", default="")
    p.add_argument("--abort-at-event", type=int, default=0)
    p.add_argument("--fail-turn", type=int, default=0)
    p.add_argument("--list-events", action="store_true")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
