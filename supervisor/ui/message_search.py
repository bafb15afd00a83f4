"""`~words` in the filter: the list narrowed to threads whose messages say the words.

The search is the store's (`Store.search`: by the search index when there
is one, else a scan of every message), run off the UI thread; its answer is
taken only if the person has not typed past it. A refresh that brings new
messages searches again, so a thread that starts saying the words appears.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supervisor.location import Location
from supervisor.search import Found
from supervisor.text import one_line

if TYPE_CHECKING:
    from supervisor.ui.app import SupervisorApp

#: A filter starting with this searches the messages' text (`supervisor.search`).
PREFIX = "~"


class MessageSearch:
    """The search the filter holds, if any, and what it found."""

    def __init__(self, app: SupervisorApp) -> None:
        self.app = app
        #: The words searched for, while a search is on.
        self.text: str | None = None
        self._said_scanning = False

    def apply(self, value: str) -> bool:
        """Take the filter's value; whether it was a search (`~…`), which this then owns."""
        if not value.startswith(PREFIX):
            if self.text is not None:
                self.text = None
                self.app.set_view(found=None)
            return False
        text = value[len(PREFIX) :].strip()
        if text != self.text:
            self.text = text
            self.app.set_view(filter_text="", found=self.app.table.found if text else None)
            if text:
                self.search()
        return True

    def search(self) -> None:
        """Search again (the filter changed, or new messages arrived)."""
        text = self.text
        if text:
            self.app.run_worker(
                lambda: self._run(text), thread=True, group="search", exit_on_error=False
            )

    def _run(self, text: str) -> None:
        try:
            found = self.app.reader.search(text)
        except Exception as exc:  # noqa: BLE001 - said in a notification
            self.app.call_from_thread(self._failed, text, str(exc))
            return
        self.app.call_from_thread(self._found, text, found)

    def _failed(self, text: str, error: str) -> None:
        if text == self.text:
            self.app.notify(f"search failed: {one_line(error, 200)}", severity="error")

    def _found(self, text: str, found: Found) -> None:
        if text != self.text or self.app.quitting:
            return  # a search the person has typed past
        self.app.set_view(found=found.threads)
        if not found.indexed and not self._said_scanning:
            self._said_scanning = True
            place = Location.parse(self.app.runner.config.database).shown
            self.app.notify(
                "searched by reading every message (no search index: "
                f"'agent-supervisor index {place} --search' makes one)",
                title="search",
                markup=False,
            )
