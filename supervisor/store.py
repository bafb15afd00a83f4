"""What both backends share: the `Store` protocol, its errors, the transcript model,
and the folds that give thread summaries what the small tables say.

The backends live in `supervisor.sqlite` and `supervisor.pg`;
`supervisor.location.Location` opens the right one for a DB argument.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from supervisor.attempts import Attempt
from supervisor.hitl import PendingRequest
from supervisor.states import ROLES, Row, ThreadSummary, ToolCallInfo, fold_rows

if TYPE_CHECKING:
    from supervisor.digest import TranscriptDigest

#: Rows bigger than this are not read whole into a transcript: a 50 MB message
#: would freeze whoever renders it. Their first `BIG_PREVIEW` characters are read.
BIG_ROW = 1_000_000

BIG_PREVIEW = 4_000
#: A database with more message rows than this and no thread index is named: every
#: read of one thread scans them all (`index_hint`).
INDEX_HINT_ROWS = 200_000
#: The same for a store that has not counted its rows, by the file's size.
INDEX_HINT_BYTES = 100_000_000


#: A message-id cursor that is before every row: `id > BEFORE_ANY_ROW` holds for all. A
#: cursor starting at 0 skipped rows another writer had stored with ids 0 or below
#: (cubeloop's start at 1): their threads were missing from the list, or short of rows.
BEFORE_ANY_ROW = float("-inf")

#: Where the supervisor's own notes on a message go (its `details`): a tool result the
#: resume wrote for a call it did not run carries `{DETAILS_KEY: {"not_run": why}}`.
DETAILS_KEY = "agent_supervisor"


class StoreError(Exception):
    """A database we cannot read; the message is one line for the user."""


@dataclass
class TranscriptEntry:
    """One stored message row. `message` is None when the row is corrupt or too big.

    A row bigger than `BIG_ROW` is not parsed: `size` holds its length and
    `raw` its first `BIG_PREVIEW` characters (`agent-supervisor show --full`
    prints it whole).
    """

    row_id: int
    created_at: float | None
    run_id: str | None
    message: dict[str, Any] | None
    error: str | None = None
    raw: str = ""
    size: int | None = None

    @property
    def big(self) -> bool:
        return self.size is not None


@dataclass
class Transcript:
    thread_id: str
    entries: list[TranscriptEntry] = field(default_factory=list)

    def messages(self) -> list[dict[str, Any] | None]:
        return [e.message for e in self.entries]

    def tool_calls(self) -> list[ToolCallInfo]:
        """Every tool call the thread's assistant messages made, in order."""
        calls: list[ToolCallInfo] = []
        for m in self.messages():
            if isinstance(m, dict) and m.get("role") == "assistant":
                calls += summarise_assistant(m)[1]
        return calls


