// SPDX-License-Identifier: MIT
// CUDA entry points of grpo. Include only from a CUDA translation unit (nvcc); grpo/grpo.hpp stays CUDA-free.
//
//   grpo::cuda_workspace ws;                                    // reusable device scratch
//   grpo::loss_stats st = grpo::loss_and_grad(grpo::exec::cuda{stream}, in, out, cfg, ws);   // syncs once
//   grpo::loss_and_grad(grpo::exec::cuda{stream}, in, out, cfg, ws, d_stats);                // no sync
//
// Views must be matrix_view<T, device_space> / vector_view<T, device_space>; a host_space view does not
// compile. With GRPO_CUDA_DEBUG_CHECKS (or without NDEBUG) every pointer is also checked at run time with
// cudaPointerGetAttributes.
#pragma once

#if !defined(__CUDACC__)
#error "grpo/cuda.cuh is a CUDA header: include it from a .cu file compiled by nvcc"
#endif

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include <cuda_runtime.h>

#include "grpo.hpp"
#include "backend/cuda/loss.cuh"

#if !defined(GRPO_CUDA_DEBUG_CHECKS) && !defined(NDEBUG)
#define GRPO_CUDA_DEBUG_CHECKS 1
#endif

GRPO_NAMESPACE_BEGIN

namespace exec {
/// Runs grpo's CUDA kernels on the caller's stream (0 = the legacy default stream).
struct cuda {
    cudaStream_t stream = nullptr;
};
} // namespace exec

namespace detail {

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

template <class V>
void check_device_view(const char* where, const char* name, const V& v) {
    static_assert(std::is_same<typename V::memory_space, device_space>::value,
                  "grpo (CUDA): every view passed with exec::cuda must be in device_space");
    if (v.present() && !v.empty()) check_device_pointer(where, name, v.data());
}

} // namespace detail

/// Reusable device scratch for the CUDA backend. Grows (cudaMalloc) only when a call needs more than it
/// holds; reuse one per stream and the hot path never allocates. Not thread-safe; one stream at a time.
class cuda_workspace {
public:
    cuda_workspace() = default;
    cuda_workspace(const cuda_workspace&) = delete;
    cuda_workspace& operator=(const cuda_workspace&) = delete;
    ~cuda_workspace() {
        if (data_) cudaFree(data_);
        if (host_) cudaFreeHost(host_);
    }
    /// At least `count` doubles of device memory. Contents unspecified.
    double* doubles(std::size_t count) {
        if (count > capacity_) {
            if (data_) detail::cuda_check(cudaFree(data_), "cuda_workspace", "cudaFree");
            data_ = nullptr;
            capacity_ = 0;
            detail::cuda_check(cudaMalloc(reinterpret_cast<void**>(&data_), count * sizeof(double)),
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
            detail::cuda_check(cudaMallocHost(reinterpret_cast<void**>(&host_), count * sizeof(double)),
                               "cuda_workspace", "cudaMallocHost");
            host_capacity_ = count;
        }
        return host_;
    }
    std::size_t capacity_doubles() const noexcept { return capacity_; }

    /// Doubles a loss call over `rows` rows needs (to pre-size with doubles() before the hot loop).
    static std::size_t loss_doubles(index_t rows) {
        return static_cast<std::size_t>(rows) * (detail::cuda::row_fields + detail::cuda::pre_fields) + 1 +
               detail::cuda::stats_fields;
    }

private:
    double* data_ = nullptr;
    std::size_t capacity_ = 0;
    double* host_ = nullptr;
    std::size_t host_capacity_ = 0;
};

/// Number of doubles written by the no-sync loss_and_grad overload, in loss_stats field order
/// (loss, policy_loss, kl_loss, token_count, clip_fraction_low, clip_fraction_high, clip_fraction_region,
/// dual_clip_fraction, ratio_mean, ratio_min, ratio_max, kl_mean, approx_kl).
constexpr int loss_stats_doubles = detail::cuda::stats_fields;

/// Fused loss + gradient + diagnostics on device, without a host sync: the scalars are written to
/// `d_stats` (loss_stats_doubles device doubles) in stream order. Validation of shapes and configuration is
/// done on the host before any launch; values (finiteness, mask in {0,1}) are NOT checked on device, and
/// lengths outside [0, cols] are clamped. Supported element types: float, double.
template <class T>
void loss_and_grad(const exec::cuda& ex, const loss_inputs<T, device_space>& in,
                   const loss_outputs<T, device_space>& out, const loss_config& cfg, cuda_workspace& ws,
                   double* d_stats) {
    static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                  "grpo::loss_and_grad (CUDA): element type must be float or double");
    constexpr const char* where = "loss_and_grad(cuda)";
    const detail::loss_params p = detail::check_loss_call(where, in, out, cfg);
    detail::check_device_view(where, "logp", in.logp);
    detail::check_device_view(where, "old_logp", in.old_logp);
    detail::check_device_view(where, "ref_logp", in.ref_logp);
    detail::check_device_view(where, "advantages", in.advantages);
    detail::check_device_view(where, "mask", in.mask);
    detail::check_device_view(where, "lengths", in.lengths);
    detail::check_device_view(where, "grad_logp", out.grad_logp);
    detail::check_device_view(where, "per_token_loss", out.per_token_loss);
    if (d_stats == nullptr)
        detail::raise_argument(errc::invalid_value, where, "d_stats", "a device buffer of loss_stats_doubles",
                               "nullptr");
    detail::check_device_pointer(where, "d_stats", d_stats);
    // The CPU backend also checks global_token_count >= this call's tokens; that needs the token count on
    // the host, so this no-sync path trusts the caller (docs/cuda.md); the syncing overload checks it.
    const index_t rows = in.logp.rows();
    const detail::cuda::device_loss_views<T> v{in.logp, in.old_logp, in.ref_logp, in.advantages,
                                               in.mask, in.lengths, out.grad_logp, out.per_token_loss};
    double* scratch = ws.doubles(cuda_workspace::loss_doubles(rows));
    double* pre = scratch;
    double* partials = pre + rows * detail::cuda::pre_fields;
    double* total = partials + rows * detail::cuda::row_fields;
    if (rows > 0 && in.logp.cols() > 0) {
        const unsigned grid = static_cast<unsigned>(rows);
        detail::cuda::loss_prepass_kernel<T><<<grid, detail::cuda::loss_block, 0, ex.stream>>>(v, p, pre);
        detail::cuda::total_tokens_kernel<<<1, 1, 0, ex.stream>>>(pre, rows, cfg.global_token_count, total);
        detail::cuda::loss_main_kernel<T><<<grid, detail::cuda::loss_block, 0, ex.stream>>>(v, p, pre, total,
                                                                                              partials);
        detail::cuda::loss_final_kernel<<<1, 1, 0, ex.stream>>>(partials, rows, p.beta, d_stats);
    } else {
        detail::cuda::loss_final_kernel<<<1, 1, 0, ex.stream>>>(partials, 0, p.beta, d_stats);
    }
    detail::cuda_check(cudaGetLastError(), where, "kernel launch");
}

