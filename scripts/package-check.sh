#!/usr/bin/env bash
# Builds keel's sdist and wheel (the wheel from the sdist, as pip would), installs the
# wheel, not this checkout, into a fresh environment per supported Python, and runs
# scripts/smoke.py there; before, `keel serve` (no server extra) and `keel generate` (no
# model yet) must each say what to install. Versions: PYTHONS (default "3.11 3.12 3.13"), found in pyenv or on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
uv="$PWD/.venv/bin/uv"
# shellcheck source=scripts/llama-flags.sh
source scripts/llama-flags.sh
key=$(printf '%s|%s' "$version" "$flags" | sha256sum | cut -c1-16)
house="$wheelhouse/llama-cpp-python-$version-$key"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$uv" build --quiet --out-dir "$work/dist" .
wheel=$(ls "$work"/dist/keel_text-*.whl)
echo "built $(cd "$work/dist" && ls)"

interpreter() {  # the newest python$1 that pyenv or PATH has
    local found
    found=$(ls -d "$(pyenv root 2>/dev/null)"/versions/"$1".*/bin/python"$1" 2>/dev/null | sort -V | tail -1)
    [ -n "$found" ] || found=$(command -v "python$1" || true)
    [ -n "$found" ] || { echo "no Python $1 here (set PYTHONS to test others)" >&2; exit 1; }
    echo "$found"
}

for python_version in ${PYTHONS:-3.11 3.12 3.13}; do
    env="$work/py$python_version"
    "$uv" venv --quiet --python "$(interpreter "$python_version")" "$env"
    export VIRTUAL_ENV="$env"
    "$uv" pip install --quiet --no-deps --no-index --find-links "$house" "llama-cpp-python==$version"
    "$uv" pip install --quiet --constraint requirements/run.txt "$wheel"
    if out=$("$env/bin/keel" serve 2>&1); then
        echo "keel serve ran without the server extra" >&2; exit 1
    fi
    grep -q "pip install 'keel-text\[server\]'" <<< "$out" || { echo "$out" >&2; exit 1; }
    if out=$(KEEL_CACHE_DIR="$work/cache" "$env/bin/keel" generate hello 2>&1); then
        echo "keel generate ran without the default model" >&2; exit 1
    fi
    grep -q "keel models install smollm2-135m" <<< "$out" || { echo "$out" >&2; exit 1; }
    PATH="$(dirname "$uv"):$PATH" "$env/bin/keel" models install smollm2-135m >/dev/null
    KEEL_CACHE_DIR="$work/cache" "$env/bin/python" scripts/smoke.py
done
