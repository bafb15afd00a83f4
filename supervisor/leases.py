"""Per-thread leases that other supervisor processes can see.

A lease is an exclusive `flock` on a small file named after the thread, in a
directory beside the database (`DB.leases/`). The kernel drops the lock when
its holder dies, however it dies, so a lease can never outlive a crashed
supervisor. The file also records who holds it (pid, host, since) for the
message another process shows when it is refused. flock is per machine: two
supervisors on different hosts sharing a network filesystem do not see each
other's leases.

Another process stops a run it does not hold by asking its holder: it
writes an abort request beside the lease (`request_abort`), naming the
holder it means (pid and lease time, so a request never outlives the run it
was for); the holder's runner watches for it and aborts that one thread
gracefully (`abort_requested`). `stop_elsewhere` does the asking side's
waiting.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.location import host_name

#: Leases under this name say a watcher runs (`agent-supervisor watch`); no thread has it.
WATCHER_PREFIX = "\x00agent-supervisor watch "


def leases_dir(database: str | os.PathLike[str]) -> Path:
    db = Path(database)
    return db.with_name(db.name + ".leases")


def lease_path(directory: Path, thread_id: str) -> Path:
    import hashlib  # here, not at the top: a listing reads leases, it does not name them

    digest = hashlib.sha256(thread_id.encode("utf-8")).hexdigest()[:32]
    return directory / f"{digest}.lock"


def abort_path(lease: Path) -> Path:
    return lease.with_suffix(".abort")


class LeaseHeld(Exception):
    """Another process holds the thread's lease."""

    def __init__(self, thread_id: str, holder: dict[str, Any]) -> None:
        self.thread_id = thread_id
        self.holder = holder
        super().__init__(f"{thread_id} is running in another supervisor ({holder_text(holder)})")


@dataclass
class Lease:
    """A held lease; `release()` (or process death) frees it."""

    thread_id: str
    path: Path
    fd: int
    since: float = 0.0

    def release(self) -> None:
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            abort_path(self.path).unlink()
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
        with contextlib.suppress(OSError):
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = -1


def acquire(directory: Path, thread_id: str) -> Lease:
    """Take the thread's lease now, or raise `LeaseHeld` naming the holder."""
    directory.mkdir(parents=True, exist_ok=True)
    path = lease_path(directory, thread_id)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(path)
        os.close(fd)
        raise LeaseHeld(thread_id, holder) from None
    record = {
        "thread_id": thread_id,
        "pid": os.getpid(),
        "host": host_name(),
        "since": time.time(),
    }
    with contextlib.suppress(OSError):  # a request meant for an earlier holder
        abort_path(path).unlink()
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode("utf-8"), 0)
    return Lease(thread_id, path, fd, record["since"])


def _read_holder(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def held_elsewhere(directory: Path, thread_id: str) -> dict[str, Any] | None:
    """The holder of a live lease on this thread, or None. Creates nothing."""
    path = lease_path(directory, thread_id)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_holder(path)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def live_leases(directory: Path) -> dict[str, dict[str, Any]]:
    """Every thread whose lease is held right now, by anyone, with its holder."""
    found: dict[str, dict[str, Any]] = {}
    try:
        paths = list(directory.glob("*.lock"))
    except OSError:
        return found
    for path in paths:
        holder = _read_holder(path)
        thread_id = holder.get("thread_id")
        if isinstance(thread_id, str) and held_elsewhere(directory, thread_id):
            found[thread_id] = holder
    return found


def request_abort(directory: Path, thread_id: str) -> dict[str, Any] | None:
    """Ask the live holder of this thread's lease to abort it; the holder, or None.

    Nothing is written when nobody holds the lease: a thread whose holder
    is gone is simply not running.
    """
    holder = held_elsewhere(directory, thread_id)
    if holder is None:
        return None
    request = {
        "pid": holder.get("pid"),
        "since": holder.get("since"),
        "by": {"pid": os.getpid(), "host": host_name()},
        "at": time.time(),
    }
    target = abort_path(lease_path(directory, thread_id))
    temp = target.with_suffix(f".{os.getpid()}.tmp")
    temp.write_text(json.dumps(request), encoding="utf-8")
    os.replace(temp, target)
    return holder


def abort_requested(lease: Lease) -> dict[str, Any] | None:
    """An abort request meant for this lease (and no earlier one), or None; clears it."""
    path = abort_path(lease.path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    with contextlib.suppress(OSError):
        path.unlink()
    if not isinstance(data, dict):
        return None
    if data.get("pid") != os.getpid() or data.get("since") != lease.since:
        return None
    by = data.get("by")
    return by if isinstance(by, dict) else {}


async def stop_elsewhere(
    directory: Path, thread_id: str, timeout: float = 30.0, poll: float = 0.1
) -> tuple[str, dict[str, Any] | None]:
    """Ask the holder to abort and wait for its lease to be freed.

    Returns ("not running", None), ("stopped", holder) or ("still running",
    holder) when the holder did not let go within `timeout` seconds.
    """
    import asyncio  # here: `list` and the other read-only commands never need it

    holder = request_abort(directory, thread_id)
    if holder is None:
        return "not running", None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(poll)
        if held_elsewhere(directory, thread_id) is None:
            return "stopped", holder
    return "still running", holder


def is_mine(holder: dict[str, Any] | None) -> bool:
    """Whether a lease holder is this very process."""
    return bool(holder) and holder.get("pid") == os.getpid() and holder.get("host") == host_name()


def holder_text(holder: dict[str, Any]) -> str:
    """Who holds a lease, for a person: "pid 4242 on build-3"."""
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"


class FileLeaseBoard:
    """Leases as files beside a SQLite database: what the runner, the store and the UI use.

    The Postgres backend has the same methods (`supervisor.pg.leases`), so
    nothing above this layer knows which kind of lease it holds.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def acquire(self, thread_id: str) -> Lease:
        return acquire(self.directory, thread_id)

    async def release(self, lease: Lease) -> None:
        if lease.thread_id.startswith(WATCHER_PREFIX):  # one file per watcher process: tidy up
            with contextlib.suppress(OSError):
                lease.path.unlink()
        lease.release()

    def abort_requested(self, lease: Lease) -> dict[str, Any] | None:
        return abort_requested(lease)

    async def alive(self, lease: Lease) -> bool:
        """Whether the lease is still held: an open descriptor's flock cannot be lost."""
        return lease.fd >= 0

    async def retake(self, lease: Lease) -> None:
        """Nothing to take back (see `alive`)."""

    def held_elsewhere(self, thread_id: str) -> dict[str, Any] | None:
        return held_elsewhere(self.directory, thread_id)

    def live(self) -> dict[str, dict[str, Any]]:
        return live_leases(self.directory)

    async def stop_elsewhere(
        self, thread_id: str, timeout: float = 30.0
    ) -> tuple[str, dict[str, Any] | None]:
        return await stop_elsewhere(self.directory, thread_id, timeout)

    async def announce_watcher(self) -> Lease:
        """A lease that says a watcher runs here, for as long as this process lives."""
        return acquire(self.directory, f"{WATCHER_PREFIX}{host_name()}:{os.getpid()}")

    def watchers(self, live: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The live watchers of this database (pid, host, since); `live`: a `live()` just read."""
        live = self.live() if live is None else live
        return [h for t, h in live.items() if t.startswith(WATCHER_PREFIX)]

    def close(self) -> None:
        """Nothing to close: file leases hold no connection."""
