"""The one place a backend is chosen: SQLite file or PostgreSQL server.

Everything above this layer takes what these functions return (a `Store`,
a lease board, a checkpointer) and never asks which kind it has. The
Postgres modules are imported only for a Postgres URL: `list` on a file
never loads asyncpg.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from supervisor.leases import FileLeaseBoard, leases_dir
from supervisor.location import is_dsn


def store(location: str | os.PathLike[str], **options: Any) -> Any:
    """A `Store` on the database, connected and checked but not yet read (the app reads it
    in a worker); raises `StoreError` for one we cannot use."""
    if is_dsn(location):  # a server has no busy timeout: the rest is the file's
        from supervisor.pg.store import PostgresStore

        return PostgresStore(str(location), only=options.get("only"))
    from supervisor.store import SQLiteStore

    return SQLiteStore(location, **options)


def open_store(location: str | os.PathLike[str], **options: Any) -> Any:
    """Open and fully read a database (a `Store`); raises `StoreError` for one we cannot read."""
    opened = store(location, **options)
    try:
        opened.refresh()
    except BaseException:
        opened.close()
        raise
    return opened


def lease_board(location: str | os.PathLike[str]) -> Any:
    """Where this database's leases live: advisory locks on its server, or files beside it."""
    if is_dsn(location):
        from supervisor.pg.leases import PgLeaseBoard

        return PgLeaseBoard(str(location))
    return FileLeaseBoard(leases_dir(location))


def checkpointer(location: str | os.PathLike[str]) -> Any:
    """cubeloop's checkpointer for the database (not yet entered)."""
    if is_dsn(location):
        from cubeloop.checkpointer.postgres import PostgresCheckpointer

        return PostgresCheckpointer(str(location), min_pool_size=1, max_pool_size=4)
    from cubeloop.checkpointer import SQLiteCheckpointer

    # An absolute path: a file named like `file:x?mode=rwc` must stay a path,
    # never be read as a URI (reads and writes open the same file).
    return SQLiteCheckpointer(str(Path(location).resolve()))


async def newest_run_open(checkpointer: Any, thread_id: str) -> bool | None:
    """Whether the thread's newest run is open (True), complete (False), or there is none.

    cubeloop's checkpointers have no reader for their runs table, so this reads
    it on the checkpointer's own connection, the way its `claim_run` does (the
    version is pinned; `tests/test_continuation_contract.py` checks these names).
    """
    pool = getattr(checkpointer, "_pool", None)
    if pool is not None:  # Postgres
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT completed_at IS NULL FROM cubepi_runs WHERE thread_id = $1 "
                "ORDER BY claimed_at DESC, run_id DESC LIMIT 1",
                thread_id,
            )
        return None if row is None else bool(row[0])
    async with checkpointer._lock:  # SQLite: one connection, shared with its writes
        cursor = await checkpointer._db.execute(
            "SELECT completed_at IS NULL FROM runs WHERE rowid = "
            "(SELECT max(rowid) FROM runs WHERE thread_id = ?)",
            (thread_id,),
        )
        row = await cursor.fetchone()
    return None if row is None else bool(row[0])


async def run_complete(checkpointer: Any, thread_id: str, run_id: str) -> bool:
    """Whether the thread's run `run_id` was marked complete (read as `newest_run_open`)."""
    pool = getattr(checkpointer, "_pool", None)
    if pool is not None:
        async with pool.acquire() as conn:
            return bool(
                await conn.fetchval(
                    "SELECT completed_at IS NOT NULL FROM cubepi_runs "
                    "WHERE thread_id = $1 AND run_id = $2",
                    thread_id,
                    run_id,
                )
            )
    async with checkpointer._lock:
        cursor = await checkpointer._db.execute(
            "SELECT completed_at IS NOT NULL FROM runs WHERE thread_id = ? AND run_id = ?",
            (thread_id, run_id),
        )
        row = await cursor.fetchone()
    return bool(row and row[0])


async def answer_times(
    checkpointer: Any, thread_id: str, run_id: str
) -> tuple[dict[str, float], float | None]:
    """When each of the run's stored answers was given, and when its newest tool result was
    saved, both by the database's clock (`continuation.spent_questions` compares them).

    Read as `newest_run_open` is, on the checkpointer's own connection.
    """
    pool = getattr(checkpointer, "_pool", None)
    if pool is not None:  # Postgres
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT question_id, extract(epoch FROM answered_at)::float8 "
                "FROM cubepi_hitl_answers WHERE thread_id = $1 AND run_id = $2",
                thread_id,
                run_id,
            )
            newest = await conn.fetchval(
                "SELECT extract(epoch FROM max(created_at))::float8 FROM cubepi_messages "
                "WHERE thread_id = $1 AND run_id = $2 AND role = 'tool'",
                thread_id,
                run_id,
            )
        return {r[0]: float(r[1]) for r in rows}, newest
    async with checkpointer._lock:  # SQLite: julian days on both sides
        cursor = await checkpointer._db.execute(
            "SELECT question_id, answered_at FROM thread_hitl_answers "
            "WHERE thread_id = ? AND run_id = ?",
            (thread_id, run_id),
        )
        rows = await cursor.fetchall()
        cursor = await checkpointer._db.execute(
            "SELECT max(created_at) FROM messages WHERE thread_id = ? AND run_id = ? "
            "AND json_extract(message_json, '$.role') = 'tool_result'",
            (thread_id, run_id),
        )
        (newest,) = await cursor.fetchone()
    return {str(q): float(at) for q, at in rows}, newest


def import_checkpointer(location: str | os.PathLike[str]) -> None:
    """Import the database's checkpointer now: for a process about to fork children
    that would each import it again."""
    if is_dsn(location):
        import cubeloop.checkpointer.postgres  # noqa: F401
    else:
        import aiosqlite  # noqa: F401
        import cubeloop.checkpointer  # noqa: F401


def attempt_ledger(location: str | os.PathLike[str]) -> Any:
    """Where the watcher counts its attempts: a file beside the database, or our table."""
    if is_dsn(location):
        from supervisor.pg.attempts import PgAttempts

        return PgAttempts(str(location))
    from supervisor.attempts import FileAttempts

    return FileAttempts(location)
