"""The demo agent, noting what its environment says of the markers (the tests read the note).

A tool may start processes of its own; whatever they inherit is what this
factory sees in `os.environ`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from supervisor.demo import demo_agent
from supervisor.jobs import MARKERS_VARIABLE


def agent(checkpointer: Any, thread_id: str, run_id: str | None = None) -> Any:
    Path(os.environ["ENVSPY_NOTE"]).write_text(os.environ.get(MARKERS_VARIABLE, ""))
    return demo_agent(checkpointer, thread_id, run_id=run_id)
