"""Token sums from a SQLite file's assistant messages, grouped inside SQLite.

One pass over the table: each assistant row's `usage` object is read by
SQLite's JSON functions and summed per group and model, so Python sees a row
per group, not per message. A row SQLite cannot read as JSON counts as no
usage (the listing names corrupt rows).
"""

from __future__ import annotations

import json
from collections.abc import Collection

from supervisor.priority import at_low_priority
from supervisor.sqlite.connection import Connection
from supervisor.sqlite.files import tolerant_text
from supervisor.sqlite.sql import starts_as, unix_time_sql
from supervisor.usage import Usage, UsageRow


def usage_rows(
    db: Connection,
    columns: set[str],
    since: float | None = None,
    threads: Collection[str] | None = None,
    rows: tuple[int, int] | None = None,
    days: bool = False,
) -> list[UsageRow]:
    """`Store.usage_rows` for a SQLite file (`columns`: the messages table's; `rows`: only
    the message ids in (after, upto], the rows a running tally has not seen; `days`: the
    UTC day as a key too, else None).

    Each reply is parsed twice in all (its validity, then the model and usage taken out
    together as one small array): every further JSON function on the whole message is
    another parse, and at 100,000 threads five of them took 20 s.
    """
    created = unix_time_sql("created_at") if "created_at" in columns else "NULL"
    run = "run_id" if "run_id" in columns else "NULL"
    day = f"date({created}, 'unixepoch')" if days else "NULL"
    where = [starts_as("message_json")["assistant"], "json_valid(message_json)"]
    args: list[object] = []
    if since is not None:
        where.append(f"{created} >= ?")
        args.append(since)
    if threads is not None:
        where.append("thread_id IN (SELECT value FROM json_each(?))")
        args.append(json.dumps(sorted(threads)))
    if rows is not None:
        where.append("id > ? AND id <= ?")
        args += list(rows)
    names = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
    each = ", ".join(
        f"max(coalesce(CAST(u ->> '$.{name}' AS INTEGER), 0), 0) AS t{n}"
        for n, name in enumerate(names)
    )
    # Subqueries SQLite does not flatten (`LIMIT -1`): the GROUP BY's sorter then carries
    # four numbers a row, not the message whose JSON they come from.
    sql = (
        "SELECT k0, k1, k2, model, sum(t0), sum(t1), sum(t2), sum(t3), count(*) FROM ("
        f"SELECT k0, k1, k2, model, {each} FROM ("
        "SELECT k0, k1, k2, CASE WHEN json_type(a, '$[0]') = 'text' THEN a ->> '$[0]' END "
        "AS model, a -> '$[1]' AS u FROM ("
        f"SELECT thread_id AS k0, {run} AS k1, {day} AS k2, "
        "json_extract(message_json, '$.model_id', '$.usage') AS a "
        f"FROM messages WHERE {' AND '.join(where)} LIMIT -1)) LIMIT -1) "
        "GROUP BY k0, k1, k2, model"
    )
    found: list[UsageRow] = []
    for row in at_low_priority(lambda: db.conn.execute(sql, args).fetchall()):
        thread, run_id, day_of, model, i, o, r, w, n = row
        key = (_text(thread), _text(run_id), _text(day_of))
        found.append((key, _text(model), Usage(i, o, r, w, n)))
    return found


def _text(value: object) -> str | None:
    """A key as text (a connection reading tolerantly hands bytes back)."""
    if value is None:
        return None
    return tolerant_text(value) if isinstance(value, bytes) else str(value)


def copied_runs(db: Connection, tables: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(fork, run) of every run a fork copied from its source (`usage.grouped` leaves them
    to the source: they were spent once)."""
    if "parent_thread_id" not in tables.get("thread_extra", set()) or "runs" not in tables:
        return set()
    return {
        (_text(t) or "", _text(r) or "")
        for t, r in db.conn.execute(
            "SELECT r.thread_id, r.run_id FROM thread_extra e "
            "JOIN runs r ON r.thread_id = e.thread_id "
            "JOIN runs p ON p.thread_id = e.parent_thread_id AND p.run_id = r.run_id "
            "WHERE e.parent_thread_id IS NOT NULL"
        )
    }
