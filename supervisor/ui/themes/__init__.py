"""Themes shipped with the app: one TOML file each, registered as Textual themes."""

from __future__ import annotations

import tomllib
from pathlib import Path

from textual.theme import Theme

HERE = Path(__file__).parent
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
    return [load_theme(p) for p in sorted(HERE.glob("*.toml"))]