class Store(Protocol):
    """What a checkpoint backend offers the rest of the app.

    The CLI, the runner and the app take a `Store`: `SQLiteStore` here, and
    `supervisor.pg.store.PostgresStore`. `supervisor.location.Location` picks one.
    """

    #: What to show the user (a path, or a URL without its password).
    location: str
    #: The database's lease board (`leases.FileLeaseBoard` or the Postgres one).
    leases: Any
    #: Whether `check_rows` is cheap enough for the app to run in the background.
    checks_in_background: bool
    #: The file the database is (the app watches it), or None for a server (polled).
    path: Path | None
    #: How a listing comes out at fleet size without holding every summary: "ordered"
    #: (`stream`, in thread-id order: a SQLite file) or "unordered" (`stream_batches`,
    #: partitions in no order: Postgres, sorted by the writer at the end).
    streams: Literal["ordered", "unordered"]
    #: How long a SQLite read waits for a writer's lock, in seconds (a server: 0, unused).
    busy_timeout: float

    def preview(self) -> list[ThreadSummary] | None:
        """A big database's newest threads, read fast for a first screen (None: no need)."""
        ...

    def preview_soon(self) -> None:
        """Start the preview early, before the process starts threads (a no-op where a
        preview needs no head start)."""
        ...

    def preview_ready(self) -> bool:
        """Whether `preview()` would return at once."""
        ...

    def stop_first_read(self) -> None:
        """Stop readers of a first read still under way (the app is closing)."""
        ...

    def refresh(self) -> set[str]:
        """Read what changed since the last call; return the touched thread ids."""
        ...

    def threads(self) -> list[ThreadSummary]:
        """Every known thread, in order of first appearance."""
        ...

    def get(self, thread_id: str) -> ThreadSummary | None: ...

    def transcript(self, thread_id: str, *, full: bool = False) -> Transcript: ...

    def transcripts(self, thread_ids: Iterable[str], *, full: bool = False) -> Iterator[Transcript]:
        """Many threads' transcripts in thread-id order, read in one pass (a plan of
        every crashed thread), not a read per thread."""
        ...

    def digests(self, thread_ids: Iterable[str]) -> Iterator[TranscriptDigest]:
        """What a plan reads of many threads' transcripts (`supervisor.digest`), in
        thread-id order, read in one pass."""
        ...

    def answers_given(self, thread_id: str, run_id: str) -> dict[str, float]:
        """When each of a run's stored answers was given, in unix seconds."""
        ...

    def thread_extra(self, thread_id: str) -> dict[str, Any]:
        """The thread's `extra` as cubeloop stored it ({} when none or unreadable)."""
        ...

    def hitl_answer(self, thread_id: str, run_id: str | None, question_id: str) -> Any:
        """The human's answer stored for a question of a run, or None."""
        ...

    def close(self) -> None: ...

    def take_notices(self) -> list[str]:
        """Things worth one line to the user (a rolled-back hot journal), once each."""
        ...

    def leases_folded(self) -> dict[str, dict[str, Any]] | None:
        """The live leases (`leases.live()`, every one) the last refresh folded into the
        listing; None before the first. A look at the leases that finds others refreshes."""
        ...

    def check_rows(self) -> set[str]:
        """Validate every row (the listing validates only those states depend on)."""
        ...

    @property
    def rows_checked(self) -> bool: ...

    def start_over(self) -> None:
        """Forget what was read: the next refresh reads the whole database again (after
        threads were removed: a refresh reads what is new, never what went)."""
        ...

    def usage_rows(
        self,
        since: float | None = None,
        threads: Collection[str] | None = None,
        rows: tuple[int, int] | None = None,
        days: bool = False,
    ) -> tuple[list[Any], set[tuple[str, str]]]:
        """Tokens of the assistant messages (written since a unix time; of some threads;
        a SQLite file's message ids in (after, upto]), summed by (thread, run, UTC day if
        `days` else None) and model (`supervisor.usage.UsageRow`), and the (fork, run)
        pairs of runs forks copied from their sources."""
        ...

    def search(self, text: str) -> Any:
        """The threads with a message matching `text` (`supervisor.search.Found`: by the
        search index when there is one, else by reading every message)."""
        ...

    def has_search_index(self) -> bool:
        """Whether `agent-supervisor index DB --search` made the search index."""
        ...

    def index_hint(self, rows: int | None = None) -> str | None:
        """A note for a big database (over `INDEX_HINT_ROWS` message rows; `rows`: as a
        streamed listing counted them) that lacks the index we would add."""
        ...


def call_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool-call blocks of an assistant message, as every reader of one takes them:
    content that is not a list has none, and neither has a block that is not an object."""
    content = message.get("content")
    if not isinstance(content, list):
        return []
    return [b for b in content if isinstance(b, dict) and b.get("type") == "tool_call"]


def call_ids(message: dict[str, Any]) -> list[str]:
    """The ids of an assistant message's calls, as `summarise_assistant` reads them."""
    return [str(b.get("id", "")) for b in call_blocks(message)]


def summarise_assistant(
    message: dict[str, Any],
) -> tuple[str | None, tuple[ToolCallInfo, ...], str, str | None]:
    """(stop_reason, tool_calls, first text, error message) of an assistant message."""
    calls = [
        ToolCallInfo(
            id=str(block.get("id", "")),
            name=str(block.get("name", "")),
            arguments=block.get("arguments", {}),
        )
        for block in call_blocks(message)
    ]
    text = ""
    content = message.get("content")
    for block in content if isinstance(content, list) else ():
        if isinstance(block, dict) and block.get("type") == "text" and not text:
            text = str(block.get("text", ""))
    stop = message.get("stop_reason")
    error = message.get("error_message")
    return (
        stop if isinstance(stop, str) else None,
        tuple(calls),
        text,
        error if isinstance(error, str) else None,
    )


