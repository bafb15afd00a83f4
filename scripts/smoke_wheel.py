"""Install the built wheel into a fresh virtual environment and run it, as `pipx` would.

CI installs the checkout editable, which hides a package the wheel leaves
out; this runs the installed command from outside the checkout: `demo`,
`list` on the file it made, `--otel` without its extra, and `demo` + `list` on a
`postgresql://` URL of a throwaway server (skipped, saying so, where no server
can be started).

Usage: python scripts/smoke_wheel.py WHEEL
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.pg_server import NoServer, Server, memory_scratch  # noqa: E402


def run(command: list[str], cwd: Path) -> str:
    """A command that must succeed; its output is returned."""
    shown = [c if "://" not in c else "postgresql://…" for c in command]
    print("$", " ".join(shown))
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"smoke: exit {done.returncode}\n{done.stdout}{done.stderr}")
    return done.stdout


def main() -> None:
    wheel = Path(sys.argv[1]).resolve()
    with tempfile.TemporaryDirectory(prefix="wheel-smoke-") as name:
        place = Path(name)
        venv.create(place / "venv", with_pip=True)
        bin_dir = place / "venv" / "bin"
        run([str(bin_dir / "pip"), "install", "--quiet", str(wheel)], place)
        command = str(bin_dir / "agent-supervisor")
        run([command, "--version"], place)
        run([command, "demo", "demo.db"], place)
        listed = run([command, "list", "demo.db"], place)
        assert "mid_tool" in listed, listed
        # Installed without the `otel` extra: --otel names it, in one line.
        otel = [command, "resume", "demo.db", "job-02", "--otel"]
        done = subprocess.run(otel, cwd=place, capture_output=True, text=True)
        print("$", " ".join(otel[1:]))
        assert done.returncode == 2 and "[otel]" in done.stderr, done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr
        server = Server(memory_scratch())
        try:
            server.start()
        except NoServer as exc:
            print(f"smoke: Postgres part skipped: no server ({exc})")
            return
        try:
            dsn = server.new_database(schema=False)
            run([command, "demo", dsn], place)
            listed = run([command, "list", dsn], place)
            assert "mid_tool" in listed, listed
        finally:
            server.stop()
    print("smoke: the installed wheel works")


if __name__ == "__main__":
    main()
