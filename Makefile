# Two entry points for a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
PROMPT ?= Write one sentence about the sea.

.PHONY: run test test-fast test-pythons lint lock bench clean

# llama-cpp-python is built once per machine with keel's portable CPU flags and kept in a
# wheelhouse outside the repo; everything else comes from the locks in requirements/.
$(VENV)/.base: scripts/llama-wheel.sh scripts/llama-flags.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==26.3 uv==0.13.9
	bash scripts/llama-wheel.sh $(PY)
	touch $@

$(VENV)/.installed: $(VENV)/.base pyproject.toml requirements/run.txt keel/_philox.c
	VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet -r requirements/run.txt
	VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet --no-deps -e .
	$(VENV)/bin/keel models install smollm2-135m >/dev/null
	touch $@

$(VENV)/.installed-dev: $(VENV)/.base pyproject.toml requirements/dev.txt keel/_philox.c
	VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet -r requirements/dev.txt
	VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet --no-deps -e .
	$(VENV)/bin/keel models install smollm2-135m >/dev/null
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	@echo "prompt: $(PROMPT)"
	@$(VENV)/bin/keel generate --max-new-tokens 64 "$(PROMPT)"

test: $(VENV)/.installed-dev
	bash scripts/chromium.sh
	$(PY) -m pytest -q
	bash scripts/package-check.sh

# keel's wheel (not this checkout) in a fresh environment per supported Python (3.11,
# 3.12, 3.13): import, generate with the bundled model, a structured call, a cache hit.
test-pythons: $(VENV)/.installed-dev
	bash scripts/package-check.sh

# Rewrite requirements/*.txt from pyproject.toml, keeping the versions .venv has.
lock: $(VENV)/.installed-dev
	PATH=$(VENV)/bin:$$PATH bash scripts/lock.sh $(PY)

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
	$(PY) bench/gaps.py
	$(PY) bench/attention.py
	$(PY) bench/server.py
	$(PY) bench/latency.py
	$(PY) bench/budget.py
	$(PY) bench/cold.py
	$(PY) bench/soak.py
	$(PY) bench/chat.py
	$(PY) bench/batch.py
	$(PY) bench/remote.py

clean:
	rm -rf $(VENV)
