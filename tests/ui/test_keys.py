"""One table of keys: bindings, the help screen and the command palette agree and work."""

from __future__ import annotations

from textual.widgets import TabbedContent

from tests.ui.conftest import select, settle


async def test_one_key_table_feeds_bindings_help_and_palette(app_factory) -> None:
    from supervisor.ui.keys import KEYS, help_rows

    app = app_factory()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        bound = {(b.key, b.action) for b in app.main.BINDINGS}
    helped = dict(help_rows())
    for key in KEYS:
        assert (key.keys, key.action) in bound
        if key.keys != "escape":
            assert helped[key.shown or key.keys] == key.help
        assert not key.command or key.command in titles
    for title in ("Resume thread", "Abort thread", "Full-screen transcript", "Theme", "Quit"):
        assert title in titles


async def test_a_palette_command_runs_its_action(app_factory) -> None:
    app = app_factory()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p", *"Show job markers")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert app.query_one("#detail-tabs", TabbedContent).active == "markers"


async def test_keys_of_the_main_screen_do_not_reach_a_screen_over_it(app_factory) -> None:
    """The main screen's keys are bound on it: in the full transcript, `p`, `/`, `w` and `x`
    do nothing to the list behind (they opened the prompt, the filter, auto-resume)."""
    from supervisor.ui.screens.transcript import TranscriptScreen

    app = app_factory()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-02")
        await pilot.press("f")
        await settle(pilot)
        assert isinstance(app.screen, TranscriptScreen)
        await pilot.press("p", "slash", "w", "x")
        await settle(pilot)
        assert isinstance(app.screen, TranscriptScreen)  # no prompt pushed over it
        assert len(app.screen_stack) == 2
        assert not app.auto.active
        assert not app.main.query_one("#filter").has_class("visible")
