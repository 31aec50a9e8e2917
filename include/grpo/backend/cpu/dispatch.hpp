// SPDX-License-Identifier: MIT
// How the CPU backend's hot loops are compiled: -O3 on GCC for the loops themselves, and an AVX2 copy chosen at
// run time (GCC/Clang on x86-64, when the build does not already target AVX2). Vector width only: no FMA (it would
// change roundings) and no reassociation, so every result is bit-identical to the baseline path
// (tests/test_determinism.cpp compares them). GRPO_NO_CPU_DISPATCH turns the AVX2 copies off.
#pragma once

#include <atomic>

#include "../../core/config.hpp"

// GCC 12 at -O2 (CMake's RelWithDebInfo) does not vectorize the token loops (its -O2 cost model is "very cheap"):
// ask for -O3 on those functions so that the speed does not depend on the consumer's build type.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define GRPO_CPU_HOT_LOOP __attribute__((optimize("O3")))
#else
#define GRPO_CPU_HOT_LOOP
#endif

// GRPO_AVX2_FUNCTION marks the AVX2 copy of a pass: `flatten` inlines the per-element math into it; on GCC
// `optimize("O3")` lets it vectorize in -O2 builds too.
#if !defined(GRPO_NO_CPU_DISPATCH) && !defined(__CUDACC__) && !defined(__AVX2__) && \
    (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define GRPO_CPU_AVX2_DISPATCH 1
#if defined(__clang__)
#define GRPO_AVX2_FUNCTION __attribute__((target("avx2"), flatten))
#else
#define GRPO_AVX2_FUNCTION __attribute__((target("avx2"), optimize("O3"), flatten))
#endif
#else
#define GRPO_CPU_AVX2_DISPATCH 0
#endif

GRPO_NAMESPACE_BEGIN
namespace detail {
namespace cpu {

#if GRPO_CPU_AVX2_DISPATCH
inline bool cpu_has_avx2() {
    static const bool has = __builtin_cpu_supports("avx2") != 0;
    return has;
}
#else
inline bool cpu_has_avx2() { return false; }
#endif

/// Whether the passes may use their AVX2 copies. Tests and benchmarks set it to false to run the default-target
/// version for comparison; not meant to be changed while another thread runs a pass.
inline std::atomic<bool>& cpu_dispatch_enabled() {
    static std::atomic<bool> enabled{true};
    return enabled;
}

/// True when the AVX2 copy should run.
inline bool use_avx2() {
    return GRPO_CPU_AVX2_DISPATCH && cpu_dispatch_enabled().load(std::memory_order_relaxed) && cpu_has_avx2();
}

} // namespace cpu
} // namespace detail
GRPO_NAMESPACE_END
