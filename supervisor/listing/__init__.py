"""`list`'s output, and a big SQLite listing split between two processes.

`ListingWriter` prints threads as they arrive (a table or a JSON array):
100,000 rows are common, and holding them took memory. Threads that arrive
in no order (a Postgres listing reads hash partitions: `write_unordered`)
are made into their columns as they arrive, their summaries let go, and
written sorted once the column widths are known.

`list_split` lists a big SQLite file in two processes. Past the SQL
aggregate, a listing is Python (each thread's state, its line) on one core;
at 100,000 threads that was half the time. The file's threads are divided
at a thread id about half the rows sort before (`SQLiteStore.split_point`):
this process lists the ids below it to the output, a forked child the rest
to an unnamed temporary file, which is copied after. Each reads on its own
connection: the child is forked after the sampling store is closed, so it
carries no SQLite state of ours (SQLite forbids using a connection across a
fork). The two agree on the column widths before either writes a line.
Where the child cannot take its half, this process lists it itself.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import pickle
import sys
import time
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO

from supervisor.jsontext import indented
from supervisor.report import thread_hint, thread_json
from supervisor.split import Forked, report_to, worth_splitting
from supervisor.sqlite.files import check_database_path
from supervisor.sqlite.rows import CannotSplit
from supervisor.sqlite.store import SQLiteStore
from supervisor.states import State, ThreadSummary
from supervisor.store import StoreError
from supervisor.text import one_line, relative_time

#: The thread column is cut to this width.
ID_WIDTH = 36
#: How the child's lines travel through its file: any `str` Python holds round-trips.
_FILE_TEXT = {"encoding": "utf-8", "errors": "surrogatepass"}


@dataclass
class Tally:
    """What a writer wrote: items, threads per state, rows of corrupt threads."""

    written: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    corrupt: list[int] = field(default_factory=list)
    #: Message rows of every thread seen, listed or filtered out (for the index hint).
    rows: int = 0

    def add(self, other: Tally) -> None:
        self.written += other.written
        self.rows += other.rows
        self.counts.update(other.counts)
        self.corrupt += other.corrupt


class ListingWriter:
    """Threads written as they arrive: table lines (widths from `shape`, known before
    the first row) or JSON array items; `--state` filters them here.

    `opened`: a writer whose items continue another's (the split's child)
    writes no header and puts no separator before its first item.
    """

    HEADER = ("THREAD", "STATE", "MSGS", "LAST ACTIVITY", "WHERE IT STOPPED")
    #: The columns `--usage` adds after MSGS.
    USAGE_HEADER = ("TOKENS", "COST")

    def __init__(
        self,
        out: TextIO,
        shape: tuple[int, int],
        *,
        as_json: bool,
        states: Collection[str] | None = None,
        now: float | None = None,
        opened: bool = False,
        usage: ThreadUsage | None = None,
        only: frozenset[str] | None = None,
    ) -> None:
        self.out = out
        self.as_json = as_json
        #: Each thread's tokens and cost (`list --usage`), or None: not asked for.
        self.usage = usage
        self.states = set(states) if states else None
        #: Only these threads (`list --grep`: those a search matched).
        self.only = only
        self.now = time.time() if now is None else now
        self.tally = Tally()
        self._opened = opened
        self._ages: dict[str, str] = {}
        #: (longest id, most messages) of the threads `collect` left out (`--state`).
        self.unlisted = (0, 0)
        self._widths = self._widths_for(shape)

    def _widths_for(self, shape: tuple[int, int]) -> list[int]:
        longest, most = shape
        widths = [
            max(len(self.HEADER[0]), min(longest, ID_WIDTH)),
            max(len(state.value) for state in State),
            max(len(self.HEADER[2]), len(str(most))),
        ]
        if self.usage is not None:
            widths += self.usage.widths(self.USAGE_HEADER)
        return widths + [len(self.HEADER[3])]  # "LAST ACTIVITY" is longer than any age

    @property
    def header(self) -> tuple[str, ...]:
        if self.usage is None:
            return self.HEADER
        return self.HEADER[:3] + self.USAGE_HEADER + self.HEADER[3:]

    def begin(self) -> None:
        if not self.as_json:
            self.out.write(self._line(*self.header))

    def rows(self, threads: Iterable[ThreadSummary]) -> None:
        batch: list[str] = []
        item = self._item if self.as_json else self._row
        states, counts, corrupt, tally = (
            self.states,
            self.tally.counts,
            self.tally.corrupt,
            self.tally,
        )
        only = self.only
        for s in threads:
            tally.rows += s.messages
            if only is not None and s.thread_id not in only:
                continue
            state = s.state  # classified once
            name = state.value
            if states is not None and name not in states:
                continue
            if state is State.CORRUPT:
                corrupt.append(s.corrupt_row)  # type: ignore[arg-type]
            counts[name] += 1
            batch.append(item(s, state))
            self.tally.written += 1
            if len(batch) == 1000:  # one write per thousand rows, not per row
                self.out.write("".join(batch))
                batch.clear()
        self.out.write("".join(batch))

    def collect(self, threads: Iterable[ThreadSummary], into: list[tuple[Any, ...]]) -> None:
        """What `rows` would write, kept as (thread id, *columns) or (thread id, JSON item) for
        `write_collected`: for threads that arrive in no order, whose widths are
        known only at the end. The summaries need not be kept."""
        states, counts, corrupt = self.states, self.tally.counts, self.tally.corrupt
        ages = self._ages
        for s in threads:
            self.tally.rows += s.messages
            state = s.state
            name = state.value
            if (states is not None and name not in states) or (
                self.only is not None and s.thread_id not in self.only
            ):
                longest, most = self.unlisted  # widths count every thread, as `rows`' shape does
                self.unlisted = (max(longest, len(s.thread_id)), max(most, s.messages))
                continue
            if state is State.CORRUPT:
                corrupt.append(s.corrupt_row)  # type: ignore[arg-type]
            counts[name] += 1
            if self.as_json:
                into.append((s.thread_id, self._json_lines(s)))
            else:
                *columns, age, hint = self._columns(s, state)
                age = ages.setdefault(age, age)  # a few ages, 100,000 times: kept once each
                into.append((s.thread_id, *columns, age, hint))

    def write_collected(self, collected: list[tuple[Any, ...]]) -> None:
        """`collect`ed threads in thread-id order (`begin` first, `end` after)."""
        collected.sort(key=_first)
        if not self.as_json:
            longest = max((len(item[0]) for item in collected), default=0)
            most = max((item[3] for item in collected), default=0)
            self._widths = self._widths_for(
                (max(longest, self.unlisted[0]), max(most, self.unlisted[1]))
            )
            if self.tally.written == 0:
                self.out.write(self._line(*self.header))
        batch: list[str] = []
        for item in collected:
            if self.as_json:
                first = not self.tally.written
                batch.append(("[\n" if first else ",\n") + item[1])
            else:
                batch.append(self._line(*item[1:]))
            self.tally.written += 1
            if len(batch) == 1000:
                self.out.write("".join(batch))
                batch.clear()
        self.out.write("".join(batch))

    def append(self, tally: Tally, text: IO[str]) -> None:
        """Another writer's output (`opened`, over the same shape), after ours."""
        if tally.written and self.as_json:
            self.out.write(",\n" if self.tally.written else "[\n")
        while chunk := text.read(1 << 16):
            self.out.write(chunk)
        self.tally.add(tally)

    def end(self) -> None:
        if self.as_json:
            self.out.write("\n]\n" if self.tally.written else "[]\n")
            return
        counts = self.tally.counts
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        self.out.write(f"\n{counts.total()} thread(s)" + (f": {summary}" if summary else "") + "\n")

    def _row(self, s: ThreadSummary, state: State) -> str:
        return self._line(*self._columns(s, state))

    def _columns(self, s: ThreadSummary, state: State) -> tuple[Any, ...]:
        """(thread, state, messages[, tokens, cost], age, hint): messages third, age and
        hint last (`collect` and `write_collected` rely on it)."""
        head = (one_line(s.thread_id, ID_WIDTH), state.value, s.messages)
        tail = (relative_time(s.last_activity, self.now), thread_hint(s, 70, self.now, state))
        if self.usage is None:
            return head + tail
        return head + self.usage.texts(s.thread_id) + tail

    def _line(self, *columns: Any) -> str:
        w = self._widths
        thread, state, messages, *middle, age, hint = columns
        cells = [f"{thread:<{w[0]}}", f"{state:<{w[1]}}", f"{messages:>{w[2]}}"]
        cells += [f"{cell:>{w[3 + i]}}" for i, cell in enumerate(middle)]
        cells += [f"{age:<{w[-1]}}", hint]
        return "  ".join(cells).rstrip() + "\n"

    def _item(self, s: ThreadSummary, _state: State) -> str:
        first = not self.tally.written
        head = ("" if self._opened else "[\n") if first else ",\n"
        return head + self._json_lines(s)

    def _json_lines(self, s: ThreadSummary) -> str:
        item = thread_json(s)
        if self.usage is not None:
            item["usage"] = self.usage.json(s.thread_id)
        return "  " + indented(item, 1)


