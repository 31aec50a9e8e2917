// SPDX-License-Identifier: MIT
// test_cuda_dist.cu built with g++ for exec::cuda_emulated (see device_harness.hpp).
#define GRPO_TEST_EMULATED 1
#include "test_cuda_dist.cu"
