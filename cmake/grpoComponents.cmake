# SPDX-License-Identifier: MIT
# Opt-in INTERFACE targets for the optional parts of grpo, for builds that use the source tree
# (add_subdirectory, FetchContent). Installed packages get the same targets from grpoConfig.cmake's
# COMPONENTS (cmake/grpoConfig.cmake.in), which finds each dependency in the consumer's environment: the
# installed files never depend on which frameworks the machine that installed grpo had.
#
#   grpo::eigen    grpo::grpo + Eigen3::Eigen   (include <grpo/adapters/eigen.hpp>)
#   grpo::xtensor  grpo::grpo + xtensor         (include <grpo/adapters/xtensor.hpp>)
#   grpo::cuda, grpo::torch, grpo::ggml: added by the issues that bring those backends/adapters; follow the
#   same pattern (an option GRPO_WITH_<X>, a QUIET find, the target only when the dependency is found).

if(GRPO_WITH_EIGEN)
  if(NOT TARGET Eigen3::Eigen)
    find_package(Eigen3 3.3 QUIET NO_MODULE)
  endif()
  if(TARGET Eigen3::Eigen)
    add_library(grpo_eigen INTERFACE)
    add_library(grpo::eigen ALIAS grpo_eigen)
    target_link_libraries(grpo_eigen INTERFACE grpo Eigen3::Eigen)
  else()
    message(STATUS "grpo: Eigen3 not found, grpo::eigen not provided")
  endif()
endif()

if(GRPO_WITH_XTENSOR)
  if(NOT TARGET xtensor)
    find_package(xtensor QUIET CONFIG)
  endif()
  if(TARGET xtensor)
    add_library(grpo_xtensor INTERFACE)
    add_library(grpo::xtensor ALIAS grpo_xtensor)
    target_link_libraries(grpo_xtensor INTERFACE grpo xtensor)
  else()
    message(STATUS "grpo: xtensor not found, grpo::xtensor not provided")
  endif()
endif()
