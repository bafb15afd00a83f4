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
    with collector.paused():
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
        with collector.paused():
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
