"""Places a run writes to, checked before it starts: one line and exit 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import cli, run_demo_child


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "p.db"
    run_demo_child(path, "t", tmp_path / "p.db.jobs", kill_at_marker="after_start:A")
    return path


def one_line_exit_2(out, says: str) -> None:
    assert out.returncode == 2, out.stdout + out.stderr
    assert says in out.stderr and len(out.stderr.splitlines()) == 1, out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("command", [["resume", "t", "--force"], ["jobs"], ["prune"]])
def test_a_jobs_directory_that_is_a_file(db: Path, tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "afile").write_text("")
    out = cli(command[0], str(db), *command[1:], "--jobs-dir", str(tmp_path / "afile"))
    one_line_exit_2(out, "not a directory (job markers are kept in a directory)")


def test_a_leases_directory_that_is_a_file(db: Path) -> None:
    db.with_name("p.db.leases").write_text("")
    out = cli("resume", str(db), "t", "--force", "--jobs-dir", str(db.with_name("p.db.jobs")))
    one_line_exit_2(out, "not a directory of ours")


def test_a_watcher_file_that_is_not_a_database(db: Path) -> None:
    db.with_name("p.db.watch").write_text("not sqlite at all " * 100)
    out = cli("watch", str(db), "--jobs-dir", str(db.with_name("p.db.jobs")))
    one_line_exit_2(out, "cannot keep the watcher's records")


def test_demo_into_a_directory(tmp_path: Path) -> None:
    one_line_exit_2(cli("demo", str(tmp_path)), "not a regular file")
    one_line_exit_2(cli("demo", "."), "not a regular file")


@pytest.mark.parametrize(
    "command",
    [["watch", "missing.db"], ["prompt", "new.db", "t", "hi", "--agent", "nowhere:agent"]],
)
def test_a_refused_run_makes_no_leases_directory(tmp_path: Path, command: list[str]) -> None:
    """The check of where a run will keep its leases made the directory, refusal or not."""
    db = tmp_path / command[1]
    out = cli(command[0], str(db), *command[2:])
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "command", [["jobs"], ["resume", "t", "--dry-run"], ["show", "t", "--bundle", "b"]]
)
def test_markers_on_a_server_that_does_not_answer(db: Path, command: list[str]) -> None:
    url = "postgresql://u:s3cret@127.0.0.1:1/x"  # nothing listens on port 1
    out = cli(command[0], str(db), *command[1:], "--jobs-dir", url)
    one_line_exit_2(out, "127.0.0.1:1")
    assert "s3cret" not in out.stderr and not db.with_name("b").exists()
