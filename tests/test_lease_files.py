"""File leases an operator's machine can break: a full disk, a shared directory, piles of files.

A lease is an `flock` on a file in `DB.leases/`. Taking one must close its
descriptor on every error (a leaked one held the lock until the process
exited), never follow a symlink someone planted there, never leave a
directory others can write, and a released lease must leave no file behind
(thousands of them made every refresh slow).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from supervisor.leases import (
    LeaseError,
    LeaseHeld,
    acquire,
    held_elsewhere,
    lease_path,
    live_leases,
    prune,
)
from tests.conftest import ROOT, cli, run_demo_child


def test_a_write_that_fails_closes_the_lease_and_leaves_it_free(tmp_path: Path) -> None:
    """A full disk, in a child: writes past size 0 fail (RLIMIT_FSIZE, as ENOSPC would)."""
    script = textwrap.dedent(
        f"""
        import resource, signal
        from pathlib import Path
        from supervisor.leases import LeaseError, acquire
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
        try:
            acquire(Path({str(tmp_path / "leases")!r}), "t")
        except LeaseError as exc:
            print("refused:", exc)
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        lease = acquire(Path({str(tmp_path / "leases")!r}), "t")  # the lock was let go
        print("taken", lease.fd >= 0)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert "refused:" in out.stdout and "cannot write the lease" in out.stdout
    assert "taken True" in out.stdout


def test_a_symlink_planted_among_the_leases_is_never_followed(tmp_path: Path) -> None:
    directory = tmp_path / "leases"
    directory.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.symlink(victim, lease_path(directory, "t"))
    with pytest.raises(LeaseError, match="cannot take the lease"):
        acquire(directory, "t")
    assert victim.read_text() == "precious"
    assert held_elsewhere(directory, "t") is None and live_leases(directory) == {}


def test_a_leases_directory_that_is_a_symlink_or_open_to_others_is_refused_or_closed(
    tmp_path: Path,
) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir()
    link = tmp_path / "linked"
    os.symlink(real, link)
    with pytest.raises(LeaseError, match="not a directory of ours"):
        acquire(link, "t")
    open_to_all = tmp_path / "open"
    open_to_all.mkdir()
    os.chmod(open_to_all, 0o777)
    acquire(open_to_all, "t").release()
    assert stat.S_IMODE(open_to_all.stat().st_mode) & 0o022 == 0


def test_a_leases_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a directory to another user")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)  # nobody
    with pytest.raises(LeaseError, match="owned by another user"):
        acquire(theirs, "t")


def test_directories_are_made_closed_whatever_the_umask(tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    old = os.umask(0)
    try:
        run_demo_child(db, "t", tmp_path / "u.db.jobs", kill_at_marker="after_start:A")
        out = cli("resume", str(db), "t", "--force", "--jobs-dir", str(tmp_path / "u.db.jobs"))
    finally:
        os.umask(old)
    assert out.returncode == 0, out.stderr
    leases = tmp_path / "u.db.leases"
    assert stat.S_IMODE(leases.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "u.db.jobs").stat().st_mode) == 0o750


def test_a_released_lease_leaves_no_file_and_dead_holders_files_are_pruned(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "leases"
    acquire(directory, "a").release()
    assert list(directory.glob("*.lock")) == []
    held = acquire(directory, "held")
    # What a SIGKILLed holder (or an older version) left: a file nobody holds.
    lease_path(directory, "dead").write_text(json.dumps({"thread_id": "dead", "pid": 1}))
    assert prune(directory) == 1
    assert [p.name for p in directory.glob("*.lock")] == [lease_path(directory, "held").name]
    with pytest.raises(LeaseHeld):
        acquire(directory, "held")
    held.release()


def test_a_resume_leaves_no_lease_file(tmp_path: Path) -> None:
    db, jobs = tmp_path / "r.db", tmp_path / "jobs"
    run_demo_child(db, "t", jobs, kill_at_marker="after_start:A")
    out = cli("resume", str(db), "t", "--force", "--jobs-dir", str(jobs))
    assert out.returncode == 0, out.stderr
    assert list((tmp_path / "r.db.leases").glob("*")) == []


def test_threads_queued_behind_max_concurrent_hold_no_lease(demo_db: Path) -> None:
    """`resume --all --max-concurrent 1`: one thread runs and holds its lease; the others
    wait for a slot without one, so another supervisor can still take them."""
    import time

    jobs = demo_db.with_name("demo.db.jobs")
    env = {
        **os.environ,
        "JOB_DIR": str(jobs),
        "AGENT_SUPERVISOR_DEMO_TOOL_SECONDS": "3",
        "AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND": "0",
    }
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "supervisor",
            "resume",
            str(demo_db),
            "--all",
            "--force",
            "--max-concurrent",
            "1",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in run.stdout:
            if "⚙" in line:
                break
        time.sleep(0.5)
        held = live_leases(demo_db.with_name("demo.db.leases"))
        listed = json.loads(cli("list", str(demo_db), "--json", "--state", "running").stdout)
    finally:
        run.kill()
        run.communicate()
    assert len(held) == 1 and [t["thread_id"] for t in listed] == list(held)
