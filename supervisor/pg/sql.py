"""The SQL the Postgres listing runs, over cubeloop's tables (read-only, set-based)."""

from __future__ import annotations

from typing import Any

from supervisor.states import PARENT_KEY

ROLES_SQL = "('user', 'assistant', 'tool')"

#: Per thread: its count, last row, last assistant row, first row with a role we do
#: not know, last write. The last row's role comes with the tail (it is its last row):
#: a per-row CASE for it cost a third of the aggregate.
AGGREGATE_SQL = (
    "SELECT thread_id, count(*) AS n, max(seq) AS last, "
    "max(seq) FILTER (WHERE role = 'assistant') AS assistant, "
    f"min(seq) FILTER (WHERE role NOT IN {ROLES_SQL}) AS bad, "
    "extract(epoch FROM max(created_at))::float8 AS at "
    "FROM {relation}{where} GROUP BY thread_id"
)

#: The aggregate of each of many threads, one probe by the key each.
AGGREGATE_EACH_SQL = (
    "SELECT w.thread_id, a.* FROM unnest($1::text[]) AS w(thread_id) CROSS JOIN LATERAL ("
    + AGGREGATE_SQL.format(relation="cubepi_messages", where=" WHERE thread_id = w.thread_id")
    .replace("SELECT thread_id, ", "SELECT ")
    .replace(" GROUP BY thread_id", "")
    + ") AS a WHERE a.n > 0"
)

#: The rows of many threads from a seq on, one probe each.
TAILS_EACH_SQL = (
    "SELECT m.* FROM unnest($1::text[], $2::bigint[]) AS w(thread_id, seq) CROSS JOIN LATERAL ("
    "SELECT thread_id, seq, role, run_id, payload FROM cubepi_messages "
    "WHERE thread_id = w.thread_id AND seq >= w.seq OFFSET 0) AS m"  # OFFSET 0: no pull-up
)

#: The aggregate, and each thread's rows from its last assistant message on, by the
#: key (a hash join read the partition a second time and cost twice as much).
#: Last: whether the run of a thread's last row is complete, where that row is a tool
#: result (the only threads it decides: `stopped` or `after_tools`), by the runs' key.
PARTITION_SQL = (
    "SELECT a.*, m.*, CASE WHEN m.role = 'tool' AND m.seq = a.last THEN EXISTS ("
    "SELECT 1 FROM cubepi_runs r WHERE r.thread_id = a.thread_id AND r.run_id = m.run_id "
    "AND r.completed_at IS NOT NULL) END AS done FROM ("
    + AGGREGATE_SQL.replace("{where}", "")
    + " OFFSET 0) AS a "
    "CROSS JOIN LATERAL (SELECT thread_id, seq, role, run_id, payload FROM {relation} "
    "WHERE thread_id = a.thread_id AND seq >= coalesce(a.assistant, 1) OFFSET 0) AS m"
)

#: Each linked child thread and its parent (`supervisor.children`).
PARENTS_SQL = (
    "SELECT thread_id, CASE WHEN jsonb_typeof(extra) = 'object' "
    f"THEN extra->'{PARENT_KEY}'->>'thread_id' END FROM cubepi_threads "
    "WHERE thread_id = ANY($1::text[])"
)

#: Every linked child and its parent, for a streamed listing: read before it, as the
#: stream keeps its connection busy reading ahead (a JSONB key test per thread, on the server).
ALL_PARENTS_SQL = (
    f"SELECT thread_id, extra->'{PARENT_KEY}'->>'thread_id' FROM cubepi_threads "
    f"WHERE jsonb_typeof(extra) = 'object' AND extra ? '{PARENT_KEY}'"
)

#: Each fork's source and the run it ends with (`supervisor.fork` records it); `{where}`
#: narrows it to some threads.
FORKS_SQL = (
    "SELECT thread_id, parent_thread_id, CASE WHEN jsonb_typeof(extra) = 'object' "
    "THEN extra->'fork'->>'after_run_id' END FROM cubepi_threads "
    "WHERE parent_thread_id IS NOT NULL{where}"
)

#: Whether each thread's newest run is open.
RUNS_SQL = (
    "SELECT DISTINCT ON (thread_id) thread_id, completed_at IS NULL AS open "
    "FROM cubepi_runs{where} ORDER BY thread_id, claimed_at DESC, run_id DESC"
)


def relations(client: Any) -> list[str]:
    """The partitions of `cubepi_messages` (the table itself if it has none), in name order:
    each is aggregated by its own query (`PARTITION_SQL`)."""
    found = client.fetch(
        "SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'cubepi_messages'::regclass ORDER BY 1"
    )
    return [r[0] for r in found] or ["cubepi_messages"]
