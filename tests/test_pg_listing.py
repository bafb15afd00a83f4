"""`list URL` split between two processes (`supervisor.listing.postgres`) against a real server.

Whatever each process reads, the output is the one-process listing's, byte for
byte: the table, JSON, `--state`, the threads without messages (which need
both processes' ids). A child SIGKILLed mid-listing has its share read by the
parent; a child whose read fails makes the listing fail with its one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import time
from pathlib import Path

import pytest

from supervisor import listing
from supervisor.listing import postgres as pg_listing
from supervisor.pg.store import PostgresStore
from supervisor.store import StoreError
from tests.test_postgres_store import _insert

pytestmark = pytest.mark.postgres

NOW = 1_800_000_000.0


def one_process(dsn: str, options: listing.Options) -> str:
    """What `list` printed before the split: one store, every partition, in turn."""
    out = io.StringIO()
    store = PostgresStore(dsn)
    try:
        with contextlib.redirect_stdout(out):
            listing.write_unordered(store.stream_batches(), options)
    finally:
        store.close()
    return out.getvalue()


@pytest.fixture(autouse=True)
def small_index_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's few hundred rows count as big: the hint is part of what is compared."""
    monkeypatch.setattr("supervisor.pg.store.INDEX_HINT_ROWS", 10)


def split(dsn: str, options: listing.Options) -> tuple[str, listing.Outcome]:
    out = io.StringIO()
    outcome = pg_listing.list_split(dsn, options, out)
    assert outcome is not None  # two cores here: the tests run on CI's two
    return out.getvalue(), outcome


@pytest.fixture
def demo_with_extras(pg_demo: tuple[str, Path]) -> str:
    """The demo's threads in every state, a thread without messages, and one corrupt row."""
    dsn, _ = pg_demo
    asyncio.run(_insert(dsn, "zz-no-messages", []))
    asyncio.run(_insert(dsn, "zz-corrupt", [("user", b"\xc1 not msgpack")]))
    return dsn


@pytest.mark.parametrize(
    ("as_json", "states"),
    [(False, None), (True, None), (False, frozenset({"finished", "corrupt", "empty"}))],
)
def test_two_processes_print_what_one_does(demo_with_extras: str, as_json, states) -> None:
    options = listing.Options(as_json=as_json, states=states, now=NOW)
    text, outcome = split(demo_with_extras, options)
    assert text == one_process(demo_with_extras, options)
    if states is None:
        assert "zz-no-messages" in text and "zz-corrupt" in text
        assert text.count("zz-no-messages") == 1  # listed once, not again as "empty"
    assert outcome.corrupt == [1]  # the corrupt thread's row, reported on stderr by the CLI
    assert "not our indexes" in outcome.index_hint  # both processes' rows counted (> 10)


def test_a_child_killed_mid_listing_has_its_share_read_here(
    demo_with_extras: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    killed = "/tmp/agent-supervisor-test-killed-" + str(os.getpid()) + str(time.time_ns())

    def die(dsn, options, orders, report) -> None:
        Path(killed).touch()
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(pg_listing, "_child_share", die)  # the fork runs this copy
    options = listing.Options(as_json=False, states=None, now=NOW)
    try:
        text, _ = split(demo_with_extras, options)
        assert Path(killed).exists()  # the child ran, and died by SIGKILL
    finally:
        Path(killed).unlink(missing_ok=True)
    assert text == one_process(demo_with_extras, options)


class _ReadFails(PostgresStore):
    """A real store whose read of the child's share fails as a lost server would."""

    def stream_batches(self, share=(0, 1), *, without_messages=True):
        if share == pg_listing._THEIRS:
            raise StoreError("postgresql://…/db: connection was closed in the middle of operation")
        return super().stream_batches(share, without_messages=without_messages)


def test_a_child_whose_read_fails_fails_the_listing_with_its_line(
    demo_with_extras: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_listing, "PostgresStore", _ReadFails)
    out = io.StringIO()
    options = listing.Options(as_json=False, states=None, now=NOW)
    with pytest.raises(StoreError, match="connection was closed in the middle"):
        pg_listing.list_split(demo_with_extras, options, out)
    assert out.getvalue() == ""  # nothing half-written: lines are sorted and written at the end
