"""Pausing the cyclic collector: pauses nest and overlap across threads."""

from __future__ import annotations

import gc
import threading

import pytest

from supervisor import collector


@pytest.fixture(autouse=True)
def collector_on():
    gc.enable()
    yield
    gc.enable()


def test_the_collector_runs_again_when_the_last_pause_ends() -> None:
    collector.pause()
    collector.pause()
    assert not gc.isenabled()
    collector.resume()
    assert not gc.isenabled()  # one pauser still needs it off
    collector.resume()
    assert gc.isenabled()


def test_a_collector_off_before_the_first_pause_stays_off() -> None:
    gc.disable()
    with collector.bulk_read():
        pass
    assert not gc.isenabled()


def test_resume_without_pause_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        collector.resume()
    assert gc.isenabled()


def test_pauses_from_two_threads_overlap() -> None:
    """A refresh's pause in a worker ends while a held key's pause goes on."""
    in_worker = threading.Event()
    worker_may_end = threading.Event()

    def worker() -> None:
        with collector.bulk_read():
            in_worker.set()
            worker_may_end.wait(5)

    thread = threading.Thread(target=worker)
    thread.start()
    assert in_worker.wait(5)
    collector.pause()  # the held key, paused after the worker
    worker_may_end.set()
    thread.join(5)
    assert not gc.isenabled()  # the worker's end does not end the held key's pause
    collector.resume()
    assert gc.isenabled()


def test_a_bulk_read_kept_is_frozen_out_of_later_walks() -> None:
    gc.unfreeze()
    try:
        with collector.bulk_read(keep=True):
            kept = [[i] for i in range(1000)]
            assert not gc.isenabled()
        assert gc.isenabled()
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()


def test_a_bulk_read_not_kept_freezes_nothing() -> None:
    gc.unfreeze()
    with collector.bulk_read():
        _ = [[i] for i in range(1000)]
    assert gc.get_freeze_count() == 0
    assert gc.isenabled()


def test_a_bulk_read_that_fails_freezes_nothing_and_resumes() -> None:
    gc.unfreeze()
    with pytest.raises(ValueError), collector.bulk_read(keep=True):
        raise ValueError
    assert gc.get_freeze_count() == 0
    assert gc.isenabled()


def test_a_held_key_collects_only_the_young_generations(monkeypatch) -> None:
    """A full collection mid-hold walks all the app keeps (140-160 ms at 100,000
    threads): past its pause a held key asks for generations 0 and 1 only."""
    asked: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda generation=2: asked.append(generation) or 0)
    held = collector.HeldKey(young_every=10.0)
    held.moved(0.0)
    assert not gc.isenabled() and held.held
    for now in (3.0, 9.0):
        held.moved(now)
    assert asked == []  # within the pause: nothing
    held.moved(10.5)
    held.moved(15.0)
    held.moved(21.0)
    assert asked == [1, 1]
    assert not gc.isenabled()  # still held
    held.rested()
    assert gc.isenabled() and not held.held
    held.rested()  # a second rest is harmless (the app rests on quitting too)
    assert gc.isenabled()


#: The programs' edges: only they decide the process-wide collector's policy.
EDGES = ("supervisor/ui/", "supervisor/cli/", "supervisor/watch.py", "supervisor/split.py")


def test_only_the_programs_edges_touch_the_collector() -> None:
    """Library modules never flip the process-wide switch behind their caller's back."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    offenders = []
    for path in sorted((root / "supervisor").rglob("*.py")):
        name = path.relative_to(root).as_posix()
        if name == "supervisor/collector.py" or name.startswith(EDGES):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in ("gc", "collector")
            ):
                offenders.append(f"{name}:{node.lineno} {node.value.id}.{node.attr}")
            elif (
                isinstance(node, ast.ImportFrom)
                and node.module == "supervisor"
                and any(a.name == "collector" for a in node.names)
            ):
                offenders.append(f"{name}:{node.lineno} imports collector")
    assert offenders == []
