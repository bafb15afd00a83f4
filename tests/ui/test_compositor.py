"""The main screen's compositor writes what Textual's writes, rendering fewer widgets."""

from __future__ import annotations

import random

import pytest
from textual._compositor import Compositor
from textual.geometry import Region
from textual.widget import Widget
from textual.widgets import Static

from supervisor.ui.compositor import ChangedRegionsCompositor
from supervisor.ui.widgets.thread_table import ThreadTable
from tests.ui.conftest import settle


def both_updates(comp: ChangedRegionsCompositor, changed: set[Region], console) -> tuple[str, str]:
    """What Textual's compositor and ours write for the same changed regions."""
    comp._dirty_regions = set(changed)
    theirs = Compositor.render_partial_update(comp)
    comp._dirty_regions = set(changed)
    ours = comp.render_partial_update()
    assert theirs is not None and ours is not None
    return theirs.render_segments(console), ours.render_segments(console)


def shown_region(comp: Compositor, widget: Widget) -> Region:
    """The part of a widget on screen (its region within its container's clip)."""
    region, clip = comp.visible_widgets[widget]
    return region.intersection(clip)


def random_regions(rng: random.Random, width: int, height: int) -> set[Region]:
    regions = set()
    for _ in range(rng.randint(1, 4)):
        x, y = rng.randrange(width), rng.randrange(height)
        regions.add(Region(x, y, rng.randint(1, width - x), rng.randint(1, height - y)))
    return regions


async def test_partial_updates_are_byte_for_byte_textuals(app_factory) -> None:
    app = app_factory()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        for _ in range(3):
            await pilot.press("j")
        await settle(pilot)
        comp = app.screen._compositor
        assert isinstance(comp, ChangedRegionsCompositor)
        table = app.query_one("#threads", ThreadTable)
        title = app.query_one("#detail-title", Static)
        shown = {w: shown_region(comp, w) for w in (table, title)}
        cases = [{shown[table], shown[title]}, {shown[table]}, {shown[title]}]
        rng = random.Random(11)
        cases += [random_regions(rng, 120, 40) for _ in range(40)]
        for changed in cases:
            theirs, ours = both_updates(comp, changed, app.console)
            assert ours == theirs, changed


async def test_a_held_key_renders_only_the_list_and_the_title(
    app_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The list (left) and the detail title (top right) change together; Textual's
    compositor renders every widget inside the rectangle around both."""
    app = app_factory()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        comp = app.screen._compositor
        table = app.query_one("#threads", ThreadTable)
        title = app.query_one("#detail-title", Static)
        changed = {shown_region(comp, w) for w in (table, title)}
        rendered: list[Widget] = []
        render_lines = Widget.render_lines

        def counting(self: Widget, crop: Region):
            rendered.append(self)
            return render_lines(self, crop)

        monkeypatch.setattr(Widget, "render_lines", counting)
        comp._dirty_regions = set(changed)
        Compositor.render_partial_update(comp)
        theirs = set(rendered)
        rendered.clear()
        comp._dirty_regions = set(changed)
        comp.render_partial_update()
        ours = set(rendered)
        assert {table, title} <= ours
        assert ours < theirs
        overlapping = {
            w
            for w in comp.visible_widgets
            if any(shown_region(comp, w).overlaps(r) for r in changed)
        }
        assert ours == overlapping
        # Before, the event log below the title was drawn again for every key.
        log = app.query_one("#event-log")
        assert log in theirs and log not in ours
        assert len(ours) < len(theirs) / 2
