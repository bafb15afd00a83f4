"""Tokens and what they cost, from the `usage` every stored assistant message carries.

cubeloop stores `usage` {input_tokens, output_tokens, cache_read_tokens,
cache_write_tokens} and `model_id` on each assistant message; prices live on
its `Model` objects, not in the database. So the prices come from a table:
`prices.toml` shipped here (public list prices) and the user's own file
(`$XDG_CONFIG_HOME/agent-supervisor/prices.toml`), which overrides or adds.
A model in neither shows its tokens and "no price", never a guessed cost.

The stores sum the tokens in the database (`Store.usage_rows`, grouped by
what is asked and by model, since a cost needs the model); `grouped` adds the
models of each group up and prices them.
"""

from __future__ import annotations

import math
import re
import threading
import tomllib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from supervisor.store import BEFORE_ANY_ROW

T = TypeVar("T")

#: What a usage can be grouped by (`usage --by`).
GROUPINGS = ("thread", "run", "model", "day")
#: The key columns of each grouping, as `usage --json` names them.
KEY_NAMES: dict[str, tuple[str, ...]] = {
    "thread": ("thread_id",),
    "run": ("thread_id", "run_id"),
    "model": ("model",),
    "day": ("day",),
}
#: The highest price a table may give (per million tokens): a typo, not a price, above it.
MOST_PRICE = 1_000_000
#: The user's price file, under the config directory.
USER_FILE = "prices.toml"
_SHIPPED = Path(__file__).with_name("prices.toml")


class PricesError(ValueError):
    """A price file that cannot be read (one line for the user)."""


@dataclass
class Usage:
    """Tokens of some assistant messages, by kind; `messages` counts them."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    messages: int = 0

    def add(self, other: Usage) -> None:
        self.input += other.input
        self.output += other.output
        self.cache_read += other.cache_read
        self.cache_write += other.cache_write
        self.messages += other.messages

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_read + self.cache_write

    def to_json(self) -> dict[str, int]:
        return {
            "input_tokens": self.input,
            "output_tokens": self.output,
            "cache_read_tokens": self.cache_read,
            "cache_write_tokens": self.cache_write,
            "messages": self.messages,
        }


def usage_of(message: Any) -> Usage:
    """One stored assistant message's usage (a message without one counts as none)."""
    found = message.get("usage") if isinstance(message, dict) else None
    if not isinstance(found, dict):
        found = {}
    return Usage(
        _tokens(found.get("input_tokens")),
        _tokens(found.get("output_tokens")),
        _tokens(found.get("cache_read_tokens")),
        _tokens(found.get("cache_write_tokens")),
        1,
    )


def model_of(message: Any) -> str | None:
    model = message.get("model_id") if isinstance(message, dict) else None
    return model if isinstance(model, str) and model else None


def _tokens(value: Any) -> int:
    """A token count as stored; anything that is not a whole number counts as 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(0, value)
    if isinstance(value, float) and math.isfinite(value):
        return max(0, int(value))
    return 0


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens of each kind."""

    input: float
    output: float
    cache_read: float = 0.0
    cache_write: float = 0.0

    def cost(self, u: Usage) -> float:
        return (
            u.input * self.input
            + u.output * self.output
            + u.cache_read * self.cache_read
            + u.cache_write * self.cache_write
        ) / 1_000_000


#: After a price's name, what may follow in a stored model id: a date or version
#: (`-20250929`, `-2024-08-06`), or a vendor's suffix (`@20240620`, `:0`).
_SUFFIX = re.compile(r"(-\d|@|:)")


class Prices:
    """The price table: exact names, or the longest name a model id starts with."""

    def __init__(self, table: dict[str, Price], sources: list[Path] | None = None) -> None:
        self.table = table
        self.sources = sources or []
        self._by_length = sorted(table, key=len, reverse=True)

    def for_model(self, model: str | None) -> Price | None:
        if not model:
            return None
        name = model.rsplit("/", 1)[-1]  # "anthropic/claude-…" (routers name the vendor)
        if name in self.table:
            return self.table[name]
        for known in self._by_length:
            if name.startswith(known) and _SUFFIX.match(name, len(known)):
                return self.table[known]
        return None

    @classmethod
    def load(cls, user_file: Path | None = None) -> Prices:
        """The shipped table, then the user's file over it (`user_file`, else the config
        directory's `prices.toml` if there is one)."""
        if user_file is None:
            from supervisor.dirs import config_dir

            candidate = config_dir() / USER_FILE
            user_file = candidate if candidate.is_file() else None
        table = _read(_SHIPPED)
        sources = [_SHIPPED]
        if user_file is not None:
            table.update(_read(user_file))
            sources.append(user_file)
        return cls(table, sources)


