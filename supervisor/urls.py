"""Database URLs for people and for children: passwords left out, the host named.

Pure string work, imported by the Postgres modules and everything above
them; whether an argument *is* a URL is decided by `supervisor.location`.
"""

from __future__ import annotations

import os
import urllib.parse

#: Lets a test play a second machine: the host name leases and markers record.
HOST_VARIABLE = "AGENT_SUPERVISOR_HOST"

#: Query parameters that hold a secret (libpq's names), compared once decoded and lowercased.
SECRET_PARAMETERS = frozenset({"password", "sslpassword"})


def redact(dsn: str, mark: str = "***") -> str:
    """The URL without its password (in the user part or as `?password=`), for headers,
    logs and error messages; `mark` stands where it was ("" leaves it out)."""
    try:
        parts = urllib.parse.urlsplit(dsn)
        password, port = parts.password, parts.port  # .port raises on "h:notaport"
    except ValueError:
        return dsn.split("://", 1)[0] + "://" + dsn.rsplit("@", 1)[-1]
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)  # keys decoded:
    if any(k.lower() in SECRET_PARAMETERS for k, _ in pairs):  # `pass%77ord` is a password
        kept = [(k, mark if k.lower() in SECRET_PARAMETERS else v) for k, v in pairs]
        kept = [(k, v) for k, v in kept if v or k.lower() not in SECRET_PARAMETERS]
        parts = parts._replace(query=urllib.parse.urlencode(kept, safe="*"))
    if password is not None:
        user = parts.username or ""
        host = parts.hostname or ""
        port = f":{port}" if port else ""
        netloc = f"{user}:{mark}@{host}{port}" if mark else f"{user}@{host}{port}"
        parts = parts._replace(netloc=netloc)
    return urllib.parse.urlunsplit(parts)


def without_password(dsn: str) -> str:
    """The URL with its password left out entirely: what may reach a child process
    (which takes the password from $PGPASSWORD or ~/.pgpass, if it needs one)."""
    return redact(dsn, mark="")


def with_settings(dsn: str, settings: dict[str, str]) -> str:
    """The URL with server settings as query parameters (asyncpg sends those it does not
    know as the session's settings): for a pool made by code that takes a URL only. They
    replace what the URL says of the same settings, as settings passed to asyncpg beside
    a URL do (a URL's `idle_session_timeout=50` ended a run's connections mid-write)."""
    parts = urllib.parse.urlsplit(dsn)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k not in settings] + list(settings.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def short_name(dsn: str) -> str:
    """A URL as a header names it: its host and database, nothing else (`host/db`)."""
    try:
        parts = urllib.parse.urlsplit(dsn)
        host = parts.hostname or "localhost"
    except ValueError:
        return redact(dsn)
    database = parts.path.lstrip("/") or "postgres"
    return f"{host}/{database}"


def host_name() -> str:
    """This machine's name as leases and markers record it."""
    return os.environ.get(HOST_VARIABLE) or os.uname().nodename
