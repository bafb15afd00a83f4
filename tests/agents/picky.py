"""The demo agent, except for threads named `bad-…`, whose model is down.

One watcher over both sees every kind of event: runs that finish, attempts
that fail, threads held.
"""

from __future__ import annotations

from typing import Any

from supervisor.demo import build_demo_agent
from tests.agents.crashloop import always_down


def agent(checkpointer: Any, thread_id: str) -> Any:
    if thread_id.startswith("bad-"):
        return build_demo_agent(checkpointer, thread_id, planner=always_down)
    return build_demo_agent(checkpointer, thread_id)
