"""The CubeLoop recipe's agent ("Resumable Long Tasks"), as its docs write it.

This is the first real user's agent: a `transcode_video` tool guarded by the
recipe's own job markers (`JOB_DIR/<key with / replaced by _>.json`, holding
`{"output_path": ...}`, written only after the work), `JOB_DIR` read when the
module is imported, and the recipe's checkpointer use. It is kept as close to
the recipe's text as cubeloop 0.15.3 allows; every change is marked ADAPTED.
Lines marked TEST are instrumentation: a ledger counting real side effects
and kill points, so a test can SIGKILL the process exactly where it wants.

Run it as the recipe's `resume.py` does:

    python -m tests.agents.recipe THREAD [PROMPT] --db jobs.db
        [--kill-on EVENT[:N]] [--abort-on EVENT[:N]]

and set `RECIPE_KILL=during_work:SRC` or `after_marker:SRC` to die inside the
tool. The supervisor uses `tests.agents.recipe:build` as its factory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal as signals
import sys
import time
from pathlib import Path
from typing import Any

# ADAPTED: `cubepi` is now published as `cubeloop`.
from cubeloop import Agent, AgentTool, AgentToolResult, TextContent
from cubeloop.checkpointer import SQLiteCheckpointer
from cubeloop.providers.base import ToolCall

# ADAPTED: a scripted FauxProvider stands in for AnthropicProvider (no network in tests).
from cubeloop.providers.faux import FauxProvider, faux_assistant_message
from pydantic import BaseModel

# Simple file-backed job store; replace with Redis / Postgres in prod.
JOB_DIR = Path(os.environ.get("JOB_DIR", "/tmp/cubepi-jobs"))
JOB_DIR.mkdir(parents=True, exist_ok=True)

WORK_SECONDS = float(os.environ.get("RECIPE_WORK_SECONDS", "0.05"))  # TEST


def _ledger(source: str, output: str) -> None:  # TEST: one line per real transcode
    path = os.environ.get("RECIPE_LEDGER")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{source}\t{output}\t{os.getpid()}\n")
            f.flush()
            os.fsync(f.fileno())


def _kill_point(point: str, source: str) -> None:  # TEST: die here if asked to
    if os.environ.get("RECIPE_KILL") == f"{point}:{source}":
        os.kill(os.getpid(), signals.SIGKILL)


class TranscodeParams(BaseModel):
    source_path: str
    output_path: str


async def run_ffmpeg(source_path: str, output_path: str, signal: Any = None) -> str:
    # ADAPTED: the recipe leaves run_ffmpeg to the reader; this one "transcodes"
    # for WORK_SECONDS, honours the abort signal, and records the side effect.
    deadline = time.monotonic() + WORK_SECONDS
    while time.monotonic() < deadline:
        if signal is not None and signal.is_set():
            raise RuntimeError(f"transcode of {source_path} aborted")
        _kill_point("during_work", source_path)
        await asyncio.sleep(0.01)
    _ledger(source_path, output_path)
    return output_path


async def transcode_video(tool_call_id, params: TranscodeParams, *, signal=None, on_update=None):
    job_key = f"transcode:{params.source_path}->{params.output_path}"
    job_file = JOB_DIR / f"{job_key.replace('/', '_')}.json"
    if job_file.exists():
        # Already done in a previous run.
        state = json.loads(job_file.read_text())
        return AgentToolResult(
            content=[TextContent(text=f"Already transcoded to {state['output_path']}.")],
            details=state,
        )
    # Do the actual work (long-running, expensive).
    # Use signal to abort cleanly if cancelled.
    output = await run_ffmpeg(params.source_path, params.output_path, signal=signal)
    # Commit the job-done marker AFTER the work succeeds.
    job_file.write_text(json.dumps({"output_path": output}))
    _kill_point("after_marker", params.source_path)  # TEST
    return AgentToolResult(
        content=[TextContent(text=f"Transcoded to {output}.")],
        details={"output_path": output},
    )


transcode_tool = AgentTool(
    name="transcode_video",
    description="Transcode a video file. Idempotent — safe to retry.",
    parameters=TranscodeParams,
    execute=transcode_video,
    execution_mode="sequential",  # one transcode at a time
)


# ADAPTED: the scripted model. It reads the conversation alone (so it answers
# the same after any crash): the pairs "SRC to DST" in the last prompt that
# have no successful result yet are transcoded, two per turn (a batch).
_PAIR = re.compile(r"(\S+)\s+to\s+(\S+?)(?:\s|$|,)")


def plan(messages: list[Any], *_: Any) -> Any:
    prompt_at = max(
        (i for i, m in enumerate(messages) if m.role == "user" and _PAIR.search(_text(m))),
        default=None,
    )
    if prompt_at is None:
        return faux_assistant_message("Tell me what to transcode: 'Transcode A to B'.")
    pairs = _PAIR.findall(_text(messages[prompt_at]))
    asked: dict[str, str] = {}
    done: set[str] = set()
    for m in messages[prompt_at:]:
        if m.role == "assistant":
            for b in m.content:
                if isinstance(b, ToolCall):
                    asked[b.id] = b.arguments.get("source_path")
        elif m.role == "tool_result" and not m.is_error and m.tool_call_id in asked:
            done.add(asked[m.tool_call_id])
    todo = [(s, d) for s, d in pairs if s not in done]
    if not todo:
        return faux_assistant_message(f"All {len(pairs)} videos are transcoded.")
    turn = sum(1 for m in messages[prompt_at:] if m.role == "assistant") + 1
    calls = [
        ToolCall(
            id=f"toolu_{turn}_{i}",
            name="transcode_video",
            arguments={"source_path": s, "output_path": d},
        )
        for i, (s, d) in enumerate(todo[:2])
    ]
    return faux_assistant_message(
        [TextContent(text=f"Transcoding {len(calls)} video(s)."), *calls], stop_reason="tool_use"
    )


def _text(message: Any) -> str:
    return "".join(getattr(b, "text", "") for b in message.content)


class ScriptedModel(FauxProvider):
    async def stream(self, model: Any, messages: list[Any], **kwargs: Any) -> Any:
        self.set_responses([plan])
        return await super().stream(model, messages, **kwargs)


def build(checkpointer: Any, thread_id: str) -> Agent:
    """The agent the recipe's main() builds, as a factory for the supervisor."""
    provider = ScriptedModel()
    return Agent(
        # ADAPTED: `model=Model(id=..., provider="anthropic")` raises in cubeloop 0.15.3.
        model=provider.model("claude-sonnet-4-5-20250929"),
        system_prompt="You orchestrate video transcoding jobs.",
        tools=[transcode_tool],
        checkpointer=checkpointer,
        thread_id=thread_id,
    )


