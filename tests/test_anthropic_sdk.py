"""The real `anthropic` SDK, not mocked, against our Messages API server on 127.0.0.1.

`supervisor.demo:anthropic_agent` is cubeloop's AnthropicProvider on the SDK
this package installs. The server rejects what the real API rejects about
tool use, so "every request valid" means the real API would have taken them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supervisor.demo import Ledger
from supervisor.jobs import read_markers
from tests.conftest import ROOT, transcript_problems
from tests.messages_api import MessagesAPI

AGENT = "supervisor.demo:anthropic_agent"


def env_for(api: MessagesAPI, jobs: Path, tool_seconds: float = 0) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "JOB_DIR"}
    return {
        **env,
        "ANTHROPIC_API_KEY": "sk-test",
        "ANTHROPIC_BASE_URL": api.url,
        "AGENT_SUPERVISOR_MODEL": "claude-test",
        "AGENT_SUPERVISOR_DEMO_TOOL_SECONDS": str(tool_seconds),
        "AGENT_SUPERVISOR_DEMO_TOKENS_PER_SECOND": "0",
    }


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "supervisor", *args]


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=90
    )


def state_of(db: Path, thread: str) -> str:
    out = subprocess.run(
        command("list", str(db), "--json"), cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    return {t["thread_id"]: t["state"] for t in json.loads(out.stdout)}[thread]


def test_the_installed_sdk_is_one_cubeloop_can_drive() -> None:
    import anthropic

    major = int(anthropic.__version__.split(".")[0])
    assert major == 0, f"anthropic {anthropic.__version__}: cubeloop 0.15.3 needs < 1.0"


def test_prompt_creates_the_database_and_runs_through_the_sdk(tmp_path: Path) -> None:
    db, jobs = tmp_path / "new.db", tmp_path / "new.db.jobs"
    with MessagesAPI() as api:
        out = run(
            env_for(api, jobs), "prompt", str(db), "t1", "Process items A..C", "--agent", AGENT
        )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"creating checkpoint database {db}" in out.stderr
    assert len(api.received) == 3 and api.invalid == []
    assert state_of(db, "t1") == "finished"
    assert sorted(Ledger(jobs).effects()) == sorted(m.key for m in read_markers(jobs)), (
        "one effect per marker"
    )
    assert len(Ledger(jobs).effects()) == 3


def test_sigkill_after_tools_then_resume(tmp_path: Path) -> None:
    db, jobs = tmp_path / "t.db", tmp_path / "t.db.jobs"
    child: subprocess.Popen[str] | None = None

    def kill_on_second(number: int, body: dict) -> bool:
        if number == 2:  # the tool results are stored: this is the model call after tools
            assert child is not None
            os.kill(child.pid, signal.SIGKILL)
            return False
        return True

    with MessagesAPI(on_request=kill_on_second) as api:
        child = subprocess.Popen(
            command("prompt", str(db), "t1", "Process items A..D", "--agent", AGENT),
            cwd=ROOT,
            env=env_for(api, jobs),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.wait(timeout=60) == -signal.SIGKILL
        assert state_of(db, "t1") == "after_tools"
        api.on_request = None
        out = run(env_for(api, jobs), "resume", str(db), "t1", "--force", "--agent", AGENT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert state_of(db, "t1") == "finished"
    assert api.invalid == []
    assert sorted(Ledger(jobs).effects()) == sorted(set(Ledger(jobs).effects()))
    assert len(Ledger(jobs).effects()) == 4
    assert transcript_problems(db, "t1") == []


def test_sigkill_mid_tool_then_resume(tmp_path: Path) -> None:
    db, jobs = tmp_path / "m.db", tmp_path / "m.db.jobs"
    with MessagesAPI() as api:
        child = subprocess.Popen(
            command("prompt", str(db), "t1", "Process items A..C", "--agent", AGENT),
            cwd=ROOT,
            env=env_for(api, jobs, tool_seconds=60),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not any(m.status == "started" for m in read_markers(jobs)):
            assert time.monotonic() < deadline and child.poll() is None, "tool never started"
            time.sleep(0.02)
        child.kill()
        assert child.wait(timeout=10) == -signal.SIGKILL
        assert state_of(db, "t1") == "mid_tool"
        out = run(env_for(api, jobs), "resume", str(db), "t1", "--force", "--agent", AGENT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert state_of(db, "t1") == "finished"
    assert api.invalid == []
    assert sorted(Ledger(jobs).effects()) == [
        'process_item:{"item":"A"}',
        'process_item:{"item":"B"}',
        'process_item:{"item":"C"}',
    ]
    assert transcript_problems(db, "t1") == []


async def _recipe_resume(db: Path, thread: str) -> None:
    """What the recipe's own `resume()` does: hydrate, then `agent.resume()`."""
    from cubeloop.checkpointer import SQLiteCheckpointer

    from supervisor.demo import anthropic_agent

    async with SQLiteCheckpointer(str(db)) as cp:
        agent = anthropic_agent(cp, thread)
        data = await cp.load(thread)
        assert data is not None
        agent.state.messages = list(data.messages)
        await agent.resume()


