"""The deferred-group agent, in a module of its own with a marker hook.

The supervisor asks a module's `agent_supervisor_marker` where each call's
marker is; the agents of `agents.py` have none, so their plans match markers
by what the markers record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supervisor.jobs import job_key
from tests.crashes.agents import deferred

__all__ = ["agent_supervisor_marker", "deferred"]


def agent_supervisor_marker(tool_name: str, arguments: Any, jobs_dir: Path) -> str | None:
    """The marker hook: every guarded tool of this module keeps a marker keyed by its arguments."""
    from supervisor.markers import marker_filename

    return str(jobs_dir / marker_filename(job_key(tool_name, arguments)))
