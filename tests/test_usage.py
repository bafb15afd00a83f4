"""Tokens and cost: `usage` against a row-by-row count of a real agent's stored messages.

The `shop` agent runs on cubeloop's FauxProvider, which reports cache-aware
usage for every reply, so each stored assistant message carries its own
token counts. A fork copies its source's runs (and their usage): those count
for the source only, so the totals add up to what was spent.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from supervisor.usage import Price, Prices, PricesError, Usage, cost_text, tokens_text
from tests.crashes.harness import Case, effect
from tests.crashes.test_fork import completed_runs, three_orders

MAIL_C = effect("mail", target="C")
MAIL_Z = effect("mail", target="Z")
KINDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def counted_by_hand(c: Case, threads: list[str], copied: set[tuple[str, str]]) -> dict:
    """Per thread, per run and per model: each kind of token summed row by row."""
    by: dict[str, Counter] = {"thread": Counter(), "run": Counter(), "model": Counter()}
    for thread in threads:
        for entry in c.transcript(thread):
            if entry["role"] != "assistant" or (thread, entry["run_id"]) in copied:
                continue
            for kind in KINDS:
                n = entry["usage"][kind]
                by["thread"][(thread, kind)] += n
                by["run"][(thread, entry["run_id"], kind)] += n
                by["model"][(entry["model_id"], kind)] += n
    return by


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_usage_sums_equal_a_row_by_row_count_and_a_fork_counts_its_own_runs_only(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    c = three_orders(tmp_path, backend, request)
    first, second = completed_runs(c)
    assert c.cli("fork", c.database, "src", "--after-run", second, "--as", "f").returncode == 0
    assert c.cli("prompt", c.database, "f", "order D").returncode == 0
    copied = {("f", first), ("f", second)}
    hand = counted_by_hand(c, ["src", "f"], copied)
    assert hand["thread"][("f", "input_tokens")] > 0  # the fork's own run spent tokens

    for by in ("thread", "run", "model"):
        out = c.cli("usage", c.database, "--by", by, "--json")
        assert out.returncode == 0, out.stderr
        got = Counter()
        for row in json.loads(out.stdout):
            key = {
                "thread": (row.get("thread_id"),),
                "run": (row.get("thread_id"), row.get("run_id")),
                "model": (row.get("model"),),
            }[by]
            for kind in KINDS:
                got[(*key, kind)] += row[kind]
        assert +got == +hand[by], by
    listed = json.loads(c.cli("list", c.database, "--usage", "--json").stdout)
    for thread in listed:  # list --usage carries the same sums
        for kind in KINDS:
            n = thread["usage"][kind] if thread["usage"] else 0
            assert n == hand["thread"][(thread["thread_id"], kind)], (thread["thread_id"], kind)
    totals = json.loads(c.cli("usage", c.database, "--by", "day", "--json").stdout)
    assert sum(r["input_tokens"] for r in totals) == sum(
        n for (_, kind), n in hand["thread"].items() if kind == "input_tokens"
    )
    unknown = c.cli("usage", c.database, "--thread", "nobody")
    assert unknown.returncode == 2 and "no thread 'nobody'" in unknown.stderr
    # One thread only, and nothing written since a moment from now.
    only = json.loads(c.cli("usage", c.database, "--thread", "f", "--json").stdout)
    assert [r["thread_id"] for r in only] == ["f"]
    later = str(time.time() + 3600)
    assert c.cli("usage", c.database, "--since", later, "--json").returncode == 2  # not a time
    none = c.cli("usage", c.database, "--since", "2999-01-01", "--json")
    assert json.loads(none.stdout) == []


def test_cost_from_the_price_table_and_a_users_file_that_overrides_it(tmp_path: Path) -> None:
    c = three_orders(tmp_path)
    table = json.loads(c.cli("usage", c.database, "--by", "model", "--json").stdout)
    (row,) = table
    assert row["model"] == "scripted" and row["cost_usd"] is None  # no price: never a guess
    assert row["unpriced_models"] == ["scripted"]
    out = c.cli("usage", c.database, "--by", "model")
    assert "no price" in out.stdout and "no price for: scripted" in out.stdout
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."scripted"]\ninput = 3\noutput = 15\ncache_read = 0.3\n')
    priced = json.loads(
        c.cli("usage", c.database, "--by", "model", "--json", "--prices", str(prices)).stdout
    )
    (row,) = priced
    expected = (
        row["input_tokens"] * 3 + row["output_tokens"] * 15 + row["cache_read_tokens"] * 0.3
    ) / 1e6
    assert row["cost_usd"] == pytest.approx(expected, abs=1e-6) and row["cost_usd"] > 0
    # The user's file from the config directory is read without --prices.
    config = tmp_path / "config"
    (config / "agent-supervisor").mkdir(parents=True)
    (config / "agent-supervisor" / "prices.toml").write_text(prices.read_text())
    c.env["XDG_CONFIG_HOME"] = str(config)
    (row,) = json.loads(c.cli("usage", c.database, "--by", "model", "--json").stdout)
    assert row["cost_usd"] == pytest.approx(expected, abs=1e-6)
    bad = tmp_path / "bad.toml"
    for text, said in [
        ('[models."x"]\ninput = "three"\n', "needs a number for 'input'"),
        ('[models."x"]\ninput = -1\noutput = 1\n', "must be between 0 and"),
        ("[models\n", "not valid TOML"),
        ('[models."x"]\ninput = 1e308\noutput = 1\n', "must be between 0 and 1,000,000"),
    ]:
        bad.write_text(text)
        out = c.cli("usage", c.database, "--prices", str(bad))
        assert out.returncode == 2 and said in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1


def test_a_stored_model_id_takes_the_longest_price_name_it_starts_with() -> None:
    prices = Prices.load()
    sonnet = prices.for_model("claude-sonnet-4-5-20250929")
    assert sonnet is not None and sonnet.input == 3.0
    assert prices.for_model("anthropic/claude-sonnet-4-5") == sonnet  # a router's vendor prefix
    assert prices.for_model("gpt-4o-mini-2024-07-18") == prices.table["gpt-4o-mini"]
    assert prices.for_model("gpt-4o-2024-08-06") == prices.table["gpt-4o"]
    assert prices.for_model("o3-mini") is None  # not o3's price: no guess
    assert prices.for_model("gpt-5.5") is None
    assert prices.for_model(None) is None
    custom = Prices({"m": Price(2.0, 4.0, 0.5, 1.0)})
    assert custom.for_model("m").cost(Usage(1_000_000, 500_000, 2_000_000, 0, 3)) == 2 + 2 + 1
    assert tokens_text(999) == "999" and tokens_text(12_345) == "12.3k"
    assert tokens_text(4_560_000) == "4.56M"
    assert cost_text(1.234, []) == "$1.23" and cost_text(0.0, ["x"]) == "no price"
    assert cost_text(0.5, ["x"]) == "$0.50+?"
    with pytest.raises(PricesError):
        Prices.load(Path("/nonexistent/prices.toml"))


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_watch_holds_a_thread_past_its_budget_and_resumes_one_within_it(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    c = three_orders(tmp_path, backend, request)  # "src": killed inside the third one's mail
    c.crash("cheap", "order Z", "tool:mail:before:Z")  # one order, killed the same way
    if backend == "postgres":  # the watcher's records live in a table of ours there
        assert c.cli("init-markers", c.database).returncode == 0
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."scripted"]\ninput = 1000\noutput = 1000\n')
    spent = {
        r["thread_id"]: r["cost_usd"]
        for r in json.loads(c.cli("usage", c.database, "--json", "--prices", str(prices)).stdout)
    }
    assert spent["src"] > spent["cheap"] > 0
    budget = (spent["src"] + spent["cheap"]) / 2
    log = c.watch(
        lambda: c.state("cheap") == "finished" and c.state("src") == "held",
        60,
        "--budget",
        f"{budget:.4f}",
        "--prices",
        str(prices),
    )
    assert c.state("cheap") == "finished" and c.state("src") == "held", log
    assert "src: held, not resumed: over its budget" in log
    assert c.listed("src")["attempts"]["held"] is True
    assert "over its budget" in c.listed("src")["attempts"]["last_error"]
    # The held thread ran nothing; the cheap one mailed its order once.
    assert c.effects()[MAIL_C] == 0 and c.effects()[MAIL_Z] == 1
    # Released, and watched with no budget, it is resumed.
    assert c.cli("release", c.database, "src").returncode == 0
    c.watch(lambda: c.state("src") == "finished", 60)
    assert c.state("src") == "finished" and c.effects()[MAIL_C] == 1


def test_a_tally_gives_way_between_batches_and_sums_the_same(demo_db: Path, monkeypatch) -> None:
    """The app's TOKENS tally calls its pace between batches of rows (a held key waits
    it out), and batches change no sum: a thread's rows split across two are merged."""
    import asyncio

    from cubeloop import TextContent
    from cubeloop.providers.base import AssistantMessage, Usage

    from supervisor import usage
    from supervisor.location import Location

    async def two_models() -> None:  # one thread, rows of two models: two rows to merge
        async with Location.parse(demo_db).checkpointer() as checkpointer:
            for model, tokens in (("model-a", 7), ("model-b", 11)):
                reply = AssistantMessage(
                    content=[TextContent(text="ok")],
                    model_id=model,
                    usage=Usage(input_tokens=tokens, output_tokens=1),
                )
                await checkpointer.append("two-models", [reply])

    asyncio.run(two_models())
    with Location.parse(demo_db).open_store() as store:
        whole = usage.UsageTally(usage.load_or_shipped()[0]).read(store)
        monkeypatch.setattr(usage, "PACE_EVERY", 1)
        paces: list[int] = []
        paced = usage.UsageTally(usage.load_or_shipped()[0]).read(
            store, pace=lambda: paces.append(1)
        )
        rows = len(store.usage_rows()[0])
    assert paced == whole and whole
    assert whole["two-models"][0] == 7 + 1 + 11 + 1
    assert len(paces) >= rows - 1 > 0
