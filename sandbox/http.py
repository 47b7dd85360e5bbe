"""Serve an ASGI app with uvicorn in a background thread on a free 127.0.0.1 port."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PortInUse(RuntimeError):
    """The requested port is taken by another process."""


@dataclass
class RunningServer:
    """A uvicorn server running in a daemon thread; ``stop()`` shuts it down."""

    url: str
    port: int
    server: uvicorn.Server
    thread: threading.Thread = field(repr=False)

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def serve_in_thread(
    app: Any, port: int | None = None, startup_timeout: float = 15.0
) -> RunningServer:
    """Start ``app`` on 127.0.0.1 (``port`` or a free one) and return once it accepts requests."""
    if port is not None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                raise PortInUse(f"port {port} on 127.0.0.1 is already in use") from exc
    chosen = port if port is not None else free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=chosen, log_level="warning", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{chosen}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive():
            raise PortInUse(f"server on 127.0.0.1:{chosen} did not start (port in use?)")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError(f"server on 127.0.0.1:{chosen} did not start in {startup_timeout}s")
        time.sleep(0.01)
    return RunningServer(f"http://127.0.0.1:{chosen}", chosen, server, thread)
