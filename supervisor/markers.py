"""Job markers on disk: the records that make re-running a tool safe.

A tool with a real side effect (charge a card, send a mail) wraps it in a job
marker keyed by its arguments. Before the work it writes a `started` record;
after it, a `done` record with the result. When a crashed thread is resumed
and the tool is called again with the same arguments, the `done` record is
returned instead of doing the work twice. A `started` record without `done`
means the work may have begun: the tool runs again (the recipe's rule), and
the UI shows the user that it will.

This module is the marker itself and its file form (`JobMarkers`, a
directory); `supervisor.pg.markers` keeps the same records in a table, and
`supervisor.jobs` is what tool authors import (`idempotent`, `open_markers`).
Readers accept plain recipe-style `*.json` markers this module did not write.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Marker format written by this module; readers accept anything else as foreign.
FORMAT = "agent-supervisor.job/1"

#: The thread the current tool call belongs to. The runner sets it before it
#: runs an agent, so markers record their thread without the tool knowing.
current_thread: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "agent_supervisor_thread", default=None
)

_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SLUG_CHARS = 48
_HASH_CHARS = 24


def job_key(tool_name: str, arguments: Mapping[str, Any] | Any) -> str:
    """A deterministic key: the tool name and its arguments in canonical JSON.

    Equal arguments give equal keys whatever their order or the process.
    """
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    return f"{tool_name}:{canonical}"


def marker_filename(key: str) -> str:
    """A file name that is safe whatever the key holds.

    The name carries a readable slug for people listing the directory and a
    hash of the full key for uniqueness, so `a/b` and `a_b` never collide,
    `../` never escapes, and a 10 kB key still gives a short name. The key
    itself is stored inside the file.
    """
    import hashlib  # here, not at the top: a listing never names a marker

    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:_HASH_CHARS]
    slug = _SLUG_UNSAFE.sub("_", key)[:_SLUG_CHARS].strip("._-") or "job"
    return f"{slug}.{digest}.json"


@dataclass(frozen=True)
class Marker:
    """One job marker as read from disk."""

    path: Path
    key: str
    status: str  # "started", "done", "unreadable"
    tool: str | None = None
    arguments: Any = None
    tool_call_id: str | None = None
    thread_id: str | None = None
    started_at: float | None = None
    done_at: float | None = None
    result: Any = None
    foreign: bool = False  # written by something other than this module

    @property
    def done(self) -> bool:
        return self.status == "done"

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "key": self.key,
            "status": self.status,
            "tool": self.tool,
            "arguments": self.arguments,
            "tool_call_id": self.tool_call_id,
            "thread_id": self.thread_id,
            "started_at": self.started_at,
            "done_at": self.done_at,
            "result": self.result,
            "foreign": self.foreign,
        }


def atomic_write_json(path: Path, record: Mapping[str, Any]) -> None:
    """Write a whole file or nothing: temp file, fsync, rename, fsync the dir.

    A crash at any point leaves either the old marker or the new one, never
    a half-written file that a resume would misread.
    """
    if not path.parent.is_dir():  # ours to make: not writable by others, whatever the umask
        path.parent.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path.parent, 0o750)
            os.chmod(path.parent, 0o750)
    data = json.dumps(record, indent=2, sort_keys=True, default=str).encode("utf-8")
    import tempfile  # here, not at the top: a listing never writes

    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class JobMarkers:
    """A directory of job markers, for tools to guard their side effects."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path_for(self, key: str) -> Path:
        return self.directory / marker_filename(key)

    def get(self, key: str) -> Marker | None:
        path = self.path_for(key)
        if not path.exists():
            return None
        return read_marker(path)

    def start(
        self,
        key: str,
        *,
        tool: str,
        arguments: Any,
        tool_call_id: str | None = None,
        thread_id: str | None = None,
    ) -> None:
        """Record that the work is about to begin."""
        atomic_write_json(
            self.path_for(key),
            {
                "format": FORMAT,
                "key": key,
                "status": "started",
                "tool": tool,
                "arguments": arguments,
                "tool_call_id": tool_call_id,
                "thread_id": thread_id if thread_id is not None else current_thread.get(),
                "started_at": time.time(),
                "done_at": None,
                "result": None,
            },
        )

    def finish(self, key: str, result: Any) -> None:
        """Record that the work is done, with its result, keeping the start record."""
        path = self.path_for(key)
        previous = _load_json(path)
        record = previous if isinstance(previous, dict) else {"format": FORMAT, "key": key}
        record.update({"status": "done", "done_at": time.time(), "result": result})
        atomic_write_json(path, record)


