"""Loading the user's agent factory from a `MODULE:ATTR` reference.

Like `uvicorn app:app`: the module is imported with the current directory on
the path, and `ATTR` is a callable `factory(checkpointer, thread_id)` that
returns a `cubeloop.Agent` (or an awaitable of one). Every way this can go
wrong becomes an `AgentLoadError` whose message is one line naming what
failed, for the CLI to print.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from cubeloop import Agent

DEFAULT_AGENT = "supervisor.demo:demo_agent"
ENV_VAR = "AGENT_SUPERVISOR_AGENT"

Factory = Callable[[Any, str], Any]


class AgentLoadError(Exception):
    """The agent reference or factory is unusable; one line for the user."""


def agent_reference(explicit: str | None) -> str:
    """`--agent`, else `$AGENT_SUPERVISOR_AGENT`, else the built-in demo."""
    return explicit or os.environ.get(ENV_VAR) or DEFAULT_AGENT


def load_factory(reference: str) -> Factory:
    module_name, sep, attr = reference.partition(":")
    if not sep or not module_name or not attr:
        raise AgentLoadError(f"agent {reference!r}: expected MODULE:ATTR, e.g. myagents:make_agent")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise AgentLoadError(
                f"agent {reference!r}: no module named {module_name!r} "
                f"(looked in {cwd} and the installed packages)"
            ) from None
        raise AgentLoadError(
            f"agent {reference!r}: importing {module_name!r} failed: {exc}"
        ) from None
    except Exception as exc:
        raise AgentLoadError(
            f"agent {reference!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from None
    factory: Any = module
    for part in attr.split("."):
        try:
            factory = getattr(factory, part)
        except AttributeError:
            raise AgentLoadError(
                f"agent {reference!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    if not callable(factory):
        raise AgentLoadError(
            f"agent {reference!r}: {attr!r} is a {type(factory).__name__}, not callable"
        )
    return factory


async def build_agent(
    factory: Factory, checkpointer: Any, thread_id: str, reference: str = "agent"
) -> Agent:
    """Call the factory and check what it gave back."""
    try:
        agent = factory(checkpointer, thread_id)
        if inspect.isawaitable(agent):
            agent = await agent
    except Exception as exc:
        raise AgentLoadError(
            f"agent {reference!r}: factory raised {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(agent, Agent):
        raise AgentLoadError(
            f"agent {reference!r}: factory returned {type(agent).__name__}, not a cubeloop.Agent"
        )
    if agent.checkpointer is not checkpointer or agent.thread_id != thread_id:
        raise AgentLoadError(
            f"agent {reference!r}: the factory must build the Agent with the "
            "checkpointer and thread_id it is given"
        )
    return agent
