"""Run keel's real server on a free loopback port inside the test process."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import httpx
import uvicorn

from keel.server import ServerConfig, create_app


@contextmanager
def running_server(config: ServerConfig, wait_healthy: bool = True):
    """Yield the base URL of a uvicorn server for `config`; stop it afterwards."""
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    if wait_healthy:
        while httpx.get(f"{url}/health").status_code != 200:
            assert time.monotonic() < deadline, "model did not load"
            time.sleep(0.1)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
