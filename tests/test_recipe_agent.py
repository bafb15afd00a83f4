"""The recipe's own agent (tests/agents/recipe.py), crashed for real, resumed by the CLI.

Each thread is run by the recipe's `main()` in a child process with JOB_DIR
set, and SIGKILLed at one point. The supervisor is then run as a user would,
with only `--jobs-dir` (no JOB_DIR in its environment): its dry-run must say
`reuse` exactly for calls whose recipe marker exists, and the resume must
finish every thread with every transcode done exactly once (the ledger the
tool appends to counts them).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import ROOT, transcript_problems

AGENT = "tests.agents.recipe:build"

#: thread -> (how the child is stopped, the state it must be left in)
CRASHES: dict[str, tuple[dict[str, str], list[str], str]] = {
    "between-turns": ({}, ["--kill-on", "message_end.user:1"], "between_turns"),
    "after-tools": ({}, ["--kill-on", "turn_end:1"], "after_tools"),
    "before-marker": ({"RECIPE_KILL": "during_work:/v/before-marker-a.mov"}, [], "mid_tool"),
    "after-marker": ({"RECIPE_KILL": "after_marker:/v/after-marker-a.mov"}, [], "mid_tool"),
    "in-batch": ({"RECIPE_KILL": "during_work:/v/in-batch-b.mov"}, [], "mid_tool"),
    "after-abort": ({}, ["--abort-on", "tool_execution_start:1"], "aborted"),
}


def prompt_for(thread: str) -> str:
    return " and ".join(f"/v/{thread}-{x}.mov to /o/{thread}-{x}.mp4" for x in "abc")


def recipe_marker(jobs: Path, source: str, output: str) -> Path:
    """Where the recipe keeps a call's marker (its own scheme, written out here)."""
    return jobs / f"{f'transcode:{source}->{output}'.replace('/', '_')}.json"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("JOB_DIR", "RECIPE_KILL")}
    return {**env, **extra}


def supervisor(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("recipe")
    db, jobs, ledger = base / "jobs.db", base / "jobs", base / "ledger"
    for thread, (env, flags, _) in CRASHES.items():
        done = subprocess.run(
            [sys.executable, "-m", "tests.agents.recipe", thread, "Transcode " + prompt_for(thread)]
            + ["--db", str(db), *flags],
            cwd=ROOT,
            env=clean_env(JOB_DIR=str(jobs), RECIPE_LEDGER=str(ledger), **env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        killed = "--abort-on" not in flags
        assert done.returncode == (-signal.SIGKILL if killed else 0), done.stderr
    return db, jobs, ledger


def test_crashes_leave_the_expected_states(crashed: tuple[Path, Path, Path]) -> None:
    db, _, _ = crashed
    out = supervisor("list", str(db), "--json", env=clean_env())
    states = {t["thread_id"]: t["state"] for t in json.loads(out.stdout)}
    assert states == {thread: want for thread, (_, _, want) in CRASHES.items()}


def test_dry_run_says_reuse_exactly_where_the_recipe_marker_is_done(
    crashed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    db, jobs, ledger = crashed
    before = db.read_bytes()
    out = supervisor(
        "resume",
        str(db),
        "--all",
        "--dry-run",
        "--json",
        "--agent",
        AGENT,
        "--jobs-dir",
        str(jobs),
        env=clean_env(RECIPE_LEDGER=str(ledger)),
    )
    assert out.returncode == 0, out.stderr
    plans = {p["thread_id"]: p for p in json.loads(out.stdout)}
    assert set(plans) == set(CRASHES)
    verdicts: dict[str, str] = {}
    for plan in plans.values():
        for call in plan["calls"]:
            args = call["arguments"]
            marker = recipe_marker(jobs, args["source_path"], args["output_path"])
            expected = "reuse" if marker.exists() else "rerun"
            assert call["verdict"] == expected, call
            if expected == "reuse":
                assert call["marker"] == str(marker)
                assert call["matched_by"] == "argument values in file name"
            verdicts[args["source_path"]] = call["verdict"]
    # The crash points give both verdicts: a marker written before the kill is reused.
    assert verdicts["/v/after-marker-a.mov"] == "reuse"
    assert verdicts["/v/before-marker-a.mov"] == "rerun"
    assert verdicts["/v/in-batch-b.mov"] == "rerun"
    assert plans["after-abort"]["state"] == "aborted" and plans["after-abort"]["calls"] == []
    assert db.read_bytes() == before, "a dry run must not write"


def test_resume_with_only_jobs_dir_does_every_transcode_once(
    crashed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    import shutil

    src_db, src_jobs, src_ledger = crashed
    db, jobs, ledger = tmp_path / "jobs.db", tmp_path / "jobs", tmp_path / "ledger"
    shutil.copy(src_db, db)
    shutil.copytree(src_jobs, jobs)
    shutil.copy(src_ledger, ledger)
    out = supervisor(
        "resume",
        str(db),
        "--all",
        "--force",
        "--agent",
        AGENT,
        "--jobs-dir",
        str(jobs),
        env=clean_env(RECIPE_LEDGER=str(ledger)),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    listed = json.loads(supervisor("list", str(db), "--json", env=clean_env()).stdout)
    assert {t["state"] for t in listed} == {"finished"}
    done = Counter(line.split("\t")[0] for line in ledger.read_text().splitlines())
    expected = {f"/v/{t}-{x}.mov" for t in CRASHES for x in "abc"}
    assert set(done) == expected
    assert [s for s, n in done.items() if n != 1] == [], done
    for thread in CRASHES:
        assert transcript_problems(db, thread) == []


def test_jobs_for_a_thread_lists_the_recipe_marker_it_matched(
    crashed: tuple[Path, Path, Path],
) -> None:
    db, jobs, _ = crashed
    out = supervisor(
        "jobs",
        str(db),
        "--jobs-dir",
        str(jobs),
        "--thread",
        "after-marker",
        "--json",
        env=clean_env(),
    )
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert [m["path"] for m in found] == [
        str(recipe_marker(jobs, "/v/after-marker-a.mov", "/o/after-marker-a.mp4"))
    ]
    assert found[0]["matched_by"] == "argument values in file name"
    assert found[0]["status"] == "done"
