"""`serve`: the app in a real headless Chromium, through textual-serve.

`agent-supervisor serve` runs as a real subprocess on a copy of the demo database; the
page is driven by Playwright on Debian's Chromium (`apt-get install chromium`: Playwright
cannot download its own browser here), every request that would leave loopback refused.
The terminal's text is read from xterm.js's own buffer: the page draws it on a canvas, so
an init script keeps the `Terminal` textual-serve's script makes (`window.__xterm`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, sync_playwright

from tests.conftest import cli

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: Keeps the xterm.js `Terminal` textual-serve's script assigns to its `terminal` field.
KEEP_TERMINAL = """
Object.defineProperty(Object.prototype, 'terminal', {
  configurable: true,
  set(value) {
    Object.defineProperty(this, 'terminal', {value, writable: true, configurable: true});
    if (value && value.buffer) window.__xterm = value;
  },
});
"""

#: The terminal's rows as text, from xterm.js's buffer.
SCREEN = """() => {
  const term = window.__xterm;
  if (!term) return '';
  const buffer = term.buffer.active, rows = [];
  for (let y = 0; y < term.rows; y++) {
    const line = buffer.getLine(buffer.viewportY + y);
    rows.push(line ? line.translateToString(true) : '');
  }
  return rows.join('\\n');
}"""

THREADS = [f"job-{n:02}" for n in range(1, 13)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module: Debian's. Playwright is stopped with it: its
    sync API keeps an event loop running in this thread, and every later test of the
    worker that calls `asyncio.run` would fail (pytest-playwright's fixtures keep it for
    the whole session, which is why they are not used)."""
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("no Chromium: apt-get install chromium (.ci/run installs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    opened = browser.new_context(viewport={"width": 1200, "height": 800})
    yield opened
    opened.close()


class Served:
    """`agent-supervisor serve` in a child process, and the URL it printed."""

    def __init__(self, db: Path, *options: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "serve", str(db), "--port", "0", *options],
            cwd=db.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        printed = threading.Event()

        def read() -> None:  # all of stdout, so the server never blocks on a full pipe
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.lines.append(line)
                printed.set()

        threading.Thread(target=read, daemon=True).start()
        assert printed.wait(30), f"serve printed nothing: {self.stop()}"
        found = re.search(r" at (http://\S+)", self.lines[0])
        assert found, self.lines
        self.url = found.group(1)
        self.port = urllib.parse.urlsplit(self.url).port

    def apps(self) -> list[int]:
        """The app processes serve runs now (its children)."""
        return children(self.process.pid)

    def stop(self, signum: int = signal.SIGTERM) -> str:
        """Signal serve, wait for it; its stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        assert self.process.stderr is not None
        return self.process.stderr.read()


@pytest.fixture
def served(demo_db: Path, fast_demo: None) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(*options: str) -> Served:
        started.append(Served(demo_db, *options))
        return started[-1]

    yield start
    for server in started:
        server.stop(signal.SIGKILL)


def children(pid: int) -> list[int]:
    """The processes `pid`'s threads started (Linux's per-thread list of children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except FileNotFoundError:  # a thread that ended between the listing and the read
            continue
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def until(condition: Callable[[], object], timeout: float = 10.0) -> object:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            return result
        time.sleep(0.05)
    return result


def open_page(context: BrowserContext, url: str) -> Page:
    """A tab on `url` that may reach loopback only, its terminal kept for reading."""
    page = context.new_page()
    left: list[str] = []

    def loopback_only(route: Route) -> None:
        if urllib.parse.urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            left.append(route.request.url)
            route.abort()

    page.route("**/*", loopback_only)
    page.add_init_script(KEEP_TERMINAL)
    page.goto(url)
    page.left_loopback = left
    return page


def screen(page: Page) -> str:
    return page.evaluate(SCREEN)


def wait_screen(
    page: Page, condition: Callable[[str], object], what: str, timeout: float = 15.0
) -> str:
    text = ""

    def check() -> object:
        nonlocal text
        text = screen(page)
        return condition(text)

    assert until(check, timeout), f"{what}; the screen:\n{text}"
    return text


def selected(text: str) -> tuple[str, str]:
    """The list's cursor position (`2/12`) and the thread the detail pane shows."""
    found = re.search(r"(\d+/\d+) ▕ (\S+)", text)
    return (found.group(1), found.group(2)) if found else ("", "")


def rows(text: str) -> list[str]:
    """The thread ids down the list, in order."""
    ids = (re.search(r"job-\d\d", line.split("▕")[0]) for line in text.splitlines())
    return [m.group() for m in ids if m]


def click(page: Page, text: str, word: str, column: str = "all") -> None:
    """Click the middle of the first `word` on screen (in the list's pane or the detail's)."""
    term = page.evaluate("() => [window.__xterm.cols, window.__xterm.rows]")
    box = page.locator(".xterm-screen").bounding_box()
    width, height = box["width"] / term[0], box["height"] / term[1]
    for y, line in enumerate(text.splitlines()):
        start = 0 if column != "detail" else line.find("▕") + 1
        x = line.find(word, start)
        if x >= 0 and (column != "list" or x < line.find("▕")):
            page.mouse.click(box["x"] + (x + len(word) / 2) * width, box["y"] + (y + 0.5) * height)
            return
    raise AssertionError(f"{word!r} is not on the screen:\n{text}")


def click_until(
    page: Page, word: str, column: str, condition: Callable[[str], object], what: str
) -> None:
    """Click `word` until `condition` holds: on a loaded machine the pane can still be laying
    itself out (a title, a notice) when the screen is read, and the click lands beside it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        click(page, screen(page), word, column)
        if until(lambda: condition(screen(page)), 3):
            return
    raise AssertionError(f"{what}; the screen:\n{screen(page)}")


def status(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, dict(refused.headers), refused.read().decode()


def websocket(url: str, headers: dict[str, str] | None = None) -> int:
    """The status a websocket handshake gets (101: open; the first frame read, then closed)."""
    import aiohttp

    async def connect() -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(url, headers=headers or {}) as ws:
                    await asyncio.wait_for(ws.receive(), 15)
                    return 101
            except aiohttp.WSServerHandshakeError as refused:
                return refused.status

    # In a thread of its own: Playwright's sync API keeps an event loop in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, connect()).result()


def test_the_app_in_a_browser(served, demo_db: Path, context: BrowserContext) -> None:
    """The page shows the demo's threads; keys and clicks move the cursor and switch tabs;
    `r` resumes a crashed thread; a closed tab ends its app; a stopped server ends all."""
    server = served()
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert until(lambda: len(server.lines) == 2)
    assert f"ssh -L {server.port}:127.0.0.1:{server.port} HOST" in server.lines[1]
    page = open_page(context, server.url)
    text = wait_screen(page, lambda t: all(n in t for n in THREADS), "every demo thread listed")
    [app] = server.apps()
    assert page.left_loopback, "the page asks for a web font: the route refused it"

    order = rows(text)
    page.locator(".xterm-helper-textarea").focus()
    page.keyboard.press("j")
    wait_screen(page, lambda t: selected(t) == ("2/12", order[1]), "j moves down")
    page.keyboard.press("k")
    wait_screen(page, lambda t: selected(t) == ("1/12", order[0]), "k moves up")
    page.keyboard.press("3")
    markers = re.compile(r"STATUS +KEY +MATCHED BY")
    wait_screen(page, markers.search, "3: the Job markers tab")
    page.keyboard.press("2")
    transcript = re.compile(r"#\d+ \d\d:\d\d:\d\d user")
    wait_screen(page, transcript.search, "2: the Transcript tab")

    click_until(page, "job-02", "list", lambda t: selected(t)[1] == "job-02", "a click on job-02")
    click_until(page, "Events", "detail", lambda t: "No events yet" in t, "a click on Events")
    click_until(page, "Transcript", "detail", transcript.search, "a click on Transcript")

    page.keyboard.press("r")
    wait_screen(page, lambda t: "Resume job-02 (mid_tool)" in t, "r: the plan")
    page.keyboard.press("y")
    finished = re.compile(r"finished\s+job-02")
    wait_screen(page, finished.search, "job-02 resumed to finished", timeout=30)
    listing = json.loads(cli("list", str(demo_db), "--json").stdout)
    assert {t["thread_id"]: t["state"] for t in listing}["job-02"] == "finished"

    page.close()
    assert until(lambda: not alive(app), 10), "the closed tab's app still runs"

    second = open_page(context, server.url)
    wait_screen(second, lambda t: "job-02" in t, "a second tab")
    [app] = server.apps()
    # A page from elsewhere, a name that is not loopback (DNS rebinding): refused.
    assert status(server.url, {"Host": f"attacker.example:{server.port}"})[0] == 403
    ws = f"ws://127.0.0.1:{server.port}/ws"
    assert websocket(ws, {"Origin": "http://attacker.example"}) == 403
    assert server.stop(signal.SIGINT) == ""
    assert server.process.returncode == 0
    assert not alive(app), "the server stopped, its app did not"
    second.wait_for_selector("body.-closed", state="attached", timeout=5000)


def test_a_second_signal_kills_a_stuck_app_at_once(served, context: BrowserContext) -> None:
    """An app that no longer answers (stopped here) would have its grace, then SIGTERM and
    SIGKILL; a second Ctrl-C does not wait for that."""
    server = served()
    page = open_page(context, server.url)
    wait_screen(page, lambda t: "job-02" in t, "the list")
    [app] = server.apps()
    os.kill(app, signal.SIGSTOP)
    try:
        server.process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert server.process.poll() is None, "serve gave its stuck app no grace"
        server.stop(signal.SIGINT)
        assert server.process.returncode == 0
        assert until(lambda: not alive(app), 5), "a second signal left the stuck app"
    finally:
        if alive(app):
            os.kill(app, signal.SIGKILL)


def test_a_public_server_wants_its_token(served) -> None:
    """Bound to every interface: without the token the page, its assets and the websocket
    are refused (403); the printed URL's token opens them, and sets the cookie the rest use."""
    server = served("--host", "0.0.0.0", "--public")
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(server.url).query)["token"][0]
    base = f"http://127.0.0.1:{server.port}"
    ws = f"ws://127.0.0.1:{server.port}/ws"
    wrong = ("y" if token[0] == "x" else "x") + token[1:]  # one character off, never the token
    for url in (f"{base}/", f"{base}/static/js/textual.js", f"{base}/?token={wrong}"):
        assert status(url)[0] == 403, url
    assert websocket(ws) == 403
    assert websocket(f"{ws}?token=wrong-{token}") == 403
    assert server.apps() == []

    code, headers, page = status(f"{base}/?token={token}")
    assert code == 200 and f'"{ws}"' in page
    assert headers["X-Frame-Options"] == "DENY"  # never in another site's frame
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    cookie = headers["Set-Cookie"]
    # Not the token: a host's cookies go to every port of it, other servers' too.
    assert token not in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Max-Age=60" in cookie
    sent = {"Cookie": cookie.split(";", 1)[0]}
    assert status(f"{base}/static/js/textual.js", sent)[0] == 200
    assert websocket(ws, {**sent, "Origin": "http://attacker.example"}) == 403
    assert websocket(ws, sent) == 101
    assert websocket(ws, sent) == 403  # one pass, one session
    assert status(f"{base}/static/js/textual.js", sent)[0] == 403
    assert until(lambda: server.apps() == [], 10), "the session's app outlived its websocket"

    warning = server.stop()
    assert server.process.returncode == 0
    assert "reachable from other machines" in warning and token not in warning


