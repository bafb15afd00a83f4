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

from supervisor.urls import host_name

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


class LeaseError(Exception):
    """A lease cannot be taken for a reason of the place (a full disk, an unsafe
    directory); the message is one line for the user."""


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
        """Remove the file while still holding its lock, then let go: a lease file per
        thread ever run piled up (20,000 of them cost an idle app most of a core), and
        one removed before its unlock could be taken by two (see `acquire`)."""
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            abort_path(self.path).unlink()
        with contextlib.suppress(OSError):
            if _same_file(self.fd, self.path):
                self.path.unlink()
        with contextlib.suppress(OSError):
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = -1


def acquire(directory: Path, thread_id: str) -> Lease:
    """Take the thread's lease now, or raise `LeaseHeld` naming the holder (`LeaseError`
    when the place will not hold one: a full disk, an unsafe directory).

    The file is opened without following a symlink (one planted in a shared
    directory made root truncate the file it pointed at), in a directory of
    ours (`secure_directory`). A holder removes its file as it lets go, so a
    lock won on a file that is no longer at its path is worth nothing: the
    lock is taken again on the file that is there. The descriptor is closed
    on every way out but success.
    """
    secure_directory(directory, 0o700)
    path = lease_path(directory, thread_id)
    for _ in range(100):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise LeaseError(f"{path}: cannot take the lease ({exc.strerror})") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LeaseHeld(thread_id, _read_holder(path)) from None
            if not _same_file(fd, path):  # its holder removed it as we opened it: again
                os.close(fd)
                continue
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
        except OSError as exc:
            os.close(fd)
            raise LeaseError(f"{path}: cannot write the lease ({exc.strerror})") from None
        except BaseException:
            os.close(fd)
            raise
        return Lease(thread_id, path, fd, record["since"])
    raise LeaseError(f"{path}: the lease file kept changing under us")


def prune(directory: Path) -> int:
    """Remove lease files nobody holds (their holders died, or an older version kept them);
    how many. Each is locked first and removed only if still free and still at its path,
    so a lease being taken is never touched (see `acquire`)."""
    removed = 0
    try:
        paths = [p for p in directory.glob("*.lock") if not p.is_symlink()]
    except OSError:
        return removed
    for path in paths:
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _same_file(fd, path):
                path.unlink()
                removed += 1
        except OSError:
            pass  # held: a live lease
        finally:
            os.close(fd)
    return removed


def _same_file(fd: int, path: Path) -> bool:
    """Whether the open file is still the one at `path` (not removed or replaced)."""
    try:
        at_path = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (at_path.st_dev, at_path.st_ino)


def secure_directory(directory: Path, mode: int) -> None:
    """Make `directory` (mode `mode`, whatever the umask), or check one that is there: ours,
    not a symlink, and writable by nobody else (a group or world bit we set is taken back;
    one another user owns is refused with `LeaseError`)."""
    import stat

    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        try:
            os.mkdir(directory, mode)
            os.chmod(directory, mode)  # the umask may have taken bits away, or given
        except FileExistsError:
            pass  # another process made it just now: checked below
        except OSError as exc:
            raise LeaseError(f"{directory}: cannot make it ({exc.strerror})") from None
        st = os.lstat(directory)
    except OSError as exc:
        raise LeaseError(f"{directory}: cannot read it ({exc.strerror})") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise LeaseError(f"{directory}: not a directory of ours (a symlink or a file): refused")
    if st.st_uid != os.geteuid():
        raise LeaseError(f"{directory}: owned by another user (uid {st.st_uid}): refused")
    if st.st_mode & 0o022:
        try:
            os.chmod(directory, stat.S_IMODE(st.st_mode) & ~0o022)
        except OSError as exc:
            raise LeaseError(f"{directory}: writable by others ({exc.strerror})") from None


def _read_holder(path: Path) -> dict[str, Any]:
    """Who a lease file names (never through a symlink)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            text = os.read(fd, 65536).decode("utf-8")
        finally:
            os.close(fd)
        data = json.loads(text or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def held_elsewhere(directory: Path, thread_id: str) -> dict[str, Any] | None:
    """The holder of a live lease on this thread, or None. Creates nothing."""
    path = lease_path(directory, thread_id)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
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
    """Every thread whose lease is held right now, by anyone, with its holder.

    An empty file is skipped unopened: a lease is written as it is taken, and
    an older version left every released lease behind, emptied (20,000 of them
    cost an idle app most of a core, read every second).
    """
    found: dict[str, dict[str, Any]] = {}
    paths = []
    try:
        with os.scandir(directory) as entries:
            for e in entries:
                try:
                    if e.name.endswith(".lock") and e.stat(follow_symlinks=False).st_size > 0:
                        paths.append(Path(e.path))
                except OSError:  # released as we looked
                    continue
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
        self._pruned = False

    def tidy(self) -> int:
        """Once per board: remove the lease files dead holders (or an older version) left,
        which every look at the live leases would otherwise go through (20,000 of them cost
        an idle app a fifth of a core). How many went."""
        if self._pruned:
            return 0
        self._pruned = True
        return prune(self.directory)

    async def acquire(self, thread_id: str) -> Lease:
        self.tidy()  # once per process that takes leases
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
        """A lease that says a watcher runs here, for as long as this process lives (a
        watcher starting also clears what dead holders left: `prune`)."""
        self.tidy()
        return acquire(self.directory, f"{WATCHER_PREFIX}{host_name()}:{os.getpid()}")

    def watchers(self, live: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The live watchers of this database (pid, host, since); `live`: a `live()` just read."""
        live = self.live() if live is None else live
        return [h for t, h in live.items() if t.startswith(WATCHER_PREFIX)]

    def close(self) -> None:
        """Nothing to close: file leases hold no connection."""
