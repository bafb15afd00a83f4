"""asyncpg for synchronous callers, and one-line errors for people.

The store is called from the CLI and from the UI's thread workers, never
from an event loop of its own, so it talks to asyncpg through a private
loop on a daemon thread. Every connection says who it is in
`application_name` (pid and host), which is how another supervisor names
the holder of a lease.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from supervisor.store import StoreError
from supervisor.urls import host_name, redact

T = TypeVar("T")

#: Seconds to wait for the server before giving up with a clear error.
CONNECT_TIMEOUT = 10.0

#: Postgres keeps 63 bytes of an application_name.
_NAME_BYTES = 63

APPLICATION = "agent-supervisor"


def application_name(role: str = "") -> str:
    """`agent-supervisor 4242@build-3` (with a role: `agent-supervisor lease 4242@build-3`)."""
    head = f"{APPLICATION} {role} " if role else f"{APPLICATION} "
    name = f"{head}{os.getpid()}@{host_name()}"
    return name.encode("utf-8")[:_NAME_BYTES].decode("utf-8", "ignore")


def parse_application_name(name: str | None) -> dict[str, Any] | None:
    """The pid and host an `application_name` of ours names, or None if not ours."""
    if not name or not name.startswith(APPLICATION + " "):
        return None
    who = name.rsplit(" ", 1)[-1]
    pid, _, host = who.partition("@")
    return {"pid": int(pid) if pid.isdigit() else pid, "host": host or "?"}


class PgError(StoreError):
    """A server we cannot use; the message is one line for the user (a `StoreError`: every
    command says it so, whichever of its reads or writes met it)."""


def first_line(exc: BaseException) -> str:
    """An exception's first line (its type's name if it says nothing)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe(dsn: str, exc: BaseException) -> str:
    """One line: where, and what went wrong, without the password."""
    text = first_line(exc)
    if isinstance(exc, OSError | asyncio.TimeoutError) and not str(exc).strip():
        text = "cannot connect"
    return f"{redact(dsn)}: {text}"


#: The session of every connection of ours (`connect`) and of a run's checkpointer's
#: (`Location.open_checkpointer`): they outlive idle spells (a lease's while a tool runs,
#: a run's between turns, the app's between looks). No idle timeout may end one, and the
#: server keeps its TCP connection alive through proxies. A server that ends a connection
#: as the client picks it up again fails that query ("closed in the middle of
#: operation"): a reconnect, or a pool, notices only a connection already closed.
KEPT_SESSION = {
    "idle_session_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    "tcp_keepalives_idle": "30",
    "tcp_keepalives_interval": "10",
    "tcp_keepalives_count": "3",
}


async def open_kept(opener: Callable[[dict[str, str]], Awaitable[T]]) -> T:
    """`opener(settings)` with `KEPT_SESSION`; before PostgreSQL 14 (no
    `idle_session_timeout` to turn off) without that one setting."""
    settings = dict(KEPT_SESSION)
    try:
        return await opener(settings)
    except Exception as exc:
        # The server's own words: an error that only quotes the URL (which may name the
        # setting) is no sign of an old server.
        if 'configuration parameter "idle_session_timeout"' not in str(exc):
            raise
    del settings["idle_session_timeout"]
    return await opener(settings)


async def connect(dsn: str, role: str = "", **settings: str) -> Any:
    """An asyncpg connection named after this process, its session kept (`KEPT_SESSION`,
    which `settings` may add to); `PgError` when it cannot be had. Every connection of
    ours is kept: a supervisor holds its connections for hours, idle between looks, and
    a server's idle timeout ending one as a query went out failed that query (a listing,
    a look of the watcher)."""
    return await open_kept(lambda kept: _connect(dsn, role, {**kept, **settings}))


async def _connect(dsn: str, role: str, settings: dict[str, str]) -> Any:
    import asyncpg

    # JIT compiles a big plan for up to a second before running it: our queries are
    # short, and a listing over 64 partitions looks big to the planner.
    server_settings = {"application_name": application_name(role), "jit": "off", **settings}
    try:
        return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT, server_settings=server_settings)
    except (TimeoutError, OSError, asyncpg.PostgresError, ValueError) as exc:
        raise PgError(describe(dsn, exc)) from None
    except asyncpg.InterfaceError as exc:
        raise PgError(describe(dsn, exc)) from None


#: The longest a query may take: a server that stops answering (SIGSTOP, a dead link)
#: must not hang a watcher past its SIGTERM.
CALL_TIMEOUT = 120.0

#: How long a client tries to get its connection back after losing it, and the longest
#: pause between two tries (a restart takes seconds; a call never loops for ever).
RECONNECT_SECONDS = 30.0
RECONNECT_PAUSE = 5.0


