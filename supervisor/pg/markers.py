"""Job markers in Postgres: the same started/done records, seen by every host.

The table (`agent_supervisor.job_markers`) is ours, in a schema of ours,
created only by `agent-supervisor init-markers DSN`. Each record is one row
keyed by the job key; `start` and `finish` are single statements, so a
crash leaves the old record or the new one, never half of one (the files'
temp-and-rename gives the same promise).

Tools call `get`/`start`/`finish` synchronously, as with the directory
backend: a loopback round trip is about a millisecond, shorter than the
fsyncs a file marker costs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from supervisor.markers import Marker, current_thread, marker_filename
from supervisor.pg.client import PgError, SyncClient
from supervisor.pg.schema import MARKERS_TABLE
from supervisor.urls import host_name, redact

_COLUMNS = (
    "key, status, tool, arguments::text AS arguments, tool_call_id, thread_id, "
    "started_at, done_at, result::text AS result"
)


class MarkersMissing(PgError):
    """The database has no markers table yet (`agent-supervisor init-markers`)."""


def _where(key: str) -> Path:
    """A marker's name in listings: the table, then the name a file marker would have."""
    return Path(MARKERS_TABLE) / marker_filename(key)


def _loads(text: str | None) -> Any:
    return json.loads(text) if text is not None else None


def _marker(row: Any) -> Marker:
    return Marker(
        path=_where(row["key"]),
        key=row["key"],
        status=row["status"],
        tool=row["tool"],
        arguments=_loads(row["arguments"]),
        tool_call_id=row["tool_call_id"],
        thread_id=row["thread_id"],
        started_at=row["started_at"],
        done_at=row["done_at"],
        result=_loads(row["result"]),
    )


class PostgresJobMarkers:
    """Job markers in a table; same methods as `markers.JobMarkers`."""

    def __init__(self, dsn: str, client: SyncClient | None = None) -> None:
        self.dsn = dsn
        self.directory = redact(dsn)
        self._client = client

    def _sync(self) -> SyncClient:
        if self._client is None:
            self._client = SyncClient(self.dsn, "markers")
        return self._client

    def _call(self, method: str, sql: str, *args: Any) -> Any:
        import asyncpg

        client = self._sync()
        try:
            return client.call(method, sql, *args)
        except asyncpg.UndefinedTableError:
            raise MarkersMissing(
                f"{self.directory}: no job markers table; "
                f"run 'agent-supervisor init-markers {self.directory}' once"
            ) from None

    def get(self, key: str) -> Marker | None:
        row = self._call("fetchrow", f"SELECT {_COLUMNS} FROM {MARKERS_TABLE} WHERE key = $1", key)
        return _marker(row) if row else None

    def start(
        self,
        key: str,
        *,
        tool: str,
        arguments: Any,
        tool_call_id: str | None = None,
        thread_id: str | None = None,
    ) -> None:
        """Record that the work is about to begin (replacing any earlier record)."""
        self._call(
            "execute",
            f"INSERT INTO {MARKERS_TABLE} (key, status, tool, arguments, tool_call_id, "
            "thread_id, host, started_at, done_at, result) "
            "VALUES ($1, 'started', $2, $3::jsonb, $4, $5, $6, $7, NULL, NULL) "
            "ON CONFLICT (key) DO UPDATE SET status = 'started', tool = EXCLUDED.tool, "
            "arguments = EXCLUDED.arguments, tool_call_id = EXCLUDED.tool_call_id, "
            "thread_id = EXCLUDED.thread_id, host = EXCLUDED.host, "
            "started_at = EXCLUDED.started_at, done_at = NULL, result = NULL",
            key,
            tool,
            json.dumps(arguments, default=str),
            tool_call_id,
            thread_id if thread_id is not None else current_thread.get(),
            host_name(),
            time.time(),
        )

    def finish(self, key: str, result: Any) -> None:
        """Record that the work is done, with its result, keeping the start record."""
        self._call(
            "execute",
            f"INSERT INTO {MARKERS_TABLE} (key, status, done_at, result) "
            "VALUES ($1, 'done', $2, $3::jsonb) "
            "ON CONFLICT (key) DO UPDATE SET status = 'done', done_at = EXCLUDED.done_at, "
            "result = EXCLUDED.result",
            key,
            time.time(),
            json.dumps(result, default=str),
        )

    def remove(self, marker: Marker) -> bool:
        """Delete a marker if its row is still the record read (same status and times): a
        marker rewritten since is kept (`supervisor.prune`)."""
        done = self._call(
            "execute",
            f"DELETE FROM {MARKERS_TABLE} WHERE key = $1 AND status = $2 "
            "AND started_at IS NOT DISTINCT FROM $3 AND done_at IS NOT DISTINCT FROM $4",
            marker.key,
            marker.status,
            marker.started_at,
            marker.done_at,
        )
        return str(done).split()[-1] != "0"

    def read_all(self) -> list[Marker]:
        """Every marker, oldest first; none when the table does not exist yet."""
        try:
            rows = self._call("fetch", f"SELECT {_COLUMNS} FROM {MARKERS_TABLE}")
        except MarkersMissing:
            return []
        markers = [_marker(r) for r in rows]
        markers.sort(key=lambda m: (m.started_at or m.done_at or 0.0, m.key))
        return markers

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
