"""``python -m study.dashboard``: optuna-dashboard on the lossweep store, read-only by default.

optuna-dashboard has no authentication, and its HTTP API can delete studies, rewrite trial states
and run schema migrations. Anyone who can reach the port can do all of that, so a dashboard started
here refuses every request that could change the store (anything but GET, HEAD and OPTIONS) with
403 unless ``--allow-writes`` is given, and it binds to 127.0.0.1 unless told otherwise. To look at a
cluster's study from a laptop, forward the port over SSH rather than binding to a public address::

    ssh -L 8080:127.0.0.1:8080 cluster-login   # then on the cluster: python -m study.dashboard
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from study.errors import ArgumentParser, UsageError, cli_entry
from study.logs import logger
from study.storage import DEFAULT_STORAGE, ENV_VAR, open_storage, redact, resolve_url

PROG = "python -m study.dashboard"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict, StartResponse], Iterable[bytes]]


class ReadOnlyMiddleware:
    """Refuse every request that is not GET, HEAD or OPTIONS with ``403`` before the app sees it.

    An allow-list of methods rather than a list of dangerous routes: optuna-dashboard adds mutating
    routes between releases, and every one of them uses POST, PUT, PATCH or DELETE. The JSON body uses
    the ``reason`` key the dashboard's front end shows in its error messages.
    """

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        if method in SAFE_METHODS:
            return self.app(environ, start_response)
        body = json.dumps(
            {
                "reason": (
                    f"this lossweep dashboard is read-only: {method} is refused; restart it with --allow-writes to "
                    "change studies"
                )
            }
        ).encode()
        start_response(
            "403 Forbidden",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Allow", ", ".join(sorted(SAFE_METHODS))),
            ],
        )
        return [body]


class ThreadedWSGIServer(ThreadingMixIn, WSGIServer):
    """wsgiref's server with a thread per request, as ``optuna_dashboard._cli`` runs it.

    The dashboard's page fires several API requests at once; a single-threaded server would queue
    them behind slow ones (plots, importances). Daemon threads let Ctrl-C end the process at once.
    """

    daemon_threads = True
    allow_reuse_address = True


class ThreadedWSGIServerV6(ThreadedWSGIServer):
    address_family = socket.AF_INET6


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (unresolvable names: no)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if host in ("", "0.0.0.0", "::"):
        return False
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def build_app(storage: Any, *, allow_writes: bool = False) -> WSGIApp:
    """optuna-dashboard's WSGI app on ``storage``, wrapped read-only unless ``allow_writes``."""
    import optuna_dashboard  # heavy (bottle, plotting helpers): only when a dashboard is built

    app = optuna_dashboard.wsgi(storage)
    return app if allow_writes else ReadOnlyMiddleware(app)


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Serve optuna-dashboard on the lossweep study store (read-only unless --allow-writes).",
    )
    parser.add_argument(
        "--storage",
        default=None,
        help=f"store URL (default: ${ENV_VAR}, else {DEFAULT_STORAGE})",
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to bind (default: {DEFAULT_HOST}, this machine only)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to listen on; 0 picks a free one (default: {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--allow-writes",
        action="store_true",
        help=(
            "let the dashboard change the store (delete studies, edit trials, migrate the schema); it has no "
            "authentication"
        ),
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="do not log each request")
    return parser


def _display_url(host: str, port: int) -> str:
    shown = socket.gethostname() if host in ("", "0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/dashboard"


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # shut down the same way as Ctrl-C


@cli_entry(PROG)
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    url = resolve_url(args.storage)
    storage = open_storage(url, read_only=True)
    app = build_app(storage, allow_writes=args.allow_writes)

    server_class = ThreadedWSGIServerV6 if ":" in args.host else ThreadedWSGIServer
    handler_class = QuietHandler if args.quiet else WSGIRequestHandler
    try:
        server = make_server(args.host, args.port, app, server_class=server_class, handler_class=handler_class)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; pick another --port or --host"
        ) from None

    port = server.server_address[1]
    if not is_loopback(args.host):
        logger().warning(
            f"{PROG}: warning: listening on {args.host}, reachable from other machines; optuna-dashboard has no "
            "authentication"
            + ("" if not args.allow_writes else " and --allow-writes lets anyone change or delete studies"),
        )
    mode = "read-write" if args.allow_writes else "read-only"
    print(f"lossweep dashboard ({mode}) for {redact(url)}", flush=True)
    print(f"open {_display_url(args.host, port)}  (Ctrl-C to stop)", flush=True)

    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("dashboard stopped", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
        storage.remove_session()
        storage.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
