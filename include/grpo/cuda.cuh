// SPDX-License-Identifier: MIT
// CUDA entry points of grpo. Include only from a CUDA translation unit (nvcc); grpo/grpo.hpp stays CUDA-free.
//
//   grpo::cuda_workspace ws;                                    // reusable device scratch
//   grpo::loss_stats st = grpo::loss_and_grad(grpo::exec::cuda{stream}, in, out, cfg, ws);   // syncs once
//   grpo::loss_and_grad(grpo::exec::cuda{stream}, in, out, cfg, ws, d_stats);                // no sync
//   grpo::advantage_stats a = grpo::compute_advantages(grpo::exec::cuda{stream}, d_rewards,
//                                                      grpo::groups::contiguous(G), d_adv, acfg, ws); // syncs once
//   grpo::compute_advantages(grpo::exec::cuda{stream}, d_rewards, g, d_adv, acfg, ws, d_adv_stats); // no sync
//
// Views must be matrix_view<T, device_space> / vector_view<T, device_space>; a host_space view does not
// compile. With GRPO_CUDA_DEBUG_CHECKS (or without NDEBUG) every pointer is also checked at run time with
// cudaPointerGetAttributes. The overloads and their documentation are in backend/cuda/run.hpp (shared with
// exec::cuda_emulated, cuda_emulated.hpp); this header adds the executor, the workspace and the launch policy.
#pragma once

#if !defined(__CUDACC__)
#error "grpo/cuda.cuh is a CUDA header: include it from a .cu file compiled by nvcc"
#endif

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <cublas_v2.h>
#include <cub/device/device_radix_sort.cuh>
#include <cuda_runtime.h>

#if !defined(GRPO_CUDA_DEBUG_CHECKS) && !defined(NDEBUG)
#define GRPO_CUDA_DEBUG_CHECKS 1
#endif

#include "grpo.hpp"
#include "backend/cuda/device.cuh"
#include "api/device_entry.hpp"
#include "api/device_logprob.hpp"

GRPO_NAMESPACE_BEGIN

namespace exec {
/// Runs grpo's CUDA kernels on the caller's stream (0 = the legacy default stream).
struct cuda {
    cudaStream_t stream = nullptr;
};
} // namespace exec

/// Reusable device scratch for the CUDA backend. Grows (cudaMalloc) only when a call needs more than it
/// holds; reuse one per stream and the hot path never allocates. One call at a time: every entry point holds it
/// (basic_workspace_lease) and throws grpo::error (errc::in_use) when another call, on any thread, holds it.
/// The no-sync overloads hold it only while they enqueue: do not use it from another stream before their work
/// has completed.
class cuda_workspace {
public:
    cuda_workspace() = default;
    cuda_workspace(const cuda_workspace&) = delete;
    cuda_workspace& operator=(const cuda_workspace&) = delete;
    ~cuda_workspace() {
        if (data_) cudaFree(data_);
        if (host_) cudaFreeHost(host_);
        if (blas_) cublasDestroy(blas_);
    }
    /// The cuBLAS handle of the hidden-state log-probs, created on first use.
    cublasHandle_t blas(const char* where) {
        if (!blas_ && cublasCreate(&blas_) != CUBLAS_STATUS_SUCCESS) {
            blas_ = nullptr;
            detail::raise_argument(errc::cuda, where, "cublasCreate", "a cuBLAS handle", "a failure");
        }
        return blas_;
    }
    /// At least `count` doubles of device memory. Contents unspecified.
    double* doubles(std::size_t count) {
        if (count > capacity_) {
            if (data_) detail::cuda::cuda_check(cudaFree(data_), "cuda_workspace", "cudaFree");
            data_ = nullptr;
            capacity_ = 0;
            detail::cuda::cuda_check(cudaMalloc(reinterpret_cast<void**>(&data_), count * sizeof(double)),
                                     "cuda_workspace", "cudaMalloc");
            capacity_ = count;
        }
        return data_;
    }
    /// Pinned host staging for scalars that come back synchronously.
    double* host_doubles(std::size_t count) {
        if (count > host_capacity_) {
            if (host_) cudaFreeHost(host_);
            host_ = nullptr;
            host_capacity_ = 0;
            detail::cuda::cuda_check(cudaMallocHost(reinterpret_cast<void**>(&host_), count * sizeof(double)),
                                     "cuda_workspace", "cudaMallocHost");
            host_capacity_ = count;
        }
        return host_;
    }
    std::size_t capacity_doubles() const noexcept { return capacity_; }
    /// True while a call holds this workspace.
    bool in_use() const noexcept { return in_use_.load(std::memory_order_relaxed); }

    /// Doubles a compute_advantages call over `rows` rewards and `num_groups` groups needs (id-based groups
    /// also need the radix-sort buffers). Host-side query; pre-size with doubles() before the hot loop.
    static std::size_t advantage_doubles(index_t rows, index_t num_groups, bool by_id) {
        const std::size_t sort =
            by_id ? detail::cuda::cub_sort_temp_bytes(rows, detail::cuda::adv_key_bits(num_groups)) : 0;
        return (detail::cuda::adv_layout(rows, num_groups, by_id, sort, nullptr, nullptr) + sizeof(double) - 1) /
               sizeof(double);
    }

