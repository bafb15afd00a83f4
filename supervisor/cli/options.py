"""What every command shares on its command line: exit codes, the options, their types.

Each option is defined once here and added by the commands that take it;
each type refuses what makes no sense (`nan`, `inf`, negative durations) with
one line, exit 2.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable

from supervisor.agents import ENV_VAR
from supervisor.location import DSN_VARIABLE
from supervisor.sqlite.files import DEFAULT_BUSY_TIMEOUT
from supervisor.states import State

#: The runner's default; kept here so `--help` does not import the runner.
DEFAULT_CONTINUE_TEXT = "Continue where you left off."


EXIT_OK = 0


EXIT_UNFINISHED = 1


EXIT_BAD_INPUT = 2


#: An open run written to this recently may be live in another process.
LIVE_WINDOW = 120.0


class UsageError(Exception):
    """Bad arguments; the message is one line for the user."""

    def __init__(self, message: str, prog: str = "agent-supervisor") -> None:
        super().__init__(message)
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, self.prog)


def state_list(value: str) -> set[State]:
    wanted: set[State] = set()
    for name in value.split(","):
        try:
            wanted.add(State(name.strip()))
        except ValueError:
            names = ", ".join(s.value for s in State)
            raise argparse.ArgumentTypeError(
                f"unknown state {name.strip()!r} (one of: {names})"
            ) from None
    return wanted


DB_HELP = "a CubeLoop checkpoint database: a SQLite file or a postgresql:// URL"


class Version(argparse.Action):
    """`--version`, worked out only when asked: reading the installed versions imports
    `importlib.metadata` (and `tempfile`, `zipfile`, …), a cost every command paid."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_args: object) -> None:
        print(version_text())
        parser.exit()


def version_text() -> str:
    """What `--version` prints: ours, and the cubeloop and Python it runs with."""
    from importlib.metadata import PackageNotFoundError, version

    from supervisor import __version__

    try:
        cubeloop = version("cubeloop")
    except PackageNotFoundError:
        cubeloop = "not installed"
    python = ".".join(str(n) for n in sys.version_info[:3])
    return f"agent-supervisor {__version__} (cubeloop {cubeloop}, Python {python})"


def add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("db", metavar="DB", help=DB_HELP)
    add_busy_timeout(p)


def add_busy_timeout(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--busy-timeout",
        type=seconds(0.0, 3600.0),
        default=DEFAULT_BUSY_TIMEOUT,
        metavar="SECONDS",
        help="how long to wait for another process's write lock (default %(default)s)",
    )


def add_run_options(p: argparse.ArgumentParser, force: bool = True) -> None:
    p.add_argument(
        "--agent",
        metavar="MODULE:ATTR",
        help=f"agent factory (default: ${ENV_VAR}, else the built-in demo agent)",
    )
    add_jobs_dir(p)
    p.add_argument(
        "--strategy",
        choices=["rerun", "interrupt"],
        default="rerun",
        help="mid-tool threads: re-run unanswered calls (default) or tell the model "
        "they were interrupted",
    )
    p.add_argument(
        "--continue-text",
        default=DEFAULT_CONTINUE_TEXT,
        metavar="TEXT",
        help="user message that continues aborted/error threads (default: %(default)r)",
    )
    if force:
        p.add_argument(
            "--force",
            action="store_true",
            help="resume threads that may still be live in another process",
        )
    p.add_argument(
        "--max-concurrent",
        type=positive_int,
        default=4,
        metavar="N",
        help="threads run at once (default %(default)s)",
    )
    p.add_argument(
        "--abort-grace",
        type=seconds(0.0, 3600.0),
        default=5.0,
        metavar="SECONDS",
        help="on abort, cancel a thread still running after this (default %(default)s)",
    )
    p.add_argument(
        "--otel",
        nargs="?",
        const="",
        type=otel_endpoint,
        metavar="URL",
        help="export each run as an OpenTelemetry trace over OTLP/HTTP to the collector at URL "
        "(default: $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or $OTEL_EXPORTER_OTLP_ENDPOINT, else "
        "http://localhost:4318); needs 'pip install cubeloop-supervisor[otel]'",
    )


def otel_endpoint(value: str) -> str:
    """An argparse type for `--otel`'s collector URL: the traces endpoint under it, or ""
    (no URL given: the standard variables say where)."""
    if not value:
        return ""
    from supervisor.tracing import traces_url

    try:
        return traces_url(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_jobs_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--jobs-dir",
        metavar="DIR|URL",
        help="job markers: a directory, or a postgresql:// URL (default: $JOB_DIR, else "
        "DB.jobs beside a file DB, else the URL DB's own markers table)",
    )


