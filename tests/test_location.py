"""DB arguments: paths or URLs, and URLs never shown with their password."""

from __future__ import annotations

from supervisor.attempts import Attempt
from supervisor.location import is_dsn, redact
from supervisor.states import ThreadSummary
from supervisor.store import fold_attempts


def test_urls_are_told_from_paths() -> None:
    assert is_dsn("postgresql://h/db") and is_dsn("POSTGRES://h/db")
    assert not is_dsn("postgresql.db") and not is_dsn("./postgresql://x")


def test_a_password_never_shows_even_in_a_malformed_url() -> None:
    assert redact("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("postgresql://h/db") == "postgresql://h/db"
    assert "pw" not in redact("postgresql://u:pw@h:notaport/db")


def test_attempt_records_fold_onto_the_threads_they_name() -> None:
    threads = {t: ThreadSummary(t) for t in ("a", "b", "c")}
    held = Attempt("a", 3, "boom", None, held=True)
    assert fold_attempts(threads, set(), {"a": held}) == {"a"}
    assert threads["a"].attempt == held and threads["b"].attempt is None
    assert fold_attempts(threads, {"a"}, {"a": held}) == set()  # unchanged: nothing to redraw
    assert fold_attempts(threads, {"a"}, {}) == {"a"}  # released
    assert threads["a"].attempt is None
