#!/usr/bin/env bash
# Builds llama-cpp-python once per (version, CPU flags) into a wheelhouse outside the
# repo and installs it into the given venv. A wheel built with other flags (e.g. a
# native AVX-512 build) gives different logits, so pip must never pick one up: the
# wheelhouse directory name carries a hash of the flags and install uses --no-index.
set -euo pipefail
python_bin="$1"
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_BLAS=OFF"
key=$(printf '%s|%s' "$version" "$flags" | sha256sum | cut -c1-16)
house="${KEEL_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/keel/wheelhouse}/llama-cpp-python-$version-$key"
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
