"""The headless commands as a user runs them: resume, prompt, demo, Ctrl-C, bad agents."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from supervisor.location import open_store
from supervisor.states import State
from tests.conftest import ROOT, cli, effects, transcript_problems

FAST = {
    "AGENT_SUPERVISOR_DEMO_TOOL_SECONDS": "0",
    "AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND": "0",
}


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None):
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **FAST, **(env or {})},
    )


def start_slow_resume(db: Path, thread: str) -> subprocess.Popen:
    """`agent-supervisor resume` in a child process, with tools slow enough to catch."""
    return subprocess.Popen(
        [sys.executable, "-m", "supervisor", "resume", str(db), thread, "--force"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "AGENT_SUPERVISOR_DEMO_TOOL_SECONDS": "20",
            "AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND": "0",
        },
    )


def test_resume_prints_events_and_exits_0_when_finished(demo_db: Path) -> None:
    out = run_cli("resume", str(demo_db), "job-02", "--force")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("queued (resume from mid_tool)")
    assert any(
        "unanswered call(s) through the agent's own checks again: process_item" in line
        for line in lines
    )
    assert lines[-1].startswith("■ finished")
    assert open_store(demo_db).get("job-02").state is State.FINISHED


def test_resume_all_resumes_every_crashed_thread(demo_db: Path) -> None:
    out = run_cli("resume", str(demo_db), "--all", "--force", "--max-concurrent", "2")
    assert out.returncode == 0, out.stderr
    states = {s.thread_id: s.state for s in open_store(demo_db).threads()}
    # Waiting for a human: not resumable, left alone. job-12 was answered
    # before its process died: resumed with the stored answer.
    assert states["job-09"] is states["job-11"] is State.AWAITING_INPUT
    assert states["job-08"] is State.EMPTY
    left = ("job-08", "job-09", "job-11")
    assert all(state is State.FINISHED for t, state in states.items() if t not in left)
    for thread in states:
        if thread not in ("job-09", "job-11"):  # their last call waits for a human
            assert transcript_problems(demo_db, thread) == []
    counts = Counter(effects(demo_db.with_name("demo.db.jobs")))
    assert max(counts.values()) == 1


def test_resume_exits_1_when_a_thread_does_not_finish(demo_db: Path) -> None:
    out = run_cli("resume", str(demo_db), "job-09", "job-05", "--force")
    assert out.returncode == 1
    assert "refused: job-09 is awaiting a human answer" in out.stderr
    assert "job-05" in out.stdout and "■ finished" in out.stdout


def test_resume_possibly_live_thread_without_force(demo_db: Path) -> None:
    out = run_cli("resume", str(demo_db), "job-05")
    assert out.returncode == 1
    assert "may still be running in another process" in out.stderr


def test_a_dry_run_says_what_the_resume_would_refuse_without_force(demo_db: Path) -> None:
    """The plan is what --force would do; the dry run says the resume waits for it (the
    resume refuses job-05: `test_resume_possibly_live_thread_without_force`)."""
    plan = run_cli("resume", str(demo_db), "job-05", "--dry-run")
    assert "note: may still be running in another process" in plan.stdout, plan.stdout
    (as_json,) = json.loads(run_cli("resume", str(demo_db), "job-05", "--dry-run", "--json").stdout)
    assert as_json["refused"] is None and "--force" in as_json["live"]
    forced = run_cli("resume", str(demo_db), "job-05", "--dry-run", "--json", "--force").stdout
    assert json.loads(forced)[0]["live"] is None


def test_resume_finished_thread_is_not_a_failure(demo_db: Path) -> None:
    out = run_cli("resume", str(demo_db), "job-01")
    assert out.returncode == 0
    assert "already finished" in out.stdout


def test_resume_unknown_thread_is_bad_input(demo_db: Path) -> None:
    out = run_cli("resume", str(demo_db), "nope")
    assert out.returncode == 2
    assert out.stderr.strip() == f"agent-supervisor: error: {demo_db}: no thread 'nope'"


def test_prompt_runs_to_the_end(demo_db: Path) -> None:
    out = run_cli("prompt", str(demo_db), "job-01", "Process items p-1, p-2")
    assert out.returncode == 0, out.stderr
    assert "user: Process items p-1, p-2" in out.stdout
    assert "Processed 2 items: p-1, p-2." in out.stdout


def test_prompt_refused_on_mid_tool(demo_db: Path) -> None:
    out = run_cli("prompt", str(demo_db), "job-02", "hi")
    assert out.returncode == 1
    assert "resume it first" in out.stderr


@pytest.mark.parametrize(
    "ref,needle",
    [
        ("nosuchmodule:make", "no module named 'nosuchmodule'"),
        ("supervisor.demo:nothing", "has no attribute 'nothing'"),
        ("supervisor.demo:TOOL_NAME", "is a str, not callable"),
        ("missingcolon", "expected MODULE:ATTR"),
        ("brokenagents:make", "importing 'brokenagents' raised ZeroDivisionError"),
    ],
)
def test_bad_agent_reference(demo_db: Path, tmp_path: Path, ref: str, needle: str) -> None:
    (tmp_path / "brokenagents.py").write_text("1 / 0\n")
    out = run_cli("resume", str(demo_db), "job-05", "--agent", ref, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and needle in out.stderr, out.stderr


def test_agent_from_current_directory_and_env(demo_db: Path, tmp_path: Path) -> None:
    (tmp_path / "myagents.py").write_text(
        "from supervisor.demo import demo_agent\n"
        "calls = []\n"
        "async def make(cp, thread_id):\n"
        "    print('factory called for', thread_id, flush=True)\n"
        "    return demo_agent(cp, thread_id)\n"
    )
    out = run_cli(
        "resume",
        str(demo_db),
        "job-05",
        "--force",
        env={"AGENT_SUPERVISOR_AGENT": "myagents:make"},
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "factory called for job-05" in out.stdout


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        (
            "def make(cp, thread_id):\n    raise ValueError('missing ANTHROPIC_API_KEY')\n",
            "agent 'badfactory:make': factory raised ValueError: missing ANTHROPIC_API_KEY",
        ),
        (
            "def make(cp):\n    return None\n",
            "agent 'badfactory:make': the factory must take (checkpointer, thread_id); "
            "its signature is make(cp)",
        ),
        (
            "def make(cp, thread_id):\n    return 42\n",
            "agent 'badfactory:make': factory returned int, not a cubeloop.Agent",
        ),
        (
            "from supervisor.demo import demo_agent\n"
            "def make(cp, thread_id):\n    return demo_agent(cp, 'another-thread')\n",
            "agent 'badfactory:make': the factory must build the Agent with the "
            "checkpointer and thread_id it is given",
        ),
        (
            "agent_supervisor_marker = 'not a function'\ndef make(cp, thread_id):\n    pass\n",
            "agent 'badfactory:make': agent_supervisor_marker is a str, not callable",
        ),
    ],
)
@pytest.mark.parametrize("command", ["resume", "prompt"])
def test_factory_errors_exit_2_at_start_with_one_full_line(
    demo_db: Path, tmp_path: Path, source: str, needle: str, command: str
) -> None:
    (tmp_path / "badfactory.py").write_text(source)
    target = ["job-05", "--force"] if command == "resume" else ["job-01", "more please"]
    out = run_cli(command, str(demo_db), *target, "--agent", "badfactory:make", cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stdout == ""
    assert out.stderr.strip() == f"agent-supervisor: error: {needle}"
    assert open_store(demo_db).get("job-05").state is State.BETWEEN_TURNS


def test_ctrl_c_aborts_gracefully_and_leaves_thread_resumable(demo_db: Path) -> None:
    proc = start_slow_resume(demo_db, "job-04")
    deadline = time.monotonic() + 30
    for line in proc.stdout:
        if line.startswith("⚙"):
            break
        assert time.monotonic() < deadline
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "aborting gracefully" in err
    assert "■ aborted" in out
    assert open_store(demo_db).get("job-04").state is State.ABORTED
    assert transcript_problems(demo_db, "job-04") == []


def test_demo_creates_every_state_and_refuses_to_overwrite(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    out = cli("demo", str(db))
    assert out.returncode == 0, out.stderr
    states = Counter(str(s.state) for s in open_store(db).threads())
    assert states == {
        "finished": 2,
        "mid_tool": 2,
        "after_tools": 1,
        "between_turns": 1,
        "aborted": 1,
        "error": 1,
        "empty": 1,
        "awaiting_input": 2,
        "answered": 1,
    }
    assert (tmp_path / "d.db.jobs").is_dir()
    before = db.read_bytes()
    again = cli("demo", str(db))
    assert again.returncode == 2 and "already exists" in again.stderr
    assert db.read_bytes() == before


def test_demo_children_report_how_each_ended_and_a_failed_runner_says_why(
    tmp_path: Path,
) -> None:
    from supervisor.demo_db import DemoFailed, child_arguments, run_children

    db, jobs = tmp_path / "c.db", tmp_path / "jobs"
    codes = run_children(
        [
            child_arguments(db, "killed", jobs, kill_at_event=5),
            child_arguments(db, "done", jobs, prompt="Process items A"),
        ]
    )
    assert codes == [-signal.SIGKILL, 0]  # forked children, one killed for real
    states = {s.thread_id: str(s.state) for s in open_store(db).threads()}
    assert states == {"killed": "between_turns", "done": "finished"}
    with pytest.raises(DemoFailed, match="the following arguments are required: --thread"):
        run_children([["--db", str(db), "--jobs-dir", str(jobs)]])


def test_list_shows_threads_leased_by_a_live_supervisor_as_running(
    demo_db: Path,
) -> None:
    proc = start_slow_resume(demo_db, "job-04")
    try:
        for line in proc.stdout:
            if line.startswith("⚙"):
                break
        listed = cli("list", str(demo_db), "--json", "--state", "running")
        assert [t["thread_id"] for t in json.loads(listed.stdout)] == ["job-04"]
    finally:
        proc.kill()
        proc.wait()
    after = cli("list", str(demo_db), "--json", "--state", "running")
    assert after.stdout.strip() == "[]"  # a SIGKILLed holder's lease is gone
