"""A bench agent: the demo agent, except that its first model call ends the process (exit 0).

`agent-supervisor resume DB THREAD --agent first_call:agent` (with bench/ on PYTHONPATH) then
lasts from start-up to the first model call: what `resume THREAD` makes a user wait for.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from supervisor.demo import build_demo_agent


def _stop(_messages: list[Any]) -> Any:
    sys.stdout.flush()
    os._exit(0)


def agent(checkpointer: Any, thread_id: str) -> Any:
    return build_demo_agent(checkpointer, thread_id, planner=_stop)
