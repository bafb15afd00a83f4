"""The watcher's attempt records in Postgres: `agent_supervisor.attempts`.

Made by `agent-supervisor init-markers URL` with the job-markers table;
every watcher on every host counts into the same rows. See
`supervisor.attempts` for what a record means.
"""

from __future__ import annotations

import time
from typing import Any

from supervisor.attempts import PARKED_TEXT, Attempt, finite
from supervisor.pg.client import SyncClient
from supervisor.pg.schema import ATTEMPTS_TABLE
from supervisor.store import StoreError
from supervisor.urls import redact

_COLUMNS = "thread_id, attempts, last_error, next_at, held, updated_at"


class AttemptsMissing(StoreError):
    """Our attempts table is not there yet (`agent-supervisor init-markers`)."""


class PgAttempts:
    """Records in our table; same methods as `attempts.FileAttempts`."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.shown = redact(dsn)
        self._client: SyncClient | None = None

    def _sync(self) -> SyncClient:
        if self._client is None:
            self._client = SyncClient(self.dsn, "watch")
        return self._client

    def exists(self) -> bool:
        return bool(self._sync().fetchval(f"SELECT to_regclass('{ATTEMPTS_TABLE}') IS NOT NULL"))

    def require(self) -> None:
        if not self.exists():
            raise AttemptsMissing(
                f"{redact(self.dsn)}: no {ATTEMPTS_TABLE} table; "
                f"run 'agent-supervisor init-markers {redact(self.dsn)}' once"
            )

    def all(self) -> dict[str, Attempt]:
        if not self.exists():
            return {}
        return {
            r[0]: _attempt(r)
            for r in self._sync().fetch(f"SELECT {_COLUMNS} FROM {ATTEMPTS_TABLE}")
        }

    def failed(
        self, thread_id: str, error: str, next_at: float | None, max_attempts: int
    ) -> Attempt:
        row = self._sync().fetchrow(
            f"INSERT INTO {ATTEMPTS_TABLE} AS a VALUES ($1, 1, $2, $3, 1 >= $4, $5) "
            "ON CONFLICT (thread_id) DO UPDATE SET attempts = a.attempts + 1, "
            "last_error = EXCLUDED.last_error, held = a.attempts + 1 >= $4, "
            "next_at = CASE WHEN a.attempts + 1 >= $4 THEN NULL ELSE EXCLUDED.next_at END, "
            f"updated_at = EXCLUDED.updated_at RETURNING {_COLUMNS}",
            thread_id,
            error,
            next_at,
            max_attempts,
            time.time(),
        )
        return _attempt(row)

    def hold(self, thread_id: str, reason: str) -> Attempt:
        row = self._sync().fetchrow(
            f"INSERT INTO {ATTEMPTS_TABLE} AS a VALUES ($1, 0, $2, NULL, true, $3) "
            "ON CONFLICT (thread_id) DO UPDATE SET last_error = EXCLUDED.last_error, "
            "next_at = NULL, held = true, updated_at = EXCLUDED.updated_at "
            f"RETURNING {_COLUMNS}",
            thread_id,
            reason,
            time.time(),
        )
        return _attempt(row)

    def check(self) -> None:
        """The table is there (`require` said so already)."""
        self.require()

    def parked(self, thread_id: str) -> None:
        self._sync().execute(
            f"INSERT INTO {ATTEMPTS_TABLE} AS a VALUES ($1, 0, $2, NULL, false, $3) "
            "ON CONFLICT (thread_id) DO UPDATE SET last_error = EXCLUDED.last_error, "
            "next_at = NULL, held = false, updated_at = EXCLUDED.updated_at",
            thread_id,
            PARKED_TEXT,
            time.time(),
        )

    def succeeded(self, thread_id: str) -> None:
        if self.exists():
            self._sync().execute(f"DELETE FROM {ATTEMPTS_TABLE} WHERE thread_id = $1", thread_id)

    def release(self, thread_ids: list[str]) -> list[str]:
        if not self.exists():
            return []
        rows = self._sync().fetch(
            f"DELETE FROM {ATTEMPTS_TABLE} WHERE thread_id = ANY($1::text[]) RETURNING thread_id",
            thread_ids,
        )
        return [r[0] for r in rows]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _attempt(row: Any) -> Attempt:
    return Attempt(row[0], row[1], row[2], finite(row[3]), bool(row[4]), row[5])