async def _partial_batch(db: Path, thread: str) -> None:
    """A batch of two calls where only the first result was stored (a crash in between)."""
    from cubeloop import TextContent, ToolCall, ToolResultMessage, UserMessage
    from cubeloop.checkpointer import SQLiteCheckpointer
    from cubeloop.providers.faux import faux_assistant_message

    async with SQLiteCheckpointer(str(db)) as cp:
        now = time.time()
        calls = [
            ToolCall(id=f"toolu_01_{x}", name="process_item", arguments={"item": x}) for x in "AB"
        ]
        await cp.append(
            thread,
            [
                UserMessage(content=[TextContent(text="Process items A..C")], timestamp=now),
                faux_assistant_message(
                    [TextContent(text="Processing A and B."), *calls], stop_reason="tool_use"
                ),
                ToolResultMessage(
                    tool_call_id="toolu_01_A",
                    tool_name="process_item",
                    content=[TextContent(text="Processed A.")],
                    timestamp=now,
                ),
            ],
        )


def test_a_dangling_call_in_an_earlier_message_is_repaired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, jobs = tmp_path / "d.db", tmp_path / "d.db.jobs"
    asyncio.run(_partial_batch(db, "t1"))
    with MessagesAPI() as api:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        monkeypatch.setenv("JOB_DIR", str(jobs))
        asyncio.run(_recipe_resume(db, "t1"))  # the recipe's way: the API says 400
        assert len(api.invalid) == 1 and "toolu_01_B" in (api.invalid[0].error or "")
        assert state_of(db, "t1") == "error"
        seen = len(api.received)
        monkeypatch.delenv("JOB_DIR")
        plan = run(
            env_for(api, jobs), "resume", str(db), "t1", "--dry-run", "--json", "--agent", AGENT
        )
        closed = json.loads(plan.stdout)[0]["closed"]
        assert [c["id"] for c in closed] == ["toolu_01_B"]
        out = run(env_for(api, jobs), "resume", str(db), "t1", "--force", "--agent", AGENT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "earlier unanswered call(s) shown to the model as interrupted" in out.stdout
    assert state_of(db, "t1") == "finished"
    assert [r.error for r in api.received[seen:] if r.error] == []
    assert len(api.received) > seen + 1


async def _result_after_a_user_message(db: Path, thread: str) -> None:
    """A batch of two calls; a user message written while B ran; then B's result."""
    from cubeloop import TextContent, ToolCall, ToolResultMessage, UserMessage
    from cubeloop.checkpointer import SQLiteCheckpointer
    from cubeloop.providers.faux import faux_assistant_message

    def result(x: str) -> ToolResultMessage:
        return ToolResultMessage(
            tool_call_id=f"toolu_01_{x}",
            tool_name="process_item",
            content=[TextContent(text=f"Processed {x}.")],
            timestamp=time.time(),
        )

    async with SQLiteCheckpointer(str(db)) as cp:
        calls = [
            ToolCall(id=f"toolu_01_{x}", name="process_item", arguments={"item": x}) for x in "AB"
        ]
        await cp.append(
            thread,
            [
                UserMessage(
                    content=[TextContent(text="Process items A..C")], timestamp=time.time()
                ),
                faux_assistant_message(
                    [TextContent(text="Processing A and B."), *calls], stop_reason="tool_use"
                ),
                result("A"),
                UserMessage(content=[TextContent(text="How is it going?")], timestamp=time.time()),
                result("B"),
            ],
        )


def test_a_result_stored_after_a_user_message_is_not_run_again(tmp_path: Path) -> None:
    """B ran and its result is stored, after a message a human wrote meanwhile. The API
    wants B's result right after its call: shown there, the model goes on to C. (Told B
    was interrupted, the scripted model, like a real one, asked for B again: twice.)"""
    db, jobs = tmp_path / "u.db", tmp_path / "u.db.jobs"
    asyncio.run(_result_after_a_user_message(db, "t1"))
    with MessagesAPI() as api:
        plan = run(
            env_for(api, jobs), "resume", str(db), "t1", "--dry-run", "--json", "--agent", AGENT
        )
        assert plan.returncode == 0, plan.stderr
        assert json.loads(plan.stdout)[0]["closed"] == []
        out = run(env_for(api, jobs), "resume", str(db), "t1", "--force", "--agent", AGENT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert api.invalid == []
    assert "interrupted" not in out.stdout
    assert Ledger(jobs).effects() == ['process_item:{"item":"C"}']  # counted by the tool itself
    assert state_of(db, "t1") == "finished"
