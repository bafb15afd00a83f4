"""A resume pointed at the wrong markers, or at no agent, runs nothing.

The agent's `wire` tool records its effect and its marker, then the process
is SIGKILLed before the result is saved: the call is done, and only its
marker says so. A typo in `--jobs-dir` (or a stale `$JOB_DIR`) read no marker,
planned the call `rerun`, and wired the money a second time; forgetting
`--agent` ran the built-in demo agent, which answered the call "not found"
and closed it for good. Every effect is counted by the tool itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.crashes.harness import ROOT, Case, effect

WIRE = effect("wire", order="w1", amount_eur=50)


def crashed(tmp_path: Path) -> Case:
    c = Case(str(tmp_path / "p.db"), tmp_path / "jobs", "veto_stop")
    c.crash("t", "wire 50", "tool:wire:after")
    assert c.state("t") == "mid_tool" and c.effects() == {WIRE: 1}
    return c


def supervisor(
    c: Case, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The CLI with exactly these arguments (the harness's `cli` adds its own places)."""
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        cwd=ROOT,
        env=env or c.environ(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_jobs_dir_that_does_not_exist_runs_no_done_call_again(tmp_path: Path) -> None:
    c = crashed(tmp_path)
    typo = tmp_path / "jbos"
    agent = ["--agent", c.reference]
    # The dry run warns, and its plan says where it looked.
    out = supervisor(c, "resume", c.database, "t", "--dry-run", *agent, "--jobs-dir", str(typo))
    assert out.returncode == 0, out.stderr
    assert f"{typo}: no such directory (named by --jobs-dir)" in out.stderr
    assert (
        "rerun    wire" in out.stdout
        and f"no job marker found: {typo} does not exist" in out.stdout
    )
    # The resume refuses: the call would run again.
    out = supervisor(c, "resume", c.database, "t", "--force", *agent, "--jobs-dir", str(typo))
    assert out.returncode == 2, out.stdout + out.stderr
    (line,) = out.stderr.splitlines()
    assert "not resumed (1 call would run again: wire)" in line and "Traceback" not in line
    stale = {**c.environ(), "JOB_DIR": str(typo)}  # the harness's own place, renamed
    out = supervisor(c, "resume", c.database, "--all", "--force", *agent, env=stale)
    assert out.returncode == 2 and "(named by $JOB_DIR)" in out.stderr
    assert c.effects() == {WIRE: 1} and c.state("t") == "mid_tool" and not typo.exists()
    # The right place: the marker says done, the call is not run again.
    assert c.verdicts("t") == {"wire": "reuse"}
    assert c.resume("t").returncode == 0
    assert c.state("t") == "finished" and c.effects() == {WIRE: 1}


def test_no_agent_named_runs_nothing_on_a_thread_the_demo_cannot_serve(tmp_path: Path) -> None:
    c = crashed(tmp_path)
    before = c.transcript("t")
    env = {k: v for k, v in c.environ().items() if k != "AGENT_SUPERVISOR_AGENT"}
    planned = supervisor(
        c, "resume", c.database, "t", "--dry-run", "--jobs-dir", str(c.jobs), env=env
    )
    assert planned.returncode == 0, planned.stderr
    assert (
        "refused: no agent named, and the built-in demo agent has no tool 'wire'" in planned.stdout
    )
    out = supervisor(c, "resume", c.database, "t", "--force", "--jobs-dir", str(c.jobs), env=env)
    assert out.returncode != 0, out.stdout
    said = out.stdout + out.stderr
    assert "no agent named, and the built-in demo agent has no tool 'wire'" in said
    assert "--agent module:factory" in said and "Traceback" not in said
    assert c.transcript("t") == before and c.effects() == {WIRE: 1}
    assert c.state("t") == "mid_tool"
    assert os.path.exists(c.jobs)
    # Dealt to worker processes, each refuses as one process does (a worker's runner
    # took no word of the agent being unnamed: the demo closed the calls "not found").
    c.crash("u", "wire 60", "tool:wire:after")
    wire_60 = effect("wire", order="w1", amount_eur=60)
    out = supervisor(
        c, "resume", c.database, "--all", "--force", "--processes", "2",
        "--jobs-dir", str(c.jobs), env=env,
    )  # fmt: skip
    assert out.returncode != 0, out.stdout
    said = out.stdout + out.stderr
    assert said.count("the built-in demo agent has no tool 'wire'") == 2, said
    assert c.state("t") == c.state("u") == "mid_tool"
    assert c.effects() == {WIRE: 1, wire_60: 1}
