# SPDX-License-Identifier: MIT
# grpo_warnings: the one set of warning flags of grpo's own tests, examples, benchmarks, fuzzers and CUDA code
# (INTERFACE, never installed or exported: consumers keep their own flags). GRPO_WARNINGS_AS_ERRORS (ON in grpo's
# developer builds, so CI fails on a new warning) adds -Werror; turn it off to build with a compiler newer than CI's.
option(GRPO_WARNINGS_AS_ERRORS "Treat warnings in grpo's tests, examples and benchmarks as errors" ON)
add_library(grpo_warnings INTERFACE)
set(_grpo_cxx_warnings -Wall -Wextra -Wpedantic)
if(GRPO_WARNINGS_AS_ERRORS)
  list(APPEND _grpo_cxx_warnings -Werror)
endif()
target_compile_options(grpo_warnings INTERFACE
  "$<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU,Clang,AppleClang>>:${_grpo_cxx_warnings}>"
  "$<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:MSVC>>:/W4;$<$<BOOL:${GRPO_WARNINGS_AS_ERRORS}>:/WX>>"
  # nvcc: a host function called from device code only fails at run time on a GPU, so it is always an error.
  "$<$<COMPILE_LANGUAGE:CUDA>:SHELL:--Werror cross-execution-space-call>"
  "$<$<COMPILE_LANGUAGE:CUDA>:SHELL:-Xcompiler=-Wall,-Wextra>")
