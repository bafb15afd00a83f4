"""Events for people and their hooks: one JSON object per line, one schema for every command.

`resume --json`, `prompt --json`, `answer --json` and `watch --events` write
the same envelope: `thread`, `type`, `at` (unix seconds) and `time` (the same
instant, ISO 8601 UTC, for people and scripts that do not convert), then the
event's own fields. The watcher's event types (`WATCH_TYPES`) each carry
`state` and `reason` too (`reason` may be null).

`Transitions` decides when a thread *newly* needs a person (it entered
`awaiting_input`, or was asked a new question, or was held), from the
summaries a refresh changed: the watcher's `--events` and the app's
notifications both ask it, so they agree on what is news.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from supervisor.jsontext import dumps
from supervisor.states import State, ThreadSummary
from supervisor.text import one_line

#: What `watch --events` reports: a thread entered `awaiting_input` (or was asked anew), the
#: watcher held it, one of its attempts failed, a run it started finished, it resumed one.
WATCH_TYPES = ("awaiting_input", "held", "attempt_failed", "finished", "resumed")

#: How long one `--on-event` command may take before it is killed (seconds).
HOOK_TIMEOUT = 30.0

#: How long a stopping watcher waits for hooks still queued (seconds).
DRAIN_TIMEOUT = 10.0


def stamp(at: float) -> str:
    """`at` as ISO 8601 UTC to the millisecond: `2026-12-06T18:00:15.123Z`."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at))
    return f"{whole}.{int(at % 1 * 1000):03d}Z"


def envelope(thread: str, kind: str, at: float | None = None, /, **fields: Any) -> dict[str, Any]:
    """One event in the shared schema: `thread`, `type`, `at`, `time`, then `fields`."""
    when = time.time() if at is None else at
    return {"thread": thread, "type": kind, "at": when, "time": stamp(when), **fields}


def line(item: dict[str, Any]) -> str:
    """One event as a JSON line (no newline); what JSON cannot hold is written as text.
    ASCII: a thread id's bidi override is `\\u202e` in `tail -f events.jsonl`, not obeyed."""
    return dumps(item, default=str)


@dataclass(frozen=True)
class Need:
    """A thread that newly needs a person: `kind` is `awaiting_input` or `held`."""

    thread_id: str
    kind: str
    state: str
    reason: str
    #: The pending request (`PendingRequest.to_json()`), for `awaiting_input`.
    request: dict[str, Any] | None = None
    #: Seen so on the first look, not entering it while watched.
    at_start: bool = False


class Transitions:
    """Which threads newly wait for a person, refresh after refresh.

    A thread counts once per question: the same question seen again is not
    news, a new one is (a thread answered and asked again). Held threads
    count once per hold. What the first look finds is marked `at_start`.
    """

    def __init__(self) -> None:
        #: Waiting threads and the question each waits on ("" when the request was not read).
        self._waiting: dict[str, str] = {}
        self._held: set[str] = set()
        self._looked = False

    def observe(
        self, summaries: Iterable[ThreadSummary], *, everything: bool = False
    ) -> list[Need]:
        """Take in what a refresh changed (`everything`: the whole list); the news."""
        first = not self._looked
        self._looked = True
        news: list[Need] = []
        seen: set[str] = set()
        for s in summaries:
            seen.add(s.thread_id)
            news.extend(self._one(s, first))
        if everything:  # threads gone from the list are forgotten
            for gone in [t for t in self._waiting if t not in seen]:
                del self._waiting[gone]
            self._held &= seen
        return news

    def _one(self, s: ThreadSummary, first: bool) -> list[Need]:
        news = []
        tid = s.thread_id
        if s.state is State.AWAITING_INPUT:
            request = s.request
            question = request.question_id if request is not None else ""
            if self._waiting.get(tid) != question:
                self._waiting[tid] = question
                news.append(
                    Need(
                        tid,
                        "awaiting_input",
                        s.state.value,
                        request.short(200) if request is not None else "waiting for an answer",
                        request.to_json() if request is not None else None,
                        first,
                    )
                )
        else:
            self._waiting.pop(tid, None)
        held = s.attempt is not None and s.attempt.held
        if held and tid not in self._held:
            self._held.add(tid)
            why = one_line(s.attempt.last_error or "held by the watcher", 200)
            news.append(Need(tid, "held", s.state.value, why, None, first))
        elif not held:
            self._held.discard(tid)
        return news


