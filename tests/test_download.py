"""The real Hugging Face download path, against a local stand-in for the hub (the only
network here is loopback). Runs in subprocesses because huggingface_hub reads its
endpoint when it is imported."""

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import keel
from keel.models import resolve_model

REPO, FILENAME, COMMIT = "keel-test/tiny", "model.gguf", "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def hub():
    data = resolve_model("smollm2-135m").path.read_bytes()
    etag = hashlib.sha256(data).hexdigest()
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def _headers(self):
            if self.path != f"/{REPO}/resolve/main/{FILENAME}":
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False
            self.send_response(200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{etag}"')
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return True

        def do_HEAD(self):
            requests.append(("HEAD", self.path))
            self._headers()

        def do_GET(self):
            requests.append(("GET", self.path))
            if self._headers():
                self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()


def _generate_in_subprocess(env_overrides, **kwargs):
    env = os.environ.copy()
    env.pop("HF_HUB_OFFLINE", None)
    env.update(env_overrides)
    code = "import json, sys, keel; print(json.dumps(keel.generate(**json.loads(sys.argv[1]))))"
    return subprocess.run(
        [sys.executable, "-c", code, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_download_then_serve_from_cache(hub, tmp_path):
    endpoint, requests = hub
    request = dict(prompt="Hello", model_repo=REPO, model_filename=FILENAME, max_new_tokens=8)
    env = {"HF_ENDPOINT": endpoint, "HF_HUB_CACHE": str(tmp_path / "hf")}

    refused = _generate_in_subprocess({**env, "KEEL_ALLOW_DOWNLOADS": "0"}, **request)
    assert refused.returncode != 0
    assert "KEEL_ALLOW_DOWNLOADS=1" in refused.stderr
    assert requests == []  # downloads off: not even a metadata request

    downloaded = _generate_in_subprocess({**env, "KEEL_ALLOW_DOWNLOADS": "1"}, **request)
    assert downloaded.returncode == 0, downloaded.stderr
    expected = keel.generate("Hello", model="smollm2-135m", max_new_tokens=8)
    assert json.loads(downloaded.stdout) == expected
    assert ("GET", f"/{REPO}/resolve/main/{FILENAME}") in requests

    # once cached, downloads may be off again: the cache is used, the hub is not asked
    asked = len(requests)
    cached = _generate_in_subprocess({**env, "KEEL_ALLOW_DOWNLOADS": "0"}, **request)
    assert cached.returncode == 0, cached.stderr
    assert json.loads(cached.stdout) == expected
    assert len(requests) == asked


def test_missing_remote_file_is_a_clear_error(hub, tmp_path):
    endpoint, _ = hub
    out = _generate_in_subprocess(
        {"HF_ENDPOINT": endpoint, "HF_HUB_CACHE": str(tmp_path), "KEEL_ALLOW_DOWNLOADS": "1"},
        prompt="Hello",
        model_repo=REPO,
        model_filename="absent.gguf",
    )
    assert out.returncode != 0
    assert "ModelNotAvailableError" in out.stderr and "absent.gguf" in out.stderr


def test_keel_models_download_fetches_on_request(hub, tmp_path):
    """An explicit download command fetches even with KEEL_ALLOW_DOWNLOADS off."""
    endpoint, _ = hub
    keel_cli = os.path.join(os.path.dirname(sys.executable), "keel")
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_CACHE": str(tmp_path / "hf")}
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("KEEL_ALLOW_DOWNLOADS", None)
    args = [keel_cli, "models", "download", "--model-repo", REPO, "--model-filename", FILENAME]
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    path = out.stdout.strip().split(": ", 1)[1]
    assert Path(path).read_bytes() == resolve_model("smollm2-135m").path.read_bytes()
