#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Conan CI, offline: `conan create` of this recipe from the local checkout (its test_package builds and runs),
# then the consumer documented in docs/integration.md (consumer/conanfile.txt + tests/package/find-package)
# built with the documented commands. Nothing is downloaded: -nr keeps Conan off every remote.
#   packaging/conan/ci.sh [work-dir]     (default: <repo>/build-conan)
# Needs: conan 2 (pip install conan), cmake >= 3.23 (presets), a C++17 compiler.
# CONAN_HOME defaults to <work-dir>/conan-home, so a developer's own Conan setup is left alone.
# Extra arguments for `conan create` (e.g. -o "grpo/*:with_eigen=True" with eigen in the cache) can be given
# in GRPO_CONAN_CREATE_ARGS.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="${1:-$root/build-conan}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
export CONAN_HOME="${CONAN_HOME:-$work/conan-home}"

conan --version
conan profile detect --exist-ok >/dev/null 2>&1 || conan profile detect --exist-ok
# test_package runs from a copy so that its build folder and presets stay out of the source tree.
rm -rf "$work/test_package"
cp -R "$here/test_package" "$work/test_package"
# shellcheck disable=SC2086
conan create "$here" --test-folder="$work/test_package" -nr --build=missing ${GRPO_CONAN_CREATE_ARGS:-}

# with_eigen=True offline: ConanCenter's eigen is out of reach, so when the system has Eigen's headers a
# stand-in eigen/3.4.0 recipe packages them (same cmake names as ConanCenter's: Eigen3, Eigen3::Eigen).
# The test_package then builds its grpo::eigen program, and the package id must not change.
eigen_dir="${GRPO_CONAN_SYSTEM_EIGEN:-/usr/include/eigen3}"
if [ -f "$eigen_dir/Eigen/Core" ]; then
  mkdir -p "$work/eigen-system"
  cat > "$work/eigen-system/conanfile.py" <<PY
import os
from conan import ConanFile
from conan.tools.files import copy
class EigenSystem(ConanFile):
    name = "eigen"
    version = "3.4.0"
    package_type = "header-library"
    def package_id(self):
        self.info.clear()
    def package(self):
        for d in ("Eigen", "unsupported"):
            copy(self, "*", src=os.path.join("$eigen_dir", d), dst=os.path.join(self.package_folder, "include", "eigen3", d))
    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "Eigen3")
        self.cpp_info.set_property("cmake_target_name", "Eigen3::Eigen")
        self.cpp_info.includedirs = ["include/eigen3"]
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
PY
  conan create "$work/eigen-system" -nr >/dev/null
  conan create "$here" --test-folder="$work/test_package" -nr --build=missing -o "grpo/*:with_eigen=True"
  ids="$(conan list 'grpo/*:*' --format=compact 2>/dev/null | grep -c ':[0-9a-f]\{40\}' || true)"
  if [ "$ids" != "1" ]; then
    conan list 'grpo/*:*'
    echo "conan: with_eigen changed the package id (expected one binary, found $ids)" >&2
    exit 1
  fi
fi

# The docs' consumer, word for word: conan install, then the CMake presets Conan's toolchain writes.
rm -rf "$work/consumer"
mkdir -p "$work/consumer"
cp "$here/consumer/conanfile.txt" "$root/tests/package/find-package/CMakeLists.txt" "$root"/tests/package/main*.cpp \
   "$work/consumer/"
cd "$work/consumer"
# snippet-begin conan-consumer
conan install . --build=missing
cmake --preset conan-release
cmake --build --preset conan-release
# snippet-end conan-consumer
./build/Release/app
echo "conan: create, test_package and consumer OK"
