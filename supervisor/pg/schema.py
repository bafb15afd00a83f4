"""The DDL we may run, and checks of what a server holds.

cubeloop never creates its tables at run time: the host owns them through
Alembic. `create_cubeloop_schema` does what a host's first migration does
(cubeloop's metadata, both partition sets, the version row) and is used
only for a database the user gave to `demo`, and by the tests. Our own
job-marker table lives in a schema of ours, created only by
`agent-supervisor init-markers`.
"""

from __future__ import annotations

from typing import Any

#: Our schema: nothing of ours is ever written into cubeloop's tables.
MARKERS_SCHEMA = "agent_supervisor"
MARKERS_TABLE = f"{MARKERS_SCHEMA}.job_markers"

MARKERS_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {MARKERS_SCHEMA};
CREATE TABLE IF NOT EXISTS {MARKERS_TABLE} (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('started', 'done')),
    tool TEXT,
    arguments JSONB,
    tool_call_id TEXT,
    thread_id TEXT,
    host TEXT,
    started_at DOUBLE PRECISION,
    done_at DOUBLE PRECISION,
    result JSONB
);
CREATE INDEX IF NOT EXISTS job_markers_thread ON {MARKERS_TABLE} (thread_id);
CREATE TABLE IF NOT EXISTS {MARKERS_SCHEMA}.attempts (
    thread_id TEXT PRIMARY KEY,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    next_at DOUBLE PRECISION,
    held BOOLEAN NOT NULL DEFAULT false,
    updated_at DOUBLE PRECISION NOT NULL
);
"""

#: The watcher's attempt records (`supervisor.attempts`), made with the markers table.
ATTEMPTS_TABLE = f"{MARKERS_SCHEMA}.attempts"

CUBELOOP_TABLES = ("cubepi_threads", "cubepi_messages", "cubepi_runs", "cubepi_schema_version")


def cubeloop_ddl() -> list[str]:
    """cubeloop's v5 schema as SQL statements, compiled from its own metadata."""
    from cubeloop.checkpointer.postgres import cubeloop_metadata
    from cubeloop.checkpointer.postgres.alembic_helpers import (
        create_message_partitions_op,
        create_runs_partitions_op,
        write_schema_version_op,
    )
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateIndex, CreateTable

    dialect = postgresql.dialect()
    statements: list[str] = []
    for table in cubeloop_metadata.sorted_tables:
        statements.append(str(CreateTable(table).compile(dialect=dialect)))
        statements += [str(CreateIndex(i).compile(dialect=dialect)) for i in table.indexes]
    statements += [create_message_partitions_op(), create_runs_partitions_op()]
    statements.append(write_schema_version_op())
    return statements


async def create_cubeloop_schema(conn: Any) -> None:
    """Create cubeloop's tables in an empty database, as a host's migration would."""
    async with conn.transaction():
        for statement in cubeloop_ddl():
            await conn.execute(statement)


async def has_cubeloop_schema(conn: Any) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass('cubepi_messages') IS NOT NULL"))


async def has_markers_table(conn: Any) -> bool:
    return bool(await conn.fetchval(f"SELECT to_regclass('{MARKERS_TABLE}') IS NOT NULL"))


async def create_markers_table(conn: Any) -> None:
    async with conn.transaction():
        await conn.execute(MARKERS_DDL)


async def prepare_demo_database(dsn: str, *, force: bool, markers: bool) -> str | None:
    """Make a database ready for the demo threads; the database's name if it holds some.

    Creates cubeloop's schema when the database has none (an empty database
    the user gave to `demo`), and our markers table when the markers live
    there. With `force`, empties both first.
    """
    from supervisor.pg.client import connect
    from supervisor.urls import redact

    conn = await connect(dsn, "demo")
    try:
        if not await has_cubeloop_schema(conn):
            await create_cubeloop_schema(conn)
        elif await conn.fetchval("SELECT EXISTS (SELECT 1 FROM cubepi_threads)"):
            if not force:
                return redact(dsn)
            await conn.execute("TRUNCATE cubepi_threads CASCADE")
        if markers:
            await create_markers_table(conn)
            if force:
                await conn.execute(f"TRUNCATE {MARKERS_TABLE}")
        return None
    finally:
        await conn.close()


#: The indexes we add to cubeloop's tables, with the user's consent (`index URL`): name and
#: definition. Each lets a refresh find what changed without scanning a table: new rows
#: (`created_at`), new threads, threads waiting for a human (few: a partial index), runs
#: claimed or completed (an `OR` of the two columns: one index each).
INDEXES: tuple[tuple[str, str], ...] = (
    ("agent_supervisor_messages_created", "cubepi_messages (created_at)"),
    ("agent_supervisor_threads_created", "cubepi_threads (created_at)"),
    (
        "agent_supervisor_threads_pending",
        "cubepi_threads (thread_id) WHERE pending_request IS NOT NULL",
    ),
    ("agent_supervisor_runs_claimed", "cubepi_runs (claimed_at)"),
    ("agent_supervisor_runs_completed", "cubepi_runs (completed_at)"),
)
INDEX_NAMES: tuple[str, ...] = tuple(name for name, _ in INDEXES)
#: The first of them: the store reads new rows by `created_at` only where it exists.
CREATED_INDEX = INDEX_NAMES[0]
#: One query: the names of ours that exist.
EXISTING_SQL = "SELECT name FROM unnest($1::text[]) AS name WHERE to_regclass(name) IS NOT NULL"


async def existing_indexes(conn: Any) -> list[str]:
    """Which of our indexes the database has."""
    return [r["name"] for r in await conn.fetch(EXISTING_SQL, list(INDEX_NAMES))]


async def add_indexes(conn: Any) -> list[str]:
    """Add the ones missing; their names."""
    have = set(await existing_indexes(conn))
    added = []
    for name, definition in INDEXES:
        if name not in have:
            await conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {definition}")
            added.append(name)
    return added


async def drop_indexes(conn: Any) -> list[str]:
    """Drop ours (never one we did not add); the names there were."""
    existed = await existing_indexes(conn)
    for name in existed:
        await conn.execute(f"DROP INDEX IF EXISTS {name}")
    return existed
