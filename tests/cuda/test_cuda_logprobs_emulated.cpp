// SPDX-License-Identifier: MIT
// test_cuda_logprobs.cu built with g++ for exec::cuda_emulated: the CUDA kernels run by the host emulator, so that
// machines without a GPU (CI) check them against the CPU backend. See device_harness.hpp.
#define GRPO_TEST_EMULATED 1
#include "test_cuda_logprobs.cu"
