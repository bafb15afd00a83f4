"""Keys in one burst, in a real terminal: after `/`, they filter; they never run commands."""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.ui.pty_screen import PtyScreen


def test_keys_typed_right_after_slash_go_to_the_filter(workdir: Path) -> None:
    """`/job-10` sent in one write once ran `j` (cursor down) and `o` (the pager on the
    wrong thread), and left the filter empty."""
    pager = workdir / "pager-ran"
    script = workdir / "pager.sh"
    script.write_text(f"#!/bin/sh\ntouch {pager}\n")
    script.chmod(0o755)
    term = PtyScreen(workdir, "demo.db", "--no-watch", PAGER=str(script))
    try:
        assert term.wait_for(lambda text: "job-01" in text and "job-12" in text), term.text()
        term.type("/job-10")
        assert term.wait_for(lambda text: "job-01" not in text, 10), term.text()
        text = term.text()
        assert "job-10" in text
        assert not pager.exists()
    finally:
        term.close()


def test_the_cursor_row_stays_in_view_after_a_real_resize(workdir: Path) -> None:
    """Shrunk with the cursor on the last row, the row stayed below the fold until the
    next key."""
    term = PtyScreen(workdir, "demo.db", "--no-watch")
    try:
        assert term.wait_for(lambda text: "job-01" in text and "job-12" in text), term.text()
        term.type("G")  # the last row
        assert term.wait_for(lambda text: "12/12" in text, 10), term.text()
        rows = [line for line in term.text().splitlines() if re.search(r"\sjob-\d\d\s+\d+\s", line)]
        last = re.search(r"\s(job-\d\d)\s", rows[-1]).group(1)  # the list's last row
        term.resize(80, 12)
        assert term.wait_for(
            lambda text: any(re.search(rf"\s{last}\s+\d+\s", line) for line in text.splitlines()),
            10,
        ), term.text()
    finally:
        term.close()


def test_keys_typed_right_after_slash_go_to_the_transcript_search(workdir: Path) -> None:
    term = PtyScreen(workdir, "demo.db", "--no-watch")
    try:
        assert term.wait_for(lambda text: "job-10" in text), term.text()
        term.type("/job-10")  # the list's filter, then Enter takes the keys back to it
        assert term.wait_for(lambda text: "job-01" not in text, 10), term.text()
        term.type("\r")  # Enter: the list takes the keys again
        time.sleep(0.5)
        term.type("f")
        assert term.wait_for(lambda text: "Transcript of job-10" in text, 10), term.text()
        assert term.wait_for(lambda text: "Processed" in text, 10), term.text()
        term.type("/item")
        # Every key in the box, and its matches counted (the count can show after the first
        # key, before the box has drawn the last: both are waited for; a lost key never is).
        assert term.wait_for(
            lambda text: re.search(r"▊\s+item\s", text) and re.search(r"▔ 1/\d+ ▔", text), 10
        ), term.text()
    finally:
        term.close()
