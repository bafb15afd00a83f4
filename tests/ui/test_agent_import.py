"""The app imports the agent after its first frame: what that changes for the user.

The agent stack (cubeloop, the user's module) is a third of a second of the
start; the app draws the list first and imports the agent in a thread. A key
pressed meanwhile waits for the import, a broken agent still ends the start
with its one error line, and what the module cannot be found for is said
before anything is drawn.
"""

from __future__ import annotations

import json
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
from supervisor.jobs import job_key
from supervisor.markers import marker_filename
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


class Terminal:
    """The app in a pseudo-terminal of its own; what it writes, as text without escapes."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=dict(
                os.environ,
                TERM="xterm-256color",
                COLUMNS="120",
                LINES="40",
                AGENT_SUPERVISOR_DEMO_TOOL_SECONDS="0",
            ),
            start_new_session=True,
        )
        os.close(slave)
        self.written = b""

    def read_until(self, done, seconds: float = 120) -> bool:
        """Read what the app writes until `done(text)` holds or it exits; whether it held."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if done(self.text()):
                return True
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the child closed its end
                    break
                if not chunk:
                    break
                self.written += chunk
            elif self.proc.poll() is not None:
                break
        return bool(done(self.text()))

    def text(self) -> str:
        return re.sub(r"\x1b\[[0-9;?<>=]*[A-Za-z]", "", self.written.decode(errors="replace"))

    def press(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait(timeout=30)
        os.close(self.master)
        return code


def test_an_agent_that_fails_on_import_ends_the_app_with_one_line(workdir: Path) -> None:
    """In a terminal: the app starts, closes, and the last thing written is the error."""
    (workdir / "brokenagents.py").write_text("1 / 0\n")
    term = Terminal(workdir, "demo.db", "--agent", "brokenagents:make")
    term.read_until(lambda _text: False)  # until it exits
    assert term.close() == 2
    error = (
        "agent-supervisor: error: agent 'brokenagents:make': importing 'brokenagents' "
        "raised ZeroDivisionError: division by zero"
    )
    # After the screen is given back (the escapes are stripped: the footer's last row
    # may run into it), the error, once, and nothing after it.
    assert term.text().rstrip().endswith(error) and term.text().count(error) == 1


def test_r_pressed_before_the_agent_is_imported_resumes_in_a_real_process(workdir: Path) -> None:
    """Nothing imports the agent stack while the agent's import is under way.

    Pressed then, `r` once failed: the runner imported cubeloop's checkpointer
    while the app's thread was importing cubeloop, and found the package half
    initialised. The gate module notes which cubeloop modules are loaded when it
    is let through: none, if everything waited for it.
    """
    (workdir / "gate_r.py").write_text(
        "import os, sys, time\n"
        "deadline = time.monotonic() + 60\n"
        "while not os.path.exists('release') and time.monotonic() < deadline:\n"
        "    time.sleep(0.02)\n"
        "seen = sorted(m for m in sys.modules if m.startswith('cubeloop'))\n"
        "open('seen', 'w').write(repr(seen))\n"
        "from supervisor.demo import demo_agent as make\n"
    )
    assert state_of("job-12", workdir) == "answered"
    term = Terminal(workdir, "demo.db", "--agent", "gate_r:make", "--force")  # no "may be live"
    try:
        assert term.read_until(lambda text: "job-12" in text)
        time.sleep(0.5)
        term.press("r")  # on the first row, job-12 (answered): goes on with its stored answer
        time.sleep(1.0)
        (workdir / "release").touch()
        # The preview plans with the agent's own policy: it comes once the import is done.
        assert term.read_until(lambda text: "Resume job-12" in text, 60)
        term.press("y")
        deadline = time.monotonic() + 60
        while state_of("job-12", workdir) != "finished" and time.monotonic() < deadline:
            term.read_until(lambda _text: False, 0.5)
        assert "failed" not in term.text()
    finally:
        term.close()
    assert (workdir / "seen").read_text() == "[]"
    assert state_of("job-12", workdir) == "finished"


def state_of(thread: str, workdir: Path) -> str:
    listed = json.loads(cli("list", "demo.db", "--json", cwd=workdir).stdout)
    return {t["thread_id"]: t["state"] for t in listed}[thread]
