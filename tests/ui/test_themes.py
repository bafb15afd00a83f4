"""Themes: the one picked is remembered, the user's own are offered, broken ones are named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supervisor.ui.themes import ThemeError, all_themes, load_theme, saved_theme
from tests.conftest import cli
from tests.ui.conftest import build_app, settle, spy_notify

MINT = 'name = "mint"\ndark = true\nprimary = "#3EB489"\n'


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home / "agent-supervisor"


async def test_the_theme_picked_is_remembered_for_the_next_run(workdir, config: Path) -> None:
    app = build_app(remember_theme=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.theme = "paper"
        await pilot.pause()
    assert json.loads((config / "config.json").read_text()) == {"theme": "paper"}
    assert saved_theme() == "paper"
    again = build_app(remember_theme=True)
    async with again.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert again.theme == "paper"


async def test_user_themes_are_offered_and_broken_ones_named(workdir, config: Path) -> None:
    (config / "themes").mkdir(parents=True)
    (config / "themes" / "mint.toml").write_text(MINT)
    (config / "themes" / "broken.toml").write_text("name = ")
    themes, problems = all_themes()
    assert "mint" in {t.name for t in themes}
    assert len(problems) == 1 and problems[0].startswith("theme broken.toml:")
    app = build_app()
    said = spy_notify(app)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await settle(pilot)
        assert "mint" in app.available_themes
        assert any("broken.toml" in n for n in said)
        app.theme = "mint"
        await pilot.pause()
        assert app.current_theme.primary == "#3EB489"


def test_the_cli_accepts_a_user_theme_and_names_unknown_ones(workdir, config: Path) -> None:
    (config / "themes").mkdir(parents=True)
    (config / "themes" / "mint.toml").write_text(MINT)
    out = cli("demo.db", "--theme", "nope", cwd=workdir)
    assert out.returncode == 2 and "mint" in out.stderr


def test_a_theme_file_needs_a_name_and_a_primary(tmp_path: Path) -> None:
    bad = tmp_path / "x.toml"
    bad.write_text('name = "x"\ncolour = "red"\n')
    with pytest.raises(ThemeError, match="needs name and primary"):
        load_theme(bad)
