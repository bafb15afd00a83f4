"""What cubeloop's own checkpointer connection tells about a thread's runs.

cubeloop's checkpointers have no reader for their runs table or for when an
answer was given, so these read them on the checkpointer's own connection,
the way its `claim_run` does (the version is pinned;
`tests/test_continuation_contract.py` checks these names). A checkpointer with
a pool is Postgres's; one with a lock and a connection is SQLite's.
"""

from __future__ import annotations

from typing import Any


async def newest_run_open(checkpointer: Any, thread_id: str) -> bool | None:
    """Whether the thread's newest run is open (True), complete (False), or there is none."""
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


async def thread_runs(checkpointer: Any, thread_id: str) -> list[tuple[str, int | None]]:
    """The thread's runs in the order they were claimed: (run id, completion number, None
    for a run never completed). A fork may start after a completed run only: cubeloop's
    `fork` copies the runs numbered up to that run's number and their messages."""
    pool = getattr(checkpointer, "_pool", None)
    if pool is not None:  # Postgres
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT run_id, completion_seq FROM cubepi_runs WHERE thread_id = $1 "
                "ORDER BY claimed_at, run_id",
                thread_id,
            )
        return [(str(r[0]), r[1]) for r in rows]
    async with checkpointer._lock:
        cursor = await checkpointer._db.execute(
            "SELECT run_id, completion_seq FROM runs WHERE thread_id = ? ORDER BY rowid",
            (thread_id,),
        )
        rows = await cursor.fetchall()
    return [(str(r[0]), r[1]) for r in rows]
