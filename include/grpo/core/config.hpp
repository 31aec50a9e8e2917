// SPDX-License-Identifier: MIT
// Portability macros shared by every grpo header (host and CUDA).
#pragma once

#include "version.hpp"

#if defined(__CUDACC__) || defined(__HIPCC__)
#define GRPO_HOST_DEVICE __host__ __device__
#else
#define GRPO_HOST_DEVICE
#endif

#define GRPO_FORCEINLINE inline

// Everything lives in grpo::v0 so that two grpo versions can share one process (CCCL/{fmt} ABI hygiene).
#define GRPO_NAMESPACE_BEGIN \
    namespace grpo {         \
    inline namespace v0 {
#define GRPO_NAMESPACE_END \
    }                      \
    }

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#define GRPO_HAS_EXCEPTIONS 1
#else
#define GRPO_HAS_EXCEPTIONS 0
#endif