def days(value: str) -> float:
    """An argparse type for a number of days: finite, not negative."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {value!r}") from None
    if not math.isfinite(number) or not 0 <= number <= 36500:
        raise argparse.ArgumentTypeError("must be between 0 and 36500 days")
    return number


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def watch_state_list(value: str) -> frozenset[State]:
    from supervisor.watch import WATCHABLE

    wanted = state_list(value)
    refused = sorted(str(s) for s in wanted - WATCHABLE)
    if refused:
        raise argparse.ArgumentTypeError(
            f"the watcher never resumes {', '.join(refused)} "
            f"(one of: {', '.join(sorted(str(s) for s in WATCHABLE))})"
        )
    return frozenset(wanted)


def need_kinds(value: str) -> frozenset[str]:
    """`--notify-on awaiting_input,held`: what the app tells a person of."""
    from supervisor.notifications import KINDS

    wanted = {part.strip() for part in value.split(",") if part.strip()}
    unknown = sorted(wanted - set(KINDS))
    if unknown or not wanted:
        raise argparse.ArgumentTypeError(
            f"unknown {', '.join(unknown) or 'nothing'} (one or more of: {', '.join(KINDS)})"
        )
    return frozenset(wanted)


def backoff(value: str) -> tuple[float, float]:
    try:
        initial, longest = (float(part) for part in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("give INITIAL,MAX in seconds, e.g. 10,600") from None
    if not (math.isfinite(initial) and math.isfinite(longest)):
        raise argparse.ArgumentTypeError("INITIAL and MAX must be finite numbers of seconds")
    if not 0 <= initial <= longest <= 7 * 86400:
        raise argparse.ArgumentTypeError("need 0 <= INITIAL <= MAX <= 604800 (a week)")
    return initial, longest


def seconds(minimum: float = 0.0, maximum: float = 7 * 86400.0) -> Callable[[str], float]:
    """An argparse type for a number of seconds: finite and within [minimum, maximum]
    (`nan` slips through every comparison, `inf` through most: both are refused)."""

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
        if not math.isfinite(number) or not minimum <= number <= maximum:
            raise argparse.ArgumentTypeError(f"must be between {minimum:g} and {maximum:g} seconds")
        return number

    return parse


non_negative = seconds()


def from_environment(args: argparse.Namespace) -> None:
    """`env:NAME` as DB or --jobs-dir: the location read from the environment variable NAME
    (`env:` alone: $AGENT_SUPERVISOR_DSN), so a password never sits in the command line
    every user's `ps` shows. (A URL may also leave the password out: asyncpg then reads
    $PGPASSWORD or ~/.pgpass.)"""
    for name in ("db", "jobs_dir"):
        value = getattr(args, name, None)
        if not isinstance(value, str) or not value.startswith("env:"):
            continue
        variable = value[len("env:") :] or DSN_VARIABLE
        found = os.environ.get(variable)
        if not found:
            raise UsageError(f"{value}: ${variable} is not set", "agent-supervisor")
        setattr(args, name, found)


def age(value: str) -> float:
    """An argparse type for an age: `30d`, `12h`, `90m`, `2w` (seconds ago, as a number)."""
    from supervisor.retention import age_seconds

    try:
        return age_seconds(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def since(value: str) -> float:
    """An argparse type for a point in time, as unix seconds: an age (`7d`: seven days
    ago) or a UTC date or date and time (`2026-12-01`, `2026-12-01T08:00`)."""
    import datetime
    import time

    try:
        return time.time() - age(value)
    except argparse.ArgumentTypeError:
        pass
    try:
        when = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {value!r} (an age such as 7d or 12h, or a date such as 2026-12-01)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def dollars(value: str) -> float:
    """An argparse type for an amount of US dollars: `5`, `0.50`, `$12`."""
    try:
        number = float(value.strip().lstrip("$").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an amount of dollars: {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise argparse.ArgumentTypeError("must be 0 or more dollars")
    return number


def days_or_age(value: str) -> float:
    """An argparse type for an age in seconds: `30d`, `12h`, or a bare number of days."""
    if value.strip()[-1:].isdigit() or value.strip().endswith("."):
        return days(value) * 86400.0
    return age(value)
