# SPDX-License-Identifier: MIT
# Opt-in INTERFACE targets for the optional parts of grpo, for builds that use the source tree
# (add_subdirectory, FetchContent: set GRPO_WITH_<X>=ON first; grpo's own developer builds turn them on). Installed packages get the same targets from grpoConfig.cmake's
# COMPONENTS (cmake/grpoConfig.cmake.in), which finds each dependency in the consumer's environment: the
# installed files never depend on which frameworks the machine that installed grpo had.
#
#   grpo::eigen    grpo::grpo + Eigen3::Eigen   (include <grpo/adapters/eigen.hpp>)
#   grpo::xtensor  grpo::grpo + xtensor         (include <grpo/adapters/xtensor.hpp>)
#   grpo::ggml     grpo::grpo + ggml::ggml      (include <grpo/adapters/ggml.hpp>)
#   grpo::cuda     grpo::grpo + CUDA::cudart + cublas (cmake/grpoCuda.cmake; include <grpo/cuda.cuh> from .cu files)
#   grpo::torch    grpo::grpo + torch           (cmake/grpoTorch.cmake; include <grpo/adapters/torch.hpp>)
#   grpo::c10d     grpo::grpo + torch           (cmake/grpoTorch.cmake; include <grpo/adapters/c10d.hpp>)
#   grpo::mpi      grpo::grpo + MPI::MPI_CXX    (include <grpo/adapters/mpi.hpp>)
#   grpo::nccl     grpo::cuda + NCCL            (cmake/grpoCuda.cmake; include <grpo/adapters/nccl.hpp>)

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

# grpo::ggml: ggml is in no distribution package; cmake/scripts/build-ggml.sh builds it from the
# llama-cpp-python sdist on PyPI into a cache prefix (pass -DCMAKE_PREFIX_PATH=<prefix>).
# GRPO_BUILD_GGML_EXAMPLE=ON (what CI sets) makes a missing ggml an error instead of a skip.
option(GRPO_WITH_GGML "Provide grpo::ggml (grpo/adapters/ggml.hpp + ggml) when ggml is found" ${_grpo_developer_build})
option(GRPO_BUILD_GGML_EXAMPLE "Build and test the ggml adapter and examples/ggml (needs ggml: cmake/scripts/build-ggml.sh)" OFF)
if(GRPO_WITH_GGML OR GRPO_BUILD_GGML_EXAMPLE)
  if(NOT TARGET ggml::ggml)
    find_package(ggml CONFIG QUIET)
  endif()
  if(TARGET ggml::ggml)
    add_library(grpo_ggml INTERFACE)
    add_library(grpo::ggml ALIAS grpo_ggml)
    target_link_libraries(grpo_ggml INTERFACE grpo ggml::ggml)
  elseif(GRPO_BUILD_GGML_EXAMPLE)
    message(FATAL_ERROR "grpo: GRPO_BUILD_GGML_EXAMPLE=ON but ggml was not found. Build it with "
                        "cmake/scripts/build-ggml.sh and pass -DCMAKE_PREFIX_PATH=<the prefix it prints>.")
  else()
    message(STATUS "grpo: ggml not found, grpo::ggml not provided (cmake/scripts/build-ggml.sh builds it)")
  endif()
endif()

# grpo::mpi: data-parallel grpo over a host's MPI communicator (OpenMPI, MPICH: Debian's libopenmpi-dev).
option(GRPO_WITH_MPI "Provide grpo::mpi (grpo/adapters/mpi.hpp + MPI) when MPI is found" ${_grpo_developer_build})
if(GRPO_WITH_MPI)
  if(NOT TARGET MPI::MPI_CXX)
    find_package(MPI QUIET COMPONENTS CXX)
  endif()
  if(TARGET MPI::MPI_CXX)
    add_library(grpo_mpi INTERFACE)
    add_library(grpo::mpi ALIAS grpo_mpi)
    target_link_libraries(grpo_mpi INTERFACE grpo MPI::MPI_CXX)
  else()
    message(STATUS "grpo: MPI not found, grpo::mpi not provided (Debian: libopenmpi-dev)")
  endif()
endif()
