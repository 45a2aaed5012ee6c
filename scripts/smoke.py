"""What a user of an installed keel (a wheel, not this checkout) does first: import it,
generate with the bundled model, a structured call, a cache hit; and what the wheel must
carry (the playground's files). Run by scripts/package-check.sh in fresh environments."""

from __future__ import annotations

import importlib.resources
import sys
import tempfile

import keel
from keel.cache import configure_cache

assert "site-packages" in keel.__file__, f"keel came from {keel.__file__}, not an installed wheel"
ui = importlib.resources.files("keel.server") / "ui"
for name in ("index.html", "app.js", "style.css", "vendor/eventsource-parser/stream.js"):
    assert (ui / name).is_file(), f"the wheel lacks keel/server/ui/{name}"
assert (importlib.resources.files("keel") / "py.typed").is_file()

text = keel.generate("Say hello.", max_new_tokens=8)
assert isinstance(text, str) and text, text
choice = keel.generate_choice("Is the sky blue?", ["yes", "no"])
assert choice in ("yes", "no"), choice
configure_cache(enabled=True, directory=tempfile.mkdtemp(prefix="keel-smoke-"))
first = keel.start_generation("Name a colour.", max_new_tokens=6).result()
again = keel.start_generation("Name a colour.", max_new_tokens=6).result()
assert again.cached and not first.cached and again.text == first.text
print(f"keel {keel.__version__} on Python {sys.version.split()[0]}: {text!r}, {choice!r}, hit ok")
