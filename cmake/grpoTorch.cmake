# SPDX-License-Identifier: MIT
# grpo::torch: grpo::grpo + LibTorch (include <grpo/adapters/torch.hpp>). GRPO_WITH_TORCH (default ON) looks for
# LibTorch quietly; without it the target, its tests and examples/libtorch are simply not built.
option(GRPO_WITH_TORCH "Provide grpo::torch (grpo/adapters/torch.hpp + LibTorch) when LibTorch is found" ON)
option(GRPO_BUILD_TORCH_EXAMPLE "Build examples/libtorch and run it under ctest (needs LibTorch)" ${PROJECT_IS_TOP_LEVEL})
if(GRPO_WITH_TORCH)
  if(NOT TARGET torch)
    find_package(Torch QUIET CONFIG)
  endif()
  if(TARGET torch)
    add_library(grpo_torch INTERFACE)
    add_library(grpo::torch ALIAS grpo_torch)
    target_link_libraries(grpo_torch INTERFACE grpo torch)
    message(STATUS "grpo: LibTorch ${Torch_VERSION} found, grpo::torch provided")
  else()
    message(STATUS "grpo: LibTorch not found, grpo::torch not provided (apt install libtorch-dev)")
  endif()
endif()
