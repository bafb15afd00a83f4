"""An agent that fails every time: its model call errors (a provider that is down).

The watcher tests resume it again and again: each run ends `error`, a
failed attempt, until the thread is held.
"""

from __future__ import annotations

from typing import Any

from cubeloop.providers.faux import faux_assistant_message

from supervisor.demo import build_demo_agent


def always_down(_messages: list[Any]) -> Any:
    return faux_assistant_message("", stop_reason="error", error_message="provider down (HTTP 503)")


def agent(checkpointer: Any, thread_id: str) -> Any:
    return build_demo_agent(checkpointer, thread_id, planner=always_down)
