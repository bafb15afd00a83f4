"""The app tells its person when a thread newly needs them (`supervisor.notifications`).

It watches the summaries of the app's own refreshes through the same
`events.Transitions` as `watch --events`, so the two agree on what is news.
What the first whole read finds is the list the person is looking at, not
news: only what comes after rings. Each piece of news is a toast in the app,
and (by `--notify`) a bell or a desktop notification from the terminal.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from textual.app import SystemCommand

from supervisor.events import Need, Transitions
from supervisor.notifications import NotifyPolicy, alert
from supervisor.states import ThreadSummary
from supervisor.text import one_line

if TYPE_CHECKING:
    from supervisor.ui.app import SupervisorApp

#: Toasts for one refresh's news, at most; the rest are counted in the last.
MOST_TOASTS = 3

TITLES = {"awaiting_input": "waiting for you", "held": "held"}


class Alerts:
    """Owns what counts as news and how it is told; the app feeds it its refreshes."""

    def __init__(
        self,
        app: SupervisorApp,
        policy: NotifyPolicy | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.app = app
        self.policy = policy or NotifyPolicy()
        self.env = os.environ if env is None else env
        self._transitions = Transitions()
        #: The mode before "Notifications: off" from the command palette, to turn back to.
        self._was = "auto"
        #: Set once the first whole read is in: from then on, changes are news.
        self._primed = False

    def observe(
        self, changed: Iterable[ThreadSummary], *, everything: bool, provisional: bool
    ) -> None:
        if not self._primed:  # what the first whole read finds is the baseline, not news:
            if everything and not provisional:  # its partial passes are not even looked at
                self._transitions.observe(changed, everything=True)
                self._primed = True
            return
        news = self._transitions.observe(changed, everything=everything)
        news = [n for n in news if n.kind in self.policy.kinds]
        if news:
            self.tell(news)

    def tell(self, news: list[Need]) -> None:
        for need in news[:MOST_TOASTS]:
            self.app.notify(
                f"{one_line(need.thread_id, 60)}: {one_line(need.reason, 160)}",
                title=TITLES.get(need.kind, need.kind),
                severity="warning",
                timeout=10,
                markup=False,
            )
        if len(news) > MOST_TOASTS:
            more = len(news) - MOST_TOASTS
            self.app.notify(f"and {more} more", title="waiting for you", markup=False)
        first = news[0]
        if len(news) == 1:
            title = f"agent-supervisor: {TITLES.get(first.kind, first.kind)}"
            body = f"{first.thread_id}: {first.reason}"
        else:
            title = "agent-supervisor"
            body = f"{len(news)} threads need you ({first.thread_id}: {first.reason})"
        self.app.write_to_terminal(alert(self.policy, self.env, title, body))

    def switch_command(self) -> SystemCommand:
        """The command palette's entry that turns the bell and desktop notifications off,
        or back on (the toasts stay)."""
        if self.policy.mode == "off":
            return SystemCommand(
                "Notifications: on",
                f"ring again when a thread needs you ({self._was})",
                lambda: self._switch(self._was),
            )
        return SystemCommand(
            "Notifications: off",
            "no bell or desktop notification when a thread needs you (toasts stay)",
            lambda: self._switch("off"),
        )

    def _switch(self, mode: str) -> None:
        if mode == "off":
            self._was = self.policy.mode
        self.policy = NotifyPolicy(mode, self.policy.kinds)
        self.app.notify(f"notifications: {mode}", markup=False)
