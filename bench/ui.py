"""UI responsiveness with 5,000 threads: does the app stay instant while it reads?

Runs the real app headless (Textual's `run_test`) on a copy of the listing
benchmark's database (bench/bench-5000x200000.db; run bench/listing.py first),
and prints:

- time until the list shows all threads (first full read + building the table),
- key latency (press `j`, cursor moved) when idle: the baseline,
- key latency while a full re-read of the database runs in its worker,
- per-keystroke latency of typing a filter, against the same baseline.

Usage: python bench/ui.py [--db bench/bench-5000x200000.db]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from supervisor.agents import load_factory
from supervisor.runner import RunnerConfig
from supervisor.sqlite.store import SQLiteStore
from supervisor.ui.app import make_app

HERE = Path(__file__).resolve().parent


class Ticker:
    """Measures how late a 5 ms timer fires: the UI's event loop responsiveness."""

    def __init__(self) -> None:
        self.lateness: list[float] = []
        self._stop = asyncio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            due = time.perf_counter() + 0.005
            await asyncio.sleep(0.005)
            self.lateness.append(time.perf_counter() - due)

    def stop(self) -> None:
        self._stop.set()

    def report(self, label: str, base: float | None) -> float:
        late = sorted(self.lateness)
        p99 = late[max(0, int(len(late) * 0.99) - 1)]
        ratio = f"  ({p99 / base:.1f}x idle)" if base else ""
        print(f"{label:<38} p99 {p99 * 1000:6.1f} ms  max {late[-1] * 1000:6.1f} ms{ratio}")
        return p99


async def phase(label: str, work, base: float | None) -> float:
    ticker = Ticker()
    task = asyncio.create_task(ticker.run())
    await work()
    ticker.stop()
    await task
    return ticker.report(label, base)


async def measure(db: Path) -> None:
    config = RunnerConfig(
        database=db,
        factory=load_factory("supervisor.demo:demo_agent"),
        jobs_dir=db.with_suffix(".jobs"),
    )
    app = make_app(SQLiteStore(db), config, watch=False, cursor_blink=False)
    start = time.perf_counter()
    async with app.run_test(size=(160, 50)) as pilot:
        while len(app.table) < 5000 or app._reading:
            await asyncio.sleep(0.01)
        print(
            f"list shows {len(app.shown)} threads {(time.perf_counter() - start) * 1000:.0f} ms after start"
        )
        await pilot.pause(0.5)
        print("event-loop lateness of a 5 ms timer (what a user feels as lag):")
        base = await phase("idle, no input (baseline)", lambda: asyncio.sleep(2), None)

        async def scroll() -> None:
            for _ in range(40):
                await pilot.press("j")

        await phase("holding j (40 presses)", scroll, base)
        await pilot.pause(1.0)

        async def typing() -> None:
            await pilot.press("slash", *"thread-0123")
            await pilot.pause(0.3)

        await phase("typing a filter (list rebuilt per key)", typing, base)
        print(f"rows after filter: {len(app.shown)}")
        await pilot.press("escape")
        await pilot.pause(1.0)

        async def reread_while_scrolling() -> None:
            app.store.reader.reset()  # a full re-read, as after reopening
            app.request_refresh()
            while app.reader.running:
                await pilot.press("j")

        await phase("pressing j during a full re-read", reread_while_scrolling, base)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", type=Path, default=HERE / "bench-5000x200000.db")
    args = p.parse_args()
    if not args.db.exists():
        raise SystemExit(f"{args.db}: missing; run python bench/listing.py first")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "bench.db"
        shutil.copy(args.db, copy)
        asyncio.run(measure(copy))


if __name__ == "__main__":
    main()
