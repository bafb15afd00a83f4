"""The cubeloop internals the resume path uses are where it expects them.

`supervisor.continuation` carries a crashed run on the way `Agent.respond()`
does, with cubeloop's own private loop entry points, and `backends` reads the
runs table on the checkpointer's own connection. cubeloop is pinned to one
version; a new one that moves any of these must fail here, by name, not in a
crash test's transcript.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import pytest
from cubeloop import Agent
from cubeloop.checkpointer import SQLiteCheckpointer
from cubeloop.checkpointer.postgres import PostgresCheckpointer
from cubeloop.middleware.goal import GoalMiddleware
from cubeloop.providers.faux import FauxProvider


def test_cubeloop_is_the_pinned_version() -> None:
    assert version("cubeloop") == "0.15.3"


@pytest.mark.parametrize(
    "name",
    [
        "_run_hitl_resume",
        "_run_continuation",
        "_dispatch_outcome",
        "_emit_suspended_event",
        "_validate_hitl_bindings",
    ],
)
def test_the_agent_methods_carry_on_drives_exist(name: str) -> None:
    method = getattr(Agent, name)
    assert inspect.iscoroutinefunction(method) or name == "_validate_hitl_bindings"


def test_the_agent_state_carry_on_sets_exists() -> None:
    agent = Agent(model=FauxProvider().model("x"))
    for name in ("_run_lock", "_extra", "_checkpoint_loaded", "_pending_suspension_event"):
        assert hasattr(agent, name), name
    assert agent._extra is agent.state.extra  # tools' writes through extra_ref land here
    assert hasattr(agent._state, "_messages") and hasattr(agent._state, "active_run_id")
    assert isinstance(agent._middleware, list)
    params = inspect.signature(Agent._dispatch_outcome).parameters
    assert list(params) == ["self", "outcome", "run_id"]


def test_goal_middleware_keeps_what_restore_goal_reads() -> None:
    middleware = GoalMiddleware(FauxProvider().model("x"), max_evaluations=7)
    assert middleware._max_evaluations == 7
    assert 'ctx.extra.get("goal")' in inspect.getsource(GoalMiddleware.on_run_end)


def test_the_checkpointers_keep_the_connections_newest_run_open_reads() -> None:
    assert "self._db" in inspect.getsource(SQLiteCheckpointer.__aenter__)
    assert "self._lock" in inspect.getsource(SQLiteCheckpointer.__init__)
    assert "self._pool" in inspect.getsource(PostgresCheckpointer.__aenter__)
