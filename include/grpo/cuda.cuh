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
// cudaPointerGetAttributes.
#pragma once

#if !defined(__CUDACC__)
#error "grpo/cuda.cuh is a CUDA header: include it from a .cu file compiled by nvcc"
#endif

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include <cuda_runtime.h>

#include "grpo.hpp"
#include "backend/cuda/advantages.cuh"
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

    /// Doubles a compute_advantages call over `rows` rewards and `num_groups` groups needs (id-based groups
    /// also need the radix-sort buffers). Host-side query; pre-size with doubles() before the hot loop.
    static std::size_t advantage_doubles(index_t rows, index_t num_groups, bool by_id) {
        const std::size_t sort = by_id ? detail::cuda::adv_sort_temp_bytes(rows, num_groups) : 0;
        return (detail::cuda::adv_layout(rows, num_groups, by_id, sort, nullptr, nullptr) + sizeof(double) - 1) /
               sizeof(double);
    }

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
/// lengths outside [0, cols] are clamped. Supported element types: float and double (math in that type),
/// __half and __nv_bfloat16 (inputs converted to float on load, fp32 math, grad_logp / per_token_loss
/// written in the input type). Per-row and batch sums are in double for every type.
template <class T>
void loss_and_grad(const exec::cuda& ex, const loss_inputs<T, device_space>& in,
                   const loss_outputs<T, device_space>& out, const loss_config& cfg, cuda_workspace& ws,
                   double* d_stats) {
    static_assert(detail::cuda::is_loss_element<T>::value,
                  "grpo::loss_and_grad (CUDA): element type must be float, double, __half or __nv_bfloat16");
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
    // As on the CPU, only under validation::full; unlike the CPU, after the kernels ran (docs/cuda.md).
    if (cfg.checks == validation::full && cfg.global_token_count > 0 && cfg.global_token_count < st.token_count)
        detail::raise_argument(errc::invalid_value, "loss_and_grad(cuda)", "config.global_token_count",
                               "0 (local) or at least this call's unmasked tokens (" +
                                   detail::num_str(st.token_count) + ")",
                               detail::num_str(cfg.global_token_count));
    return st;
}

// ---------------------------------------------------------------------------------------------------------
// Advantages on device
// ---------------------------------------------------------------------------------------------------------

/// Grouping of completions for the CUDA compute_advantages: like grpo::groups, with the ids in device memory.
/// Converts implicitly from groups::contiguous(G); groups::by_id holds host ids and is rejected (grpo::error).
class device_groups {
public:
    static device_groups contiguous(index_t size) {
        device_groups g;
        g.size_ = size;
        return g;
    }
    static device_groups by_id(vector_view<const std::int64_t, device_space> ids, index_t num_groups) {
        device_groups g;
        g.ids_ = ids;
        g.num_groups_ = num_groups;
        g.by_id_ = true;
        return g;
    }
    /// From host-side groups: contiguous only (by_id ids would be host memory).
    device_groups(const groups& g) : size_(g.size()) { // NOLINT: implicit on purpose
        if (!g.is_contiguous())
            detail::raise_argument(errc::invalid_value, "compute_advantages(cuda)", "groups",
                                   "groups::contiguous(G) or device_groups::by_id(device ids, num_groups)",
                                   "groups::by_id with host-memory ids");
    }
    bool is_contiguous() const noexcept { return !by_id_; }
    index_t size() const noexcept { return size_; }
    vector_view<const std::int64_t, device_space> ids() const noexcept { return ids_; }
    index_t num_groups(index_t rows) const noexcept {
        return is_contiguous() ? (size_ > 0 ? rows / size_ : 0) : num_groups_;
    }

private:
    device_groups() = default;
    index_t size_ = 0;
    vector_view<const std::int64_t, device_space> ids_;
    index_t num_groups_ = 0;
    bool by_id_ = false;
};

/// Optional per-group outputs in device memory (each absent or of size num_groups); see group_outputs.
struct device_group_outputs {
    vector_view<double, device_space> mean;
    vector_view<double, device_space> std;
    vector_view<std::uint8_t, device_space> zero_variance;
    vector_view<std::int64_t, device_space> count;
};

