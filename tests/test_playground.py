"""The playground page (GET / on keel serve) in a real browser: headless Chromium from the
machine's packages, driven by Playwright, against the real server over a real socket.
Every test also checks that the page logged no errors and fetched nothing from another
origin. KEEL_SCREENSHOTS=1 saves the main states to docs/playground/."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import jsonschema
import pytest
from playwright.sync_api import Page, expect, sync_playwright
from serving import running_server

import keel
from keel.cache import configure_cache
from keel.server import ServerConfig

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# root needs --no-sandbox; the rest keep Chromium's own background traffic off the network
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
SHOTS = Path(__file__).parents[1] / "docs" / "playground"
PROMPT = "Write one sentence about the sea."
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
# a 4xx answer is logged by Chromium itself; the tests that provoke one expect it
EXPECTED_FAILURE = re.compile(r"Failed to load resource: the server responded with a status of 4")


@pytest.fixture(scope="module")
def server():
    with running_server(ServerConfig()) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


class Watched:
    """A page with its console errors and its requests to other origins collected."""

    def __init__(self, browser, url: str, viewport: dict | None = None) -> None:
        self.context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900})
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.checked = False
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on(
            "request", lambda r: not r.url.startswith((url, "data:")) and self.outside.append(r.url)
        )

    def check(self, failures_expected: bool = False) -> None:
        errors = [e for e in self.errors if not (failures_expected and EXPECTED_FAILURE.search(e))]
        self.checked = True
        self.context.close()
        assert errors == [], errors
        assert self.outside == [], self.outside


@pytest.fixture
def watched(browser, server):
    made = []

    def open_page(path: str = "/", base: str = server, **options) -> Watched:
        page = Watched(browser, base, **options)
        page.page.goto(base + path)
        made.append(page)
        return page

    yield open_page
    for page in made:
        if not page.checked:
            page.check()


def screenshot(page: Page, name: str) -> None:
    if os.environ.get("KEEL_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


def generate(page: Page, prompt: str = PROMPT, max_tokens: int = 40) -> str:
    """Run the form's request and wait for the end; the text shown."""
    page.fill("#prompt", prompt)
    page.fill("#max-new-tokens", str(max_tokens))
    page.click("#generate")
    expect(page.locator("#status")).to_have_text(re.compile(r"^(Done|Failed|Stopped)"))
    return page.locator("#tokens").inner_text()


def text_of(page: Page) -> str:
    return "".join(page.locator("#tokens .tok").all_text_contents())


def test_generate_streams_tokens_and_shows_stats(watched, server):
    view = watched()
    page = view.page
    expect(page.locator("#model option").first).to_have_text("smollm2-135m")
    page.evaluate(
        """() => { window.arrivals = [];
        new MutationObserver((changes) => window.arrivals.push(
            [performance.now(), document.getElementById('status').textContent]))
          .observe(document.getElementById('tokens'), {childList: true}); }"""
    )
    generate(page, max_tokens=48)
    arrivals = page.evaluate("window.arrivals")
    assert len(arrivals) > 1, "the tokens arrived all at once, not streamed"
    assert arrivals[0][1].startswith("Generating"), arrivals[0]
    text = text_of(page)
    assert text == keel.generate(PROMPT, max_new_tokens=48)
    served = httpx.post(f"{server}/v1/generate", json={"prompt": PROMPT, "max_new_tokens": 48})
    assert text == served.json()["text"]
    cells = page.locator("#stats dd").all()
    stats = {cell.get_attribute("data-stat"): cell.inner_text() for cell in cells}
    assert stats["prompt_tokens"].isdigit() and stats["finish_reason"] in ("length", "stop")
    assert stats["fingerprint"].startswith("fp_") and "ms" in stats["ttft"]
    page.click("#fingerprint-details summary")
    assert '"sha256"' in page.locator("#fingerprint-full").inner_text()
    screenshot(page, "result")
    page.locator("#tokens .tok").nth(2).hover()
    info = page.locator("#token-info")
    expect(info).to_be_visible()
    expect(info).to_contain_text("token id")
    expect(info).to_contain_text("top alternatives")
    screenshot(page, "token")
    # the keyboard reaches every token: one tab stop, then the arrow keys
    page.locator("#tokens .tok").first.focus()
    page.keyboard.press("ArrowRight")
    focused = page.evaluate("document.activeElement.dataset.id")
    assert focused == page.locator("#tokens .tok").nth(1).get_attribute("data-id")
    expect(info).to_be_visible()