def test_bad_input_is_one_line(tmp_path: Path, demo_db: Path) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    port = str(taken.getsockname()[1])
    cases = [
        ([str(tmp_path / "missing.db")], "no such file"),
        ([str(demo_db), "--port", port], "Address already in use"),
        ([str(demo_db), "--host", "0.0.0.0"], "add --public"),
        ([str(demo_db), "--token", "short"], "--token: at least 16"),
    ]
    with taken:  # the four at once: each is an interpreter's start
        command = [sys.executable, "-m", "supervisor", "serve"]
        runs = [
            subprocess.Popen([*command, *args], stderr=subprocess.PIPE, text=True)
            for args, _ in cases
        ]
        results = [(run.wait(30), run.communicate()[1]) for run in runs]
    for (code, stderr), (_, needle) in zip(results, cases, strict=True):
        assert code == 2 and stderr.count("\n") == 1 and needle in stderr, stderr
    assert not (tmp_path / "missing.db").exists()
    short = subprocess.run(  # a short token in the variable is named as the variable
        [*command, str(demo_db)],
        env={**os.environ, "AGENT_SUPERVISOR_SERVE_TOKEN": "abc"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert short.returncode == 2 and "$AGENT_SUPERVISOR_SERVE_TOKEN: at least 16" in short.stderr