/// Doubles written by the no-sync compute_advantages: advantage_stats in field order (num_groups,
/// zero_variance_groups, zero_variance_fraction, scored, reward_mean, reward_std, advantage_mean,
/// advantage_std, advantage_min, advantage_max), then [10] an error code (0 = valid inputs; 1 bad id,
/// 2 bad reward, 3 bad token weight, 4 total whitening weight <= 1), [11] the first offending row,
/// [12] the offending value. With a non-zero code nothing else was written.
constexpr int advantage_stats_doubles = detail::cuda::adv_stats_fields;

/// Unpacks a host copy of the no-sync record; throws grpo::error when it carries an error code.
inline advantage_stats unpack_advantage_stats(const double* h) {
    const int code = static_cast<int>(h[10]);
    if (code != 0) {
        static const char* const names[] = {"", "groups.ids", "rewards", "token_weights", "rewards"};
        const char* name = code >= 1 && code <= 4 ? names[code] : "rewards";
        detail::raise_argument(code == 1 || code == 4 ? errc::invalid_value : errc::non_finite,
                               "compute_advantages(cuda)", name,
                               code == 4 ? "a total whitening weight > 1" : "valid values",
                               code == 4 ? std::string("a smaller total weight")
                                         : "an invalid value at index " + detail::num_str(h[11]));
    }
    advantage_stats st;
    st.num_groups = static_cast<index_t>(h[0]);
    st.zero_variance_groups = static_cast<index_t>(h[1]);
    st.zero_variance_fraction = h[2];
    st.scored = static_cast<index_t>(h[3]);
    st.reward_mean = h[4];
    st.reward_std = h[5];
    st.advantage_mean = h[6];
    st.advantage_std = h[7];
    st.advantage_min = h[8];
    st.advantage_max = h[9];
    return st;
}

namespace detail {

/// Host-side checks of a CUDA compute_advantages call: the CPU's shape and configuration checks, then that
/// every view is device memory. Values (ids in range, finite rewards, token weights >= 0) live in device memory
/// and are checked by adv_validate_kernel.
template <class T>
void check_device_advantage_call(const char* where, vector_view<const T, device_space> rewards,
                                 const device_groups& g, vector_view<T, device_space> advantages,
                                 const advantage_config& cfg, const device_group_outputs& go,
                                 vector_view<const double, device_space> token_weights) {
    detail::check_advantage_shapes<T, device_space>(where, rewards, g, advantages, cfg, go, token_weights);
    check_device_view(where, "rewards", rewards);
    check_device_view(where, "advantages", advantages);
    if (!g.is_contiguous()) check_device_view(where, "groups.ids", g.ids());
    check_device_view(where, "group_outputs.mean", go.mean);
    check_device_view(where, "group_outputs.std", go.std);
    check_device_view(where, "group_outputs.zero_variance", go.zero_variance);
    check_device_view(where, "group_outputs.count", go.count);
    check_device_view(where, "token_weights", token_weights);
}

template <class T>
std::vector<T> download_strided(vector_view<const T, device_space> v) {
    std::vector<T> h;
    if (!v.present() || v.empty()) return h;
    h.resize(static_cast<std::size_t>((v.size() - 1) * v.stride() + 1));
    cuda_check(cudaMemcpy(h.data(), v.data(), h.size() * sizeof(T), cudaMemcpyDeviceToHost), "compute_advantages(cuda)",
               "cudaMemcpy");
    return h;
}

/// Error path of the syncing overload (the device recorded invalid values, nothing was written): copies the
/// inputs to the host and runs the CPU backend on them, which throws the same grpo::error (same message) the
/// CPU backend throws for these inputs.
template <class T>
[[noreturn]] void raise_advantage_value_error(const char* where, const double* h,
                                              vector_view<const T, device_space> rewards, const device_groups& g,
                                              const advantage_config& cfg,
                                              vector_view<const double, device_space> token_weights) {
    const index_t n = rewards.size();
    const std::vector<T> r = download_strided(rewards);
    const std::vector<double> w = download_strided(token_weights);
    std::vector<std::int64_t> ids;
    if (!g.is_contiguous()) ids = download_strided(g.ids());
    std::vector<T> adv(static_cast<std::size_t>(n));
    const groups hg = g.is_contiguous()
                          ? groups::contiguous(g.size())
                          : groups::by_id(vector_view<const std::int64_t>(ids.data(), n, g.ids().stride()),
                                          g.num_groups(n));
    compute_advantages(exec::host{}, vector_view<const T>(r.data(), n, rewards.stride()), hg,
                       vector_view<T>(adv.data(), n), cfg, group_outputs{},
                       token_weights.present() ? vector_view<const double>(w.data(), n, token_weights.stride())
                                               : vector_view<const double>());
    (void)unpack_advantage_stats(h); // the CPU did not throw (a value on an fp edge): report the device's finding
    raise_argument(errc::invalid_value, where, "rewards", "valid values", "invalid values reported by the device");
}

} // namespace detail