def test_verify_says_identical_and_a_second_run_is_a_cache_hit(watched, tmp_path):
    page = watched().page
    configure_cache(enabled=True, directory=tmp_path)  # the server runs in this process
    try:
        first = generate(page, "Name three colours.", max_tokens=24)
        expect(page.locator("[data-stat=cached]")).to_have_text(re.compile(r"^miss"))
        page.click("#verify")
        expect(page.locator("#verify-result")).to_have_text(re.compile(r"^Identical"))
        assert generate(page, "Name three colours.", max_tokens=24) == first
        expect(page.locator("[data-stat=cached]")).to_have_text(re.compile(r"^hit"))
    finally:
        configure_cache(reset=True)


def test_stop_cancels_on_the_server(watched, server):
    page = watched().page
    page.fill("#prompt", "Write a long story about a lighthouse keeper and a storm.")
    page.fill("#max-new-tokens", "1500")
    page.fill("#temperature", "0.9")
    page.click("#generate")
    expect(page.locator("#tokens .tok").nth(4)).to_be_attached()
    page.click("#stop-button")
    expect(page.locator("#status")).to_have_text(re.compile(r"^Stopped after \d+ tokens"))
    stopped = len(page.locator("#tokens .tok").all())
    metrics = ""
    for _ in range(50):
        metrics = httpx.get(f"{server}/metrics").text
        if 'keel_generations_total{reason="cancelled"}' in metrics:
            break
        page.wait_for_timeout(100)
    assert re.search(r'keel_generations_total\{reason="cancelled"\} [1-9]', metrics)
    assert stopped < 1500
    page.click("#verify")  # the tokens before Stop are the replay's first tokens
    expect(page.locator("#verify-result")).to_have_text(re.compile(r"^Identical.*before Stop"))


def test_permalink_reproduces_the_output(watched, browser, server):
    page = watched().page
    page.fill("#seed", "7")
    page.fill("#temperature", "0.8")
    text = generate(page, "Invent a name for a cat.", max_tokens=20)
    page.click("#permalink")
    link = page.url
    assert "#r=" in link
    again = watched(link.removeprefix(server)).page
    expect(again.locator("#status")).to_have_text(re.compile(r"^Done"))
    assert again.locator("#tokens").inner_text() == text
    assert again.input_value("#seed") == "7"


def test_structured_modes_return_valid_output(watched):
    page = watched().page
    page.check("input[name=structure][value=schema]")
    page.fill("#schema", json.dumps(SCHEMA))
    generate(page, "Describe a person as JSON.", max_tokens=80)
    value = json.loads(page.locator("#value").inner_text())
    jsonschema.validate(value, SCHEMA)
    screenshot(page, "structured")
    page.check("input[name=structure][value=choices]")
    page.fill("#choices", "red\ngreen\nblue")
    assert generate(page, "Pick a colour.", max_tokens=8) in ("red", "green", "blue")


def test_chat_messages(watched):
    page = watched().page
    page.check("input[name=input-kind][value=chat]")
    page.fill("#messages li textarea", PROMPT)
    page.fill("#max-new-tokens", "16")
    page.click("#generate")
    expect(page.locator("#status")).to_have_text(re.compile(r"^Done"))
    messages = [{"role": "user", "content": PROMPT}]
    assert text_of(page) == keel.generate(messages=messages, max_new_tokens=16)


