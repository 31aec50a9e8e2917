# SPDX-License-Identifier: MIT
# Install rules, the namespaced export and the version file, so that find_package(grpo CONFIG) works
# from an install prefix and from the build tree.
include(CMakePackageConfigHelpers)

set(GRPO_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/grpo" CACHE STRING "Where grpoConfig.cmake is installed")

install(TARGETS grpo EXPORT grpoTargets)
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/grpo" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(EXPORT grpoTargets NAMESPACE grpo:: DESTINATION "${GRPO_INSTALL_CMAKEDIR}")
export(EXPORT grpoTargets NAMESPACE grpo:: FILE "${PROJECT_BINARY_DIR}/grpoTargets.cmake")

configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/grpoConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/grpoConfig.cmake" INSTALL_DESTINATION "${GRPO_INSTALL_CMAKEDIR}")
# 0.x: minor versions may break the API.
write_basic_package_version_file("${PROJECT_BINARY_DIR}/grpoConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES "${PROJECT_BINARY_DIR}/grpoConfig.cmake" "${PROJECT_BINARY_DIR}/grpoConfigVersion.cmake"
  DESTINATION "${GRPO_INSTALL_CMAKEDIR}")
install(FILES "${PROJECT_SOURCE_DIR}/LICENSE" DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/grpo")
