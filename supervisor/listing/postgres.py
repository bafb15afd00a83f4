"""`list URL` split between two processes, each reading half the partitions.

Past the server's aggregate, a Postgres listing is Python on one core: each
thread's tail decoded (msgpack), its state classified, its line made. At
100,000 threads that was most of the wait, while the server's share ran in
its own processes. So a forked child reads the odd partitions and this
process the even ones, each on its own connection (the child is forked
before this process opens one, or starts a thread). The lines come in no
order either way (partitions hash thread ids): the child sends back what
`ListingWriter.collect` keeps of its threads, its tally and the ids it saw;
this process adds the threads without messages (which need both processes'
ids), sorts and writes. A child that dies has its share listed here.
"""

from __future__ import annotations

import functools
import io
import os
from typing import IO, Any, TextIO

from supervisor.listing import ListingWriter, Options, Outcome
from supervisor.pg.store import PostgresStore
from supervisor.split import Forked, cores, report_to
from supervisor.store import StoreError

#: The share of the partitions each process reads: (this process's, the child's), of 2.
_MINE, _THEIRS = (0, 2), (1, 2)


def list_split(dsn: str, options: Options, out: TextIO) -> Outcome | None:
    """List every thread of the database at `dsn` in two processes; None, having
    done nothing, where there is no second core or no fork (one process lists it).
    """
    if not hasattr(os, "fork") or cores() < 2:
        return None
    child = Forked(functools.partial(_child_share, dsn, options))
    try:
        with PostgresStore(dsn) as store:
            return _list_shares(store, child, options, out)
    finally:
        child.reap()


def _list_shares(store: PostgresStore, child: Forked, options: Options, out: TextIO) -> Outcome:
    writer = options.writer(out, (0, 0))
    collected: list[tuple[Any, ...]] = []
    for batch in store.stream_batches(_MINE, without_messages=False):
        writer.collect(batch, collected)
    theirs = child.receive()
    if theirs is not None and theirs[0] == "error":
        raise StoreError(theirs[1])
    if theirs is None:  # the child died: its share is read here
        elsewhere, rows = store.streamed
        for batch in store.stream_batches(_THEIRS, without_messages=False):
            writer.collect(batch, collected)
    else:
        _, items, tally, unlisted, elsewhere, rows = theirs
        collected += items
        writer.tally.add(tally)
        writer.unlisted = (
            max(writer.unlisted[0], unlisted[0]),
            max(writer.unlisted[1], unlisted[1]),
        )
    writer.collect(store.threads_without_messages(elsewhere, rows), collected)
    writer.write_collected(collected)
    writer.end()
    return Outcome(store.take_notices(), writer.tally.corrupt, store.index_hint(writer.tally.rows))


def _child_share(dsn: str, options: Options, _orders: IO[bytes], report: IO[bytes]) -> None:
    """The forked child: list the other half of the partitions, send what it kept."""
    send = report_to(report)
    try:
        with PostgresStore(dsn) as store:
            writer: ListingWriter = options.writer(io.StringIO(), (0, 0))
            collected: list[tuple[Any, ...]] = []
            for batch in store.stream_batches(_THEIRS, without_messages=False):
                writer.collect(batch, collected)
            ids, rows = store.streamed
            send(("done", collected, writer.tally, writer.unlisted, ids, rows))
    except StoreError as exc:
        send(("error", str(exc)))
