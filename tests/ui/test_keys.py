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


async def test_y_copies_the_id_and_says_how_to_get_it_where_osc52_is_ignored(app_factory) -> None:
    from tests.ui.conftest import select, settle, spy_notify

    app = app_factory()
    async with app.run_test(size=(120, 40)) as pilot:
        said = spy_notify(app)
        await settle(pilot)
        await select(pilot, "job-05")
        await pilot.press("y")
        await pilot.pause()
        assert app.clipboard == "job-05"
        assert any("job-05" in s and "OSC 52" in s and "shift-drag" in s for s in said)


async def test_the_palette_has_our_quit_not_textuals(app_factory) -> None:
    """Textual's "Quit" quits at once; ours asks first while agents run."""
    app = app_factory()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        commands = list(app.get_system_commands(app.screen))
        titles = [c.title for c in commands]
        assert "Keys" not in titles and "Maximize" not in titles
        (quit_command,) = [c for c in commands if c.title == "Quit"]
        assert quit_command.callback == app.quit_app
        from supervisor.ui.keys import KEYS

        assert "Needs attention" in [k.label for k in KEYS]  # the header's name for the view


async def test_help_scrolls_from_the_moment_it_opens_and_has_the_legend(app_factory) -> None:
    """At 80x24 it showed 6 of 22 rows and j, k, PgDn did nothing until Tab."""
    from textual.containers import VerticalScroll

    from supervisor.ui.screens.help import HelpScreen
    from tests.ui.conftest import settle

    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        body = app.screen.query_one("#help-body", VerticalScroll)
        assert body.max_scroll_y > 0  # more than fits
        await pilot.press("j", "j", "j")
        await pilot.pause()
        assert body.scroll_y >= 3
        await pilot.press("pagedown")
        await pilot.pause()
        after_page = body.scroll_y
        assert after_page > 3
        await pilot.press("end")
        await pilot.pause()
        shown = app.screen.query_one("#legend")
        legend = " ".join(shown.render_line(y).text for y in range(shown.size.height))
        assert "◐ mid_tool" in legend and "markers decide" in legend
        assert body.scroll_y == body.max_scroll_y
