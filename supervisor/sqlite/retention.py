"""Removing whole threads from a SQLite file (`supervisor.retention`): one transaction a batch.

The file is opened for writing here only, on its own connection. Inside the
batch's write transaction each thread's rows are counted again, and its runs
looked at again: a thread written to, or prompted, since the listing stays.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from supervisor.retention import Candidate, ids_json, unchanged

#: cubeloop's tables that hold a thread's rows, children first.
TABLES = ("thread_hitl_answers", "thread_pending_request", "runs", "messages", "thread_extra")


class SQLiteRemover:
    def __init__(self, path: Path, busy_timeout: float) -> None:
        self.conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
        self.tables = {
            name
            for (name,) in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }

    async def remove(self, batch: list[Candidate]) -> tuple[list[str], int, dict[str, str]]:
        """(removed, messages removed, skipped with why) for this batch."""
        if not batch:
            return [], 0, {}
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            ids = ids_json(batch)
            rows = {
                t: (n, last)
                for t, n, last in conn.execute(
                    "SELECT thread_id, count(*), max(id) FROM messages "
                    "WHERE thread_id IN (SELECT value FROM json_each(?)) GROUP BY thread_id",
                    (ids,),
                )
            }
            open_runs: set[str] = set()
            if "runs" in self.tables:
                open_runs = {
                    t
                    for (t,) in conn.execute(
                        "SELECT DISTINCT thread_id FROM runs WHERE completed_at IS NULL "
                        "AND thread_id IN (SELECT value FROM json_each(?))",
                        (ids,),
                    )
                }
            skipped: dict[str, str] = {}
            going: list[Candidate] = []
            for c in batch:
                if c.thread_id in open_runs:
                    skipped[c.thread_id] = "a run was started since the listing"
                elif not unchanged(c, *rows.get(c.thread_id, (0, None))):
                    skipped[c.thread_id] = "written to since the listing"
                else:
                    going.append(c)
            messages = 0
            if going:
                gone = ids_json(going)
                among = "thread_id IN (SELECT value FROM json_each(?))"
                for table in TABLES:
                    if table in self.tables:
                        done = conn.execute(f"DELETE FROM {table} WHERE {among}", (gone,))
                        if table == "messages":
                            messages = done.rowcount
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return [c.thread_id for c in going], messages, skipped

    async def close(self) -> None:
        self.conn.close()


def free_bytes(path: Path) -> int:
    """Space inside the file no table uses any more (it stays the file's until VACUUM)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (pages,) = conn.execute("PRAGMA freelist_count").fetchone()
        (size,) = conn.execute("PRAGMA page_size").fetchone()
        return int(pages) * int(size)
    finally:
        conn.close()
