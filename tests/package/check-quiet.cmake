# SPDX-License-Identifier: MIT
# Included by a consumer project after it added grpo's source tree (add_subdirectory, FetchContent) asking for
# nothing optional: grpo must have enabled no language but CXX and probed for no optional package (no CUDA
# compiler, LibTorch, Eigen, xtensor or ggml lookup leaves its cache entry behind).
get_property(_grpo_langs GLOBAL PROPERTY ENABLED_LANGUAGES)
list(REMOVE_ITEM _grpo_langs CXX)
if(_grpo_langs)
  message(FATAL_ERROR "grpo enabled the language(s) ${_grpo_langs} in a consumer that asked only for grpo::grpo")
endif()
foreach(_grpo_probe CMAKE_CUDA_COMPILER CUDAToolkit_BIN_DIR Torch_DIR Eigen3_DIR xtensor_DIR ggml_DIR)
  if(DEFINED CACHE{${_grpo_probe}})
    message(FATAL_ERROR "grpo looked for an optional package (${_grpo_probe} is in the cache) in a consumer that "
                        "asked only for grpo::grpo")
  endif()
endforeach()
message(STATUS "check-quiet: grpo enabled only CXX and probed for no optional package")
