"""`prune`: markers of finished threads go, everything a resume may still read stays."""

from __future__ import annotations

import json
import os
from pathlib import Path

from supervisor import prune
from supervisor.jobs import JobMarkers, job_key, read_markers
from supervisor.leases import acquire, lease_path, leases_dir
from tests.conftest import cli


def _by_thread(jobs: Path) -> dict[str | None, int]:
    counts: dict[str | None, int] = {}
    for m in read_markers(jobs):
        counts[m.thread_id] = counts.get(m.thread_id, 0) + 1
    return counts


def _age(jobs: Path, days: float) -> None:
    """Every marker file written `days` ago, as a fleet that ran then left it."""
    then = os.path.getmtime(jobs) - days * 86400
    for path in jobs.glob("*.json"):
        record = json.loads(path.read_text())
        for field in ("started_at", "done_at"):
            if record.get(field) is not None:
                record[field] = then
        path.write_text(json.dumps(record))


def test_prune_removes_only_the_markers_of_settled_threads(demo_db: Path) -> None:
    jobs = demo_db.with_name("demo.db.jobs")
    markers = JobMarkers(jobs)
    # Someone else's thread (a shared JOB_DIR), and a marker naming no thread.
    markers.start(job_key("mail", {"to": "x"}), tool="mail", arguments={}, thread_id="elsewhere")
    markers.start(job_key("mail", {"to": "y"}), tool="mail", arguments={}, thread_id=None)
    _age(jobs, 30)
    before = _by_thread(jobs)
    assert before["job-01"] and before["job-10"] and before["job-02"]  # finished, mid_tool

    dry = cli("prune", str(demo_db), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would remove 9 marker(s)" in dry.stdout
    assert _by_thread(jobs) == before  # a dry run removes nothing

    out = cli("prune", str(demo_db), "--json")
    assert out.returncode == 0, out.stderr
    verdicts = json.loads(out.stdout)
    removed = {v["thread_id"] for v in verdicts if v["removed"]}
    assert removed == {"job-01", "job-10"}  # the finished threads
    after = _by_thread(jobs)
    assert "job-01" not in after and "job-10" not in after
    # Every thread a resume may still take up keeps every marker; so do the unknown.
    assert after == {t: n for t, n in before.items() if t not in ("job-01", "job-10")}
    reasons = {v["thread_id"]: v["why"] for v in verdicts if not v["remove"]}
    assert reasons["elsewhere"] == "thread not in this database"
    assert reasons[None] == "names no thread"
    assert reasons["job-02"] == "thread not finished"


def test_prune_keeps_markers_newer_than_the_cutoff(demo_db: Path) -> None:
    jobs = demo_db.with_name("demo.db.jobs")
    before = _by_thread(jobs)
    out = cli("prune", str(demo_db))  # a week by default; the demo's are seconds old
    assert out.returncode == 0, out.stderr
    assert "removed 0 marker(s)" in out.stdout and "newer than the cutoff" in out.stdout
    assert _by_thread(jobs) == before


def test_a_marker_rewritten_after_it_was_judged_is_kept(tmp_path: Path) -> None:
    """A thread prompted again rewrites the marker of a call it repeats: the fresh record,
    which a resume may need, is not taken for the old one."""
    markers = JobMarkers(tmp_path)
    key = job_key("charge", {"card": 1})
    markers.start(key, tool="charge", arguments={"card": 1}, thread_id="t")
    markers.finish(key, "ok")
    (judged,) = read_markers(tmp_path)
    markers.start(key, tool="charge", arguments={"card": 1}, thread_id="t")  # a new call
    assert prune.remove(tmp_path, judged) is False
    assert markers.get(key) is not None and markers.get(key).status == "started"
    (fresh,) = read_markers(tmp_path)
    assert prune.remove(tmp_path, fresh) is True
    assert markers.get(key) is None


def test_prune_removes_lease_files_nobody_holds(demo_db: Path) -> None:
    directory = leases_dir(demo_db)
    directory.mkdir(mode=0o700, exist_ok=True)
    for i in range(5):
        lease_path(directory, f"gone-{i}").write_text("")  # left by holders long dead
    held = acquire(directory, "job-02")  # a live holder: its file stays
    try:
        out = cli("prune", str(demo_db))
        assert out.returncode == 0, out.stderr
        assert "removed 5 lease file(s)" in out.stdout
        assert [p.name for p in directory.glob("*.lock")] == [lease_path(directory, "job-02").name]
    finally:
        held.release()


def test_prune_refuses_bad_input_with_one_line(demo_db: Path, tmp_path: Path) -> None:
    for args, said in (
        (("prune", str(demo_db), "--older-than", "nan"), "--older-than"),
        (("prune", str(demo_db), "--older-than", "-1"), "--older-than"),
        (("prune", str(tmp_path / "missing.db")), "missing.db"),
    ):
        out = cli(*args)
        assert out.returncode == 2, out
        assert said in out.stderr and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "missing.db").exists()


def test_prune_on_postgres_removes_rows_of_finished_threads(pg_demo: tuple[str, Path]) -> None:
    dsn, _ = pg_demo
    listed = json.loads(cli("jobs", dsn, "--json").stdout)
    finished = {"job-01", "job-10"}
    assert {m["thread_id"] for m in listed} & finished
    out = cli("prune", dsn, "--older-than", "0", "--json")
    assert out.returncode == 0, out.stderr
    assert {v["thread_id"] for v in json.loads(out.stdout) if v["removed"]} == finished
    left = json.loads(cli("jobs", dsn, "--json").stdout)
    assert not {m["thread_id"] for m in left} & finished
    assert len(left) == len([m for m in listed if m["thread_id"] not in finished])
