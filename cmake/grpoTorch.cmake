# SPDX-License-Identifier: MIT
# grpo::torch: grpo::grpo + LibTorch (include <grpo/adapters/torch.hpp>); grpo::c10d: the same for
# <grpo/adapters/c10d.hpp>. GRPO_WITH_TORCH (default ON in grpo's
# developer builds, OFF as a dependency) looks for
# LibTorch quietly; without it the target and its tests are simply not built. GRPO_BUILD_TORCH_EXAMPLE=ON (what CI
# sets) builds examples/libtorch and makes a missing LibTorch an error instead of a skip.
option(GRPO_WITH_TORCH "Provide grpo::torch (grpo/adapters/torch.hpp + LibTorch) when LibTorch is found"
       ${_grpo_developer_build})
option(GRPO_BUILD_TORCH_EXAMPLE "Build examples/libtorch and run it under ctest (needs LibTorch: apt install libtorch-dev)" OFF)
if(GRPO_WITH_TORCH OR GRPO_BUILD_TORCH_EXAMPLE)
  if(NOT TARGET torch)
    find_package(Torch QUIET CONFIG)
  endif()
  if(TARGET torch)
    add_library(grpo_torch INTERFACE)
    add_library(grpo::torch ALIAS grpo_torch)
    target_link_libraries(grpo_torch INTERFACE grpo torch)
    # logprobs_from_hidden (its matrix products) needs Eigen: linked when grpo::eigen exists.
    if(TARGET grpo::eigen)
      target_link_libraries(grpo_torch INTERFACE grpo::eigen)
    endif()
    # grpo::c10d: data-parallel grpo over torch.distributed's ProcessGroup (grpo/adapters/c10d.hpp).
    add_library(grpo_c10d INTERFACE)
    add_library(grpo::c10d ALIAS grpo_c10d)
    target_link_libraries(grpo_c10d INTERFACE grpo torch)
    message(STATUS "grpo: LibTorch ${Torch_VERSION} found, grpo::torch and grpo::c10d provided")
  elseif(GRPO_BUILD_TORCH_EXAMPLE)
    message(FATAL_ERROR "grpo: GRPO_BUILD_TORCH_EXAMPLE=ON but LibTorch was not found (apt install libtorch-dev, "
                        "or pass -DTorch_DIR=<libtorch>/share/cmake/Torch)")
  else()
    message(STATUS "grpo: LibTorch not found, grpo::torch not provided (apt install libtorch-dev)")
  endif()
endif()
