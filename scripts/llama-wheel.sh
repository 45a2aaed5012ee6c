#!/usr/bin/env bash
# Builds llama-cpp-python once per (version, CPU flags) into a wheelhouse outside the
# repo and installs it into the given venv. A wheel built with other flags (e.g. a
# native AVX-512 build) gives different logits, so pip must never pick one up: the
# wheelhouse directory name carries a hash of the flags and install uses --no-index.
set -euo pipefail
python_bin="$1"
# shellcheck source=scripts/llama-flags.sh
source "$(dirname "$0")/llama-flags.sh"
key=$(printf '%s|%s' "$version" "$flags" | sha256sum | cut -c1-16)
house="$wheelhouse/llama-cpp-python-$version-$key"
if ! ls "$house"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $version with portable flags (takes 5-9 minutes once)"
  tmp="$house.tmp.$$"
  mkdir -p "$tmp"
  CMAKE_ARGS="$flags" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" FORCE_CMAKE=1 \
    "$python_bin" -m pip wheel --no-deps --no-cache-dir --no-binary llama-cpp-python \
    -w "$tmp" "llama-cpp-python==$version"
  rm -rf "$house"; mv "$tmp" "$house"
fi
"$python_bin" -m pip install --no-deps --no-index --find-links "$house" "llama-cpp-python==$version"
