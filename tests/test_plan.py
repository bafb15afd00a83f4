"""The plan: which marker decides each unanswered call, how it was found, and the verdict."""

from __future__ import annotations

import json
from pathlib import Path

from cubeloop import TextContent, ToolCall, ToolResultMessage, UserMessage
from cubeloop.providers.faux import faux_assistant_message

from supervisor.jobs import JobMarkers, job_key, read_markers
from supervisor.plan import MarkerIndex, MatchedBy, Verdict, dangling_calls, plan_thread
from supervisor.states import State, ThreadSummary, ToolCallInfo
from supervisor.tool_calls import answer_dangling_calls

CALL = ToolCallInfo(
    "toolu_1", "transcode_video", {"source_path": "/v/a.mov", "output_path": "/o/a.mp4"}
)


def recipe_marker(jobs: Path, src: str, dst: str, body: str | None = None) -> Path:
    path = jobs / f"{f'transcode:{src}->{dst}'.replace('/', '_')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body if body is not None else json.dumps({"output_path": dst}))
    return path


def index(jobs: Path, hook=None) -> MarkerIndex:
    return MarkerIndex(jobs, read_markers(jobs), hook)


def test_recipe_marker_is_matched_by_argument_values(tmp_path: Path) -> None:
    path = recipe_marker(tmp_path, "/v/a.mov", "/o/a.mp4")
    recipe_marker(tmp_path, "/v/b.mov", "/o/b.mp4")
    planned = index(tmp_path).match(CALL)
    assert planned.verdict is Verdict.REUSE
    assert planned.marker is not None and planned.marker.path == path
    assert planned.matched_by is MatchedBy.VALUES


def test_no_marker_means_rerun(tmp_path: Path) -> None:
    recipe_marker(tmp_path, "/v/b.mov", "/o/b.mp4")
    planned = index(tmp_path).match(CALL)
    assert (planned.verdict, planned.marker, planned.matched_by) == (Verdict.RERUN, None, None)


def test_several_candidates_are_unknown_not_a_guess(tmp_path: Path) -> None:
    (tmp_path / "copy__v_a.mov__o_a.mp4.json").write_text("{}")
    (tmp_path / "copy__v_a.mov__o_a.mp4.bak.json").write_text("{}")
    call = ToolCallInfo("x", "copy", {"src": "/v/a.mov", "dst": "/o/a.mp4"})
    planned = index(tmp_path).match(call)
    assert planned.verdict is Verdict.UNKNOWN and "2 markers" in planned.reason


def test_tool_name_breaks_a_tie_between_candidates(tmp_path: Path) -> None:
    path = recipe_marker(tmp_path, "/v/a.mov", "/o/a.mp4")
    (tmp_path / "upload__v_a.mov__o_a.mp4.json").write_text("{}")
    assert index(tmp_path).match(CALL).marker.path == path  # type: ignore[union-attr]


def test_hook_decides_where_the_marker_is(tmp_path: Path) -> None:
    def hook(tool: str, arguments: dict, jobs_dir: Path):
        if tool != "transcode_video":
            return None
        return jobs_dir / f"custom-{arguments['source_path'].rsplit('/', 1)[-1]}.json"

    (tmp_path / "custom-a.mov.json").write_text(json.dumps({"output_path": "/o/a.mp4"}))
    recipe_marker(tmp_path, "/v/b.mov", "/o/b.mp4")  # values would match b, not the hook
    planned = index(tmp_path, hook).match(CALL)
    assert planned.verdict is Verdict.REUSE and planned.matched_by is MatchedBy.HOOK
    other = ToolCallInfo("y", "transcode_video", {"source_path": "/v/c.mov", "output_path": "/o/c"})
    assert index(tmp_path, hook).match(other).verdict is Verdict.RERUN
    unguarded = index(tmp_path, hook).match(ToolCallInfo("z", "send_mail", {"to": "a@b"}))
    assert unguarded.verdict is Verdict.RERUN and "keeps no marker" in unguarded.reason


def test_a_failing_hook_makes_the_verdict_unknown(tmp_path: Path) -> None:
    def broken(tool: str, arguments: dict, jobs_dir: Path):
        raise KeyError("output")

    def wrong(tool: str, arguments: dict, jobs_dir: Path):
        return 7

    assert index(tmp_path, broken).match(CALL).verdict is Verdict.UNKNOWN
    assert "KeyError" in index(tmp_path, broken).match(CALL).reason
    assert index(tmp_path, wrong).match(CALL).verdict is Verdict.UNKNOWN


