"""Search by message text: the index and the scan find every planted word and nothing else.

Threads are written by cubeloop's own SQLite checkpointer (and its Postgres
one): user text, assistant text and tool calls, tool results, errors, with
text hypothesis makes around words planted in some of them. Every search is
checked against the rule itself (`search.matches` over each stored message,
as Python reads it back), and each planted word must find exactly the threads
it was planted in: by the scan, by the index once built, and by the index
kept current after more messages arrive.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.location import Location
from supervisor.search import matches, message_text
from supervisor.search import words as split
from supervisor.sqlite.search import SearchIndex, side_path
from tests.crashes.harness import ROOT

NOISE = st.text(st.characters(max_codepoint=0x2FF, blacklist_categories=("Cs", "Cc")), max_size=40)
WORD = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=10, max_size=12)


def messages_for(noise: list[str], planted: dict[int, str], where: int) -> list[object]:
    """A thread's messages: every kind, with the planted word (if any) in one place."""
    from cubeloop import TextContent, ToolCall
    from cubeloop.providers.base import AssistantMessage, ToolResultMessage, UserMessage

    def said(i: int) -> str:
        word = planted.get(i)
        return f"{noise[i % len(noise)]} {word}" if word else noise[i % len(noise)]

    spots = [said(i) if i == where else noise[i % len(noise)] for i in range(5)]
    return [
        UserMessage(content=[TextContent(text=spots[0])]),
        AssistantMessage(
            content=[
                TextContent(text=spots[1]),
                ToolCall(id="call_0", name="lookup", arguments={"query": spots[2], "n": 7}),
            ],
            stop_reason="tool_use",
        ),
        ToolResultMessage(
            tool_call_id="call_0", tool_name="lookup", content=[TextContent(text=spots[3])]
        ),
        AssistantMessage(content=[], stop_reason="error", error_message=spots[4]),
    ]


def write_threads(database: str, threads: dict[str, list[object]]) -> None:
    async def write() -> None:
        checkpointer = Location.parse(database).checkpointer()
        async with checkpointer:
            for thread_id, messages in threads.items():
                await checkpointer.append(thread_id, messages)

    asyncio.run(write())


def expected(threads: dict[str, list[object]], query: str) -> frozenset[str]:
    """The rule, over each message as stored (its JSON, read back)."""
    return frozenset(
        t
        for t, messages in threads.items()
        if any(
            matches(message_text(json.loads(json.dumps(m.model_dump()))), query) for m in messages
        )
    )


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    noise=st.lists(NOISE, min_size=1, max_size=6),
    words=st.lists(WORD, min_size=1, max_size=4, unique=True),
    plan=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 4)), min_size=1, max_size=8),
)
def test_every_planted_word_finds_its_threads_by_scan_and_by_index(
    tmp_path_factory: pytest.TempPathFactory, noise: list[str], words: list[str], plan: list
) -> None:
    from supervisor.sqlite.store import SQLiteStore

    db = tmp_path_factory.mktemp("search") / "s.db"
    threads: dict[str, list[object]] = {}
    planted: dict[str, set[str]] = {w: set() for w in words}
    for n, (word_at, where) in enumerate(plan):
        word = words[word_at % len(words)]
        thread = f"t{n}"
        threads[thread] = messages_for(noise, {where: word}, where)
        planted[word].add(thread)
    threads["plain"] = messages_for(noise, {}, 0)
    write_threads(str(db), threads)
    queries = [*words, *(w[:4] for w in words), f"{words[0]} {noise[0]}"]
    with SQLiteStore(db) as store:
        scanned = {q: store.search(q) for q in queries}
        assert not any(f.indexed for f in scanned.values())
        SearchIndex(db).catch_up(store.db.conn)
        indexed = {q: store.search(q) for q in queries}
        assert all(f.indexed for f in indexed.values())
        for q in queries:
            assert scanned[q].threads == expected(threads, q) == indexed[q].threads, q
        for word, where in planted.items():
            if not any(word in split(n) for n in noise):  # unless the noise says it too
                assert indexed[word].threads == where  # exactly the threads it was planted in
        # More messages arrive: the next search indexes them first.
        later = {"late": messages_for(noise, {2: words[0]}, 2)}
        write_threads(str(db), later)
        assert store.search(words[0]).threads == expected({**threads, **later}, words[0])
        assert "late" in store.search(words[0]).threads


