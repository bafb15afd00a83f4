"""What a plan reads of a thread's transcript, gathered one row at a time.

A plan needs two things of a transcript: the calls of earlier turns that
never got a result (they are closed, not run), and the last turn: the newest
assistant message and the rows after it (the results the agent's hooks are
asked about, an abort a crash cut short). Folded row by row, a plan of every
crashed thread can read the rows in the order the file stores them, in one
pass with no sort and no copy, holding each thread's last turn and not its
whole transcript (`Store.digests`). The single-thread plan folds its
transcript the same way, so the two cannot read a thread differently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from supervisor.states import ToolCallInfo
from supervisor.store import Transcript, TranscriptEntry, call_ids, summarise_assistant

#: A row kept as its reader's own tuple, read again by `TranscriptDigest.again`.
RowTuple = tuple[Any, ...]


@dataclass(slots=True)
class TranscriptDigest:
    """One thread's dangling calls and last turn, from its rows in order (`add`, `fold`)."""

    thread_id: str
    #: Calls of assistant messages before the newest that no result answered.
    dangling: list[ToolCallInfo] = field(default_factory=list)
    #: How many rows were added.
    rows: int = 0
    #: Whether a row had no message (corrupt, or too big to parse).
    unreadable: bool = False
    #: How a row kept as a tuple (`fold`) is read again into its entry.
    again: Callable[[RowTuple], TranscriptEntry] | None = None
    #: The newest assistant message's call ids and the ids answered since it; None
    #: before the first assistant message (a result then answers nothing).
    _turn: tuple[list[str], set[str]] | None = None
    #: The last turn's rows: entries, or row tuples to be read again.
    _kept: list[TranscriptEntry | RowTuple] = field(default_factory=list)

    @classmethod
    def of(cls, transcript: Transcript) -> TranscriptDigest:
        digest = cls(transcript.thread_id)
        for entry in transcript.entries:
            digest.add(entry)
        return digest

    @classmethod
    def of_messages(cls, messages: Iterable[dict[str, Any] | None]) -> TranscriptDigest:
        """The digest of messages without their rows (the runner's, already in models)."""
        digest = cls("")
        for i, m in enumerate(messages):
            digest.add(TranscriptEntry(i, None, None, m if isinstance(m, dict) else None))
        return digest

    def add(self, entry: TranscriptEntry) -> None:
        """Fold the thread's next row in."""
        self.fold(entry.message, entry)

    def fold(self, message: dict[str, Any] | None, row: TranscriptEntry | RowTuple) -> None:
        """Fold the next row in from its message (None: none could be read) and what to
        keep of it while it is in the last turn: its entry, or its reader's tuple (read
        again by `again`). A plan of every crashed thread holds each one's last turn
        until its pass ends, 60,000 of them at 100,000 threads: parsed messages took
        four times the memory of their text, and every collection walked them."""
        self.rows += 1
        role = None if message is None else message.get("role")
        if message is None:
            self.unreadable = True
        elif role == "assistant":
            if self._turn is not None and not self._turn[1].issuperset(self._turn[0]):
                self._close_turn()
            self._turn = (call_ids(message), set())
            self._kept = [row]
            return
        elif role == "tool_result" and self._turn is not None:
            # Any result before the next assistant message answers its call: the resume
            # shows it to the model right after the call (`tool_calls.answer_dangling_calls`).
            self._turn[1].add(str(message.get("tool_call_id")))
        self._kept.append(row)

    def _close_turn(self) -> None:
        """A newer assistant message came and some calls of the turn before it have no
        result: they are dangling (read again from its message, which heads `_kept`)."""
        assert self._turn is not None
        answered = self._turn[1]
        assistant = self._entry(self._kept[0]).message or {}
        self.dangling += [c for c in summarise_assistant(assistant)[1] if c.id not in answered]

    def _entry(self, kept: TranscriptEntry | RowTuple) -> TranscriptEntry:
        if isinstance(kept, TranscriptEntry):
            return kept
        assert self.again is not None, "a row kept as a tuple needs `again`"
        return self.again(kept)

    @property
    def last_turn(self) -> list[TranscriptEntry]:
        """The rows from the newest assistant message on (every row when there is none)."""
        return [self._entry(k) for k in self._kept]

    def last_messages(self) -> list[dict[str, Any] | None]:
        """The last turn's messages (None for a row with none)."""
        return [e.message for e in self.last_turn]
