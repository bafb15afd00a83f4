"""Where the app keeps its own files: the demo database, ledgers, the user's themes.

One place, through `platformdirs` (which honours `XDG_DATA_HOME` and
`XDG_CONFIG_HOME` on Linux), so every caller agrees on the directory.
"""

from __future__ import annotations

from pathlib import Path

APP = "agent-supervisor"


def data_dir() -> Path:
    """`$XDG_DATA_HOME/agent-supervisor` (default `~/.local/share/agent-supervisor`)."""
    import platformdirs  # here: it costs `list` 11 ms at start-up (it imports tempfile)

    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def config_dir() -> Path:
    """`$XDG_CONFIG_HOME/agent-supervisor` (default `~/.config/agent-supervisor`)."""
    import platformdirs

    return Path(platformdirs.user_config_dir(APP, appauthor=False))
