"""Save the README's screenshots from the real app on a fresh demo database.

    python scripts/screenshots.py            # writes screenshots/*.svg

Builds the demo database in a temporary directory (real demo-agent runs,
SIGKILLed), opens the app headless at 160x50 and saves SVGs of the main
view, a mid-tool thread's job markers, the resume preview, the prompt
modal, the answer dialog of a waiting thread, and a thread held by another
supervisor process (a child that takes its lease).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from supervisor.agents import load_factory
from supervisor.demo_db import build_demo_db
from supervisor.runner import RunnerConfig
from supervisor.sqlite.store import SQLiteStore
from supervisor.ui.app import make_app
from supervisor.ui.widgets.thread_table import ThreadTable

OUT = Path(__file__).resolve().parent.parent / "screenshots"
#: A supervisor elsewhere, as far as the app can tell: it holds one thread's lease.
HOLD = (
    "import sys, time; from supervisor.leases import acquire, leases_dir; "
    "acquire(leases_dir(sys.argv[1]), sys.argv[2]); print('held', flush=True); time.sleep(60)"
)


async def shoot(workdir: Path) -> None:
    os.chdir(workdir)
    build_demo_db(Path("demo.db"))
    os.environ["JOB_DIR"] = "demo.db.jobs"
    config = RunnerConfig(
        database=Path("demo.db"),
        factory=load_factory("supervisor.demo:demo_agent"),
        agent_ref="supervisor.demo:demo_agent",
        jobs_dir=Path("demo.db.jobs"),
        live_window=0,
    )
    app = make_app(SQLiteStore("demo.db"), config, watch=False, cursor_blink=False)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause(1.0)
        table = app.query_one("#threads", ThreadTable)
        table.move_to("job-02")
        await pilot.pause(0.5)
        app.save_screenshot("main-view.svg", str(OUT))
        await pilot.press("3")
        await pilot.pause(0.5)
        app.save_screenshot("mid-tool-job-markers.svg", str(OUT))
        await pilot.press("r")
        await pilot.pause(0.5)
        app.save_screenshot("resume-preview.svg", str(OUT))
        await pilot.press("n")
        table.move_to("job-01")
        await pilot.pause(0.3)
        await pilot.press("p", *"Process items inv-104, inv-105")
        await pilot.pause(0.3)
        app.save_screenshot("prompt-modal.svg", str(OUT))
        await pilot.press("escape")
        await pilot.pause(0.3)
        table.move_to("job-11")
        await pilot.pause(0.5)
        await pilot.press("r")
        await pilot.pause(0.5)
        app.save_screenshot("answer-dialog.svg", str(OUT))
        await pilot.press("escape")
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD, "demo.db", "job-04"], stdout=subprocess.PIPE
        )
        try:
            holder.stdout.readline()
            app.request_refresh()
            table.move_to("job-04")
            await pilot.pause(1.0)
            app.save_screenshot("held-elsewhere.svg", str(OUT))
        finally:
            holder.kill()
            holder.wait()


def main() -> None:
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(shoot(Path(tmp)))
    print("\n".join(sorted(str(p) for p in OUT.glob("*.svg"))))


if __name__ == "__main__":
    sys.exit(main())