/// Group-relative advantages on device, without a host sync: the CUDA counterpart of
/// compute_advantages(exec::host, ...) with device_space views. Shapes and configuration are checked on the
/// host before any launch (same grpo::error messages as the CPU backend). Values (ids in [0, num_groups),
/// finite rewards or NaN with nan_rewards::ignore, token weights finite >= 0, total whitening weight > 1)
/// are checked on device: on failure nothing is written to `advantages` / `per_group` and the record in
/// `d_stats` (advantage_stats_doubles device doubles, see there) carries the error code.
/// Rewards and advantages: float or double (same type). Deterministic; no float atomics.
template <class R, class T>
void compute_advantages(const exec::cuda& ex, vector_view<R, device_space> rewards_in, const device_groups& g,
                        vector_view<T, device_space> advantages, const advantage_config& cfg, cuda_workspace& ws,
                        double* d_stats, const device_group_outputs& per_group = {},
                        vector_view<const double, device_space> token_weights = {}) {
    static_assert(std::is_same<std::remove_const_t<R>, T>::value && std::is_floating_point<T>::value,
                  "grpo::compute_advantages (CUDA): rewards and advantages must have the same float/double type");
    constexpr const char* where = "compute_advantages(cuda)";
    const vector_view<const T, device_space> rewards = rewards_in;
    detail::check_device_advantage_call<T>(where, rewards, g, advantages, cfg, per_group, token_weights);
    if (d_stats == nullptr)
        detail::raise_argument(errc::invalid_value, where, "d_stats",
                               "a device buffer of advantage_stats_doubles", "nullptr");
    detail::check_device_pointer(where, "d_stats", d_stats);

    namespace dc = detail::cuda;
    const index_t n = rewards.size();
    const index_t k = g.num_groups(n);
    const bool by_id = !g.is_contiguous();
    const std::size_t sort_bytes = by_id ? dc::adv_sort_temp_bytes(n, k) : 0;
    const std::size_t bytes = dc::adv_layout(n, k, by_id, sort_bytes, nullptr, nullptr);
    dc::adv_scratch s;
    dc::adv_layout(n, k, by_id, sort_bytes, ws.doubles((bytes + sizeof(double) - 1) / sizeof(double)), &s);

    dc::adv_params p{};
    p.n = n;
    p.k = k;
    p.group_size = by_id ? 0 : g.size();
    p.contiguous = !by_id;
    p.reject_nan = cfg.nan == nan_rewards::reject;
    p.whiten = cfg.estimator == advantage_estimator::group_centered_batch_whitened;
    p.est = cfg.estimator;
    p.std_est = cfg.std;
    p.singleton = cfg.singleton;
    p.epsilon = cfg.epsilon;
    p.whiten_epsilon = cfg.whiten_epsilon;
    const dc::adv_views<T> v{rewards,         advantages,         g.ids(),
                             token_weights,   per_group.mean,     per_group.std,
                             per_group.zero_variance, per_group.count};

    const cudaStream_t st = ex.stream;
    auto grid_for = [](index_t items) {
        const index_t b = (items + dc::adv_elem_block - 1) / dc::adv_elem_block;
        return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 ? 65535 : b));
    };
    detail::cuda_check(cudaMemsetAsync(s.errors, 0, dc::adv_error_slots * sizeof(unsigned long long), st), where,
                       "cudaMemsetAsync");
    if (n > 0) dc::adv_validate_kernel<T><<<grid_for(n), dc::adv_elem_block, 0, st>>>(v, p, s);
    if (by_id && k > 0) {
        // Empty groups (and an empty batch) keep begin = end = 0, so the group kernel sees count 0.
        detail::cuda_check(cudaMemsetAsync(s.begin, 0, static_cast<std::size_t>(k) * sizeof(std::int64_t), st),
                           where, "cudaMemsetAsync");
        detail::cuda_check(cudaMemsetAsync(s.end, 0, static_cast<std::size_t>(k) * sizeof(std::int64_t), st),
                           where, "cudaMemsetAsync");
    }
    if (by_id && n > 0) {
        std::size_t temp = s.sort_temp_bytes;
        detail::cuda_check(cub::DeviceRadixSort::SortPairs(s.sort_temp, temp, s.keys_in, s.keys_out, s.rows_in,
                                                           s.rows_out, static_cast<std::int64_t>(n), 0,
                                                           dc::adv_key_bits(k), st),
                           where, "cub::DeviceRadixSort::SortPairs");
        dc::adv_offsets_kernel<<<grid_for(n), dc::adv_elem_block, 0, st>>>(s.keys_out, n, k, s.errors, s.begin,
                                                                             s.end);
    }
    if (k > 0) {
        // One block per group; grids beyond 2^31-1 blocks are not supported (k is bounded by memory anyway).
        dc::adv_group_kernel<T><<<static_cast<unsigned>(k), dc::adv_group_block, 0, st>>>(v, p, s);
    }
    dc::adv_batch_kernel<T><<<1, dc::adv_batch_block, 0, st>>>(v, p, s);
    if (n > 0 || k > 0) {
        const index_t items = n > k ? n : k;
        dc::adv_write_kernel<T><<<grid_for(items), dc::adv_elem_block, 0, st>>>(v, p, s);
    }
    dc::adv_stats_kernel<T><<<1, dc::adv_batch_block, 0, st>>>(v, p, s, d_stats);
    detail::cuda_check(cudaGetLastError(), where, "kernel launch");
}

