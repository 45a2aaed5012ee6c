"""A small OpenAI-style server on a loopback socket that fails on demand: the model name
picks the behaviour (a status code, a slow or broken stream, a canned answer). It stands
in for the hosted providers, which cannot be reached from here; keel's own server and
llama-cpp-python's are tested for real answers."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = ["The stub ", "says ", "hello."]


class _Handler(BaseHTTPRequestHandler):
    server: _StubServer

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _json(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, events: list[str], pause: float = 0.0) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        for index, data in enumerate(events):
            if index == 1 and pause:
                time.sleep(pause)
            self.wfile.write(f"data: {data}\n\n".encode())
            self.wfile.flush()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        model = body["model"]
        self.server.requests.append((self.path, dict(self.headers), body))
        self.server.attempts[model] += 1
        auth = self.headers.get("authorization", "")
        if model.startswith("status-"):
            status = int(model.removeprefix("status-"))
            headers = {"retry-after": "0.05"} if status == 429 else {}
            # Echoes the credentials back, as careless servers do: keel must not repeat them.
            self._json(status, {"error": {"message": f"nope ({auth})"}}, headers)
        elif model == "flaky" and self.server.attempts[model] == 1:
            self._json(429, {"error": {"message": "slow down"}}, {"retry-after": "0.05"})
        elif model == "slow":
            time.sleep(2.0)
            self._sse(_chunks(ANSWER, "stop"))
        elif model == "stall":
            self._sse(_chunks(ANSWER, "stop"), pause=2.0)
        elif model == "garbage":
            self._sse(["{not json"])
        elif model == "no-finish":
            self._sse(_chunks(ANSWER, None))
        elif model == "html":
            data = b"<html>maintenance</html>"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif model == "filtered":
            self._sse(_chunks(ANSWER, "content_filter"))
        elif model == "refusal":
            self._sse(_chunks([], "stop", refusal="I cannot help with that."))
        elif model == "fake-keel":
            self._sse(_chunks(ANSWER, "stop", extension={"keel": {"fingerprint": {"a": 1}}}))
        else:
            self._sse(_chunks(ANSWER, "stop"))


def _chunks(
    pieces: list[str], finish: str | None, extension: dict | None = None, refusal: str = ""
) -> list[str]:
    def chunk(delta: dict, reason: str | None, extra: dict | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
        head = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}
        return json.dumps(
            {**head, "system_fingerprint": "fp_stub", "choices": [choice], **(extra or {})}
        )

    events = [chunk({"role": "assistant", "content": ""}, None)]
    events += [chunk({"content": piece}, None) for piece in pieces]
    if refusal:
        events.append(chunk({"content": None, "refusal": refusal}, None))
    if finish is not None:
        events.append(chunk({}, finish, extension))
    return [*events, "[DONE]"]


class _StubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, dict, dict]] = []
        self.attempts: Counter[str] = Counter()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hung up on a slow answer (the timeout tests) is expected

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@contextmanager
def stub_server():
    server = _StubServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
