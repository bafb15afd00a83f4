"""The app's first read of a big SQLite file, split between two forked readers.

The app keeps its listing (each refresh folds new rows onto it), so it
cannot stream like `list`; yet at 100,000 threads that first kept read was
most of the wait for the whole list: SQLite's aggregate, then Python per
thread, on one core. Here, as for `list` (`supervisor.split`), the threads
are divided at a thread id about half the rows sort before, and two forked
readers each read one range up to the same newest row
(`SQLiteStore.first_read_half`). They hand their summaries back over a pipe,
as tuples in chunks (a tuple pickles several times faster than the object,
and a chunk keeps the app's interpreter lock free between loads). The
store's first refresh merges them in the order one process would have
listed them and reads any rows written since, as every refresh does
(`SQLiteStore.read_first_from`).

`FirstRead.start` runs before the app opens its store and before it
imports Textual: no thread runs yet and no SQLite connection is open, so a
reader carries no state SQLite forbids using across a fork. The readers run
at a lower priority: on two cores the app's imports and its preview (the
first screen) go first. If either reader fails (thread ids only the whole
listing can name, a read error, a kill), the store reads the listing itself,
as it would without them.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
from pathlib import Path
from typing import IO

from supervisor.priority import NICENESS
from supervisor.split import fork_child, worth_splitting
from supervisor.sqlite.files import check_database_path
from supervisor.sqlite.rows import KeptHalf
from supervisor.sqlite.store import SQLiteStore
from supervisor.states import ThreadSummary, summary_fields
from supervisor.store import StoreError

#: Summaries per pickled chunk: each loads in a few milliseconds.
CHUNK = 2_000


class FirstRead:
    """The two readers of a split first read, until the store collects their halves."""

    def __init__(
        self, top: int, wal_existed: dict[str, bool], readers: list[tuple[int, IO[bytes]]]
    ) -> None:
        #: The newest row both halves read up to: the store's cursor after them.
        self.top = top
        #: Whether `-wal`/`-shm` were there before anything of ours opened the file.
        self.wal_existed = wal_existed
        self._readers: list[tuple[int, IO[bytes]]] = readers
        self._stopped = False

    @classmethod
    def start(cls, path: str | os.PathLike[str], busy_timeout: float) -> FirstRead | None:
        """Fork the two readers of a big file; None where one process reads it as well
        (a small file, one core, nothing to divide) or cannot start (the store that
        opens next reports why)."""
        try:
            database = check_database_path(path)
            if not worth_splitting(database):
                return None
            wal = {s: Path(f"{database}{s}").exists() for s in ("-wal", "-shm")}
            with SQLiteStore(database, busy_timeout=busy_timeout, wal_existed=wal) as probe:
                top, pivot = probe.newest_row(), probe.split_point()
        except (StoreError, OSError):
            return None
        if top is None or pivot is None:
            return None
        ranges: list[tuple[str | None, str | None]] = [(None, pivot), (pivot, None)]
        return cls(top, wal, [_fork(database, busy_timeout, r, top) for r in ranges])

    def collect(self) -> list[KeptHalf] | None:
        """Both halves, in thread-id order of their ranges; None if a reader failed.
        Raises `StoreError` if `stop` was called meanwhile (the app is closing)."""
        try:
            halves = [_receive(pipe) for _, pipe in self._readers]
        finally:
            self.cancel()
        if self._stopped:
            raise StoreError("the database was closed while it was being read")
        return None if any(h is None for h in halves) else halves  # type: ignore[misc]

    def stop(self) -> None:
        """Kill the readers from another thread, so a `collect` under way ends at once
        (the app quitting mid-read need not wait for the read)."""
        self._stopped = True
        for pid, _ in list(self._readers):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def cancel(self) -> None:
        """Stop the readers if they still run (the app quit first), and wait for them."""
        readers, self._readers = self._readers, []
        for pid, pipe in readers:
            pipe.close()
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _fork(
    database: Path, busy_timeout: float, thread_range: tuple[str | None, str | None], top: int
) -> tuple[int, IO[bytes]]:
    reading, writing = os.pipe()

    def reader() -> None:  # read, hand over
        os.close(reading)
        os.nice(NICENESS)  # the app's imports and first screen go first
        with os.fdopen(writing, "wb") as out:
            _read_half(database, busy_timeout, thread_range, top, out)

    pid = fork_child(reader)
    os.close(writing)
    return pid, os.fdopen(reading, "rb")


def _read_half(
    database: Path,
    busy_timeout: float,
    thread_range: tuple[str | None, str | None],
    top: int,
    out: IO[bytes],
) -> None:
    keep = {"-wal": True, "-shm": True}  # the app's store removes them, once it is the last
    with SQLiteStore(
        database, busy_timeout=busy_timeout, thread_range=thread_range, wal_existed=keep
    ) as store:
        half = store.first_read_half(top)
    rows = [summary_fields(s) for s in half.threads.values()]
    # Pickled whole before the first write: the app reads the other reader's pipe
    # first, and this one's pickling overlaps that instead of following it.
    head = ("half", half.firsts, half.parsed, half.open_runs, half.runs_cursor, len(rows))
    blobs = [pickle.dumps(head, pickle.HIGHEST_PROTOCOL)]
    blobs += [
        pickle.dumps(rows[i : i + CHUNK], pickle.HIGHEST_PROTOCOL)
        for i in range(0, len(rows), CHUNK)
    ]
    for blob in blobs:
        out.write(blob)


def _receive(pipe: IO[bytes]) -> KeptHalf | None:
    try:
        kind, firsts, parsed, open_runs, runs_cursor, count = pickle.load(pipe)
        threads: dict[str, ThreadSummary] = {}
        received = 0
        while received < count:
            chunk = pickle.load(pipe)
            received += len(chunk)
            for fields in chunk:
                summary = ThreadSummary(*fields)
                threads[summary.thread_id] = summary
    except (EOFError, OSError, ValueError, TypeError, pickle.UnpicklingError):
        return None
    if kind != "half" or len(firsts) != len(threads):
        return None
    return KeptHalf(threads, firsts, parsed, open_runs, runs_cursor)
