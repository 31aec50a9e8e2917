// SPDX-License-Identifier: MIT
// The GPU side of the kernel model (block.hpp): the block object over CUDA threads and CUB block reductions,
// the one __global__ trampoline every kernel runs through, and cuda_device, the launch policy the shared
// orchestration (run.hpp) uses on a stream with a cuda_workspace. nvcc only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <cub/block/block_reduce.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cuda_runtime.h>

#include "../../core/error.hpp"
#include "../kernels/block.hpp"
#include "half_types.hpp"
#include "../kernels/loss_kernels.hpp"

GRPO_NAMESPACE_BEGIN
namespace detail {
namespace cuda {

struct min_op {
    __device__ double operator()(double a, double b) const { return b < a ? b : a; }
};
struct max_op {
    __device__ double operator()(double a, double b) const { return b > a ? b : a; }
};

template <int Threads>
struct device_block_storage {
    typename cub::BlockReduce<double, Threads>::TempStorage reduce;
    double result;
    bool last;
};

/// A thread's view of its block (block.hpp). Threads is the launch's block size, a compile-time constant so
/// that the CUB reductions have a fixed shape (the determinism of every sum rests on it).
template <int Threads>
class device_block {
public:
    __device__ explicit device_block(device_block_storage<Threads>& st) : st_(st) {}
    __device__ index_t thread() const { return threadIdx.x; }
    __device__ index_t threads() const { return Threads; }
    __device__ index_t block() const { return blockIdx.x; }
    __device__ index_t blocks() const { return gridDim.x; }
    __device__ double sum(double x) {
        __syncthreads(); // the previous reduction's storage and result may still be read
        const double r = reduce_type(st_.reduce).Sum(x);
        return broadcast(r);
    }
    __device__ double min(double x) {
        __syncthreads();
        return broadcast(reduce_type(st_.reduce).Reduce(x, min_op{}));
    }
    __device__ double max(double x) {
        __syncthreads();
        return broadcast(reduce_type(st_.reduce).Reduce(x, max_op{}));
    }
    __device__ double load(const double* p) const { return __ldcg(p); }
    __device__ void atomic_max(unsigned long long* p, unsigned long long v) const { atomicMax(p, v); }
    __device__ bool last_block_done(unsigned long long* counter) {
        __threadfence(); // this thread's global writes are visible device-wide before the ticket is taken
        __syncthreads();
        if (threadIdx.x == 0) {
            st_.last = atomicAdd(counter, 1ull) == static_cast<unsigned long long>(gridDim.x) - 1;
            __threadfence();
        }
        __syncthreads();
        return st_.last;
    }

private:
    using reduce_type = cub::BlockReduce<double, Threads>;
    __device__ double broadcast(double r) {
        if (threadIdx.x == 0) st_.result = r; // CUB's result is valid in thread 0
        __syncthreads();
        return st_.result;
    }
    device_block_storage<Threads>& st_;
};

template <class K>
__global__ void __launch_bounds__(K::block) run_block_kernel(const K k) {
    __shared__ device_block_storage<K::block> st;
    device_block<K::block> b(st);
    k(b);
}

inline void cuda_check(cudaError_t e, const char* where, const char* what) {
    if (e != cudaSuccess)
        raise_argument(errc::invalid_value, where, what, "cudaSuccess",
                       std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e));
}

/// Debug-mode check that `p` is memory a kernel may dereference (device or managed memory).
inline void check_device_pointer(const char* where, const char* name, const void* p) {
#if GRPO_CUDA_DEBUG_CHECKS
    if (p == nullptr) return;
    cudaPointerAttributes attr{};
    const cudaError_t e = cudaPointerGetAttributes(&attr, p);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        raise_argument(errc::invalid_value, where, name, "a device pointer", "a pointer CUDA does not know");
    }
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
        raise_argument(errc::invalid_value, where, name, "a device (or managed) pointer",
                       attr.type == cudaMemoryTypeHost ? "pinned host memory" : "pageable host memory");
#else
    (void)where;
    (void)name;
    (void)p;
#endif
}

/// Bytes of CUB temporary storage for sorting n (id, row) pairs with keys in [0, k] (no device work).
inline std::size_t cub_sort_temp_bytes(index_t n, int key_bits) {
    if (n <= 0) return 0;
    std::size_t bytes = 0;
    const cudaError_t e =
        cub::DeviceRadixSort::SortPairs(nullptr, bytes, static_cast<const std::uint64_t*>(nullptr),
                                        static_cast<std::uint64_t*>(nullptr), static_cast<const std::int64_t*>(nullptr),
                                        static_cast<std::int64_t*>(nullptr), static_cast<std::int64_t>(n), 0, key_bits);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        raise_argument(errc::invalid_value, "compute_advantages(cuda)", "cub::DeviceRadixSort", "cudaSuccess",
                       cudaGetErrorName(e));
    }
    return bytes;
}

} // namespace cuda
} // namespace detail
GRPO_NAMESPACE_END
