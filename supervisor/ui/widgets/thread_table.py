"""The thread list: one row per thread, keyed by thread id."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

COLUMNS = ("", "STATE", "THREAD", "MSGS", "ACTIVITY", "WHERE IT STOPPED")


class ThreadTable(DataTable):
    """Rows are updated in place as threads change; a filter rebuilds them."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g,home", "scroll_top", "First", show=False),
        Binding("G,end", "scroll_bottom", "Last", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)

    def on_mount(self) -> None:
        for label in COLUMNS:
            self.add_column(label, key=label or "mark")

    @property
    def current_thread(self) -> str | None:
        if self.row_count == 0:
            return None
        try:
            key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return key.value

    def set_rows(self, rows: list[tuple[str, tuple[Text, ...]]]) -> None:
        """Replace every row, keeping the cursor on the same thread if it is still shown."""
        keep = self.current_thread
        self.clear()
        for key, cells in rows:
            self.add_row(*cells, key=key)
        if keep is not None and keep in self.rows:
            self.move_cursor(row=self.get_row_index(keep), animate=False)

    def append_rows(self, rows: list[tuple[str, tuple[Text, ...]]]) -> None:
        for key, cells in rows:
            self.add_row(*cells, key=key)

    def reorder(self, order: list[str]) -> None:
        """Put the rows in this order without rebuilding them; the cursor keeps its thread.

        Cheap at thousands of rows, unlike `set_rows`, which measures every cell.
        """
        keep = self.current_thread
        rank = {thread_id: i for i, thread_id in enumerate(order)}
        last = len(rank)
        self.sort("THREAD", key=lambda cell: rank.get(getattr(cell, "thread_id", None), last))
        if keep is not None and keep in self.rows:
            self.move_cursor(row=self.get_row_index(keep), animate=False)

    def update_row(self, key: str, cells: tuple[Text, ...]) -> None:
        """Update one row in place; widths stay as the last rebuild measured them.

        `update_width=True` would re-measure the whole column for every
        cell: seconds of frozen UI per refresh on thousands of rows.
        """
        for column, value in zip(COLUMNS, cells, strict=True):
            self.update_cell(key, column or "mark", value)