    /// Doubles a loss call over `rows` rows needs (to pre-size with doubles() before the hot loop).
    static std::size_t loss_doubles(index_t rows) { return detail::cuda::loss_scratch_doubles(rows); }

private:
    template <class W>
    friend class basic_workspace_lease;
    double* data_ = nullptr;
    std::size_t capacity_ = 0;
    double* host_ = nullptr;
    std::size_t host_capacity_ = 0;
    std::atomic<bool> in_use_{false};
    cublasHandle_t blas_ = nullptr;
};

namespace detail {
namespace cuda {

/// The launch policy of run.hpp for exec::cuda: kernels on the caller's stream, scratch in a cuda_workspace.
class cuda_device {
public:
    cuda_device(cudaStream_t stream, cuda_workspace& ws) : stream_(stream), ws_(ws) {}

    double* scratch_doubles(std::size_t n) { return ws_.doubles(n); }
    void zero(void* p, std::size_t bytes) {
        cuda_check(cudaMemsetAsync(p, 0, bytes, stream_), "grpo (cuda)", "cudaMemsetAsync");
    }
    template <class K>
    void launch(const K& kernel, index_t blocks) {
        run_block_kernel<K><<<static_cast<unsigned>(blocks), K::block, 0, stream_>>>(kernel);
    }
    std::size_t sort_temp_bytes(index_t n, int key_bits) const { return cub_sort_temp_bytes(n, key_bits); }
    void sort_pairs(const std::uint64_t* keys_in, std::uint64_t* keys_out, const std::int64_t* values_in,
                    std::int64_t* values_out, index_t n, int key_bits, void* temp, std::size_t temp_bytes) {
        cuda_check(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys_out, values_in, values_out,
                                                   static_cast<std::int64_t>(n), 0, key_bits, stream_),
                   "compute_advantages(cuda)", "cub::DeviceRadixSort::SortPairs");
    }
    void check_pointer(const char* where, const char* name, const void* p) const {
        check_device_pointer(where, name, p);
    }
    double* host_doubles(std::size_t n) { return ws_.host_doubles(n); }
    void copy_to_host(void* h, const void* d, std::size_t bytes) {
        cuda_check(cudaMemcpyAsync(h, d, bytes, cudaMemcpyDeviceToHost, stream_), "grpo (cuda)", "cudaMemcpyAsync");
    }
    void synchronize(const char* where) { cuda_check(cudaStreamSynchronize(stream_), where, "cudaStreamSynchronize"); }
    void check_launch(const char* where) { cuda_check(cudaGetLastError(), where, "kernel launch"); }
    /// Row-major C [m, n] = op(A) op(B) + beta C on the stream (cuBLAS is column-major: it computes C^T =
    /// op(B)^T op(A)^T, the same memory).
    template <class T>
    void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, const T* a, index_t lda, const T* b,
              index_t ldb, T beta, T* c, index_t ldc) {
        static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value, "gemm: float or double");
        const char* where = "logprobs_from_hidden(cuda)";
        cublasHandle_t h = ws_.blas(where);
        if (cublasSetStream(h, stream_) != CUBLAS_STATUS_SUCCESS)
            raise_argument(errc::cuda, where, "cublasSetStream", "success", "a failure");
        const T one = T(1);
        const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
        cublasStatus_t st;
        if constexpr (std::is_same<T, float>::value)
            st = cublasSgemm(h, op_b, op_a, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &one, b,
                             static_cast<int>(ldb), a, static_cast<int>(lda), &beta, c, static_cast<int>(ldc));
        else
            st = cublasDgemm(h, op_b, op_a, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &one, b,
                             static_cast<int>(ldb), a, static_cast<int>(lda), &beta, c, static_cast<int>(ldc));
        if (st != CUBLAS_STATUS_SUCCESS)
            raise_argument(errc::cuda, where, "cublas gemm", "success",
                           "status " + std::to_string(static_cast<int>(st)));
    }

private:
    cudaStream_t stream_;
    cuda_workspace& ws_;
};

} // namespace cuda
} // namespace detail

template <>
struct device_backend_traits<exec::cuda> {
    static constexpr const char* loss_where = "loss_and_grad(cuda)";
    static constexpr const char* kl_where = "per_token_kl(cuda)";
    static constexpr const char* advantages_where = "compute_advantages(cuda)";
    static constexpr const char* token_advantages_where = "token_advantages(cuda)";
    static constexpr const char* logprobs_where = "logprobs_from_logits(cuda)";
    static constexpr const char* logprobs_backward_where = "logprobs_from_logits_backward(cuda)";
    static constexpr const char* hidden_where = "logprobs_from_hidden(cuda)";
    static constexpr const char* hidden_backward_where = "logprobs_from_hidden_backward(cuda)";
    using workspace = cuda_workspace;
    static detail::cuda::cuda_device device(const exec::cuda& ex, workspace& ws) {
        return detail::cuda::cuda_device(ex.stream, ws);
    }
};

GRPO_NAMESPACE_END
