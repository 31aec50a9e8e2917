#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds main.cpp with pkg-config only (no CMake); tests/package runs it with PKG_CONFIG_PATH pointing at a
# fresh install prefix. The snippet-begin/end block appears word for word in docs/integration.md.
set -e

# snippet-begin pkg-config
c++ -std=c++17 -O2 main.cpp $(pkg-config --cflags --libs grpo) -o app
# snippet-end pkg-config
./app
if pkg-config --exists grpo-eigen; then
# snippet-begin pkg-config-eigen
c++ -std=c++17 -O2 main_eigen.cpp $(pkg-config --cflags --libs grpo-eigen) -o app_eigen
# snippet-end pkg-config-eigen
  ./app_eigen
fi