def _read(path: Path) -> dict[str, Price]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PricesError(f"cannot read prices {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PricesError(f"prices {path}: not valid TOML ({exc})") from None
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise PricesError(f"prices {path}: [models] must be a table of models")
    table: dict[str, Price] = {}
    for name, entry in models.items():
        if not isinstance(entry, dict):
            raise PricesError(f"prices {path}: model {name!r} must be a table")
        numbers: dict[str, float] = {}
        for kind in ("input", "output", "cache_read", "cache_write"):
            value = entry.get(kind, 0.0 if kind.startswith("cache") else None)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PricesError(
                    f"prices {path}: model {name!r} needs a number for {kind!r} "
                    "(US dollars per million tokens)"
                )
            if not math.isfinite(value) or not 0 <= value <= MOST_PRICE:
                raise PricesError(
                    f"prices {path}: model {name!r}: {kind} must be between 0 and "
                    f"{MOST_PRICE:,} (US dollars per million tokens)"
                )
            numbers[kind] = float(value)
        table[str(name)] = Price(**numbers)
    return table


#: One row of `Store.usage_rows`: (thread, run, day as YYYY-MM-DD in UTC), the model,
#: and the usage of those messages.
UsageRow = tuple[tuple[Any, ...], "str | None", Usage]


@dataclass
class Group:
    """The usage of one group (a thread, a run, a model or a day), model by model."""

    key: tuple[Any, ...]
    by_model: dict[str | None, Usage] = field(default_factory=dict)

    def merge(self, other: Group) -> None:
        """Add another group's usage of the same key, model by model."""
        for model, u in other.by_model.items():
            self.by_model.setdefault(model, Usage()).add(u)

    @property
    def usage(self) -> Usage:
        total = Usage()
        for u in self.by_model.values():
            total.add(u)
        return total

    def cost(self, prices: Prices) -> tuple[float, list[str]]:
        """What the priced models cost, and the models with no price (by name, sorted)."""
        cost, unpriced = 0.0, set()
        for model, u in self.by_model.items():
            price = prices.for_model(model)
            if price is None:
                if u.total:
                    unpriced.add(model or "(no model)")
            else:
                cost += price.cost(u)
        return cost, sorted(unpriced)

    def to_json(self, by: str, prices: Prices) -> dict[str, Any]:
        cost, unpriced = self.cost(prices)
        names = KEY_NAMES[by]
        return {
            **dict(zip(names, self.key, strict=True)),
            **({} if by == "model" else {"models": sorted(m or "" for m in self.by_model)}),
            **self.usage.to_json(),
            "cost_usd": None if unpriced else round(cost, 6),
            "priced_cost_usd": round(cost, 6),
            "unpriced_models": unpriced,
        }


def grouped(
    rows: Iterable[UsageRow], by: str, copied: Collection[tuple[str, str]] = ()
) -> list[Group]:
    """The rows as groups of `by`, each with its models' usage, in key order.

    A fork starts with copies of its source's runs (`supervisor.fork`): those
    tokens were spent once, by the source, and count there only (`copied`:
    the (fork, run) pairs)."""
    groups: dict[tuple[Any, ...], Group] = {}
    for (thread, run, day), model, u in rows:
        if (thread, run) in copied:
            continue
        key = {
            "thread": (thread,),
            "run": (thread, run),
            "model": (model,),
            "day": (day,),
        }[by]
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(key)
        have = group.by_model.get(model)
        if have is None:
            group.by_model[model] = have = Usage()
        have.add(u)
    return [groups[k] for k in sorted(groups, key=_sortable)]


def _sortable(key: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple("" if part is None else str(part) for part in key)


def tokens_text(n: int) -> str:
    """Tokens for people: 950, 12.3k, 4.56M."""
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.2f}M"


def cost_text(cost: float, unpriced: list[str]) -> str:
    """ "$1.23"; "no price" when nothing is priced; "$1.23+?" when part is not."""
    if unpriced and cost == 0:
        return "no price"
    text = f"${cost:,.2f}" if round(cost, 2) >= 0.01 or cost == 0 else f"${cost:.4f}"
    return text + ("+?" if unpriced else "")


def load_or_shipped(user_file: Path | None = None) -> tuple[Prices, str | None]:
    """The prices, or the shipped table and why the user's file was not read (the app
    says so once rather than showing no cost at all)."""
    try:
        return Prices.load(user_file), None
    except PricesError as exc:
        return Prices.load(_SHIPPED), str(exc)


def from_messages(messages: Iterable[tuple[str | None, Any]]) -> dict[str | None, Group]:
    """Per run, from a transcript's (run id, message) pairs: the detail pane's figures."""
    runs: dict[str | None, Group] = {}
    for run_id, message in messages:
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        group = runs.setdefault(run_id, Group((run_id,)))
        model = model_of(message)
        u = usage_of(message)
        if model in group.by_model:
            group.by_model[model].add(u)
        else:
            group.by_model[model] = u
    return runs


#: Rows of Python work between two calls of a tally's `pace`.
PACE_EVERY = 2_000


def _batches(items: Sequence[T], pace: Callable[[], None] | None) -> Iterator[Sequence[T]]:
    """`items` a batch at a time, `pace()` called before each batch after the first."""
    for start in range(0, len(items), PACE_EVERY):
        if start and pace is not None:
            pace()
        yield items[start : start + PACE_EVERY]


class UsageTally:
    """Each thread's tokens and cost, kept current: the app's TOKENS column.

    The first read sums every assistant message; after it, a SQLite file's
    new message ids are all that is read (messages are append-only, so sums
    only grow), and a Postgres store's changed threads are read again whole
    (its rows are keyed by thread). One read at a time (`read` holds a lock):
    the app's refreshes may ask faster than a big first read answers.
    """

    def __init__(self, prices: Prices) -> None:
        self.prices = prices
        self.groups: dict[str, Group] = {}
        #: The last message id summed (a SQLite file); `BEFORE_ANY_ROW` before the first read.
        self.cursor: float = BEFORE_ANY_ROW
        self._first = True
        self._lock = threading.Lock()

    def read(
        self, store: Any, touched: Collection[str] = (), pace: Callable[[], None] | None = None
    ) -> dict[str, tuple[int, float]]:
        """What changed since the last read: (tokens, cost) by thread.

        `pace` is called between batches of the Python work (`PACE_EVERY` rows): a
        first read at 100,000 threads is a second of it, which, on a thread of the
        app, took the interpreter from the screen for 100-250 ms at a time while a
        key was held. The app's pace waits while a key is held.
        """
        with self._lock:
            if store.path is not None:  # a SQLite file: the new rows only
                after = self.cursor
                top = store.newest_row()
                if top is None:  # no rows yet: nothing to sum
                    top = after
                if not self._first and top <= after:
                    return {}
                rows, copied = store.usage_rows(rows=(after, top))
                self.cursor = top
                changed = self._add(rows, copied, replace=False, pace=pace)
            elif self._first:
                rows, copied = store.usage_rows()
                changed = self._add(rows, copied, replace=True, pace=pace)
            elif touched:
                rows, copied = store.usage_rows(threads=list(touched))
                changed = self._add(rows, copied, replace=True, pace=pace)
            else:
                return {}
            self._first = False
            out: dict[str, tuple[int, float]] = {}
            for batch in _batches(sorted(changed), pace):
                out.update((t, self.figures(t)) for t in batch)
            return out

    @property
    def started(self) -> bool:
        """Whether the first read (of everything) was made."""
        return not self._first

    def figures(self, thread_id: str) -> tuple[int, float]:
        group = self.groups[thread_id]
        return group.usage.total, group.cost(self.prices)[0]

    def _add(
        self,
        rows: list[UsageRow],
        copied: Collection[tuple[str, str]],
        replace: bool,
        pace: Callable[[], None] | None = None,
    ) -> set[str]:
        fresh: dict[str, Group] = {}
        for batch in _batches(rows, pace):
            for group in grouped(batch, "thread", copied):
                have = fresh.get(group.key[0])
                if have is None:
                    fresh[group.key[0]] = group
                else:  # a thread's rows across two batches
                    have.merge(group)
        if replace:
            self.groups.update(fresh)
            return set(fresh)
        for thread_id, group in fresh.items():
            have = self.groups.get(thread_id)
            if have is None:
                self.groups[thread_id] = group
            else:
                have.merge(group)
        return set(fresh)