def test_server_errors_are_shown_readably(watched):
    view = watched()
    page = view.page
    page.fill("#max-new-tokens", "5000")
    page.click("#generate")
    expect(page.locator("#error")).to_contain_text("400 Bad request")
    expect(page.locator("#error")).to_contain_text("above this server's limit of 2048")
    screenshot(page, "error")
    page.fill("#max-new-tokens", "10")
    page.check("input[name=structure][value=regex]")
    page.fill("#regex", "(unclosed")
    page.click("#generate")
    expect(page.locator("#error")).to_contain_text("400 Bad request")
    page.check("input[name=structure][value=schema]")
    page.fill("#schema", "{not json")
    page.click("#generate")
    expect(page.locator("#error")).to_contain_text("The JSON Schema is not JSON")
    view.check(failures_expected=True)


def test_api_key_flow_and_a_body_too_large(browser):
    with running_server(ServerConfig(api_key="s3cret", max_body_bytes=4000)) as url:
        view = Watched(browser, url)
        page = view.page
        page.goto(url + "/")
        expect(page.locator("#error")).to_contain_text("401 Unauthorized")
        page.fill("#prompt", PROMPT)
        page.click("#generate")
        expect(page.locator("#error")).to_contain_text("401")
        page.fill("#api-key", "s3cret")
        page.locator("#api-key").dispatch_event("change")
        expect(page.locator("#error")).to_be_hidden()
        page.fill("#max-new-tokens", "8")
        page.click("#generate")
        expect(page.locator("#status")).to_have_text(re.compile(r"^Done"))
        assert page.evaluate("sessionStorage.getItem('keel.apiKey')") == "s3cret"
        assert "s3cret" not in page.evaluate("JSON.stringify(localStorage)")
        page.click("#permalink")
        assert "s3cret" not in page.url
        page.fill("#prompt", "word " * 1000)
        page.click("#generate")
        expect(page.locator("#error")).to_contain_text("413 Request too large")
        page.reload()
        assert page.input_value("#api-key") == "s3cret"  # same tab: still there
        view.check(failures_expected=True)


def test_history_survives_a_reload(watched):
    page = watched().page
    page.evaluate("localStorage.clear()")
    generate(page, "Name a river.", max_tokens=8)
    page.reload()
    entries = page.locator("#history li button")
    expect(entries).to_have_count(1)
    page.fill("#prompt", "something else")
    entries.first.click()
    assert page.input_value("#prompt") == "Name a river."


@pytest.mark.parametrize("kind", ["python", "curl", "openai"])
def test_copy_as_snippets_run_and_give_the_same_text(watched, kind, tmp_path):
    page = watched().page
    text = generate(page, PROMPT, max_tokens=24)
    page.select_option("#copy-kind", kind)
    page.click("#copy")
    snippet = page.locator("#snippet").inner_text()
    if kind == "curl":
        out = subprocess.run(["bash", "-c", snippet], capture_output=True, text=True, timeout=60)
        assert json.loads(out.stdout)["text"] == text
        return
    script = tmp_path / "snippet.py"
    script.write_text(snippet)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout == text + "\n"


def test_phone_sized_viewport_and_labels(watched):
    view = watched(viewport={"width": 390, "height": 844})
    page = view.page
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')].filter((el) =>
            !el.labels?.length && !el.getAttribute('aria-label')).map((el) => el.id || el.name)"""
    )
    assert unlabelled == []
    page.locator("#prompt").focus()
    page.keyboard.press("Tab")  # from the prompt to the next control, by keyboard alone
    assert page.evaluate("document.activeElement.id") == "raw"
    generate(page, max_tokens=16)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "phone")


def test_no_ui_turns_the_page_off():
    with running_server(ServerConfig(ui=False), wait_healthy=False) as url:
        assert httpx.get(url + "/").status_code == 404
        assert httpx.get(url + "/ui/app.js").status_code == 404
