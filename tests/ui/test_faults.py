"""The app with rows and faults we did not make: it stays up and says what happened."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import RichLog

from supervisor.store import StoreError
from tests.conftest import insert_rows, user_json
from tests.test_faults import add_corrupt_rows, kill_writer_mid_commit, unloadable_rows
from tests.ui.conftest import settle, spy_notify


async def select(pilot, thread: str) -> None:
    table = pilot.app.query_one("#threads")
    table.focus()
    table.move_to(thread)
    await pilot.pause(0.2)
    await settle(pilot)


def transcript_text(app) -> str:
    log = app.query_one("#transcript-log", RichLog)
    return "\n".join(line.text for line in log.lines)


def title(app) -> str:
    return str(app.query_one("#detail-title").render())


async def test_odd_rows_show_for_their_own_thread(app_factory, workdir: Path) -> None:
    add_corrupt_rows(workdir / "demo.db")
    app = app_factory()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await select(pilot, "not-a-list")
        assert "not-a-list" in title(app) and "plain text" in transcript_text(app)
        await select(pilot, "deep-json")
        assert "deep-json" in title(app)
        assert "nested too deeply" in transcript_text(app)
        assert "plain text" not in transcript_text(app)
    assert app.return_code in (None, 0)


async def test_a_detail_that_fails_to_load_says_so_for_its_thread(app_factory, monkeypatch) -> None:
    app = app_factory()
    real = app.store.transcript

    def flaky(thread_id: str, **kwargs):
        if thread_id == "job-03":
            raise StoreError("demo.db: cannot read (disk I/O error)")
        return real(thread_id, **kwargs)

    monkeypatch.setattr(app.store, "transcript", flaky)
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await select(pilot, "job-02")
        assert "job-02" in transcript_text(app) or "#" in transcript_text(app)
        await select(pilot, "job-03")
        text = transcript_text(app)
        assert "Could not load job-03" in text and "disk I/O error" in text
        assert "card-20" not in text  # not the previous thread's transcript


async def test_big_message_is_bounded_and_keys_still_answer(app_factory, workdir: Path) -> None:
    insert_rows(workdir / "demo.db", [("big", user_json("word " * 10_000_000))])  # 50 MB
    app = app_factory()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await select(pilot, "big")
        text = transcript_text(app)
        assert "message of 50.0 MB" in text and "MB more" in text
        assert len(text) < 20_000
        await pilot.press("k" if app.shown.index("big") else "j")  # another row, at once
        await pilot.pause()
        assert "big" not in title(app).split()[0]


async def test_resume_of_a_thread_cubeloop_cannot_load_notifies(app_factory, workdir: Path) -> None:
    insert_rows(workdir / "demo.db", unloadable_rows())
    app = app_factory()
    said = spy_notify(app)
    async with app.run_test(size=(160, 45), notifications=True) as pilot:
        await settle(pilot)
        await select(pilot, "bad-metadata")
        await pilot.press("r")
        await settle(pilot)
        assert any("bad-metadata cannot be loaded by cubeloop" in n for n in said)


async def test_hot_journal_is_rolled_back_with_a_notification(app_factory, workdir: Path) -> None:
    kill_writer_mid_commit(workdir / "demo.db")
    app = app_factory()
    said = spy_notify(app)
    async with app.run_test(size=(160, 45), notifications=True) as pilot:
        await settle(pilot)
        assert len(app.summaries) == 12
        assert any("rolled back" in n for n in said)


async def test_quitting_right_after_a_cursor_move_is_clean(app_factory) -> None:
    app = app_factory()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await pilot.press("j", "q")  # the detail timer is still pending
    assert app.return_code == 0


async def test_a_refresh_that_lands_while_the_widgets_unmount_is_dropped(app_factory) -> None:
    """Shutdown removes widgets one by one while the app still reads its queue."""
    from textual import events

    from supervisor.ui.messages import ThreadsRefreshed

    app = app_factory()

    def refresh_on_unmount(message) -> None:  # a watcher's refresh landing at the worst time
        if isinstance(message, events.Unmount):
            app.post_message(ThreadsRefreshed({}, full=False))

    async with app.run_test(size=(160, 45), message_hook=refresh_on_unmount) as pilot:
        await settle(pilot)
    assert app.return_code in (None, 0)
