"""Loading the user's agent factory from a `MODULE:ATTR` reference.

Like `uvicorn app:app`: the module is imported with the current directory on
the path, and `ATTR` is a callable `factory(checkpointer, thread_id)` that
returns a `cubeloop.Agent` (or an awaitable of one). A factory whose agent
asks humans (a `CheckpointedChannel`) also takes a keyword `run_id` and binds
the channel to it. Every way this can go
wrong becomes an `AgentLoadError` whose message is one line naming what
failed, for the CLI to print at start-up, before any thread runs.

The factory's module may also define `agent_supervisor_marker(tool_name,
arguments, jobs_dir)`, returning the path of the job marker that guards a
call (see `supervisor.plan`), so the resume preview can say for certain
which calls will really run again.

The environment the supervisor promises (`JOB_DIR`) is exported before the
module is imported: agents written like the CubeLoop recipe read it at
import time.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cubeloop import Agent

    from supervisor.location import Location
    from supervisor.plan import MarkerHook


DEFAULT_AGENT = "supervisor.demo:demo_agent"
ENV_VAR = "AGENT_SUPERVISOR_AGENT"
#: The optional marker hook's name in the factory's module.
MARKER_HOOK = "agent_supervisor_marker"

Factory = Callable[[Any, str], Any]


@dataclass(frozen=True)
class LoadedAgent:
    """A checked factory and what its module tells the supervisor."""

    reference: str
    factory: Factory
    marker_hook: MarkerHook | None = None


def export_environment(jobs_dir: Path | str | Location) -> None:
    """Set what agent modules may read at import time; call before `load_agent`.

    A directory is `JOB_DIR` (the recipe's name). A Postgres URL goes in
    `AGENT_SUPERVISOR_MARKERS`, read by `jobs.open_markers()`; `JOB_DIR`, a
    directory by every tool's reading, is then left as the user set it.
    """
    from supervisor.jobs import MARKERS_VARIABLE, use_markers_at
    from supervisor.location import Location

    place = Location.parse(jobs_dir)
    if place.server:
        # The password stays in this process (tools here open the markers with it); what
        # every process a tool starts inherits is the URL without it ($PGPASSWORD or
        # ~/.pgpass give it to those that need it).
        use_markers_at(place.text)
        os.environ[MARKERS_VARIABLE] = place.for_children
    else:
        use_markers_at(None)
        os.environ.pop(MARKERS_VARIABLE, None)
        os.environ["JOB_DIR"] = str(jobs_dir)


def load_agent(reference: str) -> LoadedAgent:
    """Import and check the factory (module, attribute, callable, signature)."""
    factory, module = _resolve(reference)
    _check_signature(reference, factory)
    hook = getattr(module, MARKER_HOOK, None)
    if hook is not None and not callable(hook):
        raise AgentLoadError(
            f"agent {reference!r}: {MARKER_HOOK} is a {type(hook).__name__}, not callable"
        )
    return LoadedAgent(reference, factory, hook)


def _check_signature(reference: str, factory: Any) -> None:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return  # builtins and C callables: nothing to check
    try:
        signature.bind(object(), "thread")
    except TypeError:
        raise AgentLoadError(
            f"agent {reference!r}: the factory must take (checkpointer, thread_id); "
            f"its signature is {reference.partition(':')[2]}{signature}"
        ) from None


class DeferredAgent:
    """An agent reference checked now and imported later, once, by whoever needs it first.

    The app draws its first screen before it imports the agent (the agent stack
    is a third of a second of the wait), then imports it in the background.
    `check` catches what it can without importing: a malformed reference or a
    module that is nowhere to be found. What only the import can tell (the
    module raises, the attribute is missing) comes from `load`, which raises
    the same `AgentLoadError` to every caller.
    """

    def __init__(self, reference: str) -> None:
        self.reference = reference
        self._lock = threading.Lock()
        self._agent: LoadedAgent | None = None
        self._error: AgentLoadError | None = None

    def check(self) -> None:
        """Raise `AgentLoadError` for what is wrong before any import."""
        module_name, _ = _split(self.reference)
        cwd = _on_path()
        try:  # imports the parent packages of a dotted name, not the module
            found = importlib.util.find_spec(module_name)
        except Exception:
            return  # a parent package that fails to import: `load` says how
        if found is None:
            raise AgentLoadError(_not_found(self.reference, module_name, cwd))

    @property
    def loaded(self) -> bool:
        """Whether the import has run and succeeded."""
        return self._agent is not None

    def load(self) -> LoadedAgent:
        """The checked agent, imported by the first caller (others wait for it)."""
        with self._lock:
            if self._agent is None and self._error is None:
                try:
                    self._agent = load_agent(self.reference)
                except AgentLoadError as exc:
                    self._error = exc
            if self._error is not None:
                raise AgentLoadError(str(self._error))
            assert self._agent is not None
            return self._agent


class AgentLoadError(Exception):
    """The agent reference or factory is unusable; one line for the user."""


def demo_lacks_tool(tool: str) -> str:
    """Why a thread is refused by the built-in demo agent taken for want of a named one
    (`Runner._check_agent_fits`, and the plans that say so first)."""
    return (
        f"no agent named, and the built-in demo agent has no tool {tool!r}, which this "
        f"thread called: nothing was run. Name the thread's agent with --agent "
        f"module:factory (or ${ENV_VAR})"
    )


def agent_reference(explicit: str | None) -> str:
    """`--agent`, else `$AGENT_SUPERVISOR_AGENT`, else the built-in demo."""
    return explicit or os.environ.get(ENV_VAR) or DEFAULT_AGENT


def load_factory(reference: str) -> Factory:
    """The checked factory alone."""
    return load_agent(reference).factory


def _split(reference: str) -> tuple[str, str]:
    module_name, sep, attr = reference.partition(":")
    if not sep or not module_name or not attr:
        raise AgentLoadError(f"agent {reference!r}: expected MODULE:ATTR, e.g. myagents:make_agent")
    return module_name, attr


def _on_path() -> str:
    """Put the current directory on the import path (as uvicorn does); return it."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    return cwd


def _not_found(reference: str, module_name: str, cwd: str) -> str:
    return (
        f"agent {reference!r}: no module named {module_name!r} "
        f"(looked in {cwd} and the installed packages)"
    )


def _resolve(reference: str) -> tuple[Any, Any]:
    module_name, attr = _split(reference)
    cwd = _on_path()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise AgentLoadError(_not_found(reference, module_name, cwd)) from None
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
    return factory, module


def takes_run_id(factory: Any) -> bool:
    """Whether the factory takes `run_id` (needed by human-in-the-loop agents)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.name == "run_id" and p.kind is not p.POSITIONAL_ONLY or p.kind is p.VAR_KEYWORD
        for p in params
    )


async def build_agent(
    factory: Factory,
    checkpointer: Any,
    thread_id: str,
    reference: str = "agent",
    *,
    run_id: str | None = None,
) -> Agent:
    """Call the factory and check what it gave back.

    A factory that takes `run_id` gets the run the agent is built for: a
    `CheckpointedChannel` must be bound to the same run id as the prompt,
    resume or respond that drives it.
    """
    try:
        if run_id is not None and takes_run_id(factory):
            agent = factory(checkpointer, thread_id, run_id=run_id)
        else:
            agent = factory(checkpointer, thread_id)
        if inspect.isawaitable(agent):
            agent = await agent
    except Exception as exc:
        raise AgentLoadError(
            f"agent {reference!r}: factory raised {type(exc).__name__}: {exc}"
        ) from None
    from cubeloop import Agent  # here: importing the agent stack costs a third of a second

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
