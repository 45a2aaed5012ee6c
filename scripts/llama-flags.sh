# Sourced by llama-wheel.sh and llama-server.sh: the pinned, portable CPU flags keel's
# llama.cpp is built with (a native build, e.g. with AVX-512, gives other logits), and
# the cache directory both builds live under. Changing the flags changes the cache keys.
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_BLAS=OFF"
wheelhouse="${KEEL_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/keel/wheelhouse}"
