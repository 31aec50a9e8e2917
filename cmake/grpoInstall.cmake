# SPDX-License-Identifier: MIT
# Install rules, the namespaced export, the version file and the pkg-config files, so that
# find_package(grpo CONFIG) works from an install prefix and from the build tree, and pkg-config from the
# prefix. Packagers (packaging/vcpkg/ports/grpo/portfile.cmake, tests/package/) configure with
#   -DGRPO_BUILD_TESTS=OFF -DGRPO_BUILD_BENCHMARKS=OFF -DGRPO_BUILD_EXAMPLES=OFF -DGRPO_INSTALL=ON
# and may move the CMake files with GRPO_INSTALL_CMAKEDIR (vcpkg: share/grpo).
include(CMakePackageConfigHelpers)

set(GRPO_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/grpo" CACHE STRING
    "Where grpoConfig.cmake is installed, relative to the prefix")
set(GRPO_INSTALL_PKGCONFIGDIR "${CMAKE_INSTALL_DATADIR}/pkgconfig" CACHE STRING
    "Where grpo.pc is installed, relative to the prefix (header-only: arch-independent share/pkgconfig)")

install(TARGETS grpo EXPORT grpoTargets)
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/grpo" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(EXPORT grpoTargets NAMESPACE grpo:: DESTINATION "${GRPO_INSTALL_CMAKEDIR}")
# Build-tree export: find_package(grpo CONFIG) with grpo_DIR=<this build dir> works without installing.
export(EXPORT grpoTargets NAMESPACE grpo:: FILE "${PROJECT_BINARY_DIR}/grpoTargets.cmake")

configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/grpoConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/grpoConfig.cmake" INSTALL_DESTINATION "${GRPO_INSTALL_CMAKEDIR}")
# The version comes from include/grpo/core/version.hpp (parsed in the top-level CMakeLists.txt).
# 0.x: minor versions may break the API.
write_basic_package_version_file("${PROJECT_BINARY_DIR}/grpoConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES "${PROJECT_BINARY_DIR}/grpoConfig.cmake" "${PROJECT_BINARY_DIR}/grpoConfigVersion.cmake"
  DESTINATION "${GRPO_INSTALL_CMAKEDIR}")
install(FILES "${PROJECT_SOURCE_DIR}/LICENSE" DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/grpo")

# pkg-config: grpo.pc, plus grpo-eigen.pc / grpo-xtensor.pc that add Requires: eigen3 / xtensor. The
# prefix is computed from ${pcfiledir}, so the files stay right under `cmake --install --prefix`, DESTDIR
# and relocated packages (vcpkg, conda).
if(IS_ABSOLUTE "${GRPO_INSTALL_PKGCONFIGDIR}")
  message(FATAL_ERROR "grpo: GRPO_INSTALL_PKGCONFIGDIR must be relative to the install prefix")
endif()
file(RELATIVE_PATH _grpo_pc_to_prefix "/grpo-prefix/${GRPO_INSTALL_PKGCONFIGDIR}" "/grpo-prefix")
string(REGEX REPLACE "/$" "" _grpo_pc_to_prefix "${_grpo_pc_to_prefix}")
set(GRPO_PC_PREFIX "\${pcfiledir}/${_grpo_pc_to_prefix}")
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(GRPO_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(GRPO_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
foreach(_grpo_pc grpo grpo-eigen grpo-xtensor)
  configure_file("${PROJECT_SOURCE_DIR}/cmake/${_grpo_pc}.pc.in" "${PROJECT_BINARY_DIR}/${_grpo_pc}.pc" @ONLY)
  install(FILES "${PROJECT_BINARY_DIR}/${_grpo_pc}.pc" DESTINATION "${GRPO_INSTALL_PKGCONFIGDIR}")
endforeach()