def summary_from_dicts(thread_id: str, messages: list[dict[str, Any]]) -> ThreadSummary:
    """Classify a thread from messages already loaded (the runner's view).

    Rows are numbered by position; times come from each message's own
    `timestamp`. Same rules as the listing, so both always agree.
    """
    rows: list[Row] = []
    last_assistant: dict[str, Any] | None = None
    for i, m in enumerate(messages, start=1):
        role = m.get("role")
        stamp = m.get("timestamp")
        stamp = float(stamp) if isinstance(stamp, int | float) else None
        if role not in ROLES:
            rows.append((i, thread_id, stamp, None, f"unknown role {role!r}"))
            continue
        call_id = m.get("tool_call_id") if role == "tool_result" else None
        rows.append((i, thread_id, stamp, role, call_id if isinstance(call_id, str) else None))
        if role == "assistant":
            last_assistant = m
    summary = ThreadSummary(thread_id)
    fold_rows({thread_id: summary}, rows)
    run_id = messages[-1].get("run_id") if messages else None
    summary.last_run_id = run_id if isinstance(run_id, str) else None
    if last_assistant is not None:
        summary.set_last_assistant(*summarise_assistant(last_assistant))
    return summary


def fold_requests(
    threads: dict[str, ThreadSummary],
    before: set[str],
    found: dict[str, tuple[PendingRequest, bool]],
) -> set[str]:
    """Give threads their pending request and whether it was answered; the threads that changed.

    Looks only at threads that waited before or wait now: few ever do.
    """
    changed = set()
    for thread_id in before | found.keys():
        s = threads.get(thread_id)
        if s is None:
            continue
        request, stored = found.get(thread_id, (None, False))
        if (request, stored) != (s.request, s.answer_stored):
            changed.add(thread_id)
        s.pending_request, s.request, s.answer_stored = request is not None, request, stored
    return changed


def fold_holders(
    threads: dict[str, ThreadSummary], before: set[str], live: dict[str, dict[str, Any]]
) -> set[str]:
    """Threads a live supervisor holds are `running`, with their holder; those that changed."""
    changed = set()
    for thread_id in before | live.keys():  # not every thread: few are held
        s = threads[thread_id]
        holder = live.get(thread_id)
        if holder != s.holder:
            changed.add(thread_id)
            s.holder, s.running = holder, holder is not None
    return changed


class HeldLeases:
    """The leases a store's listing has folded in: which of its threads are held, and every
    live lease the last look found (`Store.leases_folded`: the app's lease poll compares
    with it, so a holder only a refresh saw is still seen to die)."""

    def __init__(self) -> None:
        self.held: set[str] = set()
        self.live: dict[str, dict[str, Any]] | None = None

    def fold(self, threads: dict[str, ThreadSummary], live: dict[str, dict[str, Any]]) -> set[str]:
        """Fold a fresh `leases.live()` into `threads`; the threads whose holder changed."""
        self.live = live
        mine = {t: h for t, h in live.items() if t in threads}
        changed = fold_holders(threads, self.held, mine)
        self.held = set(mine)
        return changed

    def forget(self) -> None:
        """The listing starts over: nothing is folded in (the last look stays: it is not
        the listing's)."""
        self.held = set()


def fold_attempts(
    threads: dict[str, ThreadSummary], before: set[str], found: dict[str, Attempt]
) -> set[str]:
    """Give threads their watcher record (or none); the threads whose record changed.

    Looks only at threads that had a record before or have one now: a refresh
    must not walk 100,000 summaries to find the few the watcher tried.
    """
    changed = set()
    for thread_id in before | found.keys():
        s = threads.get(thread_id)
        if s is not None and s.attempt != found.get(thread_id):
            s.attempt = found.get(thread_id)
            changed.add(thread_id)
    return changed


def fold_parents(threads: dict[str, ThreadSummary], found: dict[str, str | None]) -> set[str]:
    """Give the threads looked up their parent link (or none); those whose link changed."""
    changed = set()
    for thread_id, parent in found.items():
        if threads[thread_id].parent != parent:
            threads[thread_id].parent = parent
            changed.add(thread_id)
    return changed


def fold_fork(s: ThreadSummary, source: Any, after: Any) -> bool:
    """A fork's lineage on its summary; whether it changed. Text from the file is kept
    only when it is text (an id of another type is shown by its value)."""
    source = str(source)
    after = after if isinstance(after, str) else None
    if (s.forked_from, s.forked_after) == (source, after):
        return False
    s.forked_from, s.forked_after = source, after
    return True
