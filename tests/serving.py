"""Run keel's real server on a free loopback port inside the test process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from keel.server import ServerConfig, create_app


@contextmanager
def running_server(config: ServerConfig, wait_healthy: bool = True, **uvicorn_options):
    """Yield the base URL of a uvicorn server for `config`; stop it afterwards."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config), host="127.0.0.1", port=0, log_level="warning", **uvicorn_options
        )
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def server_process(
    command: list[str],
    health_url: str,
    env: dict | None = None,
    log: Path | None = None,
    preexec_fn=None,
):
    """Run a server in its own process until `health_url` answers 200; stop it after.
    Yields the process. Its output goes to `log` (a file: a pipe nobody reads would fill
    and block it)."""
    own_log = log is None
    log = log or Path(tempfile.mkstemp(prefix="keel-server-", suffix=".log")[1])
    with open(log, "w") as sink:
        process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
    deadline = time.monotonic() + 120
    try:
        while True:
            assert process.poll() is None, f"server exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "server did not become healthy"
            try:
                if httpx.get(health_url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        if own_log:
            log.unlink(missing_ok=True)


@contextmanager
def keel_serve(*arguments: str, env: dict | None = None, log: Path | None = None):
    """`keel serve` as a user starts it, in its own process; yields its root URL."""
    with keel_serve_process(*arguments, env=env, log=log) as (url, _):
        yield url


@contextmanager
def keel_serve_process(
    *arguments: str, env: dict | None = None, log: Path | None = None, preexec_fn=None
):
    """`keel serve` in its own process; yields its root URL and the process."""
    port = free_port()
    keel = str(Path(sys.executable).with_name("keel"))
    command = [keel, "serve", "--port", str(port), "--log-level", "warning", *arguments]
    url = f"http://127.0.0.1:{port}"
    with server_process(command, f"{url}/health", env, log, preexec_fn) as process:
        yield url, process


@contextmanager
def llama_cpp_server(model_path: str, alias: str):
    """llama-cpp-python's own OpenAI-compatible server; yields its /v1 URL."""
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", model_path, "--model_alias", alias,
        "--port", str(port), "--n_ctx", "2048", "--verbose", "False",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with server_process(command, f"{url}/v1/models"):
        yield f"{url}/v1"
