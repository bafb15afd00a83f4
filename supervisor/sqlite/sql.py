"""The SQL: pure functions of the file's schema and of what a listing covers.

Nothing here touches a connection. `Scope` holds what varies between stores
(the columns the file has, the threads or id range or newest rows a listing
is limited to) and builds each statement from it once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from supervisor.sqlite.rows import ID_CHARS

JULIAN_UNIX_EPOCH = 2440587.5


def unix_time_sql(column: str) -> str:
    """SQL turning `created_at` into unix seconds, computed inside SQLite.

    The checkpointer writes julianday numbers; text timestamps and values
    already in unix seconds from other writers are understood too.
    """
    julian = f"(({column}) - {JULIAN_UNIX_EPOCH}) * 86400.0"
    return (
        f"CASE typeof({column}) "
        f"WHEN 'text' THEN (julianday({column}) - {JULIAN_UNIX_EPOCH}) * 86400.0 "
        f"WHEN 'null' THEN NULL "
        f"ELSE CASE WHEN {column} > 1e8 THEN {column} ELSE {julian} END END"
    )


# How `json.dumps(model.model_dump())` starts each kind of message: `role`
# first and, for tool results, `tool_call_id` second.
USER = '{"role": "user",'

ASSISTANT = '{"role": "assistant",'

TOOL_RESULT = '{"role": "tool_result", "tool_call_id": "'


def starts_as(text: str) -> dict[str, str]:
    """SQL tests that `text` starts as each role's message does, by role.

    The one place a row's role is read from its start: the first listing's
    aggregate and the row-by-row form both build on it.
    """
    # A range of text, not substr(): no copy of the start of each of 2,000,000 rows.
    # Every string from `start` up to `start` with its last character raised begins
    # with `start`; compared as bytes, whatever collation the column declares. The
    # most common kind first: half the rows of a busy database are tool results.
    starts = {"tool_result": TOOL_RESULT, "assistant": ASSISTANT, "user": USER}
    return {
        role: f"({text} COLLATE BINARY >= '{start}' "
        f"AND {text} COLLATE BINARY < '{start[:-1]}{chr(ord(start[-1]) + 1)}')"
        for role, start in starts.items()
    }


def in_order_sql(t: str = "") -> str:
    """Whether a thread's stored times (`temp.listing` alias `t`) convert to unix seconds
    in order: all numbers of one scale (julian days, or unix seconds past 1e8), or none."""
    newest, earliest = f"{t}activity", f"{t}earliest"
    return (
        f"({newest} IS NULL OR (typeof({newest}) IN ('integer', 'real') "
        f"AND typeof({earliest}) IN ('integer', 'real') "
        f"AND ({earliest} > 1e8 OR {newest} <= 1e8)))"
    )


#: A thread's newest time in unix seconds, from `temp.listing t`.
ACTIVITY = f"CASE WHEN {in_order_sql('t.')} THEN {unix_time_sql('t.activity')} ELSE t.exact END"

#: Roles by the kind number `_aggregate_sql` gives each row.
KINDS = (None, "user", "assistant", "tool_result", None, None, None, None)


@dataclass(frozen=True)
class Scope:
    """What a store reads: the schema's columns by table, and its limits."""

    #: The columns of each cubeloop table the file has.
    columns: dict[str, set[str]]
    #: Read only these threads (a command about one thread need not list 100,000).
    only: frozenset[str] | None = None
    #: Read only the newest this many rows (a preview).
    newest: int | None = None
    #: (from, before): thread ids in [from, before) only, None an open end.
    range: tuple[str | None, str | None] | None = None

    def row_columns(self, m: str = "", named: bool = False) -> str:
        """The listing's row form (id, thread, time, role, detail) over table alias `m`
        (`named`: as row_id, thread_id, activity, role, detail)."""
        cols = self.columns["messages"]
        created = unix_time_sql(f"{m}created_at") if "created_at" in cols else "NULL"
        text = f"{m}message_json"
        head = len(TOOL_RESULT)  # a tool result's tool_call_id starts after this
        call_end = f"instr(substr({text}, {head + 1}, {ID_CHARS}), '\"')"
        tests = starts_as(text)
        roles = " ".join(f"WHEN {test} THEN '{role}'" for role, test in tests.items())
        names = iter(
            (" AS row_id", " AS thread_id", " AS activity", " AS role", " AS detail")
            if named
            else [""] * 5
        )
        return (
            f"{m}id{next(names)}, {m}thread_id{next(names)}, {created}{next(names)}, "
            f"CASE WHEN NOT json_valid({text}) THEN NULL {roles} ELSE '?' END{next(names)}, "
            f"CASE WHEN {tests['tool_result']} "
            f"THEN substr({text}, {head + 1}, {call_end} - 1) END{next(names)}"
        )

    @functools.cached_property
    def listing_sql(self) -> str:
        return f"SELECT {self.row_columns()} FROM messages WHERE id > ? AND id <= ? ORDER BY id"

    def aggregate_sql(self, first: bool) -> str:
        """Into `temp.listing`, per thread: count, (newest row << 3 | its kind), the
        newest and the earliest `created_at` as stored, newest assistant and
        tool-result rows, first row of an unknown kind, and the ids of the rows
        that are not assistant messages: those after the newest assistant row are
        the tail read for its answered calls, by id, with no second pass over the
        table. `first`: the first row too (the app's order).

        The kind is computed in a subquery SQLite does not flatten (`LIMIT
        -1`), so its sorter carries small numbers instead of whole messages.
        Kind 4 is a start we do not recognise: that thread is refolded.
        The time is grouped as stored and turned into unix seconds per thread
        (`_exact_activity`): per row, that conversion was a seventh of the pass.
        """
        cols = self.columns["messages"]
        created = "created_at" if "created_at" in cols else "NULL"
        tests = starts_as("message_json").items()
        kinds = " ".join(f"WHEN {test} THEN {KINDS.index(role)}" for role, test in tests)
        kind = f"CASE {kinds} ELSE 4 END"
        return (
            "CREATE TEMP TABLE listing AS SELECT thread_id, count(*) AS count, "
            + ("min(id) AS first, " if first else "")
            + "max(id * 8 + k) AS last, max(c) AS activity, min(c) AS earliest, "
            "NULL AS exact, "
            "max(id) FILTER (WHERE k = 2) AS assistant, "
            "max(id) FILTER (WHERE k = 3) AS result, "
            "min(id) FILTER (WHERE k = 4) AS strange, "
            "group_concat(id) FILTER (WHERE k != 2) AS others "
            f"FROM (SELECT id, thread_id, {created} AS c, {kind} AS k "
            f"FROM messages WHERE id > ? AND id <= ?{self.range_sql} LIMIT -1) "
            "GROUP BY thread_id"
        )

    @functools.cached_property
    def range_sql(self) -> str:
        """The `thread_range` test (parameters `_range_args`), compared as bytes: the
        order `stream` hands threads out in."""
        low, high = self.range or (None, None)
        return (" AND thread_id COLLATE BINARY >= ?" if low is not None else "") + (
            " AND thread_id COLLATE BINARY < ?" if high is not None else ""
        )

    @property
    def range_args(self) -> tuple[str, ...]:
        return tuple(end for end in self.range or () if end is not None)

    def in_range(self, thread_id: str) -> bool:
        low, high = self.range or (None, None)
        return (low is None or thread_id >= low) and (high is None or thread_id < high)

    @functools.cached_property
    def threads_sql(self) -> str:
        """The listing's row form for some threads (a JSON array of ids) in an id range.

        With an index on `messages(thread_id, ...)` (`agent-supervisor
        index`) this reads those threads' rows only; without, one scan.
        """
        return self.listing_sql.replace(
            "WHERE id > ? AND id <= ?",
            "WHERE id > ? AND id <= ? AND thread_id IN (SELECT value FROM json_each(?))",
        )

    def answered_sql(self, source: str) -> str:
        """Per thread, over the rows of `source` (FROM and WHERE over alias `m`): the
        tool_call_ids answered (a JSON array), whether a row is not valid JSON, and
        whether one needs the exact path (a start we do not know, an id cut or escaped).

        Grouped inside SQLite: Python sees a row per thread, not per message.
        """
        return (
            "SELECT thread_id, json_group_array(detail) FILTER "
            "(WHERE role = 'tool_result' AND detail IS NOT NULL), max(role IS NULL), "
            "max(role = '?' OR (role = 'tool_result' AND (coalesce(detail, '') = '' "
            "OR instr(detail, char(92)) > 0))) "
            f"FROM (SELECT {self.row_columns('m.', named=True)} {source}) GROUP BY thread_id"
        )
