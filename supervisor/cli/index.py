"""`index DB`: our index added (or dropped), after asking: it writes to the user's database."""

from __future__ import annotations

import argparse
import time
from typing import Any

from supervisor.cli.context import where
from supervisor.cli.options import EXIT_OK, EXIT_UNFINISHED, UsageError, add_db
from supervisor.cli.output import agreed
from supervisor.sqlite.files import check_database_path
from supervisor.sqlite.store import SQLiteStore
from supervisor.store import StoreError

#: How refusals name this command.
PROG = "agent-supervisor index"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "index",
        help="add our index: messages(thread_id, id) for a SQLite file (fast resume and "
        "detail); for Postgres, indexes on when rows, threads and runs were written and on "
        "pending requests (fast refreshes)",
    )
    add_db(p)
    p.add_argument("--yes", action="store_true", help="do not ask; add them")
    p.add_argument("--drop", action="store_true", help="remove what this command added")
    p.add_argument(
        "--search",
        action="store_true",
        help="the search index of message text instead (list --grep, the app's ~ filter): "
        "for a SQLite file a side file DB.search (the database is not written); for "
        "Postgres a table of ours",
    )
    p.set_defaults(run=cmd_index)


def cmd_index(args: argparse.Namespace) -> int:
    """Add (or drop) our index, after asking: it writes to the user's database."""
    from supervisor.sqlite.files import INDEX_NAME, drop_thread_index

    if args.search:
        return _search_index(args)
    if where(args).server:
        return _index_postgres(args)
    path = check_database_path(args.db)
    with SQLiteStore(path, busy_timeout=args.busy_timeout, only=()) as store:
        present = store.has_thread_index()
    if args.drop:
        if not drop_thread_index(path, args.busy_timeout):
            print(f"{path}: no index {INDEX_NAME} to drop")
            return EXIT_OK
        print(f"{path}: dropped index {INDEX_NAME}")
        return EXIT_OK
    if present:
        print(f"{path}: already indexed on thread_id; nothing to do")
        return EXIT_OK
    if not args.yes and not agreed(
        f"adding an index writes to {path}; pass --yes to agree",
        f"Add index {INDEX_NAME} on messages(thread_id, id) to {path} "
        f"({path.stat().st_size / 1e6:,.0f} MB; the index adds a few percent)?",
        PROG,
    ):
        return EXIT_UNFINISHED
    started = time.monotonic()
    where(args).add_indexes(args.busy_timeout)
    print(f"{path}: added index {INDEX_NAME} in {time.monotonic() - started:.1f}s")
    return EXIT_OK


def _index_postgres(args: argparse.Namespace) -> int:
    """Our indexes on cubeloop's tables (`pg.schema.INDEXES`), so a refresh finds what
    changed (new rows, new threads, pending requests, runs) without a table scan.

    cubeloop's `(thread_id, seq)` key already serves resumes and the detail.
    The schema is the host's (Alembic): an autogenerate would offer to drop
    indexes it does not know, so we ask first and say their names.
    """
    import asyncio

    from supervisor.pg.client import PgError, connect, describe
    from supervisor.pg.schema import (
        INDEX_NAMES,
        INDEXES,
        drop_indexes,
        existing_indexes,
    )

    place = where(args).shown

    async def run(action) -> object:
        conn = await connect(args.db, "index")
        try:
            return await action(conn)
        finally:
            await conn.close()

    def on_server(action) -> Any:
        try:
            return asyncio.run(run(action))
        except PgError as exc:
            raise StoreError(str(exc)) from None
        except Exception as exc:
            raise StoreError(describe(args.db, exc)) from None

    if args.drop:
        dropped = on_server(drop_indexes)
        print(
            f"{place}: dropped index {', '.join(dropped)}"
            if dropped
            else f"{place}: no index of ours to drop"
        )
        return EXIT_OK
    have = set(on_server(existing_indexes))
    missing = [name for name in INDEX_NAMES if name not in have]
    if not missing:
        print(f"{place}: already indexed; nothing to do")
        return EXIT_OK
    listed = "\n".join(f"  {n} ON {d}" for n, d in INDEXES if n in missing)
    if not args.yes and not agreed(
        f"adding indexes writes to {place}; pass --yes to agree",
        f"Add to {place}:\n{listed}\n"
        "(Tell Alembic to ignore them, or an autogenerate will offer to drop them.)",
        PROG,
    ):
        return EXIT_UNFINISHED
    started = time.monotonic()
    added = where(args).add_indexes(args.busy_timeout)
    print(f"{place}: added index {', '.join(added)} in {time.monotonic() - started:.1f}s")
    return EXIT_OK


def _search_index(args: argparse.Namespace) -> int:
    """Make (or drop) the search index of message text, after asking."""
    place = where(args)
    if place.server:
        from supervisor.pg.search import drop_search_index, make_search_index, search_index_exists

        exists = search_index_exists(args.db)
        what = "the table agent_supervisor.search_words (and its GIN index)"
        drop = lambda: drop_search_index(args.db)  # noqa: E731
        make = lambda: make_search_index(args.db)  # noqa: E731
    else:
        from supervisor.sqlite.search import SearchIndex

        path = check_database_path(args.db)
        index = SearchIndex(path)
        exists = index.exists()
        what = f"{index.path} (a side file: {path.name} itself is not written)"
        drop = index.remove

        def make() -> int:
            from supervisor.sqlite.files import connect_readonly

            source = connect_readonly(path, args.busy_timeout)
            try:
                return index.catch_up(source)
            finally:
                source.close()

    if args.drop:
        try:
            dropped = drop()
        except Exception as exc:  # noqa: BLE001 - one line
            raise UsageError(str(exc)) from None
        print(f"{place.shown}: dropped the search index" if dropped else "no search index to drop")
        return EXIT_OK
    if exists:
        print(f"{place.shown}: the search index is there already; searches keep it current")
        return EXIT_OK
    if not args.yes and not agreed(
        f"making the search index writes {what}; pass --yes to agree",
        f"Index every message's text for search in {what}?",
        PROG,
    ):
        return EXIT_UNFINISHED
    started = time.monotonic()
    try:
        added = make()
    except Exception as exc:  # noqa: BLE001 - said in one line
        raise StoreError(f"{place.shown}: cannot make the search index ({exc})") from None
    print(
        f"{place.shown}: indexed {added:,} messages for search in "
        f"{time.monotonic() - started:.1f}s; searches keep it current"
    )
    return EXIT_OK