async def main(db: str, thread_id: str, initial_prompt: str | None, kill: str, abort: str) -> None:
    async with SQLiteCheckpointer(db) as cp:
        agent = build(cp, thread_id)
        seen: dict[str, int] = {}

        def listen(event: Any, _signal: Any = None) -> None:  # TEST: kill/abort points
            name = event.type
            if name == "message_end":
                name = f"message_end.{event.message.role}"
            seen[name] = seen.get(name, 0) + 1
            here = f"{name}:{seen[name]}"
            if here == kill:
                os.kill(os.getpid(), signals.SIGKILL)
            if here == abort:
                agent.abort()

        agent.subscribe(listen)
        if initial_prompt:
            await agent.prompt(initial_prompt)
        else:
            data = await cp.load(thread_id)
            if data is None:
                raise RuntimeError(f"No saved state for thread {thread_id!r}")
            agent.state.messages = list(data.messages)
            await agent.resume()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("thread")
    p.add_argument("prompt", nargs="?")
    p.add_argument("--db", default="jobs.db")
    p.add_argument("--kill-on", default="", help="EVENT:N, e.g. message_end.user:1")
    p.add_argument("--abort-on", default="", help="EVENT:N, e.g. tool_execution_start:1")
    a = p.parse_args()
    asyncio.run(main(a.db, a.thread, a.prompt, a.kill_on, a.abort_on))
    sys.exit(0)
