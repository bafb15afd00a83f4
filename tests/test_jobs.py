"""Job markers: keys, safe file names, atomic records, the reader."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from cubeloop import AgentToolResult, TextContent
from pydantic import BaseModel

from supervisor.jobs import JobMarkers, current_thread, idempotent, job_key, read_markers
from supervisor.location import Location
from supervisor.markers import marker_filename


def test_key_is_deterministic_and_order_free() -> None:
    assert job_key("charge", {"a": 1, "b": [1, 2]}) == job_key("charge", {"b": [1, 2], "a": 1})
    assert job_key("charge", {"a": 1}) != job_key("refund", {"a": 1})
    assert job_key("charge", {"a": 1}) != job_key("charge", {"a": 2})


def test_filenames_are_safe_short_and_distinct(tmp_path: Path) -> None:
    keys = ["a/b", "a_b", "../../etc/passwd", "x" * 10_000, "", "ünï\x00cødé", "a\\b"]
    names = [marker_filename(k) for k in keys]
    assert len(set(names)) == len(keys)
    for name in names:
        assert "/" not in name and "\\" not in name and "\x00" not in name
        assert not name.startswith(".")
        assert len(name) < 100
    markers = JobMarkers(tmp_path / "jobs")
    for key in keys:
        markers.start(key, tool="t", arguments={"k": key})
    written = sorted(p.name for p in (tmp_path / "jobs").iterdir())
    assert written == sorted(names)  # nothing escaped the directory
    assert {m.key for m in read_markers(tmp_path / "jobs")} == set(keys)


def test_started_then_done_records(tmp_path: Path) -> None:
    markers = JobMarkers(tmp_path)
    key = job_key("mail", {"to": "a@b"})
    token = current_thread.set("job-7")
    try:
        markers.start(key, tool="mail", arguments={"to": "a@b"}, tool_call_id="c9")
    finally:
        current_thread.reset(token)
    started = markers.get(key)
    assert started.status == "started" and not started.done
    assert (started.tool, started.tool_call_id, started.thread_id) == (
        "mail",
        "c9",
        "job-7",
    )
    assert started.started_at is not None and started.done_at is None
    markers.finish(key, {"text": "sent"})
    done = markers.get(key)
    assert done.done and done.result == {"text": "sent"}
    assert done.started_at == started.started_at and done.done_at >= done.started_at
    assert [p.name for p in tmp_path.iterdir()] == [marker_filename(key)]  # no temp left


def test_atomic_write_leaves_old_marker_when_interrupted(tmp_path: Path, monkeypatch) -> None:
    markers = JobMarkers(tmp_path)
    markers.start("k", tool="t", arguments={})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        markers.finish("k", {"text": "x"})
    assert markers.get("k").status == "started"
    assert [p.name for p in tmp_path.iterdir()] == [marker_filename("k")]


def test_reader_accepts_recipe_markers_and_bad_files(tmp_path: Path) -> None:
    (tmp_path / "transcode:_a.mov->_b.mp4.json").write_text(json.dumps({"output_path": "/b.mp4"}))
    (tmp_path / "broken.json").write_text("{nope")
    (tmp_path / "notes.txt").write_text("ignored")
    found = {m.key: m for m in read_markers(tmp_path)}
    assert set(found) == {"transcode:_a.mov->_b.mp4", "broken"}
    recipe = found["transcode:_a.mov->_b.mp4"]
    assert recipe.done and recipe.foreign and recipe.result == {"output_path": "/b.mp4"}
    assert found["broken"].status == "unreadable"


def test_reader_of_missing_directory_is_empty(tmp_path: Path) -> None:
    assert read_markers(tmp_path / "absent") == []


def test_jobs_dir_precedence(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    place = Location.parse(db)
    assert place.jobs("/x/flag", {"JOB_DIR": "/x/env"}).path == Path("/x/flag")
    assert place.jobs(None, {"JOB_DIR": "/x/env"}).path == Path("/x/env")
    default = place.jobs(None, {}).path
    assert default == tmp_path / "jobs.db.jobs"
    assert not str(default).startswith("/tmp/cubepi")


class Params(BaseModel):
    to: str


def test_idempotent_decorator_runs_work_once(tmp_path: Path) -> None:
    runs: list[str] = []

    @idempotent(JobMarkers(tmp_path), tool_name="mail")
    async def send(tool_call_id, params, *, signal=None, on_update=None):
        runs.append(params.to)
        return AgentToolResult(content=[TextContent(text=f"sent to {params.to}")], details={"n": 1})

    first = asyncio.run(send("c1", Params(to="a@b")))
    again = asyncio.run(send("c2", Params(to="a@b")))
    other = asyncio.run(send("c3", Params(to="c@d")))
    assert runs == ["a@b", "c@d"]
    assert first.content[0].text == again.content[0].text == "sent to a@b"
    assert again.details == {"n": 1}
    assert other.content[0].text == "sent to c@d"


def test_idempotent_decorator_does_not_mark_errors_done(tmp_path: Path) -> None:
    runs: list[str] = []

    @idempotent(JobMarkers(tmp_path), tool_name="mail")
    async def send(tool_call_id, params, *, signal=None, on_update=None):
        runs.append(params.to)
        return AgentToolResult(content=[TextContent(text="bounced")], is_error=True)

    asyncio.run(send("c1", Params(to="a@b")))
    asyncio.run(send("c2", Params(to="a@b")))
    assert runs == ["a@b", "a@b"]


def test_markers_are_read_again_only_where_they_changed(tmp_path, monkeypatch) -> None:
    """The detail pane reads the markers on every selection: unchanged files are not parsed
    again, and every change (a new marker, a finished one, one removed) is seen."""
    import supervisor.markers as jobs

    markers = jobs.JobMarkers(tmp_path)
    for i in range(20):
        markers.start(f"k{i}", tool="t", arguments={"i": i})
    parsed: list[str] = []
    real = jobs.read_marker
    monkeypatch.setattr(jobs, "read_marker", lambda p: parsed.append(p.name) or real(p))
    first = read_markers(tmp_path)
    assert len(first) == 20 and len(parsed) == 20
    parsed.clear()
    assert read_markers(tmp_path) == first and parsed == []  # nothing changed
    markers.finish("k3", {"text": "done"})
    markers.start("new", tool="t", arguments={})
    (tmp_path / jobs.marker_filename("k7")).unlink()
    again = {m.key: m for m in read_markers(tmp_path)}
    assert sorted(parsed) == sorted(jobs.marker_filename(k) for k in ("k3", "new"))
    assert again["k3"].done and "new" in again and "k7" not in again and len(again) == 20


def test_readers_asking_together_parse_the_directory_once(tmp_path, monkeypatch) -> None:
    """The app's workers ask for the markers together as it starts: at 50,000 files each
    parsed them all. The later ones wait for the first reading and reuse it."""
    import threading

    import supervisor.markers as jobs

    markers = jobs.JobMarkers(tmp_path)
    for i in range(200):
        markers.start(f"k{i}", tool="t", arguments={"i": i})
    parsed: list[str] = []
    real = jobs.read_marker

    def slow(path):
        parsed.append(path.name)
        return real(path)

    monkeypatch.setattr(jobs, "read_marker", slow)
    monkeypatch.setattr(jobs._MarkerDirectory, "SETTLED_NS", 0)
    results: list[int] = []
    readers = [
        threading.Thread(target=lambda: results.append(len(read_markers(tmp_path))))
        for _ in range(4)
    ]
    for r in readers:
        r.start()
    for r in readers:
        r.join()
    assert results == [200] * 4
    assert len(parsed) == 200  # each file once, not once per reader
