#!/usr/bin/env bash
# Builds llama.cpp's own C++ server (llama-server), for benchmarks only, from the llama.cpp
# vendored in the llama-cpp-python source distribution keel's engine is built from (the same
# commit), with the same portable CPU flags; cached outside the repo like the wheel. Prints
# the binary's path.
set -euo pipefail
python_bin="$1"
# shellcheck source=scripts/llama-flags.sh
source "$(dirname "$0")/llama-flags.sh"
key=$(printf '%s|%s|server' "$version" "$flags" | sha256sum | cut -c1-16)
home="$wheelhouse/llama-server-$version-$key"
if [ ! -x "$home/llama-server" ]; then
  echo "building llama-server from llama-cpp-python $version's llama.cpp (takes several minutes once)" >&2
  work="$(mktemp -d)"
  "$python_bin" -m pip download --quiet --no-deps --no-binary :all: -d "$work" \
    "llama-cpp-python==$version" >&2
  tar -xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
  source_dir="$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)"
  # shellcheck disable=SC2086
  cmake -S "$source_dir" -B "$work/build" -DCMAKE_BUILD_TYPE=Release $flags \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF >&2
  cmake --build "$work/build" --target llama-server -j "$(nproc)" >&2
  mkdir -p "$home"
  cp "$work/build/bin/llama-server" "$home/llama-server.tmp"
  mv "$home/llama-server.tmp" "$home/llama-server"
  rm -rf "$work"
fi
echo "$home/llama-server"