def connection_lost(exc: BaseException) -> bool:
    """Whether a query failed because its connection is gone, though asyncpg may not have
    seen the socket close yet: the server's goodbye (class 57P: shut down, terminated;
    08: connection errors), or a connection left mid-answer by it ("cannot switch to
    state ...; another operation is in progress")."""
    import asyncpg

    if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.ConnectionDoesNotExistError):
        return True
    if isinstance(exc, asyncpg.InterfaceError) and "another operation" in str(exc):
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return state.startswith(("57P", "08"))


class SyncClient:
    """One asyncpg connection driven from any thread, one call at a time.

    The connection lives on a private event loop in a daemon thread; `call`
    runs a query on it and waits. A connection the server ended (a restart,
    `idle_session_timeout`, `pg_terminate_backend`) is made again, with a
    backoff, for up to `RECONNECT_SECONDS`, and the query run once more; the
    loss and the return are noted once each (`take_notices`). Closing stops
    the thread.
    """

    def __init__(self, dsn: str, role: str = "", **settings: str) -> None:
        self.dsn = dsn
        self._role, self._settings = role, settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="agent-supervisor-pg", daemon=True
        )
        self._thread.start()
        # A client dropped without `close` stops its thread when it is collected.
        self._finalizer = weakref.finalize(self, _stop_loop, self._loop, self._thread)
        # Re-entrant: `close` takes it too, so it waits for a call in flight (a coroutine
        # submitted to a loop that `close` stopped would never run, its caller waiting forever).
        self._lock = threading.RLock()
        self._closed = False
        self._notices: list[str] = []
        try:
            self.conn = self._submit(self._open())
        except BaseException:
            self._stop()
            raise

    async def _open(self) -> Any:
        return await connect(self.dsn, self._role, **self._settings)

    def take_notices(self) -> list[str]:
        """What happened to the connection since the last call, once each."""
        notices, self._notices = self._notices, []
        return notices

    def call(self, method: str, sql: str, *args: Any) -> Any:
        """`conn.<method>(sql, *args)`, on a connection made again if the server ended it."""
        with self._lock:
            try:
                return self._submit(getattr(self.conn, method)(sql, *args, timeout=CALL_TIMEOUT))
            except Exception as exc:
                if not (self.conn.is_closed() or connection_lost(exc)):
                    raise
            self.conn.terminate()  # the server's goodbye may not have closed it yet
            self._reconnect()
            return self._submit(getattr(self.conn, method)(sql, *args, timeout=CALL_TIMEOUT))

    def _reconnect(self) -> None:
        import time

        self._notices.append(f"{redact(self.dsn)}: lost the connection; connecting again")
        deadline = time.monotonic() + RECONNECT_SECONDS
        pause = 0.2
        while True:
            try:
                self.conn = self._submit(self._open())
            except PgError as exc:
                if time.monotonic() + pause > deadline:
                    raise PgError(
                        f"{exc} (no connection for {RECONNECT_SECONDS:g}s after it was lost)"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, RECONNECT_PAUSE)
                continue
            self._notices.append(f"{redact(self.dsn)}: connected again")
            return

    def _submit(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise PgError(f"{redact(self.dsn)}: the connection was closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one coroutine on the connection's loop; its result, or its exception."""
        with self._lock:
            return self._submit(coro)

    def fetch_soon(self, sql: str, *args: Any) -> concurrent.futures.Future[list[Any]]:
        """Start a fetch and return at once: the server works on it while the caller
        does something else. Only the next call may be to `fetch_soon`'s `result()`
        (one connection runs one query at a time)."""
        return asyncio.run_coroutine_threadsafe(self.conn.fetch(sql, *args), self._loop)

    def fetch(self, sql: str, *args: Any) -> list[Any]:
        return self.call("fetch", sql, *args)

    def fetchval(self, sql: str, *args: Any) -> Any:
        return self.call("fetchval", sql, *args)

    def fetchrow(self, sql: str, *args: Any) -> Any:
        return self.call("fetchrow", sql, *args)

    def execute(self, sql: str, *args: Any) -> str:
        return self.call("execute", sql, *args)

    def close(self) -> None:
        with self._lock:  # after the call in flight, if any; every later one is refused
            if self._loop.is_closed() or self._closed:
                return
            conn = getattr(self, "conn", None)
            if conn is not None:
                try:
                    self._submit(asyncio.wait_for(conn.close(), 2.0))
                except Exception:
                    conn.terminate()
            self._closed = True
            self._stop()

    def _stop(self) -> None:
        self._finalizer()


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    """Stop a client's loop and its thread, and close the loop (once)."""
    if loop.is_closed():
        return
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()
