"""An incident bundle: one thread's whole story in a new directory, for a bug report.

`show DB THREAD --bundle DIR` gathers what a person debugging a stuck thread
asks for first, each file as the command that prints it would: the transcript
(`show --format md` and `jsonl`), what a resume would do (`resume --dry-run`,
with `--json`), the job markers of its tool calls (`jobs --thread`), the
watcher's attempts at it and who holds its lease now; and a README naming each
file, the versions, the time and the command line (any password masked).

The directory appears whole or not at all: everything is written into a
temporary directory beside it, renamed into place at the end, and removed if
anything fails on the way. Like `mkdtemp`'s, it is readable by its owner alone:
a transcript may hold what the agent's users told it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor.location import Location, shown_arguments
from supervisor.markdown import code, fenced, transcript_markdown
from supervisor.report import marker_json, transcript_jsonl
from supervisor.text import utc_time

if TYPE_CHECKING:
    from supervisor.agents import LoadedAgent
    from supervisor.markers import Marker
    from supervisor.plan import MatchedBy, ThreadPlan
    from supervisor.states import ThreadSummary
    from supervisor.store import Store, Transcript


class BundleError(Exception):
    """The bundle cannot be made there; one line for the user. Nothing was written."""


@dataclass
class Incident:
    """What a bundle holds, read before anything is written."""

    summary: ThreadSummary
    #: Every message whole.
    transcript: Transcript
    #: What `resume --dry-run` plans, or None when it could not (then `no_plan` says why).
    plans: list[ThreadPlan] | None
    #: Per thread, why a resume now would wait for `--force` (`plans.waits`), or None.
    live: dict[str, str | None]
    no_plan: str | None
    markers: list[tuple[Marker, MatchedBy | None]]
    #: Where the markers and the watcher's records are, for people (no password).
    markers_at: str
    attempts_at: str


def gather(
    store: Store,
    place: Location,
    summary: ThreadSummary,
    *,
    agent: LoadedAgent | None,
    no_agent: str | None,
    jobs_dir: Path | str,
    strategy: str = "rerun",
    live_window: float = 0.0,
) -> Incident:
    """Read the thread's incident from an open store. `agent`: whose policy the plan asks,
    as `resume --dry-run` does, and whose marker hook matches markers; without one
    (`no_agent` says why) there is no plan and markers are matched by their records."""
    from supervisor.plans import dry_run, marker_index, waits

    index = marker_index(jobs_dir, agent.marker_hook if agent is not None else None)
    transcript = store.transcript(summary.thread_id, full=True)
    plans = None
    if agent is not None:
        plans = dry_run(store, [summary], index, strategy=strategy, agent=agent)
    ledger = place.attempts()
    try:
        attempts_at = ledger.shown
    finally:
        ledger.close()
    return Incident(
        summary=summary,
        transcript=transcript,
        plans=plans,
        live=waits([summary], time.time(), live_window),
        no_plan=None if agent is not None else no_agent,
        markers=index.markers_of(summary.thread_id, transcript.tool_calls()),
        markers_at=Location.parse(jobs_dir).shown,
        attempts_at=attempts_at,
    )


def check_target(target: Path) -> None:
    """Refuse a place a bundle cannot go, before anything is read or written: something
    there that is not an empty directory, or a parent that is not a directory."""
    if target.resolve() == Path.cwd().resolve():  # renamed over, it would leave the shell
        raise BundleError(f"{target}: the current directory (name a new one)")
    if os.path.lexists(target):
        if target.is_symlink() or not target.is_dir():
            raise BundleError(f"{target}: exists and is not a directory")
        try:
            full = any(target.iterdir())
        except OSError as exc:
            raise BundleError(f"{target}: {exc.strerror}") from None
        if full:
            raise BundleError(
                f"{target}: exists and is not empty (a bundle goes in a new directory)"
            )
    parent = target.absolute().parent
    if not parent.is_dir():
        raise BundleError(f"{parent}: no such directory")


def write_bundle(
    target: Path,
    incident: Incident,
    *,
    versions: str,
    argv: Sequence[str],
    made_at: float,
) -> list[str]:
    """Write the bundle at `target` (checked by `check_target`): whole, or nothing.
    The names of the files written, README first."""
    files = bundle_files(incident)
    readme = readme_lines(incident, list(files), versions, argv, made_at)
    files = {"README.md": lambda: readme, **files}
    target = target.absolute()
    try:
        temporary = Path(tempfile.mkdtemp(prefix=".bundle.", dir=target.parent))
    except OSError as exc:
        raise BundleError(f"{target.parent}: {exc.strerror}") from None
    try:
        with _stopped_as_by_ctrl_c():
            for name, lines in files.items():
                with open(temporary / name, "w", encoding="utf-8") as out:
                    for line in lines():
                        out.write(line)
                        out.write("\n")
            os.rename(temporary, target)  # over an empty directory too; never over a full one
    except OSError as exc:
        shutil.rmtree(temporary, ignore_errors=True)
        raise BundleError(f"{target}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return list(files)


@contextlib.contextmanager
def _stopped_as_by_ctrl_c() -> Iterator[None]:
    """SIGTERM and SIGHUP stop the writing as Ctrl-C does, so the temporary directory is
    removed too (only SIGKILL, which nothing catches, can leave a `.bundle.*` behind)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    before = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


