# SPDX-License-Identifier: MIT
# vcpkg overlay port for grpo, kept in grpo's repository (vcpkg install grpo --overlay-ports=packaging/vcpkg/ports).
# Header-only conventions of the registry (ports/mdspan): release-only, CMake config in share/grpo,
# nothing in lib/. Features (eigen, xtensor) only add dependencies: the installed files are the same, and
# find_package(grpo CONFIG COMPONENTS eigen|xtensor) finds the framework in the consumer's environment.
#
# tests/package/vcpkg-port.cmake runs this very file under stand-ins for the vcpkg_* helpers (ctest:
# package.vcpkg_port), then builds a find_package consumer against the result: the configure options and the
# install below are exactly what CI runs.
#
# In the registry, the source comes from a release instead of this checkout:
#   vcpkg_from_github(OUT_SOURCE_PATH SOURCE_PATH REPO your-org/grpo REF "v${VERSION}" SHA512 <sha512> HEAD_REF main)
get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../../../.." ABSOLUTE)

set(VCPKG_BUILD_TYPE release) # header-only port

vcpkg_cmake_configure(
    SOURCE_PATH "${SOURCE_PATH}"
    OPTIONS
        -DGRPO_BUILD_TESTS=OFF
        -DGRPO_BUILD_BENCHMARKS=OFF
        -DGRPO_BUILD_EXAMPLES=OFF
        -DGRPO_INSTALL=ON
        -DGRPO_WITH_EIGEN=OFF
        -DGRPO_WITH_XTENSOR=OFF
        -DGRPO_INSTALL_CMAKEDIR=share/grpo
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup() # CONFIG_PATH share/grpo: already where vcpkg wants it
vcpkg_fixup_pkgconfig()    # share/pkgconfig/grpo*.pc, already relative to ${pcfiledir}

file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/share/doc") # the license goes to share/grpo/copyright
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
