"""`o`: a thread's whole transcript, however big, in `$PAGER` (the app suspends meanwhile)."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import SuspendNotSupported

from supervisor.report import entry_lines
from supervisor.store import StoreError
from supervisor.text import one_line

if TYPE_CHECKING:
    from supervisor.ui.app import SupervisorApp


async def open_in_pager(app: SupervisorApp, thread_id: str) -> None:
    """Write the transcript to a temporary file (in a thread), then page it."""
    try:
        path = await asyncio.to_thread(_write_full_transcript, app, thread_id)
    except StoreError as exc:
        app.notify(one_line(str(exc), 200), severity="error", markup=False)
        return
    pager = shlex.split(os.environ.get("PAGER") or "less -R") + [str(path)]
    try:
        with app.suspend():
            subprocess.run(pager, check=False)
    except SuspendNotSupported:
        app.notify(
            f"this terminal cannot suspend the app; the transcript is in {path}", markup=False
        )
        return
    except OSError as exc:
        app.notify(f"cannot run {pager[0]}: {exc}", severity="error", markup=False)
    path.unlink(missing_ok=True)


def _write_full_transcript(app: SupervisorApp, thread_id: str) -> Path:
    transcript = app.reader.read_transcript(thread_id, full=True)
    fd, name = tempfile.mkstemp(prefix="agent-supervisor-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as f:
        f.write(f"thread {one_line(thread_id, 200)}\n")
        for entry in transcript.entries:
            f.write("\n".join(entry_lines(entry, None)) + "\n")
    return Path(name)
