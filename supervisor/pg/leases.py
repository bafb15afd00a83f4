"""Leases every host sees: a session-level advisory lock per thread.

A lease is `pg_try_advisory_lock(LEASE_CLASS, hashtext(thread_id))` taken on
a connection of its own and held for the run. The server frees it when that
connection ends, however the holder dies (SIGKILL included), so a lease
never outlives its supervisor, on any machine.

cubeloop itself takes `pg_advisory_xact_lock(hashtext(thread_id))` around
every append: the one-key form. Ours is the two-key form with a class of
our own, a separate lock space, so holding a lease never blocks the
thread's own writes.

Who holds a lease: `pg_locks` joined with `pg_stat_activity`. Our
connections name themselves (`agent-supervisor lease PID@HOST`), so the
holder is shown by the client's pid and host, not the server's backend pid.

Another supervisor stops a run it does not hold by `NOTIFY` on
`agent_supervisor_abort`, naming the holder's backend pid; the holder's
lease connection listens and aborts that one thread gracefully.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from supervisor.leases import LeaseHeld
from supervisor.location import host_name
from supervisor.pg.client import SyncClient, connect, parse_application_name

#: Our advisory-lock class (the first key of the two-key form): "AgSu".
LEASE_CLASS = 0x41675375

#: The channel abort requests travel on.
ABORT_CHANNEL = "agent_supervisor_abort"

_HOLDERS_SQL = f"""
SELECT l.objid::bigint AS key, a.pid AS backend, a.application_name AS name,
       extract(epoch FROM a.backend_start)::float8 AS since
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.classid = {LEASE_CLASS} AND l.objsubid = 2 AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

#: hashtext() as pg_locks shows it (an oid: the int4 read unsigned).
_KEY_SQL = "(hashtext({0})::bigint & 4294967295)"


@dataclass
class PgLease:
    """A held lease: its connection holds the lock, and hears abort requests."""

    thread_id: str
    conn: Any
    backend: int
    since: float
    requested: dict[str, Any] | None = None
    _listener: Any = field(default=None, repr=False)


def _holder(row: Any) -> dict[str, Any]:
    who = parse_application_name(row["name"]) or {"pid": f"backend {row['backend']}", "host": "?"}
    return {**who, "since": row["since"], "backend": row["backend"]}


class PgLeaseBoard:
    """Advisory-lock leases on one database; same methods as `leases.FileLeaseBoard`."""

    def __init__(self, dsn: str, client: SyncClient | None = None) -> None:
        self.dsn = dsn
        self._client = client
        self._own_client = client is None
        #: lock key -> thread ids with that hash (hashtext is computed by the server).
        self._names: dict[int, list[str]] = {}

    # -- holding --------------------------------------------------------

    async def acquire(self, thread_id: str) -> PgLease:
        """Take the thread's lease now, or raise `LeaseHeld` naming the holder."""
        conn = await connect(self.dsn, "lease")
        try:
            got = await conn.fetchval(
                "SELECT pg_try_advisory_lock($1, hashtext($2))", LEASE_CLASS, thread_id
            )
            if not got:
                row = await conn.fetchrow(
                    _HOLDERS_SQL + " AND l.objid::bigint = " + _KEY_SQL.format("$1"), thread_id
                )
                raise LeaseHeld(thread_id, _holder(row) if row else {})
            lease = PgLease(thread_id, conn, conn.get_server_pid(), time.time())

            def heard(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
                request = _parse(payload)
                if (
                    request.get("thread_id") == thread_id
                    and request.get("backend") == lease.backend
                ):
                    by = request.get("by")
                    lease.requested = by if isinstance(by, dict) else {}

            lease._listener = heard
            await conn.add_listener(ABORT_CHANNEL, heard)
            return lease
        except BaseException:
            await _close(conn)
            raise

    async def release(self, lease: PgLease) -> None:
        await _close(lease.conn)

    def abort_requested(self, lease: PgLease) -> dict[str, Any] | None:
        """An abort request meant for this lease, or None; clears it."""
        request, lease.requested = lease.requested, None
        return request

    # -- looking --------------------------------------------------------

    def _sync(self) -> SyncClient:
        if self._client is None:
            self._client = SyncClient(self.dsn, "leases")
        return self._client

    def held_elsewhere(self, thread_id: str) -> dict[str, Any] | None:
        """The holder of the thread's live lease, or None."""
        row = self._sync().run(
            self._sync().conn.fetchrow(
                _HOLDERS_SQL + " AND l.objid::bigint = " + _KEY_SQL.format("$1"), thread_id
            )
        )
        return _holder(row) if row else None

    def live(self) -> dict[str, dict[str, Any]]:
        """Every thread whose lease is held right now, by anyone, with its holder."""
        client = self._sync()
        rows = client.fetch(_HOLDERS_SQL)
        if not rows:
            return {}
        unknown = [r["key"] for r in rows if r["key"] not in self._names]
        if unknown:  # once per key: which threads hash to it (the server's hashtext)
            for key in unknown:
                self._names[key] = []
            for r in client.fetch(
                "SELECT thread_id, " + _KEY_SQL.format("thread_id") + " AS key "
                "FROM cubepi_threads WHERE "
                + _KEY_SQL.format("thread_id")
                + " = ANY($1::bigint[])",
                unknown,
            ):
                self._names[r["key"]].append(r["thread_id"])
        return {t: _holder(r) for r in rows for t in self._names.get(r["key"], ())}

    async def stop_elsewhere(
        self, thread_id: str, timeout: float = 30.0, poll: float = 0.1
    ) -> tuple[str, dict[str, Any] | None]:
        """Ask the holder (on whatever host) to abort, and wait for the lease to be freed."""
        holder = await asyncio.to_thread(self.held_elsewhere, thread_id)
        if holder is None:
            return "not running", None
        request = {
            "thread_id": thread_id,
            "backend": holder.get("backend"),
            "by": {"pid": os.getpid(), "host": host_name()},
            "at": time.time(),
        }
        conn = await connect(self.dsn, "abort")  # the store's connection is read-only
        try:
            await conn.execute("SELECT pg_notify($1, $2)", ABORT_CHANNEL, json.dumps(request))
        finally:
            await _close(conn)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(poll)
            if await asyncio.to_thread(self.held_elsewhere, thread_id) is None:
                return "stopped", holder
        return "still running", holder

    async def announce_watcher(self) -> None:
        """Nothing to take: a watcher's connections name it (`agent-supervisor watch ...`)."""

    def watchers(self, live: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The live watchers of this database, on any host, by their connections' names.

        (`live` is the file board's shortcut; a watcher here holds no lease.)
        """
        rows = self._sync().fetch(
            "SELECT DISTINCT ON (application_name) application_name, "
            "extract(epoch FROM backend_start)::float8 AS since FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE $1 "
            "ORDER BY application_name, backend_start",
            "agent-supervisor watch %",
        )
        found = []
        for r in rows:
            who = parse_application_name(r[0])
            if who is not None:
                found.append({**who, "since": r[1]})
        return found

    def close(self) -> None:
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None


async def _close(conn: Any) -> None:
    try:
        await asyncio.wait_for(conn.close(), 2.0)
    except Exception:
        conn.terminate()


def _parse(payload: str) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
