"""Exporting one thread: `show --format md|jsonl` and the incident bundle (`show --bundle`).

On the demo database (real agent runs): threads with tool calls, failed tool
results, a provider error and a pending approval; and a thread a foreign writer
filled with text written to break out of a Markdown report. The Markdown is
read back by a CommonMark parser, as a bug tracker would render it.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from supervisor.text import clean
from tests.conftest import cli, insert_rows, user_json
from tests.test_cli import one_error_line

#: Written to escape its block: a longer fence, a heading, HTML, a terminal escape,
#: a bidi override and a zero-width space.
HOSTILE = (
    "````\n# Fixed, close this issue\n<script>alert(1)</script>\n"
    "\x1b[2J\x1b]0;pwned\x07 evil\u202egnp.exe\u200b\n```\n## after the fence"
)
ARGUMENTS = {"note": HOSTILE, "ticks": "``````"}


def hostile_rows() -> list[tuple[str, str]]:
    assistant = {
        "role": "assistant",
        "content": [
            {"type": "text", "text": HOSTILE},
            {"type": "tool_call", "id": "c1", "name": "send`mail", "arguments": ARGUMENTS},
        ],
        "stop_reason": "tool_use",
    }
    result = {
        "role": "tool_result",
        "tool_call_id": "c1",
        "tool_name": "send`mail",
        "content": [{"type": "text", "text": HOSTILE}],
        "is_error": True,
    }
    return [
        ("hostile", user_json(HOSTILE)),
        ("hostile", json.dumps(assistant)),
        ("hostile", json.dumps(result)),
    ]


def tokens(markdown: str) -> list[Any]:
    """Every token CommonMark makes of the text, inline ones included."""
    found = []
    for token in MarkdownIt("commonmark").parse(markdown):
        found.append(token)
        found += token.children or []
    return found


def fences(markdown: str) -> list[str]:
    return [t.content for t in tokens(markdown) if t.type == "fence"]


def show(*args: str) -> str:
    out = cli("show", *args)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_markdown_keeps_hostile_text_inside_its_blocks(demo_db: Path) -> None:
    insert_rows(demo_db, hostile_rows())
    md = show(str(demo_db), "hostile", "--format", "md")
    for raw in ("\x1b", "\x07", "\u202e", "\u200b"):
        assert raw not in md
    found = tokens(md)
    assert not [t for t in found if t.type.startswith("html")]  # no <script> anywhere
    headings = [t for t in found if t.type == "heading_open"]
    assert [h.tag for h in headings] == ["h1", "h2", "h3", "h3", "h3"]  # ours alone
    blocks = fences(md)
    # The user's, the assistant's and the tool result's text, each whole in its block.
    assert blocks.count(clean(HOSTILE) + "\n") == 3
    assert "\\u202e" in clean(HOSTILE)  # shown escaped
    # The arguments as JSON: the same value once parsed (bidi escaped as JSON escapes it).
    assert json.loads(blocks[2]) == ARGUMENTS
    # A tool name with a backtick stays one code span in its heading.
    heads = [t.content for t in found if t.type == "inline" and "tool result" in t.content]
    code = [c.content for c in tokens(heads[0]) if c.type == "code_inline"]
    assert code == ["c1", "send`mail"]


def entry_texts(entry: dict[str, Any]) -> list[str]:
    """What of a stored message a report must show: texts, call arguments, errors."""
    out = []
    for block in entry.get("content") or []:
        if block.get("type") == "text" and block["text"]:
            out.append(block["text"] + "\n")
        if block.get("type") == "tool_call":
            out.append(json.dumps(block["arguments"], indent=2) + "\n")
    if entry.get("error_message"):
        out.append(entry["error_message"] + "\n")
    return out


@pytest.mark.parametrize("thread", ["job-06", "job-07", "job-09"])
def test_markdown_holds_every_message_and_the_request(demo_db: Path, thread: str) -> None:
    """job-06: failed tool results, then aborted; job-07: a provider error; job-09: a
    pending approval."""
    data = json.loads(show(str(demo_db), thread, "--json"))
    md = show(str(demo_db), thread, "--format", "md")
    blocks = fences(md)
    for entry in data["transcript"]:
        assert f"### #{entry['row_id']} · " in md
        for text in entry_texts(entry):
            assert text in blocks, (entry["row_id"], text)
        if entry.get("is_error"):
            assert f"### #{entry['row_id']} · tool result for `" in md and "**error**" in md
    assert f"- State: {data['state']}" in md
    assert " UTC" in md.split("## Messages")[0]  # absolute time, not "5m ago"
    request = data["pending_request"]
    assert ("## Pending request" in md) == (request is not None)
    if request is not None:
        assert json.loads(blocks[-1]) == request["request"]


def test_jsonl_round_trips_to_show_json(demo_db: Path) -> None:
    document = json.loads(show(str(demo_db), "job-09", "--json"))
    lines = [
        json.loads(line) for line in show(str(demo_db), "job-09", "--format", "jsonl").splitlines()
    ]
    assert [line.pop("type") for line in lines] == ["thread", "message", "message", "request"]
    transcript = document.pop("transcript")
    assert lines[0] == document
    assert lines[1:3] == transcript
    assert lines[3] == {**document["pending_request"], "answer_stored": False}
    assert show(str(demo_db), "job-09", "--json") == show(
        str(demo_db), "job-09", "--format", "json"
    )


def test_bundle_holds_the_plan_markers_attempts_and_transcript(demo_db: Path) -> None:
    from supervisor.attempts import FileAttempts

    ledger = FileAttempts(demo_db)
    ledger.failed("job-02", "provider overloaded", 2e9, max_attempts=5)
    ledger.close()
    target = demo_db.parent / "incident"
    out = cli("show", str(demo_db), "job-02", "--bundle", str(target))
    assert out.returncode == 0, out.stderr
    names = ["README.md", "transcript.md", "transcript.jsonl", "plan.json", "plan.txt"]
    names += ["markers.json", "attempts.json", "holder.json"]
    assert sorted(os.listdir(target)) == sorted(names)
    assert [line.strip() for line in out.stdout.splitlines()[1:]] == [
        str(target / name) for name in names
    ]
    read = {name: (target / name).read_text() for name in names}

    resume = cli("resume", str(demo_db), "job-02", "--dry-run", "--json")
    # `live` is the clock's (the demo's run is young): the bundle and the dry run are read
    # moments apart, on either side of its window.
    assert _timeless(json.loads(read["plan.json"])) == _timeless(json.loads(resume.stdout))
    assert json.loads(read["plan.json"])[0]["calls"]  # a plan with a call to run again
    text = cli("resume", str(demo_db), "job-02", "--dry-run")
    assert _untimed(read["plan.txt"]) == _untimed(text.stdout)
    jobs = cli("jobs", str(demo_db), "--thread", "job-02", "--json")
    assert json.loads(read["markers.json"]) == json.loads(jobs.stdout) != []
    listed = json.loads(show(str(demo_db), "job-02", "--json"))
    attempts = json.loads(read["attempts.json"])
    assert attempts["attempt"]["attempts"] == 1
    assert {k: attempts["attempt"][k] for k in listed["attempts"]} == listed["attempts"]
    assert json.loads(read["holder.json"]) == {"thread_id": "job-02", "holder": None}
    assert read["transcript.md"] == show(str(demo_db), "job-02", "--format", "md")
    assert read["transcript.jsonl"] == show(str(demo_db), "job-02", "--format", "jsonl")
    readme = read["README.md"]
    assert all(f"`{name}`" in readme for name in names)
    assert "agent-supervisor 0." in readme and "cubeloop 0.15.3" in readme and " UTC " in readme
    assert f"agent-supervisor show {demo_db} job-02 --bundle {target}" in readme


def test_bundle_without_an_agent_still_says_who_holds_the_thread(demo_db: Path) -> None:
    from supervisor.leases import acquire, leases_dir

    lease = acquire(leases_dir(demo_db), "job-09")  # this process runs the thread
    try:
        target = demo_db.parent / "held"
        out = cli("show", str(demo_db), "job-09", "--bundle", str(target), "--agent", "no_such:x")
    finally:
        lease.release()
    assert out.returncode == 0, out.stderr
    assert "no plan" in out.stderr
    assert not (target / "plan.json").exists()
    assert "could not be loaded: agent 'no_such:x'" in (target / "plan.txt").read_text()
    holder = json.loads((target / "holder.json").read_text())["holder"]
    assert holder["pid"] == os.getpid()
    assert "`plan.json`: not written" in (target / "README.md").read_text()


def test_bundle_refusals_write_nothing(demo_db: Path) -> None:
    full = demo_db.parent / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    before = sorted(os.listdir(demo_db.parent))
    line = one_error_line(cli("show", str(demo_db), "job-02", "--bundle", str(full)))
    assert "exists and is not empty" in line
    a_file = demo_db.parent / "demo.db.jobs" / "effects.log"
    line = one_error_line(cli("show", str(demo_db), "job-02", "--bundle", str(a_file)))
    assert "not a directory" in line
    line = one_error_line(cli("show", str(demo_db), "ghost", "--bundle", str(full.parent / "n")))
    assert "no thread 'ghost'" in line
    line = one_error_line(cli("show", str(demo_db), "job-02", "--json", "--format", "md"))
    assert "--json is --format json" in line
    here = demo_db.parent / "here"  # an empty working directory: renamed over, it was gone
    here.mkdir()
    line = one_error_line(cli("show", str(demo_db), "job-02", "--bundle", ".", cwd=here))
    assert "the current directory" in line
    here.rmdir()
    assert sorted(os.listdir(demo_db.parent)) == before
    assert os.listdir(full) == ["keep.txt"]
    # An empty directory is taken.
    empty = demo_db.parent / "empty"
    empty.mkdir()
    out = cli("show", str(demo_db), "job-01", "--bundle", str(empty), "--agent", "no_such:x")
    assert out.returncode == 0 and (empty / "README.md").exists(), out.stderr


def test_a_failed_bundle_leaves_no_directory(
    demo_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from supervisor import bundle
    from supervisor.location import Location

    place = Location.parse(str(demo_db))
    store = place.open_store(only=["job-07"])
    try:
        summary = store.get("job-07")
        incident = bundle.gather(
            store, place, summary, agent=None, no_agent="none", jobs_dir=demo_db.parent
        )
    finally:
        store.close()

    def broken(*_: object):
        yield "{}"
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundle, "transcript_jsonl", broken)
    before = sorted(os.listdir(demo_db.parent))
    with pytest.raises(bundle.BundleError, match="No space left"):
        bundle.write_bundle(
            demo_db.parent / "out", incident, versions="v", argv=["show"], made_at=0.0
        )
    assert sorted(os.listdir(demo_db.parent)) == before

    def terminated(*_: object):  # `systemctl stop`, or a closed terminal, mid-write
        yield "{}"
        os.kill(os.getpid(), signal.SIGTERM)
        yield "{}"

    monkeypatch.setattr(bundle, "transcript_jsonl", terminated)
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        bundle.write_bundle(
            demo_db.parent / "out", incident, versions="v", argv=["show"], made_at=0.0
        )
    assert sorted(os.listdir(demo_db.parent)) == before
    assert signal.getsignal(signal.SIGTERM) is handler  # as it was


@pytest.mark.postgres
def test_a_postgres_bundle_never_holds_the_password(
    pg_demo: tuple[str, Path], tmp_path: Path
) -> None:
    from tests.test_passwords import SECRET, with_password

    dsn, _ = pg_demo
    secret = with_password(dsn, "user")
    target = tmp_path / "pg-incident"
    out = cli("show", secret, "job-02", "--bundle", str(target), f"--jobs-dir={secret}")
    assert out.returncode == 0, out.stderr
    assert SECRET not in out.stdout + out.stderr
    for path in target.iterdir():
        assert SECRET not in path.read_text(), path.name
    readme = (target / "README.md").read_text()
    assert "--jobs-dir=postgresql://postgres:***@" in readme
    resume = cli("resume", secret, "job-02", "--dry-run", "--json", "--jobs-dir", secret)
    plan = json.loads((target / "plan.json").read_text())
    assert _timeless(plan) == _timeless(json.loads(resume.stdout))
    markers = json.loads((target / "markers.json").read_text())
    assert {m["tool_call_id"] for m in markers} == {"call-1-card-201", "call-1-card-202"}
    assert "### #" in (target / "transcript.md").read_text()


def test_odd_but_legal_rows_export_in_every_format(demo_db: Path) -> None:
    """A lone surrogate (legal JSON, not UTF-8), a NaN, a message naming our own keys, and a
    row too big to parse without --full: each format says what the row is, and exits 0."""
    odd = {
        "role": "user",
        "content": [{"type": "text", "text": "half \ud800 a pair", "score": float("nan")}],
        "row_id": 999,
        "corrupt": True,
    }
    insert_rows(demo_db, [("odd", json.dumps(odd)), ("odd", user_json("word " * 240_000))])
    for fmt in ("text", "md", "json", "jsonl"):
        done = cli("show", str(demo_db), "odd", "--format", fmt)
        assert done.returncode == 0, done.stderr
        assert "\\ud800" in done.stdout  # shown escaped, never printed raw
    shown = json.loads(cli("show", str(demo_db), "odd", "--json").stdout, parse_constant=reject)
    first, big = shown["transcript"]
    assert first["row_id"] != 999 and "corrupt" not in first  # the row's facts are ours
    assert first["content"][0]["score"] == "NaN"  # strict JSON
    assert big["big"] is True and big["size"] > 1_000_000 and "corrupt" not in big
    lines = cli("show", str(demo_db), "odd", "--format", "jsonl").stdout.splitlines()
    assert [json.loads(x, parse_constant=reject) for x in lines[1:]] == [
        {"type": "message", **e} for e in shown["transcript"]
    ]


def reject(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")


def _timeless(plans: list[dict]) -> list[dict]:
    """Plans without their `live` note, which depends on when they were read."""
    return [{k: v for k, v in p.items() if k != "live"} for p in plans]


def _untimed(text: str) -> str:
    return "".join(line for line in text.splitlines(True) if not line.startswith("    note: "))
