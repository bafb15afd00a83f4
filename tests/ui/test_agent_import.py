"""The app imports the agent after its first frame: what that changes for the user.

The agent stack (cubeloop, the user's module) is a third of a second of the
start; the app draws the list first and imports the agent in a thread. A key
pressed meanwhile waits for the import, a broken agent still ends the start
with its one error line, and what the module cannot be found for is said
before anything is drawn.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from supervisor.agents import DeferredAgent
from tests.conftest import ROOT, cli
from tests.ui.conftest import build_app, settle, table_rows, until

#: An agent module whose import waits until the test lets it finish; its marker hook
#: names the demo's own markers, so plans made with it say "matched by marker hook".
GATED = """
import os, time
from pathlib import Path
from supervisor.jobs import job_key, marker_filename
deadline = time.monotonic() + 60
while not os.path.exists("release") and time.monotonic() < deadline:
    time.sleep(0.02)
from supervisor.demo import demo_agent as make

def agent_supervisor_marker(tool_name, arguments, jobs_dir):
    return marker_filename(job_key(tool_name, arguments))
"""


def deferred_app(reference: str):
    return build_app(factory=None, deferred=DeferredAgent(reference), agent_ref=reference)


def test_the_app_module_does_not_import_the_agent_stack() -> None:
    code = "import sys, supervisor.ui.app; print('cubeloop' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


async def test_the_list_is_drawn_before_the_agent_is_imported_and_r_waits_for_it(
    workdir: Path,
) -> None:
    (workdir / "gated_resume.py").write_text(GATED)  # a name of its own: imported once
    app = deferred_app("gated_resume:make")
    async with app.run_test(size=(160, 45)) as pilot:
        assert await until(pilot, lambda: "job-05" in table_rows(app))
        deferred = app.runner.config.deferred
        assert deferred is not None and not deferred.loaded  # drawn first, imported after
        await select_thread_without_settling(pilot, "job-05")
        await pilot.press("r")
        await pilot.pause(0.3)
        assert table_rows(app)["job-05"][1] != "✓ finished"  # no agent yet, no run
        (workdir / "release").touch()
        await settle(pilot)
        assert table_rows(app)["job-05"][1] == "✓ finished"
        assert deferred.loaded and app.return_code is None


async def select_thread_without_settling(pilot, thread: str) -> None:
    """`select` waits for every worker, the agent's import among them: not here."""
    table = pilot.app.table
    table.focus()
    table.move_to(thread)
    await pilot.pause(0.2)


async def test_an_agent_that_fails_on_import_closes_the_app_with_its_error(workdir: Path) -> None:
    (workdir / "brokenagents.py").write_text("1 / 0\n")
    app = deferred_app("brokenagents:make")
    async with app.run_test(size=(160, 45)) as pilot:
        await until(pilot, lambda: app.agent_error is not None)
    assert app.return_code == 2
    assert app.agent_error == (
        "agent 'brokenagents:make': importing 'brokenagents' raised "
        "ZeroDivisionError: division by zero"
    )


async def test_plans_wait_for_the_agents_marker_hook(workdir: Path) -> None:
    """The detail's plan for a mid-tool thread uses the hook, never a plan made without it."""
    (workdir / "gated_plan.py").write_text(GATED)
    app = deferred_app("gated_plan:make")
    async with app.run_test(size=(160, 45)) as pilot:
        assert await until(pilot, lambda: "job-02" in table_rows(app))
        await select_thread_without_settling(pilot, "job-02")
        await pilot.press("3")
        await pilot.pause(0.3)
        pending = app.query_one("#pending-calls")
        assert "matched by" not in str(pending.render())  # no plan without the hook
        (workdir / "release").touch()
        await settle(pilot)
        shown = str(pending.render())
    assert "matched by marker hook" in shown and "matched by job key" not in shown, shown


def test_a_missing_agent_module_is_one_line_before_anything_is_drawn(workdir: Path) -> None:
    out = cli("demo.db", "--agent", "nosuchmodule:make", cwd=workdir)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        "agent-supervisor: error: agent 'nosuchmodule:make': no module named 'nosuchmodule' "
        f"(looked in {workdir} and the installed packages)"
    ]
    out = cli("demo.db", "--agent", "missingcolon", cwd=workdir)
    assert out.returncode == 2 and "expected MODULE:ATTR" in out.stderr


def test_an_agent_that_fails_on_import_ends_the_app_with_one_line(workdir: Path) -> None:
    """In a terminal: the app starts, closes, and the last thing written is the error."""
    (workdir / "brokenagents.py").write_text("1 / 0\n")
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "demo.db", "--agent", "brokenagents:make"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=workdir,
        env=dict(os.environ, TERM="xterm-256color", COLUMNS="120", LINES="40"),
        start_new_session=True,
    )
    os.close(slave)
    written = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            written += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=30) == 2
    text = re.sub(r"\x1b\[[0-9;?<>=]*[A-Za-z]", "", written.decode(errors="replace"))
    last = text.strip().splitlines()[-1].strip()
    assert last == (
        "agent-supervisor: error: agent 'brokenagents:make': importing 'brokenagents' "
        "raised ZeroDivisionError: division by zero"
    )
