"""DB arguments: paths or URLs, and URLs never shown with their password."""

from __future__ import annotations

from supervisor.attempts import Attempt
from supervisor.location import Location
from supervisor.states import ThreadSummary
from supervisor.store import fold_attempts
from supervisor.urls import redact, with_settings


def test_urls_are_told_from_paths() -> None:
    assert Location.parse("postgresql://h/db").server and Location.parse("POSTGRES://h/db").server
    assert not Location.parse("postgresql.db").server
    assert not Location.parse("./postgresql://x").server


def test_a_location_shows_and_passes_on_no_password() -> None:
    url = Location.parse("postgresql://u:pw@h/db?sslmode=require")
    assert "pw" not in url.shown and "pw" not in str(url) and "pw" not in url.for_children
    assert url.text.startswith("postgresql://u:pw@")  # kept for connecting
    assert url.jobs(None, {}) == url  # markers in the database's own table
    assert url.jobs(None, {"JOB_DIR": "/j"}).path.as_posix() == "/j"
    file = Location.parse("x/jobs.db")
    assert file.jobs(None, {}).path.as_posix() == "x/jobs.db.jobs"
    assert Location.parse(file) is file


def test_a_password_never_shows_even_in_a_malformed_url() -> None:
    assert redact("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("postgresql://h/db") == "postgresql://h/db"
    assert "pw" not in redact("postgresql://u:pw@h:notaport/db")


def test_server_settings_ride_on_the_url_and_keep_what_it_says() -> None:
    """asyncpg sends a URL's unknown query parameters as session settings; the URL's
    own password, host and other parameters come through as they were, and the
    settings given win over the URL's own (as the lease connection's do)."""
    from urllib.parse import parse_qsl, urlsplit

    dsn = "postgresql://u:p%40ss@db:5433/jobs?sslmode=disable&idle_session_timeout=9"
    kept = urlsplit(with_settings(dsn, {"idle_session_timeout": "0", "tcp_keepalives_idle": "30"}))
    assert (kept.username, kept.password, kept.hostname, kept.port) == ("u", "p%40ss", "db", 5433)
    assert dict(parse_qsl(kept.query)) == {
        "sslmode": "disable",
        "idle_session_timeout": "0",
        "tcp_keepalives_idle": "30",
    }


def test_attempt_records_fold_onto_the_threads_they_name() -> None:
    threads = {t: ThreadSummary(t) for t in ("a", "b", "c")}
    held = Attempt("a", 3, "boom", None, held=True)
    assert fold_attempts(threads, set(), {"a": held}) == {"a"}
    assert threads["a"].attempt == held and threads["b"].attempt is None
    assert fold_attempts(threads, {"a"}, {"a": held}) == set()  # unchanged: nothing to redraw
    assert fold_attempts(threads, {"a"}, {}) == {"a"}  # released
    assert threads["a"].attempt is None