@dataclass
class ThreadUsage:
    """Each thread's tokens and cost for `list --usage`: the columns' text and the JSON,
    worked out before the listing (a forked child inherits them)."""

    #: thread id -> (tokens text, cost text, the JSON object: None unless writing JSON)
    by_thread: dict[str, tuple[str, str, dict[str, Any] | None]]
    NONE = ("0", "-", None)

    def texts(self, thread_id: str) -> tuple[str, str]:
        found = self.by_thread.get(thread_id)
        return (found[0], found[1]) if found else self.NONE[:2]

    def json(self, thread_id: str) -> dict[str, Any] | None:
        found = self.by_thread.get(thread_id)
        return found[2] if found else None

    def widths(self, header: tuple[str, str]) -> list[int]:
        tokens = max((len(v[0]) for v in self.by_thread.values()), default=1)
        cost = max((len(v[1]) for v in self.by_thread.values()), default=1)
        return [max(len(header[0]), tokens), max(len(header[1]), cost)]


@dataclass
class Options:
    """How `list` writes its threads (the writer's settings, sent to the child)."""

    as_json: bool
    states: frozenset[str] | None
    now: float
    usage: ThreadUsage | None = None
    #: Only these threads (`list --grep`).
    only: frozenset[str] | None = None

    def writer(self, out: TextIO, shape: tuple[int, int], opened: bool = False) -> ListingWriter:
        return ListingWriter(
            out,
            shape,
            as_json=self.as_json,
            states=self.states,
            now=self.now,
            opened=opened,
            usage=self.usage,
            only=self.only,
        )


