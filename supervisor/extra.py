"""For agent authors: what tools write to `extra` kept across a crash.

cubeloop saves a thread's `extra` (todo lists, goals, a spent budget: what
tools write through `extra_ref` or `agent.state.extra`) at the end of a turn
only, while each tool result is saved as it comes. A process killed between
the two keeps the result and loses the write: the tool is not run again (its
result is in), and the model, or a cap kept in `extra`, sees the old value.

`save_extra_after_each_result(agent)` closes that window: it saves `extra`
right after each tool result is saved. The supervisor does it for every run
it drives; call it where you build your agent for the runs your own
processes drive.
"""

from __future__ import annotations

import weakref
from typing import Any

#: Agents already saving: subscribing twice would save twice per result.
_saving: weakref.WeakSet[Any] = weakref.WeakSet()


def save_extra_after_each_result(agent: Any) -> None:
    """Have `agent` save its thread's `extra` after each tool result is saved (once per
    agent, however often it is called)."""
    if agent in _saving:
        return
    _saving.add(agent)

    async def save(event: Any, _signal: Any = None) -> None:
        if event.type != "message_end" or getattr(event.message, "role", None) != "tool_result":
            return
        if agent.checkpointer is not None and agent.thread_id is not None:
            await agent.checkpointer.save_extra(agent.thread_id, agent.state.extra)

    agent.subscribe(save)
