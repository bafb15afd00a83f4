"""Job markers for tool authors: `idempotent` and `open_markers`.

A tool with a side effect wraps its work so it happens once per key (see
`supervisor.markers` for the records). The markers live in a directory or,
when the supervisor runs the agent with a `postgresql://` jobs location, in a
table; `open_markers()` with no argument finds the place the supervisor chose
for this process, so a tool's code is the same either way.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable
from typing import Any

from supervisor.location import Location
from supervisor.markers import JobMarkers, Marker, current_thread, job_key

__all__ = [
    "MARKERS_VARIABLE",
    "JobMarkers",
    "Marker",
    "current_thread",
    "idempotent",
    "job_key",
    "open_markers",
    "read_markers",
    "use_markers_at",
]

#: Where tools keep markers when that is a Postgres database (a URL): set by the
#: supervisor for the agents it runs, read by `open_markers(None)`.
MARKERS_VARIABLE = "AGENT_SUPERVISOR_MARKERS"

#: The markers location this process was given (a Postgres URL with its password), which
#: the environment carries only without it (`agents.export_environment`).
_markers_here: str | None = None


def use_markers_at(location: str | None) -> None:
    """Where `open_markers()` with no location looks first, in this process."""
    global _markers_here
    _markers_here = location


def open_markers(location: str | os.PathLike[str] | Location | None = None) -> Any:
    """The markers at a location: `JobMarkers` for a directory, the Postgres table for a URL.

    With no location: the one the supervisor set for this process, else
    `$AGENT_SUPERVISOR_MARKERS`, else `$JOB_DIR`, else the current directory.
    """
    if location is None:
        location = (
            _markers_here or os.environ.get(MARKERS_VARIABLE) or os.environ.get("JOB_DIR") or "."
        )
    return Location.parse(location).markers()


def idempotent(
    markers: JobMarkers | Callable[[], JobMarkers],
    *,
    tool_name: str,
    key: Callable[[Any], str] | None = None,
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Wrap a cubeloop tool `execute` so its work happens once per key.

    The wrapped function has cubeloop's signature `(tool_call_id, params,
    *, signal=None, on_update=None)` and returns an `AgentToolResult`. When a
    `done` marker exists its stored result is returned as the tool result,
    and the work is skipped: every content block (text and images alike),
    its details and whether it asked to end the run, as the work returned them.
    """
    from cubeloop import AgentToolResult, TextContent
    from cubeloop.providers.base import Content
    from pydantic import TypeAdapter

    blocks = TypeAdapter(list[Content])

    def decorate(
        execute: Callable[..., Awaitable[Any]],
    ) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(execute)
        async def wrapper(tool_call_id: str, params: Any, **kwargs: Any) -> Any:
            store = markers() if callable(markers) else markers
            arguments = params.model_dump() if hasattr(params, "model_dump") else params
            job = key(params) if key else job_key(tool_name, arguments)
            existing = store.get(job)
            if existing is not None and existing.done:
                stored = existing.result if isinstance(existing.result, dict) else {}
                try:
                    content = blocks.validate_python(stored["content"])
                except (KeyError, ValueError):  # written before blocks were kept: its text
                    content = [TextContent(text=str(stored.get("text", "")))]
                return AgentToolResult(
                    content=content,
                    details=stored.get("details"),
                    terminate=stored.get("terminate"),
                )
            store.start(job, tool=tool_name, arguments=arguments, tool_call_id=tool_call_id)
            result = await execute(tool_call_id, params, **kwargs)
            if not getattr(result, "is_error", False):
                text = "".join(getattr(c, "text", "") for c in result.content)
                store.finish(
                    job,
                    {
                        "text": text,
                        "content": blocks.dump_python(list(result.content), mode="json"),
                        "details": result.details,
                        "terminate": result.terminate,
                    },
                )
            return result

        return wrapper

    return decorate


def read_markers(location: str | os.PathLike[str] | Location) -> list[Marker]:
    """Every marker at a location, oldest first (`Location.read_markers`)."""
    return Location.parse(location).read_markers()