@dataclass
class Outcome:
    """What a split listing leaves the command to say on stderr."""

    notices: list[str]
    corrupt: list[int]
    index_hint: str | None


def list_split(path: str, busy_timeout: float, options: Options, out: TextIO) -> Outcome | None:
    """List a big SQLite file in two processes; None, having written nothing, where one
    process does it as fast (a small file, one core, no fork) or must (odd thread ids).
    """
    database = check_database_path(path)
    if not worth_splitting(database):
        return None
    wal = {s: Path(f"{database}{s}").exists() for s in ("-wal", "-shm")}
    with SQLiteStore(database, busy_timeout=busy_timeout, wal_existed=wal) as probe:
        pivot = probe.split_point()
    if pivot is None:
        return None
    child = _Child(database, busy_timeout, options, pivot)
    store: SQLiteStore | None = None
    try:
        store = SQLiteStore(
            database, busy_timeout=busy_timeout, thread_range=(None, pivot), wal_existed=wal
        )
        return _list_halves(store, child, options, out)
    finally:
        child.reap()  # first: our store's close removes -wal/-shm only once it is the last reader
        if store is not None:
            store.close()


def _list_halves(
    store: SQLiteStore, child: _Child, options: Options, out: TextIO
) -> Outcome | None:
    threads = store.stream()
    try:
        first = list(itertools.islice(threads, 1))  # the aggregate runs: the widths are known
    except CannotSplit:
        return None
    theirs = child.receive()
    if theirs is None or theirs[0] != "shape":
        return None  # the child refused or failed before writing: list whole, in one process
    shape = (max(store.shape[0], theirs[1][0]), max(store.shape[1], theirs[1][1]))
    child.send(("go", shape))
    writer = options.writer(out, shape)
    writer.begin()
    writer.rows(itertools.chain(first, threads))
    notices = store.take_notices()
    done = child.receive()
    if done is not None and done[0] == "error":
        raise StoreError(done[1])
    if done is not None and done[0] == "done":
        out.flush()
        writer.append(done[1], child.output())
        notices += [n for n in done[2] if n not in notices]
    else:  # the child died in its half: list that half here
        rest = SQLiteStore(
            store.path, busy_timeout=store.busy_timeout, thread_range=(child.pivot, None)
        )
        with rest:
            try:
                writer.rows(rest.stream())
            except CannotSplit:
                raise StoreError(f"{store.path}: the listing's second process died") from None
    writer.end()
    return Outcome(notices, writer.tally.corrupt, store.index_hint(writer.tally.rows))