/// Fused loss + gradient + diagnostics on device; waits for the stream once to return the scalars.
template <class T>
loss_stats loss_and_grad(const exec::cuda& ex, const loss_inputs<T, device_space>& in,
                         const loss_outputs<T, device_space>& out, const loss_config& cfg, cuda_workspace& ws) {
    const index_t rows = in.logp.rows();
    double* scratch = ws.doubles(cuda_workspace::loss_doubles(rows));
    double* d_stats = scratch + cuda_workspace::loss_doubles(rows) - loss_stats_doubles;
    loss_and_grad(ex, in, out, cfg, ws, d_stats);
    double* h = ws.host_doubles(loss_stats_doubles);
    detail::cuda_check(cudaMemcpyAsync(h, d_stats, loss_stats_doubles * sizeof(double), cudaMemcpyDeviceToHost,
                                       ex.stream),
                       "loss_and_grad(cuda)", "cudaMemcpyAsync");
    detail::cuda_check(cudaStreamSynchronize(ex.stream), "loss_and_grad(cuda)", "cudaStreamSynchronize");
    loss_stats st;
    double* f[loss_stats_doubles] = {&st.loss, &st.policy_loss, &st.kl_loss, &st.token_count,
                                     &st.clip_fraction_low, &st.clip_fraction_high, &st.clip_fraction_region,
                                     &st.dual_clip_fraction, &st.ratio_mean, &st.ratio_min, &st.ratio_max,
                                     &st.kl_mean, &st.approx_kl};
    for (int k = 0; k < loss_stats_doubles; ++k) *f[k] = h[k];
    if (cfg.global_token_count > 0 && cfg.global_token_count < st.token_count)
        detail::raise_argument(errc::invalid_value, "loss_and_grad(cuda)", "config.global_token_count",
                               "0 (local) or at least this call's unmasked tokens (" +
                                   detail::num_str(st.token_count) + ")",
                               detail::num_str(cfg.global_token_count));
    return st;
}

GRPO_NAMESPACE_END
