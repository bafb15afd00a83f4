"""Token sums from cubeloop's Postgres tables: assistant payloads decoded here.

cubeloop stores each message as msgpack (`payload BYTEA`), which the server
cannot read: the assistant rows are fetched a partition at a time and their
`usage` summed in Python, by thread, run, day and model (`Store.usage_rows`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from supervisor.pg import sql
from supervisor.pg.payload import decode_payload
from supervisor.usage import Usage, UsageRow, model_of, usage_of


def usage_rows(
    client: Any,
    since: float | None = None,
    threads: Collection[str] | None = None,
    days: bool = False,
) -> list[UsageRow]:
    where = ["role = 'assistant'"]
    args: list[Any] = []
    if since is not None:
        args.append(since)
        where.append(f"created_at >= to_timestamp(${len(args)})")
    if threads is not None:
        args.append(sorted(threads))
        where.append(f"thread_id = ANY(${len(args)}::text[])")
    sums: dict[tuple[tuple[Any, ...], str | None], Usage] = {}
    for relation in sql.relations(client):
        rows = client.fetch(
            "SELECT thread_id, run_id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), "
            f"payload FROM {relation} WHERE {' AND '.join(where)}",
            *args,
        )
        for thread_id, run_id, day, payload in rows:
            message, _ = decode_payload(payload, "assistant")
            if message is None:
                continue  # a corrupt row: the listing names it
            key = ((thread_id, run_id, day if days else None), model_of(message))
            have = sums.get(key)
            if have is None:
                have = sums[key] = Usage()
            have.add(usage_of(message))
        del rows
    return [(key, model, u) for (key, model), u in sums.items()]


def copied_runs(client: Any) -> set[tuple[str, str]]:
    """(fork, run) of every run a fork copied from its source."""
    return {
        (r[0], r[1])
        for r in client.fetch(
            "SELECT r.thread_id, r.run_id FROM cubepi_threads t "
            "JOIN cubepi_runs r ON r.thread_id = t.thread_id "
            "JOIN cubepi_runs p ON p.thread_id = t.parent_thread_id AND p.run_id = r.run_id "
            "WHERE t.parent_thread_id IS NOT NULL"
        )
    }