@pytest.mark.postgres
def test_postgres_search_by_table_and_by_scan(pg_dsn: str) -> None:
    threads = {
        "a": messages_for(["hello there"], {0: "zebracorn42"}, 0),
        "b": messages_for(["tool time"], {3: "zebracorn42"}, 3),  # in a tool result
        "c": messages_for(["nothing here"], {4: "quokkamode"}, 4),  # in an error message
        "d": messages_for(["plain"], {}, 0),
    }
    write_threads(pg_dsn, threads)
    store = Location.parse(pg_dsn).store(busy_timeout=5.0, only=())
    try:
        assert not store.has_search_index()
        scanned = store.search("zebracorn42")
        assert not scanned.indexed and scanned.threads == {"a", "b"}
        assert store.search("quokka").threads == {"c"}  # the start of a word
        from supervisor.pg.search import make_search_index

        assert make_search_index(pg_dsn) == sum(len(m) for m in threads.values())
        assert store.has_search_index()
        for q in ("zebracorn42", "quokka", "lookup", "hello there", "there hello", "zzz"):
            found = store.search(q)
            assert found.indexed and found.threads == expected(threads, q), q
        write_threads(pg_dsn, {"e": messages_for(["late"], {1: "quokkamode"}, 1)})
        assert store.search("quokkamode").threads == {"c", "e"}
    finally:
        store.close()


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )


def test_list_grep_scans_with_a_note_then_uses_the_index_made_with_consent(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    write_threads(
        str(db),
        {
            "a": messages_for(["refund order"], {1: "ord9001x"}, 1),
            "b": messages_for(["nothing"], {}, 0),
        },
    )
    before = db.read_bytes()
    out = cli("list", str(db), "--grep", "ord9001x", "--json")
    assert out.returncode == 0, out.stderr
    assert [t["thread_id"] for t in json.loads(out.stdout)] == ["a"]
    assert "searching by reading every message" in out.stderr
    refused = cli("index", str(db), "--search")  # no terminal to ask on
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    assert not side_path(db).exists()
    made = cli("index", str(db), "--search", "--yes")
    assert made.returncode == 0 and "indexed 8 messages" in made.stdout, made.stdout + made.stderr
    assert db.read_bytes() == before  # cubeloop's file is never written
    out = cli("list", str(db), "--grep", "ord9001", "--json")  # the start of the word
    assert [t["thread_id"] for t in json.loads(out.stdout)] == ["a"]
    assert "reading every message" not in out.stderr
    text = cli("list", str(db), "--grep", "refund")
    assert text.returncode == 0 and "a " in text.stdout and "\nb " not in text.stdout
    assert cli("list", str(db), "--grep", "--").returncode == 2
    assert cli("index", str(db), "--search", "--drop").returncode == 0
    assert not side_path(db).exists()
    long = cli("list", str(db), "--grep", " ".join(f"w{n}" for n in range(3000)) + " ord9001x")
    assert long.returncode == 0 and "0 thread(s)" in long.stdout, long.stderr  # a scan, still
    side_path(db).mkdir()  # not ours to remove
    refused = cli("index", str(db), "--search", "--drop")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr


def test_an_index_copied_from_another_database_is_made_again(tmp_path: Path) -> None:
    from supervisor.sqlite.store import SQLiteStore

    one, two = tmp_path / "one.db", tmp_path / "two.db"
    write_threads(str(one), {"a": messages_for(["alpha"], {0: "onlyinone"}, 0)})
    write_threads(str(two), {"b": messages_for(["beta"], {0: "onlyintwo"}, 0)})
    for db in (one, two):
        assert cli("index", str(db), "--search", "--yes").returncode == 0
    side_path(two).write_bytes(side_path(one).read_bytes())  # the wrong file's index
    with SQLiteStore(two) as store:
        assert store.search("onlyintwo").threads == {"b"}
        assert store.search("onlyinone").threads == frozenset()
