"""Background scans on a thread of lower priority: the result or the error comes back."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from supervisor.priority import NICENESS, at_low_priority


def own_niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_the_work_runs_lower_and_the_caller_stays_as_it_was() -> None:
    before = own_niceness()
    inside = at_low_priority(own_niceness)
    assert inside == min(19, before + NICENESS)
    assert own_niceness() == before
    assert at_low_priority(own_niceness) == inside  # a new thread each time, not a lowered one


def test_the_work_runs_on_another_thread_and_its_error_comes_back() -> None:
    assert at_low_priority(threading.get_ident) != threading.get_ident()
    with pytest.raises(ValueError, match="bad row"):
        at_low_priority(lambda: (_ for _ in ()).throw(ValueError("bad row")))
