"""Crash an agent of `agents.py` in a real child process, then drive the supervisor's CLI.

A `Case` is one database, one jobs directory (markers and the effects
ledger) and one agent. `crash` runs the agent's host (`child.py`) until the
kill point SIGKILLs it; `cli` runs `agent-supervisor` as a user would, with
the agent named by `--agent`; the helpers read what the CLI prints.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.crashes.agents import KILL_VAR, LEDGER_VAR, effects

ROOT = Path(__file__).resolve().parents[2]


class Answers(list):
    """Several answers for `Case.crash`, one per question, in order."""


@dataclass
class Case:
    database: str
    jobs: Path
    agent: str
    #: The Postgres URL markers live at, when they are not in `jobs`.
    markers: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def environ(self, kill: str | None = None) -> dict[str, str]:
        env = {**os.environ, **self.env, "JOB_DIR": str(self.jobs), LEDGER_VAR: str(self.jobs)}
        env.pop(KILL_VAR, None)
        if self.markers:
            env["AGENT_SUPERVISOR_MARKERS"] = self.markers
        if kill:
            env[KILL_VAR] = kill
        return env

    def crash(
        self,
        thread: str,
        prompt: str,
        kill: str | None,
        *,
        answer: Any = None,
        answer_mode: str = "respond",
    ) -> int:
        """Run the agent's host until it dies; asserts it was killed when a kill point is given."""
        args = [
            sys.executable,
            "-m",
            "tests.crashes.child",
            self.agent,
            self.database,
            thread,
            prompt,
        ]
        for given in answer if isinstance(answer, Answers) else [] if answer is None else [answer]:
            args += ["--answer", json.dumps(given)]
        if answer is not None:
            args += ["--answer-mode", answer_mode]
        done = subprocess.run(
            args, cwd=ROOT, env=self.environ(kill), capture_output=True, text=True, timeout=120
        )
        if kill:
            assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr[-2000:])
        else:
            assert done.returncode == 0, done.stderr[-2000:]
        return done.returncode

    def cli(self, *args: str, kill: str | None = None) -> subprocess.CompletedProcess[str]:
        """`agent-supervisor ARGS --agent ... --jobs-dir ...` where the command takes them."""
        command, *rest = args
        extra: list[str] = []
        if command in ("resume", "answer", "watch", "prompt"):
            extra = ["--agent", self.reference]
            extra += ["--jobs-dir", self.markers or str(self.jobs)]
        return subprocess.run(
            [sys.executable, "-m", "supervisor", command, *rest, *extra],
            cwd=ROOT,
            env=self.environ(kill),
            capture_output=True,
            text=True,
            timeout=180,
        )

    def read(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A command that only reads (`list`, `resume --dry-run`), run as `cli` runs it (its
        argv, this case's environment) but in this process: the crash tests read states and
        plans hundreds of times, and a child process costs 0.2-0.7 s of CPU each (a third
        of the suite's crash tests went to them). The commands that act run in children."""
        import contextlib
        import io
        import logging

        from supervisor.cli import run

        command, *rest = args
        extra: list[str] = []
        if command == "resume":
            extra = ["--agent", self.reference, "--jobs-dir", self.markers or str(self.jobs)]
        out, err = io.StringIO(), io.StringIO()
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level  # the CLI sets its own
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.environ())
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = run([command, *rest, *extra])
        finally:
            os.environ.clear()
            os.environ.update(saved)
            root.handlers[:] = handlers
            root.setLevel(level)
        return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())

    def listed(self, thread: str) -> dict[str, Any]:
        out = self.read("list", self.database, "--json")
        assert out.returncode == 0, out.stderr
        found = [t for t in json.loads(out.stdout) if t["thread_id"] == thread]
        assert found, f"{thread} not listed"
        return found[0]

    def state(self, thread: str) -> str:
        return self.listed(thread)["state"]

    def plan(self, thread: str) -> dict[str, Any]:
        out = self.read("resume", self.database, thread, "--dry-run", "--json")
        assert out.returncode == 0, out.stderr
        (plan,) = json.loads(out.stdout)
        return plan

    def verdicts(self, thread: str) -> dict[str, str]:
        """Each planned call's verdict, by tool name."""
        return {c["name"]: c["verdict"] for c in self.plan(thread)["calls"]}

    def resume(
        self, thread: str, *more: str, kill: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.cli("resume", self.database, thread, "--force", *more, kill=kill)

    def answer(self, thread: str, *how: str) -> subprocess.CompletedProcess[str]:
        return self.cli("answer", self.database, thread, *how)

    def watch(self, until: Callable[[], bool], seconds: float = 30.0, *extra: str) -> str:
        """`agent-supervisor watch` as a daemon, until `until()` holds (or `seconds` pass
        from its first line, "watching ...": a loaded machine took over three seconds to
        start it, and a SIGTERM before then ended it unheard), then SIGTERM; what it
        printed."""
        args = [sys.executable, "-m", "supervisor", "watch", self.database, "--quiet", "0"]
        args += [
            "--poll",
            "0.2",
            "--agent",
            self.reference,
            "--jobs-dir",
            self.markers or str(self.jobs),
            *extra,
        ]
        with subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as watcher:
            first = watcher.stdout.readline()  # its signal handlers are in place
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not until():
                time.sleep(0.5)  # `until` runs commands: a core's worth at 0.2 s
            watcher.send_signal(signal.SIGTERM)
            out, _ = watcher.communicate(timeout=30)
        return first + out

    @property
    def reference(self) -> str:
        return self.agent if ":" in self.agent else f"tests.crashes.agents:{self.agent}"

    def effects(self, log: str = "effects.log") -> Counter[str]:
        return effects(self.jobs, log)

    def transcript(self, thread: str) -> list[dict[str, Any]]:
        out = self.cli("show", self.database, thread, "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)["transcript"]


def effect(name: str, **arguments: Any) -> str:
    """How the ledger writes one effect."""
    return f"{name}:{json.dumps(arguments, sort_keys=True, separators=(',', ':'))}"


#: Scenarios built once per process: (name, backend) -> (database, jobs directory).
_BUILT: dict[tuple[str, str], tuple[str, Path]] = {}


def built_once(
    name: str,
    agent: str,
    build: Callable[[Case], None],
    tmp_path: Path,
    backend: str = "sqlite",
    request: Any = None,
) -> Case:
    """A copy, for this test alone, of a scenario `build` made for real once per process
    and backend (a build is several agent processes; many tests start from one). The
    original lives in pytest's own base directory; a Postgres one is a database of the
    session's server (`request` gives it), copied as a template."""
    key = (name, backend)
    if key not in _BUILT:
        where = tmp_path.parent / f"{name}-{backend}"
        where.mkdir()
        database = (
            request.getfixturevalue("pg_server").new_database()
            if backend == "postgres"
            else str(where / f"{name}.db")
        )
        build(Case(database, where / "jobs", agent))
        _BUILT[key] = (database, where / "jobs")
    database, jobs = _BUILT[key]
    shutil.copytree(jobs, tmp_path / "jobs")
    if backend == "postgres":
        copy = request.getfixturevalue("pg_server").copy_database(database)
    else:
        copy = str(tmp_path / f"{name}.db")
        shutil.copy(database, copy)
    return Case(copy, tmp_path / "jobs", agent)
