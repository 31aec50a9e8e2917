# SPDX-License-Identifier: MIT
# Optional CUDA backend: grpo::cuda (INTERFACE: grpo::grpo + CUDA::cudart + CUDA::cublas). Header-only like the rest; CUDA
# translation units of the consumer include <grpo/cuda.cuh>.
# The default probes for nvcc only in grpo's own developer builds: as a dependency grpo enables no CUDA
# language unless the consumer sets GRPO_ENABLE_CUDA=ON.
include(CheckLanguage)
set(_grpo_cuda_default OFF)
if(_grpo_developer_build AND NOT DEFINED GRPO_ENABLE_CUDA)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(_grpo_cuda_default ON)
  endif()
endif()
option(GRPO_ENABLE_CUDA "Provide grpo::cuda and build the CUDA tests/benchmarks (needs nvcc)" ${_grpo_cuda_default})

if(GRPO_ENABLE_CUDA)
  if(NOT CMAKE_CUDA_COMPILER)
    check_language(CUDA)
  endif()
  if(NOT CMAKE_CUDA_COMPILER)
    message(FATAL_ERROR "grpo: GRPO_ENABLE_CUDA=ON but no CUDA compiler was found (set CMAKE_CUDA_COMPILER)")
  endif()
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES "80;90")
  endif()
  # nvcc must use a host compiler it supports; default to the C++ compiler of this project.
  if(NOT DEFINED CMAKE_CUDA_HOST_COMPILER AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    set(CMAKE_CUDA_HOST_COMPILER "${CMAKE_CXX_COMPILER}")
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  add_library(grpo_cuda INTERFACE)
  add_library(grpo::cuda ALIAS grpo_cuda)
  target_link_libraries(grpo_cuda INTERFACE grpo::grpo CUDA::cudart CUDA::cublas)
  target_compile_features(grpo_cuda INTERFACE cuda_std_17)
  message(STATUS "grpo: CUDA backend enabled (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, archs ${CMAKE_CUDA_ARCHITECTURES})")
elseif(_grpo_developer_build)
  message(STATUS "grpo: CUDA backend disabled")
endif()
