"""Themes: those shipped with the app, the user's own, and the one last picked.

Each theme is a TOML file of Textual theme fields. The user's own go in
`$XDG_CONFIG_HOME/agent-supervisor/themes/` (default `~/.config/…`); the
theme picked in the palette is remembered in `config.json` beside it.
"""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from textual.app import App
from textual.theme import Theme

from supervisor.dirs import config_dir

#: The shipped themes: TOML files in the package `shipped` beside this module.
SHIPPED = resources.files("supervisor.ui.themes.shipped")
DEFAULT_THEME = "harbor"
_FIELDS = {
    "name",
    "dark",
    "primary",
    "secondary",
    "accent",
    "warning",
    "error",
    "success",
    "foreground",
    "background",
    "surface",
    "panel",
}


class ThemeError(Exception):
    pass


def load_theme(path: Path) -> Theme:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ThemeError(f"{path.name}: {exc}") from None
    unknown = set(data) - _FIELDS
    if unknown or "name" not in data or "primary" not in data:
        raise ThemeError(f"{path.name}: needs name and primary; unknown keys {sorted(unknown)}")
    return Theme(**data)


def bundled_themes() -> list[Theme]:
    shipped = [p for p in SHIPPED.iterdir() if p.name.endswith(".toml")]
    return [load_theme(Path(str(p))) for p in sorted(shipped, key=lambda p: p.name)]


def user_themes() -> tuple[list[Theme], list[str]]:
    """The user's theme files, and one line per file that could not be used."""
    themes, problems = [], []
    for path in sorted((config_dir() / "themes").glob("*.toml")):
        try:
            themes.append(load_theme(path))
        except (ThemeError, TypeError, ValueError) as exc:
            problems.append(f"theme {exc}")
    return themes, problems


def all_themes() -> tuple[list[Theme], list[str]]:
    """Bundled themes, then the user's (a user theme of the same name wins)."""
    mine, problems = user_themes()
    return bundled_themes() + mine, problems


def saved_theme() -> str | None:
    """The theme picked last time, if any was saved."""
    try:
        data = json.loads((config_dir() / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    theme = data.get("theme") if isinstance(data, dict) else None
    return theme if isinstance(theme, str) else None


def save_theme(name: str) -> None:
    """Remember the theme for the next run; a config that cannot be written is no error."""
    path = config_dir() / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    data["theme"] = name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(".tmp")
        temp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        temp.replace(path)
    except OSError:
        pass


def install_themes(app: App[Any], theme: str | None, remember: bool) -> list[str]:
    """Register every theme with the app and set the one to start with; what was wrong
    with the user's theme files. An explicit theme wins; else (when the app remembers)
    the one picked last time; else the default."""
    themes, problems = all_themes()
    for each in themes:
        app.register_theme(each)
    name = theme or (remember and saved_theme()) or DEFAULT_THEME
    if name not in app.available_themes:  # a user theme since removed
        name = DEFAULT_THEME
    app.theme = name
    return problems


def palette_of(theme: Theme) -> dict[str, str]:
    """The colours the list's badges and the transcript take from a theme."""
    names = ("primary", "secondary", "accent", "warning", "error", "success")
    colours = {name: str(getattr(theme, name) or theme.foreground or "") for name in names}
    return colours | {"foreground": ""}
