"""`serve`: the app in a browser, one app process per tab, through textual-serve.

textual-serve starts a process per websocket from a command string and relays its
screen to xterm.js in the page. Its `Server` is used as it is, with what a machine
shared with others needs added around it:

- **who may connect**: a middleware on its aiohttp app refuses, with 403, every
  request (the page, its assets, the websocket) without the token when there is
  one (the query's `?token=`, else the cookie the first good request sets), a
  websocket opened by a page from another origin (any site the user visits could
  otherwise drive the app on 127.0.0.1), and, on loopback, a Host header that names
  no loopback host (a DNS-rebound name would otherwise read the page);
- **no process outlives its tab**: each app leads a process group of its own
  (`setsid`) and gets SIGTERM if `serve` dies (`setpriv --pdeathsig`); a tab
  closed, or the server stopped, gives its app the grace its runs need to abort,
  then SIGTERM, then SIGKILL, to its whole group;
- **the page's own addresses** follow the address the browser used (textual-serve
  writes them from the bind address, which 0.0.0.0 or a tunnel's port would break).

This module imports textual-serve (and so aiohttp): only `serve` imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import time
import urllib.parse
from asyncio.subprocess import Process
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import WSCloseCode, web
from aiohttp.web_runner import GracefulExit
from textual_serve.app_service import AppService
from textual_serve.server import Server

#: After SIGTERM, how long an app's group has before SIGKILL.
KILL_AFTER = 3.0

#: How long the server waits for a browser to answer its closing of a session's websocket.
CLOSE_TIMEOUT = 2.0

#: A Host header we answer: a name or an IPv4 address, or an IPv6 one in brackets, and a port.
_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")

#: What a token may hold: characters a URL and a cookie carry as they are, at least 16.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{16,512}")

#: The scheme and host the browser used for the request being answered (see `public_url`).
_request_base: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_base", default=None
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to `host` and `port` (0: a free one) and listening, before anything is
    said or started: an address in use is an `OSError` here, not a traceback later."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return socket.create_server(address[:2], family=family)


def bound_address(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    return host, port


def is_loopback(sock: socket.socket) -> bool:
    """Whether only this machine can reach the socket (decided on the address it is bound
    to, not on the name it was given)."""
    return ipaddress.ip_address(bound_address(sock)[0]).is_loopback


def url_of(sock: socket.socket) -> str:
    """The address to open: the bound one, or this machine's name when bound to every
    interface."""
    host, port = bound_address(sock)
    if ipaddress.ip_address(host).is_unspecified:
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def session_command(argv: Sequence[str]) -> tuple[str, bool]:
    """The shell command textual-serve runs for each tab (`argv`, quoted, exec'd: the app is
    the shell's own process), and whether the app leads a process group of its own.

    `setsid` gives it one, so one signal reaches whatever it started, and a Ctrl-C on
    `serve`'s terminal reaches `serve` alone, which ends the sessions in order;
    `setpriv --pdeathsig TERM` ends it should `serve` be killed without a chance to."""
    own_group = shutil.which("setsid") is not None
    prefix = ["setsid"] if own_group else []
    if shutil.which("setpriv"):
        prefix += ["setpriv", "--pdeathsig", "TERM"]
    return "exec " + shlex.join([*prefix, *argv]), own_group


def _hostname(host: str) -> str:
    return urllib.parse.urlsplit(f"//{host}").hostname or ""


def _names_loopback(host: str) -> bool:
    name = _hostname(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _same_origin(request: web.Request) -> bool:
    """A websocket opened by a page this server sent (browsers always say whose page opens
    one; a client that is no browser says nothing)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    parts = urllib.parse.urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == request.host.lower()


class AppServer(Server):
    """textual-serve's server on a socket already bound, behind `guard`, ending its apps."""

    def __init__(
        self,
        command: str,
        sock: socket.socket,
        *,
        title: str,
        token: str | None,
        own_group: bool,
        grace: float,
    ) -> None:
        host, port = bound_address(sock)
        super().__init__(command, host=host, port=port, title=title)
        self.sock = sock
        self.token = token
        self.loopback = is_loopback(sock)
        self.own_group = own_group
        #: How long an app has to end by itself (its runs abort within --abort-grace).
        self.grace = grace
        #: Per port: two servers on one host keep their cookies apart.
        self.cookie = f"agent_supervisor_pass_{port}"
        #: One-time passes (`guard`) and when each expires.
        self._passes: dict[str, float] = {}
        #: Each open session's websocket and its app.
        self._sessions: dict[web.WebSocketResponse, Process] = {}
        #: Every app not yet ended: open sessions', and closed ones' still ending.
        self._apps: set[Process] = set()
        self._endings: set[asyncio.Task[None]] = set()
        self._stopping = False

    # -- where the page points ---------------------------------------------------

    @property
    def public_url(self) -> str:  # type: ignore[override]
        """textual-serve writes the page's asset and websocket addresses from this: the
        address the browser used (a tunnel's port, this machine's name), not the bound one."""
        return _request_base.get() or self._public_url

    @public_url.setter
    def public_url(self, value: str) -> None:
        self._public_url = value

    # -- who may connect -----------------------------------------------------------

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self.guard)
        return app

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every request passes here first: the page, its assets, downloads, the websocket."""
        host = request.headers.get("Host", request.host)
        if not _HOST.fullmatch(host):
            raise web.HTTPBadRequest(text="bad Host header\n")
        if self.loopback and not _names_loopback(host):
            raise web.HTTPForbidden(text="this server answers to a loopback address only\n")
        if request.path == "/ws" and not _same_origin(request):
            raise web.HTTPForbidden(text="websocket from another origin\n")
        from_query = False
        if self.token is not None:
            from_query = _matches(request.query.get("token"), self.token)
            if not from_query and not self._pass_taken(request):
                raise web.HTTPForbidden(text="no token or a wrong one: open the printed URL\n")
        _request_base.set(f"{request.scheme}://{host}")
        response = await handler(request)
        if not response.prepared:
            # Never in a frame: a page of another site would pass clicks and keys to the app.
            response.headers["X-Frame-Options"] = "DENY"
            response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
            if from_query:
                response.set_cookie(
                    self.cookie,
                    self._new_pass(),
                    max_age=int(PASS_SECONDS),
                    httponly=True,
                    samesite="Strict",
                    path="/",
                )
        return response

    def _new_pass(self) -> str:
        """A pass for the page's own loading: its assets and its one websocket.

        The cookie is not the token: browsers send a host's cookies to every port
        of it, so another server on this machine gets the cookie too. A pass is
        good for `PASS_SECONDS` and for one websocket, which the page opens at once.
        """
        now = time.monotonic()
        self._passes = {p: until for p, until in self._passes.items() if until > now}
        fresh = secrets.token_urlsafe(32)
        self._passes[fresh] = now + PASS_SECONDS
        return fresh

    def _pass_taken(self, request: web.Request) -> bool:
        given = request.cookies.get(self.cookie)
        until = self._passes.get(given or "")
        if until is None or until < time.monotonic():
            return False
        if request.path == "/ws":  # the session starts: the pass is spent
            del self._passes[given or ""]
        return True

    # -- sessions and their apps -------------------------------------------------------

    async def _process_messages(
        self, websocket: web.WebSocketResponse, app_service: AppService
    ) -> None:
        """One session, from its app's start to its websocket's close; then its app is ended
        (textual-serve asks it to quit, and waits for it without end)."""
        process: Process = app_service._process  # type: ignore[assignment]  # textual-serve's own
        self._sessions[websocket] = process
        self._apps.add(process)
        try:
            await super()._process_messages(websocket, app_service)
        finally:
            del self._sessions[websocket]
            ending = asyncio.create_task(self._end(process))
            self._endings.add(ending)
            ending.add_done_callback(self._endings.discard)

    async def _end(self, process: Process) -> None:
        """The app has `grace` to end by itself, then SIGTERM, then SIGKILL (its group).

        An app killed while textual-serve had stopped reading its output (a tab gone
        mid-frame) is reaped, but asyncio's `wait()` also waits for its pipes to close,
        which nobody reads to the end: after the kill the pipes are closed here."""
        for signum, wait in ((signal.SIGTERM, self.grace), (signal.SIGKILL, KILL_AFTER)):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), wait)
                break
            self._signal(process, signum)
        else:
            try:
                await asyncio.wait_for(process.wait(), KILL_AFTER)
            except TimeoutError:
                transport = getattr(process, "_transport", None)  # asyncio's own
                if transport is not None:
                    transport.close()
        self._apps.discard(process)

    def _signal(self, process: Process, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.own_group:
                os.killpg(process.pid, signum)
            else:
                os.kill(process.pid, signum)

    async def on_startup(self, app: web.Application) -> None:
        """textual-serve prints its banner and the command here (which may hold a database
        path the user did not mean to show); `serve` has said what it serves."""

    async def on_shutdown(self, app: web.Application) -> None:
        """The server stops: every websocket is closed (each app is asked to quit), and
        the server waits until every app has ended, by itself or by `_end`."""
        processes = list(self._apps)
        closing = [
            asyncio.wait_for(ws.close(code=WSCloseCode.GOING_AWAY), CLOSE_TIMEOUT)
            for ws in list(self._sessions)
        ]
        await asyncio.gather(*closing, return_exceptions=True)
        await asyncio.gather(*(self._end(p) for p in processes), *self._endings)

    def request_exit(self) -> None:
        """SIGINT or SIGTERM: a graceful stop; a second one kills every app at once."""
        if self._stopping:
            for process in self._apps:
                self._signal(process, signal.SIGKILL)
        self._stopping = True
        raise GracefulExit()

    def run(self) -> None:
        """Serve until SIGINT or SIGTERM; when this returns, every session's app has ended.
        (textual-serve's own `serve` binds by name and logs each request: the log would
        carry the token in its query.)"""
        loop = asyncio.new_event_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.request_exit)
        with contextlib.suppress(GracefulExit):  # a second signal, out of the shutdown
            web.run_app(
                self._make_app(),
                sock=self.sock,
                loop=loop,
                handle_signals=False,
                print=None,
                access_log=None,
                shutdown_timeout=CLOSE_TIMEOUT,
            )


#: How long a pass (`AppServer._new_pass`) lets the page load before it opens its websocket.
PASS_SECONDS = 60.0


def _matches(given: str | None, token: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode(), token.encode())


__all__ = [
    "TOKEN_PATTERN",
    "AppServer",
    "is_loopback",
    "listening_socket",
    "new_token",
    "session_command",
    "url_of",
]
