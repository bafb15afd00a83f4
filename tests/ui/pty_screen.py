"""The app in a real pseudo-terminal, its screen kept by a terminal emulator (pyte).

For what Pilot cannot show: keys that arrive in one burst, as a paste or a fast
typist sends them (Pilot waits for each key to be handled), and a real resize.
"""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pyte


class PtyScreen:
    def __init__(self, cwd: Path, *args: str, size: tuple[int, int] = (120, 40), **env: str):
        self.columns, self.lines = size
        self.screen = pyte.Screen(self.columns, self.lines)
        self._stream = pyte.ByteStream(self.screen)
        self._lock = threading.Lock()
        #: Every byte the app wrote, for what the screen does not show (a bell, an OSC).
        self.raw = bytearray()
        master, slave = os.openpty()
        self._winsize(slave)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            # Without COLUMNS and LINES: they would override the terminal's own size
            # (shutil.get_terminal_size reads them first), and its changes.
            env={
                **{k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")},
                "TERM": "xterm-256color",
                **env,
            },
            start_new_session=True,
        )
        os.close(slave)
        self._master = master
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _winsize(self, fd: int) -> None:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", self.lines, self.columns, 0, 0))

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self.raw += data
                self._stream.feed(data)

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.screen.display)

    def wait_for(self, done, seconds: float = 60.0) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if done(self.text()):
                return True
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        return bool(done(self.text()))

    def written(self) -> bytes:
        with self._lock:
            return bytes(self.raw)

    def type(self, keys: str) -> None:
        """All of `keys` in one write: the app reads them as one burst."""
        os.write(self._master, keys.encode())

    def resize(self, columns: int, lines: int) -> None:
        with self._lock:
            self.columns, self.lines = columns, lines
            self.screen.resize(lines, columns)
        self._winsize(self._master)
        os.killpg(self.proc.pid, signal.SIGWINCH)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        # The reader ends (end of file, or EIO: the app is gone) before its descriptor is
        # closed: a reader left looping on a closed number read whatever the next test
        # opened under it (a bench's stdout pipe lost its lines to it).
        self._reader.join(timeout=10)
        os.close(self._master)
