"""Run one agent of `tests.crashes.agents` in this process, as its host would, until it dies.

    python -m tests.crashes.child AGENT DATABASE THREAD PROMPT [--answer JSON] [--answer-mode M]

The host prompts the agent under a run id of its own. When the agent asks a
human, the host either answers in memory while the run waits (`--answer-mode
memory`: the channel stores the answer and the run goes on), or detaches
(the run suspends, as a durable host does) and, with `--answer`, answers
through `Agent.respond` as a later request would (`respond`). `--answer`
given again answers the next question, in order. The kill points
come from `$CRASH_KILL` (see `agents.py`); with none, the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import uuid
from typing import Any

from cubeloop.hitl.types import ApproveAnswer

from supervisor.location import Location
from tests.crashes import agents


async def host(args: argparse.Namespace) -> None:
    module, _, name = args.agent.rpartition(":")
    factory = getattr(importlib.import_module(module) if module else agents, name)
    answers = [json.loads(a) for a in args.answer or []]
    cp = Location.parse(args.database).checkpointer()
    await cp.__aenter__()
    try:
        run_id = uuid.uuid4().hex
        agent = factory(cp, args.thread, run_id=run_id)

        def on_event(event: Any, _signal: Any = None) -> None:
            if event.type != "hitl_request":
                return
            loop = asyncio.get_running_loop()
            if answers and args.answer_mode == "memory":
                given = answers.pop(0)
                if event.request.payload.kind == "approve":  # the waiting run takes the model
                    given = ApproveAnswer.model_validate(given)
                loop.create_task(agent.channel.answer(event.request.question_id, given))
            else:
                loop.create_task(agent.detach())

        agent.subscribe(on_event)
        await agent.prompt(args.prompt, run_id=run_id)
        while answers and args.answer_mode == "respond":  # a durable host: each answer later
            loaded = await cp.load_pending(args.thread)
            if loaded is None:
                return
            request, pending_run = loaded
            again = factory(cp, args.thread, run_id=pending_run)
            again.subscribe(
                lambda e, _s=None, a=again: (
                    e.type == "hitl_request" and asyncio.ensure_future(a.detach())
                )
            )
            await again.respond(question_id=request.question_id, answer=answers.pop(0))
    finally:
        await cp.__aexit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("agent")
    parser.add_argument("database")
    parser.add_argument("thread")
    parser.add_argument("prompt")
    parser.add_argument("--answer", action="append", help="JSON; again for each later question")
    parser.add_argument("--answer-mode", choices=["memory", "respond"], default="respond")
    # The host makes its jobs directory as it starts, as the CubeLoop recipe's agents do at
    # import: a resume warns of (and refuses to rerun calls in) a named one that is missing.
    if os.environ.get("JOB_DIR"):
        os.makedirs(os.environ["JOB_DIR"], exist_ok=True)
    asyncio.run(host(parser.parse_args()))


if __name__ == "__main__":
    main()
