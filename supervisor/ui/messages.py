"""Messages workers post to the app; `@on` handlers own every state change."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from supervisor.markers import Marker
from supervisor.runner import RunnerEvent
from supervisor.states import ThreadSummary
from supervisor.store import Transcript


@dataclass
class ThreadsRefreshed(Message):
    """A refresh read these summaries (copies, safe to keep) for touched threads."""

    summaries: dict[str, ThreadSummary]
    full: bool
    #: A first look at the newest rows only, while the whole pass runs: the
    #: threads found so far, their counts partial (see `SQLiteStore.preview`).
    provisional: bool = False


@dataclass
class RefreshFailed(Message):
    error: str
    #: A refresh failed (False: the background row check, which no refresh waits on).
    refresh: bool = True


@dataclass
class AgentImported(Message):
    """The agent's import, after the first frame, is done: `error` is None, or one line."""

    error: str | None


@dataclass
class AgentEvent(Message):
    """One runner event; streaming text arrives already coalesced."""

    event: RunnerEvent


@dataclass
class DetailFailed(Message):
    """The detail of this thread could not be loaded; `error` is one line."""

    thread_id: str
    error: str


@dataclass
class StoreNotices(Message):
    """What opening or refreshing the database had to do (a hot journal rolled back)."""

    notices: list[str]


@dataclass
class IndexHint(Message):
    """The database is big and lacks the index `agent-supervisor index` adds (None: it
    has it, or is small)."""

    hint: str | None


@dataclass
class TranscriptLoaded(Message):
    transcript: Transcript


@dataclass
class MarkersLoaded(Message):
    """The jobs directory as read for one thread's detail."""

    thread_id: str
    markers: list[Marker]