class _Child:
    """The forked process listing thread ids from `pivot` up, and its output file.

    Messages are pickled tuples: the child sends ("shape", widths) or
    ("refused",) once its aggregate has run, then ("done", tally, notices) or
    ("error", text); this process answers the first with ("go", widths).
    """

    def __init__(self, database: Path, busy_timeout: float, options: Options, pivot: str) -> None:
        self.pivot = pivot
        self._output = _unnamed_file()

        def work(orders: IO[bytes], report: IO[bytes]) -> None:
            _child_half(database, busy_timeout, options, pivot, orders, report, self._output)

        self._forked = Forked(work)
        self.send = self._forked.send
        self.receive = self._forked.receive

    def output(self) -> IO[str]:
        self._output.seek(0)
        return io.TextIOWrapper(self._output, **_FILE_TEXT)

    def reap(self) -> None:
        """Stop the child if it still runs (we were interrupted), and wait for it."""
        self._forked.reap()
        self._output.close()


def _unnamed_file() -> IO[bytes]:
    """A file no one else can open, gone when closed: the child's lines. In memory where
    Linux offers it (`tempfile` alone cost a small listing 5 ms of imports)."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:
        with contextlib.suppress(OSError):
            return os.fdopen(memfd_create("agent-supervisor-listing"), "w+b")
    import tempfile

    return tempfile.TemporaryFile()  # noqa: SIM115 - closed by `_Child.reap`


def _child_half(
    database: Path,
    busy_timeout: float,
    options: Options,
    pivot: str,
    orders: IO[bytes],
    report: IO[bytes],
    output: IO[bytes],
) -> None:
    send = report_to(report)
    # -wal/-shm are the parent's to remove, once this process has let go of them.
    keep = {"-wal": True, "-shm": True}
    try:
        store = SQLiteStore(
            database, busy_timeout=busy_timeout, thread_range=(pivot, None), wal_existed=keep
        )
        with store:
            threads: Iterator[ThreadSummary] = store.stream()
            try:
                first = list(itertools.islice(threads, 1))
            except CannotSplit:
                send(("refused",))
                return
            send(("shape", store.shape))
            go = pickle.load(orders)
            if go[0] != "go":
                return
            text = io.TextIOWrapper(output, **_FILE_TEXT)
            writer = options.writer(text, go[1], opened=True)
            writer.rows(itertools.chain(first, threads))
            text.flush()
            text.detach()
            send(("done", writer.tally, store.take_notices()))
    except StoreError as exc:
        send(("error", str(exc)))


def _first(item: tuple[Any, ...]) -> str:
    return item[0]


def write_listing(
    threads: Iterable[ThreadSummary], shape: tuple[int, int], options: Options
) -> Tally:
    """One process's listing, whole, to stdout."""
    writer = options.writer(sys.stdout, shape)
    writer.begin()
    writer.rows(threads)
    writer.end()
    return writer.tally


def write_unordered(batches: Iterable[Iterable[ThreadSummary]], options: Options) -> Tally:
    """One process's listing of threads that arrive in no order, batch by batch (a
    Postgres listing reads hash partitions): each thread's line is made as it
    arrives and its summary let go, and the lines are sorted and written at the
    end. 100,000 summaries held at once were most of that listing's memory."""
    writer = options.writer(sys.stdout, (0, 0))
    collected: list[tuple[Any, ...]] = []
    for batch in batches:
        writer.collect(batch, collected)
    writer.write_collected(collected)
    writer.end()
    return writer.tally
