// SPDX-License-Identifier: MIT
// The kernel model of the CUDA backend. CUDA-free: the kernels are written once against a "block" object and
// run either on a GPU (backend/cuda/device.cuh: CUDA threads, CUB block reductions) or on the host
// (backend/cuda/emulated.hpp: one std::thread per simulated thread), so that CI machines without a GPU run the
// very same kernel code against the CPU backend.
//
// A kernel is a struct K with
//   static constexpr int block;                              threads per block on the GPU
//   template <class B> GRPO_HOST_DEVICE void operator()(B& b) const;   the body one thread runs
// and B, the calling thread's view of its block, provides
//   thread(), threads(), block(), blocks()  (index_t)        like threadIdx.x, blockDim.x, blockIdx.x, gridDim.x
//   sum(x), min(x), max(x)                                    block-wide reduction of a double; every thread
//                                                             gets the result (collective: all threads call it)
//   load(const double* p)                                     a read of data other blocks wrote (bypasses L1)
//   atomic_max(unsigned long long* p, v)                      integer atomic (order-independent result)
//   last_block_done(unsigned long long* counter)              collective: true in every thread of the block that
//                                                             finished last (the others' writes are visible)
// Bodies never assume threads() == K::block, and never depend on the order in which blocks run: the emulator
// uses few threads and runs the blocks in reverse order, a few at once, to make either mistake (or a race
// between blocks, under a thread sanitizer) show up in the tests.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>

#include "../../core/config.hpp"
#include "../../core/view.hpp"

GRPO_NAMESPACE_BEGIN
namespace detail {
namespace cuda {

GRPO_HOST_DEVICE inline double infinity() {
#if defined(__CUDA_ARCH__)
    return __longlong_as_double(0x7ff0000000000000LL);
#else
    return std::numeric_limits<double>::infinity();
#endif
}

GRPO_HOST_DEVICE inline double bits_as_double(long long bits) {
#if defined(__CUDA_ARCH__)
    return __longlong_as_double(bits);
#else
    double d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
#endif
}

/// Exact int64 values in the double slots of the device error records (rows, columns, lengths, ids): the
/// int64's bit pattern is stored as is, so every value survives (a double holds integers exactly only up to
/// 2^53, and INT64_MAX would round to 2^63). Decode with double_bits_as_int64; never do arithmetic on the slot.
GRPO_HOST_DEVICE inline double int64_as_double_bits(std::int64_t v) {
#if defined(__CUDA_ARCH__)
    return __longlong_as_double(static_cast<long long>(v));
#else
    double d;
    std::memcpy(&d, &v, sizeof d);
    return d;
#endif
}
GRPO_HOST_DEVICE inline std::int64_t double_bits_as_int64(double d) {
#if defined(__CUDA_ARCH__)
    return static_cast<std::int64_t>(__double_as_longlong(d));
#else
    std::int64_t v;
    std::memcpy(&v, &d, sizeof v);
    return v;
#endif
}

/// Grid-stride loop bounds over `items` elements: first index of this thread and the stride.
template <class B>
GRPO_HOST_DEVICE inline index_t grid_first(const B& b) {
    return b.block() * b.threads() + b.thread();
}
template <class B>
GRPO_HOST_DEVICE inline index_t grid_stride(const B& b) {
    return b.blocks() * b.threads();
}

/// Blocks of a launch over `items` independent work items (at least 1, at most the CUDA grid limit).
inline index_t grid_for_items(index_t items, index_t per_block = 1, index_t max_blocks = 2147483647) {
    const index_t b = per_block > 0 ? (items + per_block - 1) / per_block : items;
    return b < 1 ? 1 : (b > max_blocks ? max_blocks : b);
}

} // namespace cuda
} // namespace detail
GRPO_NAMESPACE_END
