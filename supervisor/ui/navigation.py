"""Moving around: marks, the filter, the order, tabs, focus, the full transcript, the pager.

A mixin of `SupervisorApp`: each action changes the list's view or opens a
screen; the list itself keeps its state (`ThreadTable.set_view`).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from textual import work
from textual.app import SuspendNotSupported
from textual.widgets import Input, TabbedContent

from supervisor.report import entry_lines
from supervisor.states import ORDERS
from supervisor.store import StoreError
from supervisor.text import one_line
from supervisor.ui.lifecycle import while_mounted
from supervisor.ui.screens.help import HelpScreen
from supervisor.ui.screens.transcript import TranscriptScreen


class ListNavigation:
    """The keys that change what is shown, not what happens to threads."""

    def action_mark(self) -> None:
        table = self.table
        thread_id = table.current_thread
        if thread_id is None:
            return
        table.toggle_mark(thread_id)
        table.action_cursor_down()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("visible")
        box.focus()

    @while_mounted
    def _apply_filter(self, value: str) -> None:
        self._filter_timer = None
        if value != self.table.filter_text:
            self._set_view(filter_text=value)

    def _set_view(self, **view: Any) -> None:
        self.table.set_view(**view)
        self._update_summary_line()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_class("visible") or self.table.filter_text:
            if self._filter_timer is not None:
                self._filter_timer.stop()
            box.value = ""
            box.remove_class("visible")
            self._set_view(filter_text="")
            self.table.focus()

    def action_sort(self, order: str | None = None) -> None:
        """Cycle the list's order (or take one, from a header click); the cursor stays put."""
        if order is None:
            order = ORDERS[(ORDERS.index(self.table.order) + 1) % len(ORDERS)]
        self._set_view(order=order)

    def action_attention(self) -> None:
        self._set_view(attention_only=not self.table.attention_only)

    def action_tab(self, tab: str) -> None:
        self.query_one("#detail-tabs", TabbedContent).active = tab

    def action_toggle_focus(self) -> None:
        table = self.table
        if table.has_focus:
            tabs = self.query_one("#detail-tabs", TabbedContent)
            target = {
                "events": "#event-lines",
                "transcript": "#transcript-log",
                "markers": "#marker-table",
            }[tabs.active or "events"]
            self.query_one(target).focus()
        else:
            table.focus()

    def action_full_transcript(self) -> None:
        thread_id = self.selected
        if thread_id is None:
            return
        self.push_screen(
            TranscriptScreen(thread_id, lambda: self._read_transcript(thread_id), self.palette)
        )

    @work(group="pager", exclusive=True, exit_on_error=False)
    async def action_open_pager(self) -> None:
        """The whole transcript, however big, in `$PAGER` (the app suspends meanwhile)."""
        thread_id = self.selected
        if thread_id is None:
            return
        try:
            path = await asyncio.to_thread(self._write_full_transcript, thread_id)
        except StoreError as exc:
            self.notify(one_line(str(exc), 200), severity="error", markup=False)
            return
        pager = shlex.split(os.environ.get("PAGER") or "less -R") + [str(path)]
        try:
            with self.suspend():
                subprocess.run(pager, check=False)
        except SuspendNotSupported:
            self.notify(
                f"this terminal cannot suspend the app; the transcript is in {path}",
                markup=False,
            )
            return
        except OSError as exc:
            self.notify(f"cannot run {pager[0]}: {exc}", severity="error", markup=False)
        path.unlink(missing_ok=True)

    def _write_full_transcript(self, thread_id: str) -> Path:
        transcript = self._read_transcript(thread_id, full=True)
        fd, name = tempfile.mkstemp(prefix="agent-supervisor-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as f:
            f.write(f"thread {one_line(thread_id, 200)}\n")
            for entry in transcript.entries:
                f.write("\n".join(entry_lines(entry, None)) + "\n")
        return Path(name)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())
