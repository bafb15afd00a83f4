"""The thread list: a virtual table that owns the list's state and draws only what shows.

Why not Textual's DataTable: it builds and measures every row up front and
re-sorts all of them to move one, so 100,000 threads took 38 s to show and
a refresh froze the app for 40 s. Here the table keeps one sorted list of
sort keys (each ends with the thread id, so keys are unique): a changed
thread leaves its old place and takes its new one by bisection, work in
proportion to the threads that changed, and `render_line` builds just the
rows on screen. Ages are drawn from the clock when a row is drawn, so the
age tick is a repaint.

The table owns summaries, marks, what runs here, the filter, the order and
the row cache; it tells the app which thread the cursor is on
(`highlighted`, a variable the app watches), which one was chosen (`Chosen`)
and which header was clicked (`HeaderClicked`).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive, var
from textual.scroll_view import ScrollView
from textual.strip import Strip

from supervisor.report import thread_hint
from supervisor.states import (
    NEEDS_ATTENTION,
    ORDERS,
    State,
    ThreadSummary,
    order_key,
)
from supervisor.text import relative_time
from supervisor.ui.render import Palette, thread_row
from supervisor.usage import tokens_text

#: Column labels, the order each sorts by when its header is clicked, and a width
#: (None: the thread column fits the ids; 0: the last column takes what is left).
COLUMNS: tuple[tuple[str, str | None, int | None], ...] = (
    ("", None, 2),
    ("STATE", "state", 17),
    ("THREAD", "thread", None),
    ("MSGS", "messages", 6),
    ("TOKENS", "cost", 8),
    ("ACTIVITY", "activity", 13),
    ("WHERE IT STOPPED", "attention", 0),
)

#: Drawn rows kept at most (a few screens' worth; the cache starts over beyond).
STRIPS_KEPT = 4_000

#: The thread column is as wide as the longest id seen, within these bounds.
ID_WIDTH = (8, 40)

#: The least the last column keeps before the thread column narrows (ids cut with "…").
WHERE_WIDTH = 16

#: Where the thread ids are among the columns.
THREAD_COLUMN = next(i for i, (label, _, _) in enumerate(COLUMNS) if label == "THREAD")


def cut_in_the_middle(text: Text, room: int) -> Text:
    """An id too long for its column, cut in the middle: its start and its end show
    (ids tell apart at the end: `thread-00001` and `thread-00002` cut at the end were
    both `thread…`, every row alike at 120 columns)."""
    plain = text.plain
    if len(plain) <= room or room < 3:
        return text
    head = (room - 1) // 3
    tail = room - 1 - head
    return text[:head] + Text("…") + text[len(plain) - tail :]


class ThreadTable(ScrollView, can_focus=True):
    """Every thread, one row each, in the chosen order; a filter narrows what shows."""

    COMPONENT_CLASSES = {"thread-table--header", "thread-table--cursor"}

    DEFAULT_CSS = """
    ThreadTable {
        overflow-x: hidden;
        /* No scrollbar: at 100,000 rows its thumb is one cell, and drawing it again
           for every row scrolled was a third of a held key's frame. The header
           says where the cursor is instead (`_header_end`). */
        overflow-y: hidden;
        background: $surface;
        color: $foreground;
        & > .thread-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        & > .thread-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus > .thread-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
    }
    """

    BINDINGS = [
        Binding("j,down", "cursor_down", "Down", show=False),
        Binding("k,up", "cursor_up", "Up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("g,home", "scroll_top", "First", show=False),
        Binding("G,end", "scroll_bottom", "Last", show=False),
        Binding("enter", "choose", "Choose", show=False),
    ]

    class Chosen(Message):
        """Enter, or a click on a row."""

        def __init__(self, thread_id: str) -> None:
            super().__init__()
            self.thread_id = thread_id

    class HeaderClicked(Message):
        """A column header was clicked; `order` is the order that column sorts by."""

        def __init__(self, order: str) -> None:
            super().__init__()
            self.order = order

    cursor: reactive[int] = reactive(0, always_update=True, repaint=False)
    #: The thread the cursor is on (None: the list is empty). A variable the app
    #: watches rather than a message: its watcher runs in the same turn as the key,
    #: so the row and the detail title that names it are drawn in one frame (a
    #: message arrives a frame later: two frames a key, twice the wait on `j`).
    highlighted: var[str | None] = var(None, init=False)

    def __init__(self, clock: Callable[[], float], palette: Palette, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.palette = palette
        self.summaries: dict[str, ThreadSummary] = {}
        #: Threads this app runs, with when each run started (the runner says first).
        self.running: dict[str, float] = {}
        self.marked: set[str] = set()
        self.filter_text = ""
        #: Each thread's (tokens, cost) once read (`usage.UsageTally`): the TOKENS column
        #: and the "cost" order; a thread not read yet shows nothing there.
        self.usage: dict[str, tuple[int, float]] = {}
        #: Whether every thread's usage was read once (a thread not in `usage` spent none).
        self.usage_read = False
        #: The threads a search of message text found (`~` in the filter); None: no search.
        self.found: frozenset[str] | None = None
        self.attention_only = False
        self.order = ORDERS[0]
        #: The order read from its end (`S`): rows map to `_sorted` from the other side,
        #: so a reversal re-sorts nothing.
        self.reversed = False
        self.counts: Counter[State] = Counter()
        #: Rows whose place or cells were worked out again since the last look:
        #: a refresh must cost what changed, not what exists (tests count these).
        self.rows_touched = 0
        self._sorted: list[tuple[Any, ...]] = []
        self._keys: dict[str, tuple[Any, ...]] = {}
        self._states: dict[str, State] = {}
        self._cells: dict[str, tuple[tuple[Any, ...], tuple[Text, ...]]] = {}
        self._id_width = ID_WIDTH[0]
        #: Drawn rows by (thread, is cursor, width): a held key redraws two rows,
        #: each a dictionary lookup. Dropped with the row's cells, the styles, the theme.
        self._strips: dict[tuple[str, bool, int], Strip] = {}
        self._styles_memo: tuple[Style, Style, Style] | None = None

    # -- what the rows are -------------------------------------------------

    def state_of(self, thread_id: str) -> State:
        """The one place a thread's shown state is decided: a run here wins."""
        if thread_id in self.running:
            return State.RUNNING
        return self.summaries[thread_id].state

    def __len__(self) -> int:
        return len(self._sorted)

    @property
    def shown(self) -> list[str]:
        """Thread ids as listed (a new list: O(rows); the app's hot paths use `thread_at`)."""
        ids = [key[-1] for key in self._sorted]
        return ids[::-1] if self.reversed else ids

    def marked_shown(self) -> list[str]:
        """Marked threads the filter shows, in list order (without walking every row)."""
        indexed = ((self.index_of(t), t) for t in self.marked)
        return [t for i, t in sorted((i, t) for i, t in indexed if i is not None)]

    def newest_shown_activity(self) -> float | None:
        """The newest last activity of the rows on screen (None: none has one): whether
        their ages count in seconds, and so want a repaint every second."""
        top = round(self.scroll_y)
        newest = None
        for index in range(top, top + self._rows_high()):
            thread_id = self.thread_at(index)
            if thread_id is None:
                break
            then = self.summaries[thread_id].last_activity
            if then is not None and (newest is None or then > newest):
                newest = then
        return newest

    def thread_at(self, index: int) -> str | None:
        rows = len(self._sorted)
        if not 0 <= index < rows:
            return None
        return self._sorted[rows - 1 - index if self.reversed else index][-1]

    def index_of(self, thread_id: str) -> int | None:
        key = self._keys.get(thread_id)
        if key is None:
            return None
        found = bisect.bisect_left(self._sorted, key)
        return len(self._sorted) - 1 - found if self.reversed else found

    @property
    def current_thread(self) -> str | None:
        return self.thread_at(self.cursor)

    def _visible(self, thread_id: str, state: State) -> bool:
        if self.attention_only and state not in NEEDS_ATTENTION:
            return False
        if self.found is not None and thread_id not in self.found:
            return False
        needle = self.filter_text.lower()
        if not needle or needle in thread_id.lower() or needle in state:
            return True
        return needle in thread_hint(self.summaries[thread_id], 200, state=state).lower()

    def _key(self, thread_id: str, state: State) -> tuple[Any, ...]:
        # The shown state: a run here counts before the store knows of it.
        if self.order == "cost":
            return self._cost_key(thread_id)
        return order_key(self.order, self.summaries[thread_id], state)

    def _cost_key(self, thread_id: str) -> tuple[Any, ...]:
        """The costliest first (then the most tokens); threads not read yet last."""
        none = (0, 0.0) if self.usage_read else (-1, -1.0)
        tokens, cost = self.usage.get(thread_id, none)
        return (-cost, -tokens, thread_id)

    def set_usage(self, updates: dict[str, tuple[int, float]], everything: bool = False) -> None:
        """Tokens and cost read for these threads (`everything`: the first read, after which
        a thread without any spent none): their rows are drawn again (and placed again
        when the list is in cost order)."""
        self.usage.update(updates)
        if everything and not self.usage_read:
            self.usage_read = True
            self._cells.clear()
            self._strips.clear()
            if self.order == "cost":
                self.rebuild()
            else:
                self.refresh()
            return
        changed = updates.keys() & self.summaries.keys()
        if self.order == "cost":
            self._relist(changed)
            return
        width = self._strip_width
        for thread_id in changed:  # only their rows are drawn again, not every cached row
            self._cells.pop(thread_id, None)
            self._strips.pop((thread_id, False, width), None)
            self._strips.pop((thread_id, True, width), None)
        self.refresh()

    # -- changing them -------------------------------------------------------

    def update(self, changed: dict[str, ThreadSummary]) -> None:
        """Take new summaries; each changed thread moves to its place, nothing else is touched."""
        self.summaries.update(changed)
        self._relist(changed)

    def replace_all(self, summaries: dict[str, ThreadSummary]) -> None:
        """A whole new listing (the first pass, or the pass after a preview)."""
        self.summaries = dict(summaries)
        self._states.clear()
        self._cells.clear()
        self.rebuild()

    def set_running(self, thread_id: str, since: float | None) -> None:
        if since is None:
            self.running.pop(thread_id, None)
        else:
            self.running[thread_id] = since
        if thread_id in self.summaries:
            self._relist([thread_id])

    def toggle_mark(self, thread_id: str) -> None:
        self.marked.symmetric_difference_update({thread_id})
        self._relist([thread_id])

    def mark_current(self) -> None:
        """`space`: mark or unmark the row under the cursor, and move on."""
        thread_id = self.current_thread
        if thread_id is not None:
            self.toggle_mark(thread_id)
            self.action_cursor_down()

    def next_order(self, order: str | None = None) -> None:
        """`s` (or a header click, naming one): the next order; the cursor stays on its
        thread. A click on the header of the order already shown reverses it."""
        if order is None:
            order = ORDERS[(ORDERS.index(self.order) + 1) % len(ORDERS)]
        elif order == self.order:
            self.reverse_order()
            return
        self.reversed = False
        self.set_view(order=order)

    def reverse_order(self) -> None:
        """`S`: the same order from its other end; the cursor stays on its thread."""
        keep = self.current_thread
        self.reversed = not self.reversed
        self._strips.clear()
        self._placed(keep)
        self.refresh()

    def clear_marks(self) -> None:
        marked, self.marked = self.marked, set()
        self._relist(marked & self.summaries.keys())

    def set_view(
        self,
        *,
        filter_text: str | None = None,
        attention_only: bool | None = None,
        order: str | None = None,
        found: frozenset[str] | None | Ellipsis = ...,  # type: ignore[valid-type]
    ) -> None:
        """Change what shows or its order: every row is placed again (O(rows log rows))."""
        if filter_text is not None:
            self.filter_text = filter_text
        if found is not ...:
            self.found = found
        if attention_only is not None:
            self.attention_only = attention_only
        if order is not None:
            self.order = order
        self.rebuild()

    def set_palette(self, palette: Palette) -> None:
        self.palette = palette
        self._cells.clear()
        self._strips.clear()
        self.refresh()

    def notify_style_update(self) -> None:
        """Focus, theme or CSS changed: the row styles are worked out again."""
        super().notify_style_update()
        self._styles_memo = None
        self._strips.clear()

    def _row_styles(self) -> tuple[Style, Style, Style]:
        """(base, header, cursor) styles; computing `rich_style` per line cost 0.2 ms."""
        if self._styles_memo is None:
            self._styles_memo = (
                self.rich_style,
                self.get_component_rich_style("thread-table--header"),
                self.get_component_rich_style("thread-table--cursor"),
            )
        return self._styles_memo

    def rebuild(self) -> None:
        # `_visible` and `_key` written out for every row: at 100,000 rows their calls
        # were a fifth of the first list's placing, on the UI thread.
        keep = self.current_thread
        keys, order, state_of = self._keys, self.order, self.state_of
        states: dict[str, State] = {}
        keys.clear()
        everything = not self.filter_text and not self.attention_only and self.found is None
        for thread_id, summary in self.summaries.items():
            state = states[thread_id] = state_of(thread_id)
            if everything or self._visible(thread_id, state):
                keys[thread_id] = (
                    self._cost_key(thread_id)
                    if order == "cost"
                    else order_key(order, summary, state)
                )
        self._states = states
        self.counts = Counter(states.values())
        self._sorted = sorted(keys.values())
        self._widen(self.summaries)
        self.rows_touched += len(self.summaries)
        self._placed(keep)

    def _relist(self, thread_ids: Iterable[str]) -> None:
        keep = self.current_thread
        touched = 0
        for thread_id in thread_ids:
            touched += 1
            self._cells.pop(thread_id, None)
            self._strips.pop((thread_id, False, self._strip_width), None)
            self._strips.pop((thread_id, True, self._strip_width), None)
            old = self._states.get(thread_id)
            state = self._states[thread_id] = self.state_of(thread_id)
            if old is not None:
                self.counts[old] -= 1
            self.counts[state] += 1
            key = self._keys.pop(thread_id, None)
            if key is not None:
                del self._sorted[bisect.bisect_left(self._sorted, key)]
            if self._visible(thread_id, state):
                key = self._keys[thread_id] = self._key(thread_id, state)
                bisect.insort(self._sorted, key)
        self._widen(thread_ids)
        self.rows_touched += touched
        self._placed(keep)

    def _widen(self, thread_ids: Iterable[str]) -> None:
        widest = max((len(t) for t in thread_ids), default=0)
        width = max(self._id_width, min(widest + 1, ID_WIDTH[1]))
        if width != self._id_width:
            self._id_width = width
            self._strips.clear()  # every row's columns moved

    def _placed(self, keep: str | None) -> None:
        """After rows moved: the cursor stays on its thread, the view on the cursor."""
        self.virtual_size = Size(0, len(self._sorted) + 1)
        index = self.index_of(keep) if keep is not None else None
        if index is None:
            index = min(self.cursor, max(0, len(self._sorted) - 1))
        self.cursor = index
        self.refresh()

    # -- the cursor ----------------------------------------------------------

    @property
    def allow_vertical_scroll(self) -> bool:
        """The view scrolls though no scrollbar shows: Textual ties scrolling to the
        scrollbar, and with `overflow-y: hidden` it refused every scroll, so the cursor
        left the screen on page down and the wheel did nothing."""
        return not (self.disabled or self.loading)

    def watch_cursor(self, old: int, index: int) -> None:
        if self._keep_in_view(index):
            self.refresh()
        else:  # only the two rows whose cursor look changed are drawn again, and the header
            self.refresh_line(0)
            self.refresh_line(old + 1)
            self.refresh_line(index + 1)
        self.highlighted = self.thread_at(index)

    def move_cursor(self, row: int) -> None:
        if self._sorted:
            self.cursor = max(0, min(row, len(self._sorted) - 1))

    def move_to(self, thread_id: str) -> bool:
        index = self.index_of(thread_id)
        if index is not None:
            self.cursor = index
        return index is not None

    def _rows_high(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _keep_in_view(self, index: int) -> bool:
        """Scroll so the cursor's row shows; True if the view moved."""
        top = round(self.scroll_y)
        if index < top:
            self.scroll_to(y=index, animate=False, immediate=True)
        elif index >= top + self._rows_high():
            self.scroll_to(y=index - self._rows_high() + 1, animate=False, immediate=True)
        else:
            return False
        return True

    def action_cursor_down(self) -> None:
        self.move_cursor(self.cursor + 1)

    def action_cursor_up(self) -> None:
        self.move_cursor(self.cursor - 1)

    def action_page_down(self) -> None:
        self.move_cursor(self.cursor + self._rows_high())

    def action_page_up(self) -> None:
        self.move_cursor(self.cursor - self._rows_high())

    def action_scroll_top(self) -> None:
        self.move_cursor(0)

    def action_scroll_bottom(self) -> None:
        self.move_cursor(len(self._sorted) - 1)

    def action_choose(self) -> None:
        if self.current_thread is not None:
            self.post_message(self.Chosen(self.current_thread))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            order = self._column_at(offset.x + round(self.scroll_x))
            if order is not None:
                self.post_message(self.HeaderClicked(order))
            return
        index = round(self.scroll_y) + offset.y - 1
        if index < len(self._sorted):
            self.cursor = index
            self.action_choose()

    def on_resize(self, _event: events.Resize) -> None:
        self.virtual_size = Size(0, len(self._sorted) + 1)
        # Fewer rows fit: the cursor's row stays on screen (after the new size is laid out).
        self.call_after_refresh(self._keep_in_view, self.cursor)

    # -- drawing -------------------------------------------------------------

    def _widths(self) -> list[int]:
        """Each column's width: the thread column gives way before the columns after it
        (a 40-character id at 80 columns would push TOKENS and WHERE off the screen)."""
        room = self.scrollable_content_region.width
        fixed = sum(w or 0 for _, _, w in COLUMNS)
        id_width = max(ID_WIDTH[0], min(self._id_width, room - fixed - WHERE_WIDTH))
        widths = [id_width if w is None else w for _, _, w in COLUMNS]
        widths[-1] = max(10, room - sum(widths[:-1]))
        return widths

    def _column_at(self, x: int) -> str | None:
        for (_, order, _), width in zip(COLUMNS, self._widths(), strict=True):
            if x < width:
                return order
            x -= width
        return None

    def row_cells(self, thread_id: str) -> tuple[Text, ...]:
        """A row's cells, reused while its summary, mark, run and shown age are unchanged.

        The age is part of the key: a row cached minutes ago must not bring
        back an older "2m ago" than the clock now says.
        """
        summary = self.summaries[thread_id]
        running = self.running.get(thread_id)
        now = self.clock()
        used = self.usage.get(thread_id)
        tokens = tokens_text(used[0]) if used is not None else "0" if self.usage_read else ""
        age = relative_time(summary.last_activity, now)
        key = (thread_id in self.marked, running, age, tokens)
        cached = self._cells.get(thread_id)
        if cached is not None and running is None and cached[0] == key:
            return cached[1]
        cells = thread_row(summary, self.palette, now, key[0], running, tokens)
        self._cells[thread_id] = (key, cells)
        width = self._strip_width
        self._strips.pop((thread_id, False, width), None)
        self._strips.pop((thread_id, True, width), None)
        return cells

    @property
    def _strip_width(self) -> int:
        return self.scrollable_content_region.width

    def render_line(self, y: int) -> Strip:
        width = self._strip_width
        base, header, cursor = self._row_styles()
        if y == 0:
            widths = self._widths()
            # The sorted column says so, and which way: ▼ as the order reads, ▲ reversed.
            arrow = "▲" if self.reversed else "▼"
            labels = [label + (arrow if o == self.order else "") for label, o, _ in COLUMNS]
            cells = [Text(label) for label in labels]
            cells[-1] = self._header_end(labels[-1], widths[-1] - 1)
            return self._strip(cells, widths, header, width)
        index = round(self.scroll_y) + y - 1
        thread_id = self.thread_at(index)
        if thread_id is None:
            return Strip.blank(width, base)
        on_cursor = index == self.cursor
        key = (thread_id, on_cursor, width)
        cells = self.row_cells(thread_id)  # may drop a stale strip (a new age, say)
        strip = self._strips.get(key)
        if strip is None:
            strip = self._strip(list(cells), self._widths(), base, width)
            if on_cursor:  # the cursor's colours win over the cells' own
                cursor_segments = Segment.apply_style(strip, post_style=cursor)
                strip = Strip(cursor_segments, strip.cell_length).simplify()
            if len(self._strips) > STRIPS_KEPT:
                self._strips.clear()
            self._strips[key] = strip
        return strip

    def _header_end(self, label: str, width: int) -> Text:
        """The last column's header and, at its right end, where the cursor is
        ("1,234/100,000"); where both do not fit, the label's first word ("WHERE"),
        then the position alone."""
        if not self._sorted:
            return Text(label)
        row, rows = self.cursor + 1, len(self._sorted)
        wheres = (f"{row:,}/{rows:,}", f"{row}/{rows}")  # the second where space is short
        bare = label.removesuffix("▼").removesuffix("▲")
        arrow = label[len(bare) :]
        word = bare.split(" ", 1)[0]
        for text in dict.fromkeys((label, bare, word + arrow, word)):
            for where in wheres:  # the sort arrow gives way before the label does
                if len(text) + 2 + len(where) <= width:
                    return Text(text + where.rjust(width - len(text)))
        for where in wheres:
            if len(where) <= width:
                return Text(where.rjust(width))
        return Text(label)

    def _strip(self, cells: list[Text], widths: list[int], base: Style, width: int) -> Strip:
        """Cells cut or padded to their columns, over the `base` style.

        Neighbouring cells of one style become one segment: each segment is
        written with its own colour codes, and a scrolled screen of rows went
        from 11.3 KB to 8.0 KB (less to write, and less for the terminal to read).
        """
        segments: list[Segment] = []
        console = self.app.console
        for column, (cell, cell_width) in enumerate(zip(cells, widths, strict=True)):
            text = cell.copy()
            text.no_wrap = True
            if column == THREAD_COLUMN:
                text = cut_in_the_middle(text, cell_width - 1)
            if cell.justify == "right":
                text.pad_left(max(0, cell_width - 1 - text.cell_len))
            text.truncate(max(0, cell_width - 1), overflow="ellipsis", pad=True)
            text.append(" ")
            # `Text.render` draws spans only; the text's own style goes under them.
            segments += Segment.apply_style(text.render(console), console.get_style(text.style))
        strip = Strip(Segment.apply_style(segments, style=base))
        return strip.crop_extend(0, width, base).simplify()
