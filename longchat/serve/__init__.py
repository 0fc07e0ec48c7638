"""`longchat serve`: one loaded model behind an OpenAI-compatible HTTP API.

    schema.py      request bodies (pydantic) and the response, chunk and error objects
    worker.py      the one thread that owns the model: a bounded queue in arrival order, cancel flags
    completion.py  what that thread does for a request: runner, prompt, session, memory, generation
    app.py         Starlette routes, API key, body cap, errors, access log, server-sent events

`serve` runs it under uvicorn until SIGINT or SIGTERM, then stops taking requests, cancels
what is waiting and running, and returns.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Callable

from longchat.errors import EXIT_USAGE, EnvError, LongchatError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_host(host: str, api_key: str | None) -> None:
    """Only loopback is served without an API key."""
    if not is_loopback(host) and not api_key:
        raise LongchatError(f"--host {host} serves other machines: set an API key with --api-key KEY or "
                            f"LONGCHAT_API_KEY (or keep the default --host 127.0.0.1)", exit_code=EXIT_USAGE)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, made before the model loads, so a busy port fails at once."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        raise EnvError(f"cannot listen on {host}:{port}: {(e.strerror or str(e)).lower()}"
                       + ("; pick another --port" if port else "")) from None
    return sock


def serve(runner, sock: socket.socket, *, api_key: str | None = None, max_queue: int = 16,
          max_body_mb: float = 32, log: Callable[[str], None] | None = None) -> None:
    """Answer requests on `sock` with `runner`'s model until SIGINT or SIGTERM."""
    from longchat.serve.app import Server, Uvicorn
    from longchat.serve.completion import Completer
    from longchat.serve.worker import Worker

    completer = Completer(runner)
    worker = Worker(completer, max_queue=max_queue)
    app = Server(completer, worker, api_key=api_key, max_body=int(max_body_mb * 2**20), log=log).app()
    server = Uvicorn(app, on_signal=lambda: worker.stop(wait=False))
    worker.start()
    try:
        server.run(sockets=[sock])
    finally:
        worker.stop()