#: Each file and what it holds, as the README says.
ABOUT = {
    "transcript.md": "the transcript for people: every message whole, tool calls with their "
    "arguments, results and errors, the pending request (`show --format md`)",
    "transcript.jsonl": "the same as JSON lines: the thread, each message, the pending request "
    "(`show --format jsonl`)",
    "plan.json": "what a resume would do with the thread and each unanswered tool call, as "
    "`resume THREAD --dry-run --json` prints it",
    "plan.txt": "the same plan as `resume THREAD --dry-run` prints it",
    "markers.json": "the job markers of the thread's tool calls, as `jobs --thread THREAD "
    "--json` prints them",
    "attempts.json": "the watcher's record of its attempts at the thread (`attempt` null: none)",
    "holder.json": "who holds the thread's lease now, as `list --json` shows it "
    "(`holder` null: nobody)",
}


def bundle_files(incident: Incident) -> dict[str, Callable[[], Iterable[str]]]:
    """Each file's name and what writes its lines (made as they are written)."""
    s = incident.summary
    files: dict[str, Callable[[], Iterable[str]]] = {
        "transcript.md": lambda: transcript_markdown(s, incident.transcript),
        "transcript.jsonl": lambda: transcript_jsonl(s, incident.transcript),
    }
    if incident.plans is not None:
        from supervisor.plans import dry_run_json, dry_run_lines

        plans, live = incident.plans, incident.live
        files["plan.json"] = lambda: [_json(dry_run_json(plans, live))]
        files["plan.txt"] = lambda: dry_run_lines(plans, live)
    else:
        files["plan.txt"] = lambda: [f"no plan: {incident.no_plan}"]
    files["markers.json"] = lambda: [_json([marker_json(m, how) for m, how in incident.markers])]
    attempt = None
    if s.attempt is not None:
        attempt = {**s.attempt.to_json(), "updated_at": s.attempt.updated_at}
    files["attempts.json"] = lambda: [
        _json({"thread_id": s.thread_id, "kept_in": incident.attempts_at, "attempt": attempt})
    ]
    files["holder.json"] = lambda: [_json({"thread_id": s.thread_id, "holder": s.holder})]
    return files


def readme_lines(
    incident: Incident,
    names: list[str],
    versions: str,
    argv: Sequence[str],
    made_at: float,
) -> list[str]:
    """The bundle's index: what made it, when, how, and what each file holds."""
    s = incident.summary
    command = "agent-supervisor " + shlex.join(shown_arguments(argv))
    lines = [
        f"# Incident bundle: thread {code(s.thread_id)}",
        "",
        f"Made {utc_time(made_at)} by {versions}; the thread was {s.state}. The command:",
        "",
        *fenced(command, "sh"),
        "",
        "Files:",
        "",
        "- `README.md`: this index",
    ]
    for name in names:
        about = ABOUT[name]
        if name == "markers.json":
            about += f" (read from {code(incident.markers_at, 300)})"
        if name == "attempts.json":
            about += f", kept in {code(incident.attempts_at, 300)}"
        lines.append(f"- `{name}`: {about}")
    if "plan.json" not in names:
        lines.append("- `plan.json`: not written: there is no plan (`plan.txt` says why)")
    return lines


def _json(value: Any) -> str:
    """A JSON document as `print_json` writes it."""
    return json.dumps(value, indent=2, default=str)