def _load_json(path: Path) -> Any:
    try:
        with open(path, "rb") as f:  # bytes: json finds the UTF-8 itself, no text layer
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def read_marker(path: Path) -> Marker:
    """Read one marker file; foreign JSON is a `done` marker keyed by its name."""
    data = _load_json(path)
    if isinstance(data, dict) and data.get("format") == FORMAT:
        status = data.get("status")
        return Marker(
            path=path,
            key=str(data.get("key", path.stem)),
            status=status if status in ("started", "done") else "unreadable",
            tool=data.get("tool"),
            arguments=data.get("arguments"),
            tool_call_id=data.get("tool_call_id"),
            thread_id=data.get("thread_id"),
            started_at=_number(data.get("started_at")),
            done_at=_number(data.get("done_at")),
            result=data.get("result"),
        )
    if data is None:
        return Marker(path=path, key=path.stem, status="unreadable", foreign=True)
    # The recipe writes its marker only after the work succeeded: done.
    try:
        mtime: float | None = path.stat().st_mtime
    except OSError:
        mtime = None
    return Marker(
        path=path,
        key=path.stem,
        status="done",
        done_at=mtime,
        result=data,
        foreign=True,
    )


class _MarkerDirectory:
    """A jobs directory's markers, read again only where they changed.

    The detail pane reads the markers on every selection: with 50,000 marker
    files each cursor move read them all (4.5 CPU-seconds). A marker is
    written whole and renamed into place (`atomic_write_json`), so the
    directory's own mtime moves with every change, and each version of a
    marker is a new file (a new inode): a directory unchanged since the last
    reading gives that reading; otherwise only new files are parsed. A
    directory changed in the last two seconds is looked through again each
    time (a filesystem's clock may not tick between two writes).
    """

    #: How recent a change must be for the directory's mtime not to be trusted.
    SETTLED_NS = 2_000_000_000

    def __init__(self, root: Path) -> None:
        import threading

        self.root = root
        self._seen: tuple[int, int] | None = None
        self._files: dict[str, tuple[tuple[int, int, int], Marker]] = {}
        self._sorted: list[Marker] = []
        #: One reading at a time: the app's workers asking together at its start each
        #: parsed all 50,000 files (three times the CPU); the later ones wait, then reuse.
        self._lock = threading.Lock()

    def read(self) -> list[Marker]:
        with self._lock:
            return self._read()

    def _read(self) -> list[Marker]:
        try:
            st = os.stat(self.root)
        except (FileNotFoundError, NotADirectoryError):
            self._seen, self._files, self._sorted = None, {}, []
            return []
        stamp = (st.st_mtime_ns, st.st_ino)
        settled = time.time_ns() - st.st_mtime_ns > self.SETTLED_NS
        if stamp == self._seen and settled:
            return list(self._sorted)
        files: dict[str, tuple[tuple[int, int, int], Marker]] = {}
        with os.scandir(self.root) as entries:
            for entry in entries:
                name = entry.name
                if not name.endswith(".json") or name.startswith(".tmp-"):
                    continue
                try:
                    est = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                version = (est.st_ino, est.st_mtime_ns, est.st_size)
                known = self._files.get(name)
                if known is not None and known[0] == version:
                    files[name] = known
                else:
                    files[name] = (version, read_marker(Path(entry.path)))
        markers = [m for _, m in files.values()]
        markers.sort(key=lambda m: (m.started_at or m.done_at or 0.0, m.key))
        self._seen, self._files, self._sorted = stamp, files, markers
        return list(markers)


#: One reading per jobs directory, for the life of the process.
_directories: dict[Path, _MarkerDirectory] = {}


def read_directory(directory: Path) -> list[Marker]:
    """Every marker in a directory, oldest first (none when it is missing), read again
    only where files changed since this process last looked."""
    return _directories.setdefault(directory, _MarkerDirectory(directory)).read()
