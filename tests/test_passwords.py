"""A database password is never printed, never in a child's environment, never needed in argv."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.urls import redact, without_password
from tests.conftest import ROOT, cli

SECRET = "s3cr3t-Pa55"


def with_password(dsn: str, how: str) -> str:
    head, rest = dsn.split("://", 1)
    if how == "user":
        user, host = rest.split("@", 1)
        return f"{head}://{user}:{SECRET}@{host}"
    if how == "encoded":  # the key percent-encoded: asyncpg decodes it, and uses it
        return f"{dsn}?sslmode=disable&pass%77ord={SECRET}"
    return f"{dsn}?password={SECRET}"


@pytest.mark.parametrize("how", ["user", "query", "encoded"])
def test_redact_hides_the_password_wherever_it_is(how: str) -> None:
    dsn = with_password("postgresql://postgres@127.0.0.1:5432/db", how)
    assert SECRET not in redact(dsn) and "***" in redact(dsn)
    assert SECRET not in without_password(dsn) and "***" not in without_password(dsn)
    assert without_password(dsn).startswith("postgresql://postgres@127.0.0.1:5432/db")


@pytest.mark.parametrize("how", ["user", "query", "encoded"])
def test_an_unreachable_server_never_prints_the_password(how: str) -> None:
    out = cli("list", with_password("postgresql://u@127.0.0.1:1/db", how))
    assert out.returncode == 2 and SECRET not in out.stdout + out.stderr


@pytest.mark.postgres
@pytest.mark.parametrize("how", ["user", "query"])
def test_no_thread_errors_and_children_never_see_the_password(
    pg_demo: tuple[str, Path], tmp_path: Path, how: str
) -> None:
    dsn, ledger = pg_demo
    secret_dsn = with_password(dsn, how)  # the tests' server trusts: the password is ignored
    out = cli("resume", secret_dsn, "nope")
    assert out.returncode == 2 and "no thread 'nope'" in out.stderr
    assert SECRET not in out.stdout + out.stderr
    note = tmp_path / "note"
    env = {
        **os.environ,
        "ENVSPY_NOTE": str(note),
        "JOB_DIR": str(ledger),
        "AGENT_SUPERVISOR_DEMO_TOOL_SECONDS": "0",
        "AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND": "0",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "supervisor",
            "resume",
            secret_dsn,
            "job-04",
            "--force",
            "--jobs-dir",
            secret_dsn,
            "--agent",
            "tests.agents.envspy:agent",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert SECRET not in done.stdout + done.stderr
    inherited = note.read_text()
    assert inherited and SECRET not in inherited  # the URL, without its password


@pytest.mark.postgres
def test_the_url_can_come_from_the_environment(pg_demo: tuple[str, Path]) -> None:
    dsn, _ = pg_demo
    env = {**os.environ, "MY_DB": dsn}
    out = subprocess.run(
        [sys.executable, "-m", "supervisor", "list", "env:MY_DB"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "job-04" in out.stdout, out.stderr
    missing = cli("list", "env:NO_SUCH_VARIABLE_SET")
    assert missing.returncode == 2 and "$NO_SUCH_VARIABLE_SET is not set" in missing.stderr


@pytest.mark.postgres
@pytest.mark.parametrize("how", ["user", "query"])
def test_no_json_output_carries_the_password(pg_demo: tuple[str, Path], how: str) -> None:
    dsn, _ = pg_demo
    secret_dsn = with_password(dsn, how)
    for args in (
        ["list", secret_dsn, "--json"],
        ["jobs", secret_dsn, "--jobs-dir", secret_dsn, "--json"],
        ["resume", secret_dsn, "--all", "--dry-run", "--json", "--jobs-dir", secret_dsn],
        ["prune", secret_dsn, "--jobs-dir", secret_dsn, "--dry-run", "--json"],
        ["show", secret_dsn, "job-04", "--json"],
    ):
        out = cli(*args)
        assert out.returncode == 0, (args[0], out.stderr)
        assert out.stdout.lstrip().startswith(("[", "{")), args[0]
        assert SECRET not in out.stdout + out.stderr, args[0]
