"""`watch --events` and `--on-event`: every event kind, from a real watcher over real crashes.

The watcher runs as `agent-supervisor watch` in a process of its own; the
threads it sees are crashed (SIGKILL mid-tool), failing (a model that is
down), and waiting for a human (the demo's approval), some before it starts
and some while it watches. The hook is a real shell command.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from supervisor.events import WATCH_TYPES
from tests.conftest import crash, run_demo_child
from tests.test_watch import state, wait_for, watch_process

AGENT = ("--agent", "tests.agents.picky:agent")


def lines_of(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_event_kind_reaches_the_file_and_the_hook(tmp_path: Path) -> None:
    from supervisor.states import State

    db, jobs = tmp_path / "w.db", tmp_path / "jobs"
    events, hook, kinds = tmp_path / "events.jsonl", tmp_path / "hook.jsonl", tmp_path / "kinds"
    run_demo_child(db, "done", jobs)  # finished before: never an event
    run_demo_child(db, "early", jobs, prompt="Refund order 1 (EUR 5)", human_wait=True)
    run_demo_child(db, "bad-1", jobs, fail_turn=1)  # error; its resumes fail too
    hook_cmd = f'printf "%s:%s\\n" "$AGENT_SUPERVISOR_EVENT" "$AGENT_SUPERVISOR_THREAD" >> {kinds}; cat >> {hook}'
    watcher = watch_process(
        db, jobs, *AGENT, "--quiet", "1", "--max-attempts", "1",
        "--events", str(events), "--on-event", hook_cmd,
    )  # fmt: skip
    try:
        wait_for(lambda: any(e["type"] == "held" for e in lines_of(events)))
        crash(db, "t", jobs, prompt="Process items X..Z", kill_at_marker="after_start:Y")
        run_demo_child(db, "late", jobs, prompt="Refund order 2 (EUR 7)", human_wait=True)
        wait_for(lambda: state(db, "t") is State.FINISHED)
        wait_for(lambda: {"t", "late"} <= {e["thread"] for e in lines_of(hook)}, timeout=30)
        wait_for(lambda: len(lines_of(hook)) == len(lines_of(events)), timeout=30)
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    got = lines_of(events)
    for e in got:  # one envelope for all
        assert {"thread", "type", "at", "time", "state", "reason"} <= e.keys(), e
        assert e["type"] in WATCH_TYPES
        assert (
            e["time"] == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(e["at"])) + e["time"][19:]
        )
    by = {t: [e["type"] for e in got if e["thread"] == t] for t in {e["thread"] for e in got}}
    assert by == {
        "early": ["awaiting_input"],
        "bad-1": ["resumed", "attempt_failed", "held"],
        "t": ["resumed", "finished"],
        "late": ["awaiting_input"],
    }
    assert set(WATCH_TYPES) == {e["type"] for e in got}  # every kind, none missed
    early, late = (next(e for e in got if e["thread"] == t) for t in ("early", "late"))
    assert early["at_start"] is True and "at_start" not in late  # seen at start / entered
    assert late["request"]["kind"] == "approve" and "refund" in late["reason"]
    failed = next(e for e in got if e["type"] == "attempt_failed")
    assert "provider down (HTTP 503)" in failed["reason"] and failed["attempt"] == 1
    resumed = next(e for e in got if e["thread"] == "t" and e["type"] == "resumed")
    assert resumed["state"] == "mid_tool" and resumed["attempt"] == 1
    assert next(e for e in got if e["type"] == "finished")["state"] == "finished"
    # The hook saw each event once, in the same order, with the same JSON and variables.
    assert lines_of(hook) == got
    assert kinds.read_text().split() == [f"{e['type']}:{e['thread']}" for e in got]
    assert "t: finished" in out  # the log stays on stdout beside --events FILE


def test_events_to_stdout_leave_the_log_on_stderr(tmp_path: Path) -> None:
    db, jobs = tmp_path / "w.db", tmp_path / "jobs"
    run_demo_child(db, "ask", jobs, prompt="Pick a size for order 3", human_wait=True)
    watcher = watch_process(db, jobs, "--events", "-")
    try:
        first = json.loads(watcher.stdout.readline())
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    assert first["thread"] == "ask" and first["type"] == "awaiting_input"
    assert first["request"]["kind"] == "ask" and first["at_start"] is True
    assert out == ""  # stdout holds events only
    assert "watching" in err and "stopped" in err


def test_a_failing_hook_is_said_and_the_next_event_goes_on(tmp_path: Path) -> None:
    db, jobs = tmp_path / "w.db", tmp_path / "jobs"
    for t in ("a", "b"):
        run_demo_child(db, t, jobs, prompt="Refund order 4 (EUR 1)", human_wait=True)
    watcher = watch_process(db, jobs, "--on-event", "echo no mail server >&2; exit 3")
    said = []
    try:
        for line in watcher.stdout:
            said += [line] if "on-event" in line else []
            if len(said) == 2:
                break
    finally:
        watcher.send_signal(signal.SIGTERM)
        _, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    for t in ("a", "b"):
        assert any(f"on-event (awaiting_input {t}): exit 3: no mail server" in s for s in said)


def test_bad_events_options_are_one_line_and_create_nothing(tmp_path: Path) -> None:
    from tests.conftest import cli

    db, jobs = tmp_path / "w.db", tmp_path / "jobs"
    run_demo_child(db, "done", jobs)
    for target, said in (
        (tmp_path, "is a directory"),
        (tmp_path / "no" / "events.jsonl", "no directory"),
    ):
        done = cli("watch", str(db), "--events", str(target))
        assert done.returncode == 2 and said in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    missing = tmp_path / "missing.db"
    done = cli("watch", str(missing), "--events", str(tmp_path / "e.jsonl"))
    assert done.returncode == 2
    assert not (tmp_path / "e.jsonl").exists() and not missing.exists()


def test_an_events_file_that_cannot_be_written_costs_no_resume(tmp_path: Path) -> None:
    """A full disk under --events once stopped every resume of the threads found at start."""
    from supervisor.states import State

    db, jobs = tmp_path / "w.db", tmp_path / "jobs"
    crash(db, "t", jobs, prompt="Process items X..Z", kill_at_marker="after_start:Y")
    watcher = watch_process(db, jobs, "--quiet", "0", "--events", "/dev/full")
    try:
        wait_for(lambda: state(db, "t") is State.FINISHED, timeout=60)
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    assert out.count("--events: cannot write (No space left on device)") == 1, out
    assert "look failed" not in out


def test_a_hook_is_done_when_it_exits_whatever_it_leaves_running(tmp_path: Path) -> None:
    """`curl … &` in a hook held its stderr open: 30 s per event, then 'killed'. And a hook
    that floods stderr is read from the end of a file, not kept in memory."""
    db, jobs = tmp_path / "w.db", tmp_path / "jobs"
    for t in ("a", "b", "c"):
        run_demo_child(db, t, jobs, prompt="Refund order 5 (EUR 2)", human_wait=True)
    done = tmp_path / "done"
    hook = f"(sleep 20; touch {tmp_path}/late) & head -c 2000000 /dev/zero >&2; echo $AGENT_SUPERVISOR_THREAD >> {done}; exit 4"
    watcher = watch_process(db, jobs, "--on-event", hook)
    try:
        wait_for(lambda: done.exists() and len(done.read_text().split()) == 3, timeout=15)
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    assert sorted(done.read_text().split()) == ["a", "b", "c"]
    assert "killed" not in out and out.count(": exit 4") == 3, out
