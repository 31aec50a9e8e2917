// SPDX-License-Identifier: MIT
// CUDA backend of the fused loss pass. One block per row; every sum is a CUB block reduction in double
// (fixed shape for a fixed block size) followed by a single-block pass over the rows in row order, so the
// results are identical on every run. No float atomics.
//
// Element types: float and double (math in the same type), __half and __nv_bfloat16 (loaded into float, math
// in float, grad_logp / per_token_loss rounded back to the input type on store). Reductions are in double.
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>

#include <cub/block/block_reduce.cuh>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math_constants.h>

#include "../../loss_types.hpp"

GRPO_NAMESPACE_BEGIN
namespace detail {
namespace cuda {

constexpr int loss_block = 256;
/// Per-row partials in the workspace (doubles): same fields as the CPU backend's row_partials.
constexpr int row_fields = 11; // policy, kl, kl_sum, tokens, clip_low, clip_high, dual, ratio_sum, rmin, rmax, neg_lr
/// Per-row pre-pass results: n_i, s_i, ds_i, dloss_ds_i.
constexpr int pre_fields = 4;
/// Scalars written by the final pass, in loss_stats field order.
constexpr int stats_fields = 13;

/// Type the per-token math runs in: the element type for float/double, float for the 16-bit types.
template <class T>
struct compute_type {
    using type = T;
};
template <>
struct compute_type<__half> {
    using type = float;
};
template <>
struct compute_type<__nv_bfloat16> {
    using type = float;
};
template <class T>
using compute_t = typename compute_type<T>::type;

/// Element types the CUDA loss pass accepts.
template <class T>
struct is_loss_element
    : std::integral_constant<bool, std::is_same<T, float>::value || std::is_same<T, double>::value ||
                                       std::is_same<T, __half>::value || std::is_same<T, __nv_bfloat16>::value> {};

template <class T>
struct device_loss_views {
    matrix_view<const T, device_space> logp, old_logp, ref_logp, adv, mask;
    vector_view<const std::int64_t, device_space> lengths;
    matrix_view<T, device_space> grad, per_token;
};

template <class T>
__device__ inline index_t valid_end(const device_loss_views<T>& v, index_t i) {
    const index_t cols = v.logp.cols();
    if (!v.lengths.present()) return cols;
    const index_t l = static_cast<index_t>(v.lengths[i]);
    return l < 0 ? 0 : (l > cols ? cols : l);
}
template <class T>
__device__ inline bool is_valid(const device_loss_views<T>& v, index_t i, index_t t) {
    return !v.mask.present() || compute_t<T>(v.mask(i, t)) != compute_t<T>(0);
}
template <class T>
__device__ inline T old_at(const device_loss_views<T>& v, index_t i, index_t t) {
    return v.old_logp.present() ? v.old_logp(i, t) : v.logp(i, t);
}

using block_reduce = cub::BlockReduce<double, loss_block>;

struct dmin {
    __device__ double operator()(double a, double b) const { return b < a ? b : a; }
};
struct dmax {
    __device__ double operator()(double a, double b) const { return b > a ? b : a; }
};

/// Pre-pass per row: token count, sequence ratio and (GSPO) dL/ds before the weight.
template <class T>
__global__ void __launch_bounds__(loss_block) loss_prepass_kernel(device_loss_views<T> v, loss_params p,
                                                                  double* pre) {
    using C = compute_t<T>;
    __shared__ typename block_reduce::TempStorage tmp;
    __shared__ double bcast[2];
    const index_t i = blockIdx.x;
    const index_t end = valid_end(v, i);
    const bool sequence = p.ratio != ratio_level::token;
    double n = 0, lr = 0;
    for (index_t t = threadIdx.x; t < end; t += loss_block) {
        if (!is_valid(v, i, t)) continue;
        n += 1;
        if (sequence) lr += static_cast<double>(C(v.logp(i, t)) - C(old_at(v, i, t)));
    }
    n = block_reduce(tmp).Sum(n);
    __syncthreads();
    lr = block_reduce(tmp).Sum(lr);
    if (threadIdx.x == 0) {
        bcast[0] = n;
        bcast[1] = lr;
    }
    __syncthreads();
    n = bcast[0];
    lr = bcast[1];
    double s = 1, ds = 0, dloss_ds = 0;
    if (sequence && n > 0) {
        const math::clamped<double> c = math::clamp_symmetric(lr / n, p.log_ratio_clamp);
        s = math::exp(c.value);
        ds = s * c.grad;
        if (p.ratio == ratio_level::sequence) {
            const math::clip_bounds<C> clip{C(p.clip.low), C(p.clip.high), C(p.clip.delta), C(p.clip.dual_c)};
            double d = 0;
            for (index_t t = threadIdx.x; t < end; t += loss_block) {
                if (!is_valid(v, i, t)) continue;
                d += static_cast<double>(math::clipped_surrogate<C>(C(s), C(v.adv(i, t)), clip).dloss_dratio);
            }
            __syncthreads();
            dloss_ds = block_reduce(tmp).Sum(d);
        }
    }
    if (threadIdx.x == 0) {
        double* o = pre + i * pre_fields;
        o[0] = n;
        o[1] = s;
        o[2] = ds;
        o[3] = dloss_ds;
    }
}

/// Sum of n_i over rows in row order (one thread: fixed order, deterministic). Writes total into *total.
__global__ void total_tokens_kernel(const double* pre, index_t rows, double global_tokens, double* total) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    double s = 0;
    for (index_t i = 0; i < rows; ++i) s += pre[i * pre_fields];
    *total = global_tokens > 0 ? global_tokens : s;
}

/// The fused pass: loss terms, gradient, per-token loss, per-row diagnostics.
template <class T>
__global__ void __launch_bounds__(loss_block) loss_main_kernel(device_loss_views<T> v, loss_params p,
                                                               const double* pre, const double* total_tokens,
                                                               double* partials) {
    using C = compute_t<T>;
    __shared__ typename block_reduce::TempStorage tmp;
    const index_t i = blockIdx.x;
    const index_t cols = v.logp.cols();
    const index_t end = valid_end(v, i);
    const double* r = pre + i * pre_fields;
    const double n = r[0], s = r[1], ds = r[2], dloss_ds = r[3];
    const double w =
        p.loss_scale * math::row_weight<double>(p.agg, n, *total_tokens, p.sequences, p.constant_length);
    const bool sequence = p.ratio != ratio_level::token;
    const double cross_grad = (p.ratio == ratio_level::sequence && n > 0) ? w * dloss_ds * ds / n : 0.0;
    const math::clip_bounds<C> clip{C(p.clip.low), C(p.clip.high), C(p.clip.delta), C(p.clip.dual_c)};
    const C lr_clamp = C(p.log_ratio_clamp), beta = C(p.beta), cw = C(w), ccross = C(cross_grad);
    const C seq_ratio = C(s), seq_dratio = p.ratio == ratio_level::sequence_token ? C(ds) : C(0);
    const C kl_in = C(p.kl_log_ratio_clamp), kl_out = C(p.kl_value_clamp);
    const bool with_kl = p.beta != 0;
    const double inf = CUDART_INF;

    double acc[row_fields] = {0, 0, 0, 0, 0, 0, 0, 0, inf, -inf, 0};
    for (index_t t = threadIdx.x; t < cols; t += loss_block) {
        const bool valid = t < end && is_valid(v, i, t);
        C g = 0, l = 0;
        if (valid) {
            const C x = C(v.logp(i, t));
            const C log_ratio = x - C(old_at(v, i, t));
            const C a = C(v.adv(i, t));
            const math::clamped<C> lr = math::clamp_symmetric(log_ratio, lr_clamp);
            const C token_ratio = math::exp(lr.value);
            const C rr = sequence ? seq_ratio : token_ratio;
            const C dr = sequence ? seq_dratio : token_ratio * lr.grad;
            const math::surrogate_term<C> sur = math::clipped_surrogate<C>(rr, a, clip);
            C kl_value = 0, kl_grad = 0;
            if (with_kl) {
                const math::kl_term<C> term =
                    math::kl_penalty<C>(p.kl, x, C(v.ref_logp(i, t)), kl_in, kl_out, p.kl_straight_through);
                kl_value = term.value;
                kl_grad = term.grad;
            }
            g = cw * (sur.dloss_dratio * dr + beta * kl_grad) + ccross;
            l = sur.loss + beta * kl_value;
            acc[0] += static_cast<double>(sur.loss);
            acc[2] += static_cast<double>(kl_value);
            acc[4] += static_cast<double>(sur.clipped_low);
            acc[5] += static_cast<double>(sur.clipped_high);
            acc[6] += static_cast<double>(sur.dual_clipped);
            acc[7] += static_cast<double>(rr);
            acc[8] = acc[8] < double(rr) ? acc[8] : double(rr);
            acc[9] = acc[9] > double(rr) ? acc[9] : double(rr);
            acc[10] += -static_cast<double>(log_ratio); // approx_kl: unmasked tokens only, as on the CPU
        }
        if (v.grad.present()) v.grad(i, t) = T(g);
        if (v.per_token.present()) v.per_token(i, t) = T(l);
    }
    double out[row_fields] = {};
    for (int f = 0; f < row_fields; ++f) {
        if (f == 1 || f == 3) continue;
        __syncthreads();
        if (f == 8)
            out[f] = block_reduce(tmp).Reduce(acc[f], dmin{});
        else if (f == 9)
            out[f] = block_reduce(tmp).Reduce(acc[f], dmax{});
        else
            out[f] = block_reduce(tmp).Sum(acc[f]);
    }
    if (threadIdx.x == 0) {
        double* o = partials + i * row_fields;
        for (int f = 0; f < row_fields; ++f) o[f] = out[f];
        o[0] = out[0] * w;
        o[1] = out[2] * w;
        o[3] = n;
    }
}

/// Ordered sum of the row partials into the loss_stats fields (one thread, row order).
__global__ void loss_final_kernel(const double* partials, index_t rows, double beta, double* stats) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    const double inf = CUDART_INF;
    double pol = 0, kl = 0, n = 0, kl_sum = 0, lo = 0, hi = 0, dual = 0, rsum = 0, nlr = 0, rmin = inf,
           rmax = -inf;
    for (index_t i = 0; i < rows; ++i) {
        const double* o = partials + i * row_fields;
        pol += o[0];
        kl += o[1];
        kl_sum += o[2];
        n += o[3];
        lo += o[4];
        hi += o[5];
        dual += o[6];
        rsum += o[7];
        rmin = o[8] < rmin ? o[8] : rmin;
        rmax = o[9] > rmax ? o[9] : rmax;
        nlr += o[10];
    }
    double st[stats_fields] = {pol + beta * kl, pol, kl, n, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    if (n > 0) {
        st[4] = lo / n;
        st[5] = hi / n;
        st[6] = (lo + hi) / n;
        st[7] = dual / n;
        st[8] = rsum / n;
        st[9] = rmin;
        st[10] = rmax;
        st[11] = kl_sum / n;
        st[12] = nlr / n;
    }
    for (int f = 0; f < stats_fields; ++f) stats[f] = st[f];
}

} // namespace cuda
} // namespace detail
GRPO_NAMESPACE_END
