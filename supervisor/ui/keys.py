"""Every key of the main screen, once: the bindings, the help screen and the palette.

The footer shows keys in this order and cuts the end when the terminal is
narrow, so help and quit come right after the main actions.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Key:
    keys: str  # Textual key names, comma-separated
    action: str  # the app action it runs
    label: str  # footer label and palette title
    help: str  # the help screen's line
    command: str = ""  # the palette's title; none: not in the palette
    shown: str = ""  # how the help screen writes the keys (default: `keys`)
    footer: bool = True


KEYS: tuple[Key, ...] = (
    Key(
        "r",
        "resume",
        "Resume",
        "resume the selected thread (or every marked thread); answer a waiting one",
        "Resume thread",
    ),
    Key(
        "a",
        "abort",
        "Abort",
        "abort the selected running thread (or every marked one, or ask another supervisor)",
        "Abort thread",
    ),
    Key(
        "p",
        "prompt",
        "Prompt",
        "send a prompt to the selected thread (or answer a waiting one)",
        "Prompt thread",
    ),
    Key(
        "slash",
        "filter",
        "Filter",
        "filter by thread id, state or where it stopped; Escape clears",
        "Filter threads",
        shown="/",
    ),
    Key("question_mark", "help", "Help", "this help", "Help", shown="?"),
    Key(
        "plus",
        "new_thread",
        "New thread",
        "start a new thread: its id and its first prompt",
        "New thread",
        shown="+",
        footer=False,
    ),
    Key("q", "quit_app", "Quit", "quit (running agents are aborted gracefully first)"),
    Key("space", "mark", "Mark", "mark / unmark the row; r and a then act on every marked row"),
    Key(
        "R",
        "resume_all",
        "Resume all",
        "resume every crashed thread (one preview of every plan)",
        "Resume all crashed",
    ),
    Key(
        "c",
        "attention",
        "Needs attention",
        "show only threads that need attention",
        "Toggle needs-attention filter",
    ),
    Key(
        "s",
        "sort",
        "Sort",
        "sort: attention first, activity, state, thread, messages, cost (or click a header)",
        "Sort the list (next order)",
    ),
    Key(
        "S",
        "reverse_sort",
        "Reverse",
        "the same order from its other end (or click the sorted column's header)",
        "Reverse the sort order",
        footer=False,
    ),
    Key(
        "w",
        "auto_resume",
        "Auto-resume",
        "auto-resume on/off: this app resumes crashed threads that stay quiet (as 'watch')",
        "Toggle auto-resume",
        footer=False,
    ),
    Key(
        "x",
        "release",
        "Release",
        "release the selected held thread (or every marked one): the watcher may try again",
        "Release held thread",
        footer=False,
    ),
    Key(
        "I",
        "add_index",
        "Add index",
        "add the index a big database lacks (asks first)",
        "Add the database index",
        footer=False,
    ),
    Key(
        "F",
        "fork",
        "Fork",
        "fork the thread after a completed run: first see which later side effects repeat",
        "Fork thread after a run",
        footer=False,
    ),
    Key(
        "D",
        "prune",
        "Remove old",
        "remove finished threads older than an age, with their markers (asks first)",
        "Remove old finished threads",
        footer=False,
    ),
    Key(
        "y",
        "copy_id",
        "Copy id",
        "copy the selected thread id to the clipboard",
        "Copy thread id",
        footer=False,
    ),
    Key(
        "f",
        "full_transcript",
        "Full transcript",
        "the selected thread's transcript, full screen",
        "Full-screen transcript",
        footer=False,
    ),
    Key(
        "o",
        "open_pager",
        "Pager",
        "open the selected thread's whole transcript in $PAGER",
        "Open transcript in pager",
        footer=False,
    ),
    Key("1", "tab('events')", "Events", "detail tab: events", "Show events", footer=False),
    Key(
        "2",
        "tab('transcript')",
        "Transcript",
        "detail tab: transcript",
        "Show transcript",
        footer=False,
    ),
    Key(
        "3",
        "tab('markers')",
        "Markers",
        "detail tab: job markers",
        "Show job markers",
        footer=False,
    ),
    Key(
        "enter",
        "toggle_focus",
        "Detail",
        "move focus between list and detail; answers a waiting thread",
        shown="enter / tab",
        footer=False,
    ),
    Key("escape", "clear_filter", "Clear filter", "clear the filter", footer=False),
    Key(
        "n",
        "search_step(1)",
        "Next match",
        "next search match; / searches the detail's tab when it has the keys (Tab)",
        footer=False,
    ),
    Key("N", "search_step(-1)", "Previous match", "previous search match", footer=False),
)

#: Keys handled by widgets rather than the app, listed in the help only.
MORE_HELP: tuple[tuple[str, str], ...] = (
    ("j / k, ↓ / ↑", "move in the list; g / G (Home / End) to the first / last row"),
    ("ctrl+p", "command palette: every action, and theme switching"),
)


def bindings() -> list[Binding]:
    return [Binding(k.keys, k.action, k.label, show=k.footer) for k in KEYS]


def help_rows() -> list[tuple[str, str]]:
    rows = [(k.shown or k.keys, k.help) for k in KEYS if k.keys != "escape"]
    return rows[:3] + list(MORE_HELP[:1]) + rows[3:] + list(MORE_HELP[1:])
