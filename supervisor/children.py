"""Threads driven by another thread's tool: how an agent says so, and how it drives them.

An agent used as a tool may keep its own durable thread in the same
database (the parent's tool builds a child `Agent` on a thread of its own
and runs it). cubeloop records no link from such a child to its parent
(its `parent_thread_id` is for forks, which are independent threads). A
supervisor that sees a crashed child and a crashed parent would resume
both, and the parent's re-run tool would drive the child a second time.

So the agent says so, with one call in its tool:

    from supervisor.children import drive_child

    async def execute(call_id, args, **_):
        child = make_child_agent(checkpointer, f"{thread_id}/child")
        await drive_child(child, args.task, parent_thread_id=thread_id, tool_call_id=call_id)
        ...

`drive_child` writes the link into the child's own `extra` (key
`agent_supervisor_parent`: the parent's thread id and the tool call), so
every surface shows the child with its parent and resumes it only through
the parent. When the parent's tool runs again after a crash, the child's
crashed run is carried on where it died (`supervisor.continuation`), not
prompted a second time; a child with no open run is prompted.

The link is plain data: an agent that drives its child another way can
write it with `link_child`, or by hand.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from supervisor.states import PARENT_KEY, parent_of

if TYPE_CHECKING:
    from cubeloop import Agent

__all__ = ["PARENT_KEY", "drive_child", "link_child", "parent_of"]


async def link_child(
    checkpointer: Any,
    child_thread_id: str,
    parent_thread_id: str,
    tool_call_id: str | None = None,
) -> None:
    """Record in the child's `extra` that `parent_thread_id` drives it.

    cubeloop merges `save_extra` into what is stored by top-level key, and
    the child's own saves keep the key (they start from what was loaded).
    """
    link = {"thread_id": parent_thread_id, "tool_call_id": tool_call_id}
    await checkpointer.save_extra(child_thread_id, {PARENT_KEY: link})


async def drive_child(
    child: Agent | Callable[[str], Agent],
    task: str,
    *,
    parent_thread_id: str,
    tool_call_id: str | None = None,
    checkpointer: Any = None,
    thread_id: str | None = None,
) -> Driven:
    """Run the child on `task`, linked to its parent; returns how it went on (`Driven`).

    "carried on": the child's last run was left open by a crash, and goes on
    in that run (its unanswered calls through its own pipeline, its job
    markers making them safe), as the supervisor carries any thread on.
    "done before": this very tool call already ran the child to its end
    (the parent died before it saw the result); the child's messages are
    loaded, nothing runs. "prompted": `task` is a new prompt. Either way the
    child ends as its own run would have, and `child.state.messages` holds
    its transcript.

    A child that asks humans (its `CheckpointedChannel` bound to a run) is
    given as a function of the run id that builds it, with its `checkpointer`
    and `thread_id`: the run it goes on in is known only here.
    """
    from supervisor.continuation import bring_back, join_run, load_into, run_of
    from supervisor.runs import newest_run_open
    from supervisor.states import State
    from supervisor.store import summary_from_dicts

    build = child if callable(child) and not hasattr(child, "prompt") else None
    if build is None:
        checkpointer, thread_id = child.checkpointer, child.thread_id  # type: ignore[union-attr]
    assert checkpointer is not None and thread_id is not None
    data = await checkpointer.load(thread_id)
    linked_before = data.extra.get(PARENT_KEY) if data is not None else None
    await link_child(checkpointer, thread_id, parent_thread_id, tool_call_id)
    messages = list(data.messages) if data is not None else []
    state = summary_from_dicts(thread_id, [m.model_dump() for m in messages]).state
    run_open = await newest_run_open(checkpointer, thread_id)
    if state in (State.MID_TOOL, State.AFTER_TOOLS, State.BETWEEN_TURNS) and run_open:
        mid_tool = state is State.MID_TOOL
        run_id = run_of(messages, mid_tool=mid_tool) or uuid.uuid4().hex
        agent = build(run_id) if build is not None else child
        run_id = await join_run(checkpointer, thread_id, run_id)
        await bring_back(agent, run_id, mid_tool=mid_tool)  # type: ignore[arg-type]
        return Driven("carried on", agent)  # type: ignore[arg-type]
    same_call = linked_before == {"thread_id": parent_thread_id, "tool_call_id": tool_call_id}
    if same_call and tool_call_id is not None and _last_prompt(messages) == task:
        agent = child if build is None else build(uuid.uuid4().hex)
        await load_into(agent)  # type: ignore[arg-type]
        return Driven("done before", agent)  # type: ignore[arg-type]
    run_id = uuid.uuid4().hex
    agent = build(run_id) if build is not None else child
    await agent.prompt(task, run_id=run_id)  # type: ignore[union-attr]
    return Driven("prompted", agent)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Driven:
    """How `drive_child` went on ("carried on", "done before", "prompted"), and the child
    agent it drove (`agent.state.messages` is its transcript)."""

    how: str
    agent: Agent


def _last_prompt(messages: list[Any]) -> str | None:
    """The text of the newest user message (the prompt of the child's last run)."""
    for m in reversed(messages):
        if getattr(m, "role", None) == "user":
            return "".join(getattr(b, "text", "") for b in m.content)
    return None
