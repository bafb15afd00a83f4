"""Removing whole threads from cubeloop's Postgres tables (`supervisor.retention`).

One transaction a batch, on a connection of its own: each thread's rows are
counted again and its runs looked at again inside it, and a thread a fork
names as its source stays (cubeloop's `parent_thread_id` is a foreign key).
"""

from __future__ import annotations

from typing import Any

from supervisor.retention import Candidate, unchanged


class PgRemover:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: Any = None

    async def remove(self, batch: list[Candidate]) -> tuple[list[str], int, dict[str, str]]:
        if not batch:
            return [], 0, {}
        if self.conn is None:
            from supervisor.pg.client import connect

            self.conn = await connect(self.dsn, "prune")
        conn = self.conn
        ids = [c.thread_id for c in batch]
        async with conn.transaction():
            rows = {
                r[0]: (r[1], r[2])
                for r in await conn.fetch(
                    "SELECT thread_id, count(*), max(seq) FROM cubepi_messages "
                    "WHERE thread_id = ANY($1::text[]) GROUP BY thread_id",
                    ids,
                )
            }
            open_runs = {
                r[0]
                for r in await conn.fetch(
                    "SELECT DISTINCT thread_id FROM cubepi_runs WHERE completed_at IS NULL "
                    "AND thread_id = ANY($1::text[])",
                    ids,
                )
            }
            sources = {
                r[0]
                for r in await conn.fetch(
                    "SELECT DISTINCT parent_thread_id FROM cubepi_threads "
                    "WHERE parent_thread_id = ANY($1::text[])",
                    ids,
                )
            }
            skipped: dict[str, str] = {}
            going: list[str] = []
            for c in batch:
                if c.thread_id in open_runs:
                    skipped[c.thread_id] = "a run was started since the listing"
                elif c.thread_id in sources:
                    skipped[c.thread_id] = "a fork's source (its forks name it)"
                elif not unchanged(c, *rows.get(c.thread_id, (0, None))):
                    skipped[c.thread_id] = "written to since the listing"
                else:
                    going.append(c.thread_id)
            messages = 0
            if going:
                for table in ("cubepi_hitl_answers", "cubepi_runs", "cubepi_messages"):
                    status = await conn.execute(
                        f"DELETE FROM {table} WHERE thread_id = ANY($1::text[])", going
                    )
                    if table == "cubepi_messages":
                        messages = int(status.split()[-1])
                await conn.execute(
                    "DELETE FROM cubepi_threads WHERE thread_id = ANY($1::text[])", going
                )
        return going, messages, skipped

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
            self.conn = None
