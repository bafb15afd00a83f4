"""One thread's reads on a Postgres database: its transcript, its `extra`, a human's answers.

Independent of the listing: each is one query by the thread's key, on the
store's connection, its error one line naming the database.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from typing import Any

from supervisor.pg.client import SyncClient, first_line
from supervisor.pg.payload import decode_payload
from supervisor.store import BIG_PREVIEW, BIG_ROW, StoreError, Transcript, TranscriptEntry

#: Threads read per query by `ThreadReads.transcripts`.
MANY_AT_ONCE = 200


class ThreadReads:
    """The per-thread reads of a `PostgresStore`."""

    def __init__(self, client: SyncClient, location: str) -> None:
        self.client = client
        #: The URL without its password, for error lines.
        self.location = location

    def thread_extra(self, thread_id: str) -> dict[str, Any]:
        try:
            extra = self.client.fetchval(
                "SELECT extra FROM cubepi_threads WHERE thread_id = $1", thread_id
            )
        except Exception as exc:
            raise StoreError(f"{self.location}: {first_line(exc)}") from None
        if isinstance(extra, str):
            with contextlib.suppress(ValueError, RecursionError):
                extra = json.loads(extra)
        return extra if isinstance(extra, dict) else {}

    def hitl_answer(self, thread_id: str, run_id: str | None, question_id: str) -> Any:
        try:
            answer = self.client.fetchval(
                "SELECT answer FROM cubepi_hitl_answers "
                "WHERE thread_id = $1 AND run_id = $2 AND question_id = $3",
                thread_id,
                run_id or "",
                question_id,
            )
        except Exception as exc:
            raise StoreError(f"{self.location}: {first_line(exc)}") from None
        if isinstance(answer, str):
            with contextlib.suppress(ValueError, RecursionError):
                answer = json.loads(answer)
        return answer

    def answers_given(self, thread_id: str, run_id: str) -> dict[str, float]:
        """When each of the run's stored answers was given, in unix seconds."""
        try:
            rows = self.client.fetch(
                "SELECT question_id, extract(epoch FROM answered_at)::float8 AS at "
                "FROM cubepi_hitl_answers WHERE thread_id = $1 AND run_id = $2",
                thread_id,
                run_id,
            )
        except Exception as exc:
            raise StoreError(f"{self.location}: {first_line(exc)}") from None
        return {r["question_id"]: float(r["at"]) for r in rows}

    def transcript(self, thread_id: str, *, full: bool = False) -> Transcript:
        """One thread's rows in `seq` order; payloads over `BIG_ROW` bytes come as a preview."""
        return next(self.transcripts([thread_id], full=full))

    def transcripts(self, thread_ids: Iterable[str], *, full: bool = False) -> Iterator[Transcript]:
        """Many threads' rows, in thread-id order, `MANY_AT_ONCE` threads per query (by
        the table's key: no scan, and no round trip per thread)."""
        wanted = sorted(set(thread_ids))
        limit = 2**31 - 1 if full else BIG_ROW  # an int4 parameter; a bytea is at most 1 GB
        for at in range(0, len(wanted), MANY_AT_ONCE):
            chunk = wanted[at : at + MANY_AT_ONCE]
            try:
                rows = self.client.fetch(
                    "SELECT thread_id, seq, role, run_id, "
                    "extract(epoch FROM created_at)::float8 AS at, "
                    "length(payload) AS size, CASE WHEN length(payload) > $2 "
                    "THEN substring(payload FROM 1 FOR $3) ELSE payload END AS payload "
                    "FROM cubepi_messages WHERE thread_id = ANY($1::text[]) "
                    "ORDER BY thread_id, seq",
                    chunk,
                    limit,
                    BIG_PREVIEW,
                )
            except Exception as exc:
                raise StoreError(f"{self.location}: {first_line(exc)}") from None
            by_thread: dict[str, Transcript] = {t: Transcript(t) for t in chunk}
            for r in rows:
                by_thread[r["thread_id"]].entries.append(_entry(r, limit))
            yield from by_thread.values()


def _entry(r: Any, limit: int) -> TranscriptEntry:
    entry = TranscriptEntry(r["seq"], r["at"], r["run_id"], None)
    if r["size"] > limit:
        entry.size = r["size"]
        entry.raw = bytes(r["payload"]).decode("utf-8", "replace")
    else:
        entry.message, entry.error = decode_payload(r["payload"], r["role"])
        if entry.error is not None:
            entry.raw = repr(bytes(r["payload"])[:BIG_PREVIEW])
    return entry