class EventLog:
    """Where `watch --events` and `--on-event` send each event.

    Lines go to `out` (a file opened for appending, or stdout) as they
    happen, flushed each. A hook command runs once per event with the JSON
    on its stdin, on a thread of its own and in order, so a slow hook never
    holds the watcher up; one that fails or takes longer than
    `HOOK_TIMEOUT` is said on `warn`, and the next event goes on.

    Nothing here may cost a resume: a file that cannot be written (a full
    disk, a closed pipe) is said once and the watcher goes on deciding. A
    hook is done when its process exits (what it left running in the
    background keeps running); its stderr goes to a file, of which the last
    line is said if it fails, so a hook that floods stderr costs no memory.
    """

    def __init__(
        self,
        out: TextIO | None,
        hook: str | None = None,
        *,
        warn: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
        hook_timeout: float = HOOK_TIMEOUT,
    ) -> None:
        self.out, self.hook, self.warn = out, hook, warn
        self.hook_timeout = hook_timeout
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._hooks: threading.Thread | None = None
        #: The hook running now, killed with its group if the watcher stops meanwhile.
        self._running: subprocess.Popen[bytes] | None = None
        self._write_failed: str | None = None
        if hook is not None:
            self._hooks = threading.Thread(target=self._run_hooks, name="on-event", daemon=True)
            self._hooks.start()

    def __call__(self, item: dict[str, Any]) -> None:
        if self.out is not None:
            try:
                self.out.write(line(item) + "\n")
                self.out.flush()
            except (OSError, ValueError) as exc:  # a full disk, a closed pipe or file
                why = one_line(getattr(exc, "strerror", None) or str(exc), 120)
                if why != self._write_failed:
                    self._write_failed = why
                    self.warn(f"--events: cannot write ({why}); events are lost until it can")
            else:
                if self._write_failed is not None:
                    self._write_failed = None
                    self.warn("--events: writing again")
        if self._hooks is not None:
            self._queue.put(item)

    def close(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Let the hooks still queued run (for at most `timeout`), then stop: a hook still
        running then is killed with its children."""
        if self._hooks is not None:
            self._queue.put(None)
            self._hooks.join(timeout)
            if self._hooks.is_alive():
                left = self._queue.qsize()
                running = self._running
                if running is not None:
                    _kill_group(running)
                self.warn(f"on-event: stopping; {left} event(s) not handed on")

    def _run_hooks(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._run_hook(item)
            except Exception as exc:  # noqa: BLE001 - one event's trouble, not the next one's
                self.warn(f"on-event: {one_line(f'{type(exc).__name__}: {exc}', 200)}")

    def _run_hook(self, item: dict[str, Any]) -> None:
        env = {
            **os.environ,
            "AGENT_SUPERVISOR_EVENT": _variable(item.get("type")),
            "AGENT_SUPERVISOR_THREAD": _variable(item.get("thread")),
        }
        what = f"on-event ({item.get('type')} {one_line(str(item.get('thread')), 60)})"
        with tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(
                    self.hook or "",
                    shell=True,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env=env,
                    start_new_session=True,  # the watcher's Ctrl-C is not the hook's; killed whole
                )
            except OSError as exc:
                self.warn(f"{what}: could not run: {one_line(str(exc), 200)}")
                return
            self._running = proc
            try:
                self._feed(proc, (line(item) + "\n").encode())
                try:
                    code = proc.wait(self.hook_timeout)
                except subprocess.TimeoutExpired:
                    _kill_group(proc)
                    self.warn(f"{what}: killed after {self.hook_timeout:g}s")
                    return
            finally:
                self._running = None
            if code != 0:
                said = _last_line(err)
                self.warn(f"{what}: exit {code}{': ' + said if said else ''}")

    @staticmethod
    def _feed(proc: subprocess.Popen[bytes], data: bytes) -> None:
        """The event on the hook's stdin; a hook that reads none of it is no error."""
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, OSError):
            proc.stdin.write(data)
        with contextlib.suppress(BrokenPipeError, OSError):
            proc.stdin.close()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(5)


def _variable(value: Any) -> str:
    """An environment variable's value: no NUL (which no variable can hold)."""
    return str(value if value is not None else "").replace("\0", "\\0")


def _last_line(file: Any, tail: int = 4096) -> str:
    """The last line a hook wrote to stderr (read from its end: a flood costs nothing)."""
    file.seek(0, os.SEEK_END)
    size = file.tell()
    file.seek(max(0, size - tail))
    lines = file.read().decode("utf-8", "replace").strip().splitlines()
    return one_line(lines[-1], 200) if lines else ""
