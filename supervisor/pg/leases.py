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

A lease held by a connection is lost with it, and servers end connections
on their own: `idle_session_timeout` (the lease connection is idle while a
tool runs), a restart, `pg_terminate_backend`, a proxy or NAT dropping an
idle TCP connection. So the lease connection turns the idle timeouts off for
its session and keeps TCP alive both ways, the runner asks `alive` every
second (a termination listener answers at once, a `SELECT 1` catches a
silent drop), and a lost lease is taken back on a new connection
(`retake`) before the run starts another tool call (`supervisor.runner`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from supervisor.leases import LeaseHeld
from supervisor.pg.client import SyncClient, connect, parse_application_name
from supervisor.urls import host_name

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


#: Seconds before a held lease key no thread hashes to is looked up again: a run takes its
#: lease before its thread's first row exists (a new thread), and a key named nothing once
#: stayed so (the thread never showed as held). Not every look: it scans the threads.
NAME_AGAIN = 2.0
#: How long the lease's heartbeat may take before the connection counts as lost.
HEARTBEAT_TIMEOUT = 5.0


@dataclass
class PgLease:
    """A held lease: its connection holds the lock, and hears abort requests."""

    thread_id: str
    conn: Any
    backend: int
    since: float
    requested: dict[str, Any] | None = None
    #: The connection ended (its termination listener said so).
    lost: bool = False
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
        #: Held keys no thread row hashed to yet, and when to ask again (`NAME_AGAIN`).
        self._unnamed: dict[int, float] = {}

    # -- holding --------------------------------------------------------

    async def acquire(self, thread_id: str) -> PgLease:
        """Take the thread's lease now, or raise `LeaseHeld` naming the holder."""
        lease = PgLease(thread_id, None, 0, time.time())
        await self._take(lease)
        return lease

    async def _take(self, lease: PgLease) -> None:
        """Lock the lease's key on a new connection of its own; `LeaseHeld` if another has it."""
        conn = await _lease_connection(self.dsn)
        try:
            thread_id = lease.thread_id
            got = await conn.fetchval(
                "SELECT pg_try_advisory_lock($1, hashtext($2))", LEASE_CLASS, thread_id
            )
            if not got:
                row = await conn.fetchrow(
                    _HOLDERS_SQL + " AND l.objid::bigint = " + _KEY_SQL.format("$1"), thread_id
                )
                raise LeaseHeld(thread_id, _holder(row) if row else {})

            def heard(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
                request = _parse(payload)
                if (
                    request.get("thread_id") == thread_id
                    and request.get("backend") == lease.backend
                ):
                    by = request.get("by")
                    lease.requested = by if isinstance(by, dict) else {}

            def ended(_conn: Any) -> None:
                lease.lost = True

            await conn.add_listener(ABORT_CHANNEL, heard)
            conn.add_termination_listener(ended)
            lease.conn, lease.backend, lease.lost, lease._listener = (
                conn,
                conn.get_server_pid(),
                False,
                heard,
            )
        except BaseException:
            await _close(conn)
            raise

    async def alive(self, lease: PgLease) -> bool:
        """Whether the lease's connection (and so its lock) is still there."""
        if lease.lost or lease.conn is None or lease.conn.is_closed():
            return False
        try:
            await asyncio.wait_for(lease.conn.fetchval("SELECT 1"), HEARTBEAT_TIMEOUT)
        except (TimeoutError, Exception):
            lease.lost = True
        return not lease.lost

    async def retake(self, lease: PgLease) -> None:
        """Take a lost lease back on a new connection; `LeaseHeld` if another process took it
        meanwhile, `PgError` while the server cannot be reached."""
        if lease.conn is not None:
            lease.conn.terminate()
        await self._take(lease)

    async def release(self, lease: PgLease) -> None:
        if lease.conn is not None:
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
        row = self._sync().fetchrow(
            _HOLDERS_SQL + " AND l.objid::bigint = " + _KEY_SQL.format("$1"), thread_id
        )
        return _holder(row) if row else None

    def live(self) -> dict[str, dict[str, Any]]:
        """Every thread whose lease is held right now, by anyone, with its holder."""
        client = self._sync()
        rows = client.fetch(_HOLDERS_SQL)
        if not rows:
            return {}
        now = time.monotonic()
        unknown = [
            r["key"]
            for r in rows
            if r["key"] not in self._names and self._unnamed.get(r["key"], -NAME_AGAIN) <= now
        ]
        if unknown:  # which threads hash to each key (the server's hashtext), once found
            found: dict[int, list[str]] = {}
            for r in client.fetch(
                "SELECT thread_id, " + _KEY_SQL.format("thread_id") + " AS key "
                "FROM cubepi_threads WHERE "
                + _KEY_SQL.format("thread_id")
                + " = ANY($1::bigint[])",
                unknown,
            ):
                found.setdefault(r["key"], []).append(r["thread_id"])
            for key in unknown:
                if key in found:
                    self._names[key] = found[key]
                    self._unnamed.pop(key, None)
                else:  # a lease taken before its thread's first row: asked again later
                    self._unnamed[key] = now + NAME_AGAIN
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

    def tidy(self) -> int:
        """Nothing to tidy: an advisory lock leaves nothing behind."""
        return 0

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


async def _lease_connection(dsn: str) -> Any:
    """A connection for one lease: idle timeouts off for its session, TCP kept alive."""
    conn = await connect(dsn, "lease")
    _keep_alive(conn)
    return conn


def _keep_alive(conn: Any) -> None:
    """TCP keepalives on the client's side of the socket (a Unix socket needs none)."""
    import socket

    sock = conn._transport.get_extra_info("socket") if conn._transport else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


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