def test_our_markers_match_by_key_call_id_and_arguments(tmp_path: Path) -> None:
    markers = JobMarkers(tmp_path)
    markers.start(job_key(CALL.name, CALL.arguments), tool=CALL.name, arguments=CALL.arguments)
    started = index(tmp_path).match(CALL)
    assert (started.verdict, started.matched_by) == (Verdict.RERUN, MatchedBy.KEY)
    assert "started, never done" in started.reason
    markers.start("custom-key-1", tool="send", arguments={"to": "x"}, tool_call_id="call-9")
    markers.finish("custom-key-1", {"text": "sent"})
    by_id = index(tmp_path).match(ToolCallInfo("call-9", "send", {"to": "x"}))
    assert (by_id.verdict, by_id.matched_by) == (Verdict.REUSE, MatchedBy.CALL_ID)
    # Ids are not unique (providers number calls per turn): the same id with other
    # arguments is another call, and its marker is not this call's.
    other = index(tmp_path).match(ToolCallInfo("call-9", "send", {"to": "y"}))
    assert (other.verdict, other.marker) == (Verdict.RERUN, None)
    by_args = index(tmp_path).match(ToolCallInfo("call-1", "send", {"to": "x"}))
    assert (by_args.verdict, by_args.matched_by) == (Verdict.REUSE, MatchedBy.ARGUMENTS)


def test_unreadable_marker_is_unknown(tmp_path: Path) -> None:
    recipe_marker(tmp_path, "/v/a.mov", "/o/a.mp4", body='{"output_pa')
    assert index(tmp_path).match(CALL).verdict is Verdict.UNKNOWN


def summary_mid_tool(*calls: ToolCallInfo) -> ThreadSummary:
    s = ThreadSummary("t", messages=2, last_row=2, last_role="assistant")
    s.set_last_assistant("tool_use", calls, "", None)
    return s


def test_plan_thread_per_state(tmp_path: Path) -> None:
    s = summary_mid_tool(CALL)
    assert s.state is State.MID_TOOL
    plan = plan_thread(s, index(tmp_path))
    assert [c.verdict for c in plan.calls] == [Verdict.RERUN] and plan.refused is None
    interrupted = plan_thread(s, index(tmp_path), strategy="interrupt")
    assert interrupted.calls == () and interrupted.closed == (CALL,)
    finished = ThreadSummary("t", messages=1, last_row=1, last_role="assistant")
    assert plan_thread(finished, index(tmp_path)).refused is not None
    json.dumps(plan.to_json())  # the --json contract is plain JSON


def test_dangling_calls_are_those_of_earlier_turns() -> None:
    call = {"type": "tool_call", "id": "a", "name": "f", "arguments": {}}
    other = {"type": "tool_call", "id": "b", "name": "f", "arguments": {}}
    messages = [
        {"role": "user", "content": []},
        {"role": "assistant", "content": [call, other]},
        {"role": "tool_result", "tool_call_id": "a"},
        {"role": "assistant", "content": [{**call, "id": "c"}]},
    ]
    assert [c.id for c in dangling_calls(messages)] == ["b"]


def test_answer_dangling_calls_puts_a_result_right_after_each_call() -> None:
    calls = [ToolCall(id=i, name="f", arguments={}) for i in "ab"]
    result_a = ToolResultMessage(tool_call_id="a", tool_name="f", content=[], timestamp=0)
    messages = [
        UserMessage(content=[TextContent(text="go")], timestamp=0),
        faux_assistant_message(calls, stop_reason="tool_use"),
        result_a,
        faux_assistant_message("failed", stop_reason="error"),
        UserMessage(content=[TextContent(text="continue")], timestamp=0),
        ToolResultMessage(tool_call_id="zz", tool_name="f", content=[], timestamp=0),
    ]
    repaired, closed = answer_dangling_calls(messages)
    assert [c.id for c in closed] == ["b"]
    roles = [(m.role, getattr(m, "tool_call_id", None)) for m in repaired]
    assert roles == [
        ("user", None),
        ("assistant", None),
        ("tool_result", "a"),
        ("tool_result", "b"),
        ("assistant", None),
        ("user", None),
    ]
    assert repaired[3].is_error
    untouched = messages[:2]  # calls of a last assistant message are the runner's to run
    assert answer_dangling_calls(untouched) == (untouched, [])
    partial = messages[:3]  # the recipe's resume() calls the model here: b must be answered
    assert [c.id for c in answer_dangling_calls(partial)[1]] == ["b"]


def test_an_aborted_thread_with_nothing_to_close_is_not_said_to_close_anything(
    tmp_path: Path,
) -> None:
    """A new user read "close dangling calls" over an empty list of closed calls."""
    quiet = ThreadSummary("t", messages=2, last_row=2, last_role="assistant")
    quiet.set_last_assistant("aborted", (), "", None)
    plan = plan_thread(quiet, index(tmp_path))
    assert plan.state is State.ABORTED and plan.closed == ()
    assert plan.action == "continue with a 'continue' message"
    quiet.set_last_assistant("aborted", (ToolCallInfo("c1", "f", {}),), "", None)
    plan = plan_thread(quiet, index(tmp_path))
    assert [c.id for c in plan.closed] == ["c1"] and plan.action.startswith("close dangling calls")
