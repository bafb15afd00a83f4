"""What a command needs from its arguments: the database, the store, the agent, a run.

Checked before any work starts: a bad place or a broken agent is one line and
exit 2, never a traceback or a half-done run.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor import collector
from supervisor.agents import (
    ENV_VAR,
    DeferredAgent,
    agent_reference,
    export_environment,
    load_agent,
)
from supervisor.cli.options import LIVE_WINDOW, UsageError
from supervisor.cli.output import print_notices, say_notes
from supervisor.location import Location
from supervisor.store import Store

if TYPE_CHECKING:
    from supervisor.agents import LoadedAgent
    from supervisor.runner import RunnerConfig
    from supervisor.tracing import Tracing


def where(args: argparse.Namespace) -> Location:
    """The database the command is about (`Location.parse` tells a file from a URL)."""
    return Location.parse(args.db)


def open_store(args: argparse.Namespace, only: Sequence[str] | None = None) -> Store:
    """The store (threads leased by a live supervisor are `running`), notices printed, and
    a big SQLite file without the thread index named: every read of one thread scans it.
    (Postgres keys its messages by thread; its hint, about refreshes, is `watch`'s and the
    app's.)

    `only`: the command is about these threads; the rest are not listed
    (on a 100,000-thread database that is the difference between seconds
    and milliseconds, given an index: `agent-supervisor index`).
    """
    with collector.bulk_read():  # every thread's summary, at once
        store = where(args).open_store(busy_timeout=args.busy_timeout, only=only)
    print_notices(store)
    if not where(args).server:
        hint = store.index_hint()
        if hint is not None:
            say_notes([hint])
    return store


def marker_hook(args: argparse.Namespace):
    """The agent module's marker hook, when an agent is named (`--agent` or env)."""
    reference = getattr(args, "agent", None) or os.environ.get(ENV_VAR)
    return load_agent(reference).marker_hook if reference else None


def agent_and_jobs(args: argparse.Namespace) -> tuple[LoadedAgent, Path | str]:
    """The checked agent and the jobs directory, the environment set before the import."""
    jobs_dir = agent_environment(args)
    return load_agent(agent_reference(args.agent)), jobs_dir


def agent_environment(args: argparse.Namespace) -> Path | str:
    """The jobs directory, exported for agents written like the recipe (they read it at
    import): call before the agent is imported."""
    jobs = where(args).jobs(args.jobs_dir)
    export_environment(jobs)
    return jobs.argument()


def jobs_place(args: argparse.Namespace) -> Location:
    """Where the command's job markers are (`Location.jobs`); a `--jobs-dir` that is a file
    is refused with one line."""
    jobs = where(args).jobs(getattr(args, "jobs_dir", None))
    if not jobs.server and jobs.path.exists() and not jobs.path.is_dir():
        raise UsageError(f"{jobs}: not a directory (job markers are kept in a directory)")
    return jobs


def agent_named(args: argparse.Namespace) -> bool:
    """Whether an agent was named (`--agent`, `$AGENT_SUPERVISOR_AGENT`), rather than the
    built-in demo taken for want of one."""
    return bool(getattr(args, "agent", None) or os.environ.get(ENV_VAR))


def jobs_named_by(args: argparse.Namespace) -> str | None:
    """Who named the jobs place: "--jobs-dir", "$JOB_DIR", or None (the default)."""
    if getattr(args, "jobs_dir", None):
        return "--jobs-dir"
    return "$JOB_DIR" if os.environ.get("JOB_DIR") else None


def check_places(args: argparse.Namespace) -> None:
    """Where a run will write, checked before it starts: a jobs directory that is a file,
    a leases directory that is not ours or cannot be made, are one line and exit 2, not a
    traceback (or an agent looping on a tool that cannot write its marker)."""
    from supervisor.leases import LeaseError, leases_dir, secure_directory

    jobs_place(args)
    if where(args).server:
        return
    directory = leases_dir(args.db)
    if os.path.lexists(directory):  # made by the run that takes a lease, not by a check
        try:
            secure_directory(directory, 0o700)
        except LeaseError as exc:
            raise UsageError(str(exc)) from None
    elif directory.parent.is_dir() and not os.access(directory.parent, os.W_OK | os.X_OK):
        raise UsageError(f"{directory}: cannot make it (its directory is not writable)")


def runner_config(args: argparse.Namespace, defer: bool = False) -> RunnerConfig:
    """Check everything a run needs before any work starts; with `defer` (the app),
    what can be checked without importing the agent, which the app imports later."""
    from supervisor.runner import RunnerConfig

    check_places(args)
    if defer:
        jobs_dir = agent_environment(args)
        deferred = DeferredAgent(agent_reference(args.agent))
        deferred.check()
        agent: dict[str, Any] = {"deferred": deferred, "agent_ref": deferred.reference}
    else:
        loaded, jobs_dir = agent_and_jobs(args)
        agent = {
            "factory": loaded.factory,
            "agent_ref": loaded.reference,
            "marker_hook": loaded.marker_hook,
        }
    tracing = run_tracing(args, defer=defer)
    return RunnerConfig(
        tracing=tracing,
        database=where(args).argument(),
        jobs_dir=jobs_dir,
        **agent,
        max_concurrent=args.max_concurrent,
        continue_text=args.continue_text,
        mid_tool_strategy=args.strategy,
        abort_grace=args.abort_grace,
        live_window=0 if getattr(args, "force", False) else LIVE_WINDOW,
        jobs_named_by=jobs_named_by(args),
        agent_named=agent_named(args),
    )


def run_tracing(args: argparse.Namespace, defer: bool = False) -> Tracing | None:
    """`--otel`: the runs' tracing, or None. Missing packages are one line and exit 2;
    with `defer` (the app) they are only looked for, and imported at the first run."""
    if getattr(args, "otel", None) is None:
        return None
    from supervisor.tracing import Tracing, TracingUnavailable

    tracing = Tracing(args.otel or None)
    try:
        tracing.check()
        if not defer:
            tracing.load()
    except TracingUnavailable as exc:
        raise UsageError(str(exc)) from None
    if args.otel and tracing.host_provider:
        say_notes(
            [
                "--otel URL is not used: this process has an OpenTelemetry tracer provider "
                "already, and the runs' spans go to its exporters"
            ]
        )
    return tracing


def run_agents(
    config: RunnerConfig,
    starts: list,
    probe: str,
    prefix: bool = False,
    *,
    as_json: bool = False,
    outcome_extra: dict[str, object] | None = None,
) -> bool:
    """Run agents headless until they stop; True if every thread finished. `as_json`:
    JSON lines, one per event and an outcome per thread (`headless.JsonLines`)."""
    import asyncio

    from supervisor.headless import run_threads

    return asyncio.run(
        run_threads(
            config,
            starts,
            probe=probe,
            prefix=prefix,
            as_json=as_json,
            outcome_extra=outcome_extra,
        )
    )
