#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds ggml (CPU backend, static) from the source that the llama-cpp-python sdist on PyPI carries
# (vendor/llama.cpp/ggml), and installs it into a cache prefix for grpo's ggml adapter tests and example.
# ggml is in no Debian package, and nothing but the package registries may be downloaded: PyPI it is.
#
#   cmake/scripts/build-ggml.sh [cache-dir]      (default: ${XDG_CACHE_HOME:-$HOME/.cache}/grpo)
#
# Prints the install prefix on its last line; pass it to grpo as -DCMAKE_PREFIX_PATH=<prefix> together
# with -DGRPO_BUILD_GGML_EXAMPLE=ON. A second run with the prefix already there does nothing (the cache).
set -euo pipefail
version="${GRPO_LLAMA_CPP_PYTHON_VERSION:-0.3.36}"   # pinned: the ggml inside it is what CI tested
cache="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/grpo}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
prefix="$cache/ggml-$version"
if [ -f "$prefix/.complete" ]; then
  echo "$prefix"
  exit 0
fi

work="$cache/ggml-$version-work"
rm -rf "$work" "$prefix"
mkdir -p "$work"
sdist="$work/llama_cpp_python-$version.tar.gz"
# --no-binary: the sdist (the wheel has no sources); pip prepares its metadata in an isolated env.
python3 -m pip download -q --no-deps --no-binary :all: -d "$work" "llama-cpp-python==$version" >&2
tar -xzf "$sdist" -C "$work" --wildcards "*/vendor/llama.cpp/ggml/*"
src="$work/llama_cpp_python-$version/vendor/llama.cpp/ggml"
# The sdist leaves out ggml.pc.in, which ggml's standalone CMakeLists configures: a minimal one.
if [ ! -f "$src/ggml.pc.in" ]; then
  cat > "$src/ggml.pc.in" <<'PC'
prefix=@CMAKE_INSTALL_PREFIX@
includedir=${prefix}/include
libdir=${prefix}/lib
Name: ggml
Description: ggml (built by grpo's cmake/scripts/build-ggml.sh)
Version: @GGML_VERSION@
Cflags: -I${includedir}
Libs: -L${libdir} -lggml -lggml-base -lggml-cpu
PC
fi
# Portable x86-64 build (no -march=native: the cache may move between machines); no OpenMP, so the
# thread count is what the caller passes to ggml_graph_compute_with_ctx.
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF \
  -DGGML_BUILD_TESTS=OFF -DGGML_BUILD_EXAMPLES=OFF -DGGML_OPENMP=OFF -DGGML_CCACHE=OFF \
  -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DCMAKE_INSTALL_PREFIX="$prefix" >&2
cmake --build "$work/build" -j2 >&2
cmake --install "$work/build" >&2
rm -rf "$work"
touch "$prefix/.complete"
echo "$prefix"
