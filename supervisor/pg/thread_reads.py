"""One thread's reads on a Postgres database: its transcript, its `extra`, a human's answers.

Independent of the listing: each is one query by the thread's key, on the
store's connection, its error one line naming the database.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from supervisor.pg.client import SyncClient
from supervisor.pg.payload import decode_payload
from supervisor.store import BIG_PREVIEW, BIG_ROW, StoreError, Transcript, TranscriptEntry


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
            raise StoreError(f"{self.location}: {_first_line(exc)}") from None
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
            raise StoreError(f"{self.location}: {_first_line(exc)}") from None
        if isinstance(answer, str):
            with contextlib.suppress(ValueError, RecursionError):
                answer = json.loads(answer)
        return answer

    def answer_times(self, thread_id: str, run_id: str) -> tuple[dict[str, float], float | None]:
        """When each of the run's stored answers was given and when its newest tool result was
        saved, by the server's clock (as `runs.answer_times`)."""
        try:
            rows = self.client.fetch(
                "SELECT question_id, extract(epoch FROM answered_at)::float8 AS at "
                "FROM cubepi_hitl_answers WHERE thread_id = $1 AND run_id = $2",
                thread_id,
                run_id,
            )
            newest = self.client.fetchval(
                "SELECT extract(epoch FROM max(created_at))::float8 FROM cubepi_messages "
                "WHERE thread_id = $1 AND run_id = $2 AND role = 'tool'",
                thread_id,
                run_id,
            )
        except Exception as exc:
            raise StoreError(f"{self.location}: {_first_line(exc)}") from None
        return {r["question_id"]: float(r["at"]) for r in rows}, newest

    def transcript(self, thread_id: str, *, full: bool = False) -> Transcript:
        """One thread's rows in `seq` order; payloads over `BIG_ROW` bytes come as a preview."""
        limit = 2**31 - 1 if full else BIG_ROW  # an int4 parameter; a bytea is at most 1 GB
        try:
            rows = self.client.fetch(
                "SELECT seq, role, run_id, extract(epoch FROM created_at)::float8 AS at, "
                "length(payload) AS size, CASE WHEN length(payload) > $2 "
                "THEN substring(payload FROM 1 FOR $3) ELSE payload END AS payload "
                "FROM cubepi_messages WHERE thread_id = $1 ORDER BY seq",
                thread_id,
                limit,
                BIG_PREVIEW,
            )
        except Exception as exc:
            raise StoreError(f"{self.location}: {_first_line(exc)}") from None
        out = Transcript(thread_id)
        for r in rows:
            entry = TranscriptEntry(r["seq"], r["at"], r["run_id"], None)
            if r["size"] > limit:
                entry.size = r["size"]
                entry.raw = bytes(r["payload"]).decode("utf-8", "replace")
            else:
                entry.message, entry.error = decode_payload(r["payload"], r["role"])
                if entry.error is not None:
                    entry.raw = repr(bytes(r["payload"])[:BIG_PREVIEW])
            out.entries.append(entry)
        return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
