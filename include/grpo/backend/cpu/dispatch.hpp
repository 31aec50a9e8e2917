// SPDX-License-Identifier: MIT
// How the CPU backend's hot loops are compiled: -O3 on GCC for the loops themselves, and copies for wider
// instruction sets chosen at run time (GCC/Clang on x86-64, when the build does not already target AVX2):
//  - AVX2 without FMA for the log-prob passes: vector width only, no contraction and no reassociation, so every
//    result is bit-identical to the baseline path (tests/test_logprobs.cpp compares them);
//  - AVX2 + FMA (x86-64-v3) and AVX-512 + FMA (x86-64-v4) for the loss pass: products and sums contract into
//    fused multiply-adds, so results move in their last bits against the baseline (the tolerance in
//    docs/numerics.md, checked by tests/test_determinism.cpp); each version gives the same bits for any thread
//    count and on every run.
// GRPO_NO_CPU_DISPATCH turns every copy off: one result on every x86-64 machine.
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
// The loss pass's FMA copies. Contraction follows the build's own -ffp-contract: GCC's default for C++ (fast)
// contracts across statements, Clang's (on) within an expression; under -ffp-contract=off these copies are
// bit-identical to the baseline. (An optimize("fp-contract=...") attribute here would stop GCC from inlining the
// math into the copy: its options would then differ from the callees'.)
#if defined(__clang__)
#define GRPO_AVX2_FMA_FUNCTION __attribute__((target("avx2,fma"), flatten))
#define GRPO_AVX512_FUNCTION __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"), flatten))
#else
#define GRPO_AVX2_FMA_FUNCTION __attribute__((target("avx2,fma"), optimize("O3"), flatten))
#define GRPO_AVX512_FUNCTION \
    __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"), optimize("O3"), flatten))
#endif
#else
#define GRPO_CPU_AVX2_DISPATCH 0
#endif

GRPO_NAMESPACE_BEGIN
namespace detail {
namespace cpu {

/// The versions of the CPU passes, narrowest first: the build's own target, AVX2 (bit-identical to it; log-prob
/// passes), AVX2 + FMA and AVX-512 + FMA (the loss pass).
enum class cpu_version { baseline, avx2, avx2_fma, avx512 };

/// The widest version this CPU runs (baseline where the copies are not compiled in).
inline cpu_version cpu_best_version() {
#if GRPO_CPU_AVX2_DISPATCH
    static const cpu_version best = [] {
        __builtin_cpu_init();
        if (!__builtin_cpu_supports("avx2")) return cpu_version::baseline;
        if (!__builtin_cpu_supports("fma")) return cpu_version::avx2;
        const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                            __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
        return avx512 ? cpu_version::avx512 : cpu_version::avx2_fma;
    }();
    return best;
#else
    return cpu_version::baseline;
#endif
}

/// The widest version the passes may use. Tests and benchmarks lower it to run each version in turn; not meant
/// to be changed while another thread runs a pass.
inline std::atomic<cpu_version>& cpu_version_limit() {
    static std::atomic<cpu_version> limit{cpu_version::avx512};
    return limit;
}

/// The version the passes run now: the narrower of the limit and what the CPU has.
inline cpu_version active_cpu_version() {
    const cpu_version limit = cpu_version_limit().load(std::memory_order_relaxed), best = cpu_best_version();
    return static_cast<int>(limit) < static_cast<int>(best) ? limit : best;
}

inline bool cpu_has_avx2() { return static_cast<int>(cpu_best_version()) >= static_cast<int>(cpu_version::avx2); }

/// True when the log-prob passes' AVX2 copy should run.
inline bool use_avx2() { return static_cast<int>(active_cpu_version()) >= static_cast<int>(cpu_version::avx2); }

} // namespace cpu
} // namespace detail
GRPO_NAMESPACE_END
