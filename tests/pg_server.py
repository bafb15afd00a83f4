"""A real PostgreSQL server for the tests and benches, started from scratch.

`initdb` into a temporary directory and `pg_ctl start` on a Unix socket and
a free 127.0.0.1 port, fsync off (it is thrown away). The tests put that
directory in memory (`memory_scratch`) when the machine has room there:
on disk, `CREATE DATABASE` took 0.4-0.8 s and the Postgres tests most of
the suite's minutes; in /dev/shm it takes 0.05-0.09 s. initdb refuses to run
as root, so as root the server runs as `nobody`. A template database holds
cubeloop's schema, made the way a host's migration makes it; each test gets
a fresh copy (`CREATE DATABASE ... TEMPLATE`, a few tens of milliseconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

TEMPLATE = "cubeloop_template"


class NoServer(Exception):
    """Why no server could be started (shown as the skip reason)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (root / name).exists():
            return str(root / name)
    raise NoServer(f"{name} not found (install PostgreSQL, e.g. Debian's postgresql package)")


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser is None:
        raise NoServer("running as root and runuser is missing: initdb refuses root")
    return [runuser, "-u", "nobody", "--", *cmd]


#: Free space a memory filesystem needs before the tests' server goes there: the
#: server, the templates and the databases of the tests running at once.
MEMORY_NEEDED = 2 << 30


def memory_scratch() -> Path | None:
    """/dev/shm when it exists with room to spare (containers often give it 64 MB)."""
    shm = Path("/dev/shm")
    try:
        return shm if shutil.disk_usage(shm).free >= MEMORY_NEEDED else None
    except OSError:
        return None


class Server:
    """One running server; `dsn(db)` connects over TCP as the `postgres` superuser.

    `scratch` is the directory its files go under (the system's temporary
    directory when None).
    """

    def __init__(self, scratch: Path | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="agent-supervisor-pg-", dir=scratch))
        self.data = self.root / "data"
        self.port = _free_port()
        os.chmod(self.root, 0o777)
        self._started = False

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        initdb = _binary("initdb")
        run = lambda cmd: subprocess.run(  # noqa: E731
            _as_server_user(cmd), capture_output=True, text=True, timeout=120
        )
        done = run([initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        if done.returncode != 0:
            raise NoServer(f"initdb failed: {done.stderr.strip()[-300:]}")
        done = self._pg_ctl_start()
        if done.returncode != 0:
            log = (
                (self.root / "log").read_text(errors="replace")[-300:]
                if (self.root / "log").exists()
                else ""
            )
            raise NoServer(f"pg_ctl start failed: {done.stderr.strip()[-200:]} {log}")
        self._started = True
        asyncio.run(self._make_template())

    def _pg_ctl_start(self) -> subprocess.CompletedProcess[str]:
        options = (
            f"-k {self.root} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        command = [_binary("pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.root / "log")]
        return subprocess.run(
            _as_server_user([*command, "-o", options, "start"]),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def restart(self, down: float = 0.0) -> None:
        """Stop the server at once (every connection dropped, as a crash or `systemctl
        restart` does), keep it down `down` seconds, start it again."""
        import time

        subprocess.run(
            _as_server_user([_binary("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]),
            capture_output=True,
            timeout=60,
        )
        time.sleep(down)
        done = self._pg_ctl_start()
        if done.returncode != 0:
            raise NoServer(f"pg_ctl start failed on restart: {done.stderr.strip()[-200:]}")

    async def _make_template(self) -> None:
        import asyncpg

        from supervisor.pg.schema import create_cubeloop_schema

        conn = await asyncpg.connect(self.dsn())
        try:
            await conn.execute(f"CREATE DATABASE {TEMPLATE}")
        finally:
            await conn.close()
        conn = await asyncpg.connect(self.dsn(TEMPLATE))
        try:
            await create_cubeloop_schema(conn)
        finally:
            await conn.close()
        from cubeloop.checkpointer.postgres import PostgresCheckpointer

        async with PostgresCheckpointer(self.dsn(TEMPLATE), min_pool_size=1, max_pool_size=1):
            pass  # cubeloop verifies the schema it will be given

    def new_database(self, *, schema: bool = True) -> str:
        """A fresh database (with cubeloop's schema unless told not to); its DSN."""
        return self._create(TEMPLATE if schema else "template0")

    def copy_database(self, dsn: str) -> str:
        """A copy of one of this server's databases (nobody may be connected to it)."""
        return self._create(dsn.rsplit("/", 1)[-1])

    def _create(self, template: str) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        self._admin(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        """Drop one of this server's databases, closing whatever is still connected."""
        self._admin(f"DROP DATABASE IF EXISTS {dsn.rsplit('/', 1)[-1]} WITH (FORCE)")

    def _admin(self, sql: str) -> None:
        """One statement on the `postgres` database (CREATE and DROP DATABASE)."""

        async def run() -> None:
            import asyncpg

            conn = await asyncpg.connect(self.dsn())
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(run())

    def stop(self) -> None:
        if self._started:
            with contextlib.suppress(Exception):
                subprocess.run(
                    _as_server_user(
                        [_binary("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
                    ),
                    capture_output=True,
                    timeout=60,
                )
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running_server() -> Iterator[Server]:
    server = Server()
    try:
        server.start()
        yield server
    finally:
        server.stop()
