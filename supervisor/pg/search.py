"""Message-text search for cubeloop's Postgres tables: a table of ours with a GIN index.

cubeloop stores messages as msgpack, which the server cannot read, so the
text is taken out here (`search.message_text`, its words by `search.words`)
and kept in `agent_supervisor.search_words` as a `tsvector` of those words
(the `simple` configuration: no stemming, no stop words), one row per
message. The table is made with consent (`index URL --search`) and kept
current from `created_at`: each search first indexes the rows written since
the last one (less a margin for transactions that committed late; a row
already indexed is skipped by its key).

Without the table a search decodes every assistant, user and tool message,
a partition at a time, and checks each (`search.matches`).
"""

from __future__ import annotations

import datetime
from typing import Any

from supervisor.pg import sql
from supervisor.pg.payload import ROLE_NAMES, decode_payload
from supervisor.pg.schema import MARKERS_SCHEMA
from supervisor.search import matches, message_text, query_words, words

WORDS_TABLE = f"{MARKERS_SCHEMA}.search_words"
STATE_TABLE = f"{MARKERS_SCHEMA}.search_state"
#: Rows indexed per statement.
BATCH = 5_000
#: A row's words are cut to this many characters (a tsvector holds at most 1 MB).
MOST_TEXT = 200_000
#: Rows whose transaction committed up to this long after the last look are read again.
MARGIN = datetime.timedelta(seconds=30)

_CREATE = f"""
CREATE SCHEMA IF NOT EXISTS {MARKERS_SCHEMA};
CREATE TABLE IF NOT EXISTS {WORDS_TABLE} (
    thread_id text NOT NULL,
    seq bigint NOT NULL,
    body tsvector NOT NULL,
    PRIMARY KEY (thread_id, seq)
);
CREATE INDEX IF NOT EXISTS agent_supervisor_search_words_body ON {WORDS_TABLE} USING gin (body);
CREATE TABLE IF NOT EXISTS {STATE_TABLE} (
    id int PRIMARY KEY CHECK (id = 1),
    indexed_until timestamptz
);
"""


def _client(dsn: str) -> Any:
    from supervisor.pg.client import SyncClient

    return SyncClient(dsn, "search")


def search_index_exists(dsn: str, client: Any = None) -> bool:
    own = client is None
    client = client or _client(dsn)
    try:
        return bool(client.fetchval(f"SELECT to_regclass('{WORDS_TABLE}') IS NOT NULL"))
    finally:
        if own:
            client.close()


def make_search_index(dsn: str) -> int:
    """Make the table and index every message; how many were indexed."""
    client = _client(dsn)
    try:
        client.execute(_CREATE)
        return catch_up(client)
    finally:
        client.close()


def drop_search_index(dsn: str) -> bool:
    client = _client(dsn)
    try:
        if not search_index_exists(dsn, client):
            return False
        client.execute(f"DROP TABLE IF EXISTS {WORDS_TABLE}; DROP TABLE IF EXISTS {STATE_TABLE}")
        return True
    finally:
        client.close()


def catch_up(client: Any) -> int:
    """Index the rows written since the last look (every row the first time)."""
    since = client.fetchval(f"SELECT indexed_until FROM {STATE_TABLE} WHERE id = 1")
    start = None if since is None else since - MARGIN
    newest = since
    added = 0
    for relation in sql.relations(client):
        rows = client.fetch(
            f"SELECT thread_id, seq, role, payload, created_at FROM {relation}"
            + ("" if start is None else " WHERE created_at > $1"),
            *(() if start is None else (start,)),
        )
        for at in range(0, len(rows), BATCH):
            part = rows[at : at + BATCH]
            threads, seqs, bodies = [], [], []
            for thread_id, seq, role, payload, created in part:
                if newest is None or created > newest:
                    newest = created
                if role not in ROLE_NAMES:
                    continue
                message, _ = decode_payload(payload, role)
                if message is None:
                    continue  # a corrupt row: the listing names it
                threads.append(thread_id)
                seqs.append(seq)
                bodies.append(" ".join(words(message_text(message)))[:MOST_TEXT])
            status = client.execute(
                f"INSERT INTO {WORDS_TABLE} (thread_id, seq, body) "
                "SELECT t, s, to_tsvector('simple', b) "
                "FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(t, s, b) "
                "ON CONFLICT DO NOTHING",
                threads,
                seqs,
                bodies,
            )
            added += int(status.split()[-1])
        del rows
    if newest is not None:
        client.execute(
            f"INSERT INTO {STATE_TABLE} (id, indexed_until) VALUES (1, $1) "
            "ON CONFLICT (id) DO UPDATE SET indexed_until = EXCLUDED.indexed_until",
            newest,
        )
    return added


def tsquery(query: str) -> str | None:
    """The query's words for `to_tsquery('simple', …)`: all of them, the last a prefix."""
    found = query_words(query)
    if not found:
        return None
    return " & ".join(f"'{w}'" for w in found) + ":*"


def search(dsn: str, text: str) -> set[str]:
    """By the table, brought up to date first."""
    query = tsquery(text)
    if query is None:
        return set()
    client = _client(dsn)
    try:
        catch_up(client)
        return {
            r[0]
            for r in client.fetch(
                f"SELECT DISTINCT thread_id FROM {WORDS_TABLE} "
                "WHERE body @@ to_tsquery('simple', $1)",
                query,
            )
        }
    finally:
        client.close()


def scan(client: Any, text: str) -> set[str]:
    """Without the table: every message decoded and checked, a partition at a time."""
    if not query_words(text):
        return set()
    found: set[str] = set()
    for relation in sql.relations(client):
        for thread_id, role, payload in client.fetch(
            f"SELECT thread_id, role, payload FROM {relation}"
        ):
            if thread_id in found or role not in ROLE_NAMES:
                continue
            message, _ = decode_payload(payload, role)
            if message is not None and matches(message_text(message), text):
                found.add(thread_id)
    return found
