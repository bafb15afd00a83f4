"""`serve [DB]`: the app in a browser, an app process per tab (`supervisor.serve`)."""

from __future__ import annotations

import argparse
import os
import sys
import urllib.parse
from typing import Any

from supervisor.cli.app import (
    add_app_database,
    add_app_options,
    app_options,
    check_app,
    choose_database,
)
from supervisor.cli.context import where
from supervisor.cli.options import EXIT_OK, UsageError
from supervisor.location import Location

#: The token, when not given by --token (it never sits on a command line `ps` shows).
TOKEN_VARIABLE = "AGENT_SUPERVISOR_SERVE_TOKEN"

#: How a URL (and its password) reaches each session's app: through the environment
#: it inherits, as `env:NAME`, never its command line.
URL_VARIABLES = {"db": "AGENT_SUPERVISOR_SERVE_DB", "jobs_dir": "AGENT_SUPERVISOR_SERVE_JOBS"}

#: Past --abort-grace, how long a closed tab's app has to end before it is signalled.
END_MARGIN = 5.0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="the app in a browser: each tab runs its own app",
        description=(
            "Serve the app over HTTP: each browser tab runs its own app process, which "
            "ends when the tab closes or the server stops. Loopback only by default (from "
            "another machine: ssh -L PORT:127.0.0.1:PORT HOST); another --host needs "
            "--public, and then every request needs a token."
        ),
    )
    add_app_database(p)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default %(default)s; one other machines reach needs --public)",
    )
    p.add_argument(
        "--port",
        type=port_number,
        default=8000,
        help="port to listen on (default %(default)s; 0: a free one, printed)",
    )
    p.add_argument(
        "--public",
        action="store_true",
        help="allow a --host other machines can reach; every request then needs the token",
    )
    p.add_argument(
        "--token",
        metavar="TOKEN",
        help=f"the token requests must carry (default: ${TOKEN_VARIABLE}, else one is made "
        "with --public; at least 16 of A-Z a-z 0-9 . _ ~ -)",
    )
    add_app_options(p)
    p.set_defaults(run=cmd_serve)


def port_number(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError("must be between 0 and 65535")
    return number


def cmd_serve(args: argparse.Namespace) -> int:
    from supervisor import serve  # textual-serve and aiohttp: for this command only

    from_environment = os.environ.pop(TOKEN_VARIABLE, None) or None  # apps need none; "" is unset
    token = args.token or from_environment
    if token is not None and not serve.TOKEN_PATTERN.fullmatch(token):
        given = "--token" if args.token else f"${TOKEN_VARIABLE}"
        raise UsageError(f"{given}: at least 16 characters, each a letter, a digit or . _ ~ -")
    try:
        sock = serve.listening_socket(args.host, args.port)
    except OSError as exc:
        # The system's words alone (a bind adds the address, a lookup has its own errno).
        why = os.strerror(exc.errno) if (exc.errno or 0) > 0 else exc.strerror or exc
        raise UsageError(f"cannot serve on {args.host}:{args.port}: {why}") from None
    try:
        loopback = serve.is_loopback(sock)
        if not loopback and not args.public:
            raise UsageError(
                f"--host {args.host} is reachable from other machines: add --public (every "
                "request then needs a token), or keep 127.0.0.1 and use ssh -L"
            )
        made = args.public and token is None
        if made:
            token = serve.new_token()
        choose_database(args)
        check_app(args)
        shown = where(args).shown
        command, own_group = serve.session_command(_app_command(args))
        server = serve.AppServer(
            command,
            sock,
            title=f"agent-supervisor · {shown}",
            token=token,
            own_group=own_group,
            grace=args.abort_grace + END_MARGIN,
        )
    except BaseException:
        sock.close()
        raise
    _announce(shown, serve.url_of(sock), loopback, token, made)
    server.run()
    return EXIT_OK


def _app_command(args: argparse.Namespace) -> list[str]:
    """Each session's app: this Python, the app's options as given, DB. A URL (DB or
    --jobs-dir) goes through the environment the apps inherit: a password on a command
    line is every local user's to read (`ps`)."""
    for name, variable in URL_VARIABLES.items():
        value = getattr(args, name)
        if value is not None and Location.parse(value).server:
            os.environ[variable] = value
            setattr(args, name, f"env:{variable}")
    return [sys.executable, "-m", "supervisor", *app_options(args), "--", args.db]


def _announce(shown: str, url: str, loopback: bool, token: str | None, made: bool) -> None:
    """Where it serves, once: with the token when this process made it (a token the user
    gave is theirs to add, and stays out of logs)."""
    if not loopback:
        print(
            f"agent-supervisor: warning: {url} is reachable from other machines, over plain "
            "HTTP (the token and the screen cross the network unencrypted); whoever has the "
            "token runs agents as you. ssh -L to a loopback server is safer.",
            file=sys.stderr,
        )
    if token is None:
        address = url
    elif made:
        address = f"{url}/?token={token}"
    else:
        address = f"{url}/?token=… (the token you gave)"
    print(f"serving {shown} at {address} (each tab runs its own app; Ctrl-C stops)", flush=True)
    if loopback:
        parts = urllib.parse.urlsplit(url)
        print(
            f"from another machine: ssh -L {parts.port}:{parts.netloc} HOST, then open {url}",
            flush=True,
        )
