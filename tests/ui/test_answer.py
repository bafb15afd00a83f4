"""Answering a waiting thread from the app: the request shown, the dialog, the run."""

from __future__ import annotations

from textual.widgets import Input, RadioSet, RichLog, Static

from supervisor.location import open_store
from supervisor.states import State
from supervisor.ui.screens.answer import AnswerScreen
from tests.test_hitl import refunds
from tests.ui.conftest import select, settle, state, table_rows


async def test_the_detail_shows_what_a_waiting_thread_asks(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-09")
        box = pilot.app.query_one("#detail-request", Static)
        assert box.has_class("visible")
        shown = str(box.render())
        assert "Waiting for a human" in shown
        assert 'refund({"order": "9001", "amount_eur": 420})' in shown
        await select(pilot, "job-12")
        assert "Answered before the process stopped" in str(box.render())
        await select(pilot, "job-01")
        assert not box.has_class("visible")


async def test_r_approves_and_the_refund_runs_once(app_factory, workdir) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-09")
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(pilot.app.screen, AnswerScreen)
        assert "Approve (y)" in str(pilot.app.screen.query_one("#approve").label)
        await pilot.press("tab", "y")  # from the buttons, as every other dialog: y yes, n no
        await settle(pilot)
        assert table_rows(pilot.app)["job-09"][1] == "✓ finished"
        strips = pilot.app.query_one("#event-lines", RichLog).lines
        log = "\n".join(strip.text for strip in strips)
        assert '✓ answered: {"decision": "approve"}' in log
    assert state("job-09") is State.FINISHED
    assert refunds(workdir / "demo.db.jobs") == ['refund:{"amount_eur":420,"order":"9001"}']


async def test_deny_with_a_reason_runs_nothing(app_factory, workdir) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-09")
        await pilot.press("enter")  # Enter on a waiting thread answers it too
        await pilot.pause()
        assert isinstance(pilot.app.screen, AnswerScreen)
        # The dialog opens with the keys in the reason box: what a person types there is a
        # reason, its y and n letters (the buttons had the keys: "you…" approved, and the
        # rest went to the list: space marked rows, o opened the pager).
        await pilot.press(*"you may not, over the limit")
        await pilot.pause()
        assert isinstance(pilot.app.screen, AnswerScreen)
        assert pilot.app.screen.query_one("#reason", Input).value == "you may not, over the limit"
        assert refunds(workdir / "demo.db.jobs") == [] and pilot.app.marked == set()
        # ctrl+s sends an ask; on an approval it says how to answer (it approved the call
        # the reason was typed to deny).
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(pilot.app.screen, AnswerScreen)
        said = str(pilot.app.screen.query_one("#answer-error").render())
        assert "Enter denies with the reason typed" in said
        assert refunds(workdir / "demo.db.jobs") == []
        await pilot.press("enter")  # Enter in the reason denies with it
        await settle(pilot)
    assert state("job-09") is State.FINISHED
    assert refunds(workdir / "demo.db.jobs") == []
    transcript = open_store(workdir / "demo.db").transcript("job-09")
    assert "you may not, over the limit" in str(transcript.messages()[-2:])


async def test_n_denies_an_approval(app_factory, workdir) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-09")
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(pilot.app.screen, AnswerScreen)
        await pilot.press("tab", "n")
        await settle(pilot)
    assert state("job-09") is State.FINISHED
    assert refunds(workdir / "demo.db.jobs") == []


async def test_p_on_an_ask_opens_the_answer_dialog_and_a_pick_is_sent(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-11")
        await pilot.press("p")
        await pilot.pause()
        screen = pilot.app.screen
        assert isinstance(screen, AnswerScreen)
        await pilot.press("ctrl+s")  # nothing picked yet: the dialog says so and stays
        await pilot.pause()
        assert pilot.app.screen is screen
        assert "[size] needs an answer" in str(screen.query_one("#answer-error").render())
        radio = screen.query_one(RadioSet)
        radio.focus()
        marks = lambda: [str(b.render()).split()[0] for b in radio.query("Choice")]  # noqa: E731
        assert "●" not in "".join(marks())  # nothing picked: no mark, not only no colour
        await pilot.press("down", "enter")
        assert marks().count("▐●▌") == 1
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert pilot.app.summaries["job-11"].last_text == "Order 9002 ships in size M."


async def test_escape_cancels_and_nothing_runs(app_factory) -> None:
    async with app_factory().run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await select(pilot, "job-11")
        await pilot.press("r")
        await pilot.pause()
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(pilot.app.screen, AnswerScreen)
    assert state("job-11") is State.AWAITING_INPUT