/// Group-relative advantages on device; waits for the stream once to return the statistics. Invalid values
/// throw the same grpo::error as the CPU backend (nothing is written to the outputs).
template <class R, class T>
advantage_stats compute_advantages(const exec::cuda& ex, vector_view<R, device_space> rewards,
                                   const device_groups& g, vector_view<T, device_space> advantages,
                                   const advantage_config& cfg, cuda_workspace& ws,
                                   const device_group_outputs& per_group = {},
                                   vector_view<const double, device_space> token_weights = {}) {
    constexpr const char* where = "compute_advantages(cuda)";
    namespace dc = detail::cuda;
    const index_t n = rewards.size();
    const index_t k = g.num_groups(n);
    const bool by_id = !g.is_contiguous();
    // The stats record sits in the workspace (the layout is the same one the no-sync overload carves).
    // Validate the group shape first so that num_groups/sizes used for the layout are meaningful.
    detail::check_device_advantage_call<std::remove_const_t<R>>(where, rewards, g, advantages, cfg, per_group,
                                                                token_weights);
    const std::size_t sort_bytes = by_id ? dc::adv_sort_temp_bytes(n, k) : 0;
    const std::size_t bytes = dc::adv_layout(n, k, by_id, sort_bytes, nullptr, nullptr);
    dc::adv_scratch s;
    dc::adv_layout(n, k, by_id, sort_bytes, ws.doubles((bytes + sizeof(double) - 1) / sizeof(double)), &s);
    compute_advantages(ex, rewards, g, advantages, cfg, ws, s.stats, per_group, token_weights);
    double* h = ws.host_doubles(advantage_stats_doubles);
    detail::cuda_check(cudaMemcpyAsync(h, s.stats, advantage_stats_doubles * sizeof(double), cudaMemcpyDeviceToHost,
                                       ex.stream),
                       where, "cudaMemcpyAsync");
    detail::cuda_check(cudaStreamSynchronize(ex.stream), where, "cudaStreamSynchronize");
    if (h[10] != 0)
        detail::raise_advantage_value_error<std::remove_const_t<R>>(where, h, rewards, g, cfg, token_weights);
    return unpack_advantage_stats(h);
}

/// Convenience overload with a temporary workspace (allocates and frees device memory: not for hot loops).
template <class R, class T>
advantage_stats compute_advantages(const exec::cuda& ex, vector_view<R, device_space> rewards,
                                   const device_groups& g, vector_view<T, device_space> advantages,
                                   const advantage_config& cfg = {}, const device_group_outputs& per_group = {},
                                   vector_view<const double, device_space> token_weights = {}) {
    cuda_workspace ws;
    return compute_advantages(ex, rewards, g, advantages, cfg, ws, per_group, token_weights);
}

GRPO_NAMESPACE_END
