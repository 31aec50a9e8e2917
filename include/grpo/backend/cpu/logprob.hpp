// SPDX-License-Identifier: MIT
// CPU backend of logprobs_from_logits and its backward: one row of logits per task, read in blocks that stay in
// L1 (the forward reads each logit once: the block's maximum, then its softmax terms against the running
// maximum), sums in double over fixed lanes, rows in any order on any thread (each row's result depends on that
// row alone, so results are bit-identical for any thread count).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "../../core/check.hpp"
#include "../../core/exec.hpp"
#include "../../core/workspace.hpp"
#include "../../math/logprob.hpp"
#include "../../types/logprob_types.hpp"
#include "dispatch.hpp"

GRPO_NAMESPACE_BEGIN
namespace detail {
namespace cpu {

/// Elements per block: 512 floats (2 KiB) of z and two arrays of terms stay in L1.
constexpr index_t logit_block = 512;
/// Lanes of the block reductions (a fixed order: results do not depend on the compiler's vector width).
constexpr int logit_lanes = 8;

/// z[k] = x[k] / tau for a block; x / 1 is x exactly, so temperature 1 skips the division (same bits).
template <class T, class C>
GRPO_FORCEINLINE void load_scaled(const T* x, index_t n, C tau, C* z) {
    if (tau == C(1))
        for (index_t k = 0; k < n; ++k) z[k] = static_cast<C>(x[k]);
    else
        for (index_t k = 0; k < n; ++k) z[k] = static_cast<C>(x[k]) / tau;
}

/// One row's forward results (error: a logit_error; column and value: where and what, for the message).
struct logit_row {
    double lse = 0, logp = 0, entropy = 0;
    double max = 0, log_sum = 0; ///< the row's softmax_stats m and log s (lse = max + log_sum)
    logit_error error = logit_error::none;
    index_t column = 0;
    double value = 0;
};

/// Forward of one unmasked row x[0 .. vocab) with sampled token `token`: log-sum-exp, logp and entropy of
/// z = x / temperature.
template <class T>
GRPO_CPU_HOT_LOOP logit_row logits_row_forward_impl(const T* x, index_t vocab, index_t token, double temperature) {
    using C = math_type_t<T>;
    const C tau = static_cast<C>(temperature);
    alignas(64) C z[logit_block];
    alignas(64) C w[logit_block];
    alignas(64) C mw[logit_block];
    math::softmax_stats st;
    C bad = 0; // 1 once a z is NaN or +inf
    for (index_t b = 0; b < vocab; b += logit_block) {
        const index_t n = std::min(logit_block, vocab - b);
        load_scaled(x + b, n, tau, z);
        C lane_max[logit_lanes], lane_bad[logit_lanes];
        for (int l = 0; l < logit_lanes; ++l) lane_max[l] = -math::infinity<C>(), lane_bad[l] = 0;
        index_t k = 0;
        for (; k + logit_lanes <= n; k += logit_lanes)
            for (int l = 0; l < logit_lanes; ++l) {
                const C v = z[k + l];
                lane_max[l] = v > lane_max[l] ? v : lane_max[l];                  // maxps
                const C not_finite_above = v < math::infinity<C>() ? C(0) : C(1); // NaN, +inf
                lane_bad[l] = not_finite_above > lane_bad[l] ? not_finite_above : lane_bad[l];
            }
        for (int l = 0; k < n; ++k, ++l) {
            const C v = z[k];
            lane_max[l] = v > lane_max[l] ? v : lane_max[l];
            const C not_finite_above = v < math::infinity<C>() ? C(0) : C(1);
            lane_bad[l] = not_finite_above > lane_bad[l] ? not_finite_above : lane_bad[l];
        }
        C block_max = lane_max[0];
        for (int l = 1; l < logit_lanes; ++l) {
            block_max = lane_max[l] > block_max ? lane_max[l] : block_max;
            bad = lane_bad[l] > bad ? lane_bad[l] : bad;
        }
        bad = lane_bad[0] > bad ? lane_bad[0] : bad;
        const double m = math::new_max(st, static_cast<double>(block_max));
        if (m == -HUGE_VAL || bad != C(0)) continue; // nothing but -inf so far, or a NaN/+inf already seen
        const C mc = static_cast<C>(m);              // a z value: exact in C
        for (k = 0; k < n; ++k) {
            w[k] = math::softmax_weight(z[k], mc);
            mw[k] = math::softmax_moment(z[k], mc, w[k]);
        }
        double lane_s[logit_lanes] = {}, lane_u[logit_lanes] = {};
        k = 0;
        for (; k + logit_lanes <= n; k += logit_lanes)
            for (int l = 0; l < logit_lanes; ++l) {
                lane_s[l] += static_cast<double>(w[k + l]);
                lane_u[l] += static_cast<double>(mw[k + l]);
            }
        for (int l = 0; k < n; ++k, ++l) {
            lane_s[l] += static_cast<double>(w[k]);
            lane_u[l] += static_cast<double>(mw[k]);
        }
        double s = 0, u = 0;
        for (int l = 0; l < logit_lanes; ++l) s += lane_s[l], u += lane_u[l];
        st = math::add_block(st, m, s, u);
    }
    logit_row r;
    const C z_token = static_cast<C>(x[token]) / tau;
    if (bad != C(0)) {
        // The error path: find the first offending column (and whether the logit itself was finite). Without
        // validation the results are NaN, as the arithmetic would make them.
        for (index_t j = 0; j < vocab; ++j) {
            const C v = static_cast<C>(x[j]) / tau;
            if (!(v < math::infinity<C>())) {
                const double xv = static_cast<double>(x[j]);
                r.error = xv == xv && xv < HUGE_VAL ? logit_error::overflow : logit_error::bad_logit;
                r.column = j;
                r.value = xv;
                break;
            }
        }
        r.lse = r.logp = r.entropy = std::numeric_limits<double>::quiet_NaN();
        return r;
    }
    r.lse = math::log_sum_exp(st);
    r.logp = math::log_prob(static_cast<double>(z_token), st); // -inf for a banned token
    r.max = st.m;
    r.log_sum = ::log(st.s);
    r.entropy = math::softmax_entropy(st);
    if (z_token == -math::infinity<C>()) {
        r.error = logit_error::banned_token;
        r.column = token;
        r.value = -HUGE_VAL;
    }
    return r;
}

/// Backward of one unmasked row: g[j] = d loss / d x_j, written in place of x when g == x.
template <class T>
GRPO_CPU_HOT_LOOP void logits_row_backward_impl(const T* x, T* g, index_t vocab, index_t token, double temperature,
                                                double lse_hi_d, double lse_lo_d, double entropy, double g_logp,
                                                double g_entropy) {
    using C = math_type_t<T>;
    const C tau = static_cast<C>(temperature);
    const C lse_hi = static_cast<C>(lse_hi_d), lse_lo = static_cast<C>(lse_lo_d);
    const C h = static_cast<C>(entropy), gl = static_cast<C>(g_logp), ge = static_cast<C>(g_entropy);
    // Block by block through local arrays (which the vectorizer handles; in place, a block is read before it is
    // written).
    alignas(64) C d[logit_block];
    for (index_t b = 0; b < vocab; b += logit_block) {
        const index_t n = std::min(logit_block, vocab - b);
        load_scaled(x + b, n, tau, d);
        for (index_t k = 0; k < n; ++k) d[k] = math::softmax_grad(d[k], lse_hi, lse_lo, h, gl, ge);
        if (token >= b && token < b + n) d[token - b] += gl; // the [j == y] g_logp term
        for (index_t k = 0; k < n; ++k) d[k] /= tau;
        for (index_t k = 0; k < n; ++k) g[b + k] = static_cast<T>(d[k]);
    }
}

// The AVX2 copies (backend/cpu/dispatch.hpp: same results bit for bit) and the functions that pick one.
#if GRPO_CPU_AVX2_DISPATCH
template <class T>
GRPO_AVX2_FUNCTION logit_row logits_row_forward_avx2(const T* x, index_t vocab, index_t token, double temperature) {
    return logits_row_forward_impl(x, vocab, token, temperature);
}
template <class T>
GRPO_AVX2_FUNCTION void logits_row_backward_avx2(const T* x, T* g, index_t vocab, index_t token, double temperature,
                                                 double lse_hi, double lse_lo, double entropy, double g_logp,
                                                 double g_entropy) {
    logits_row_backward_impl(x, g, vocab, token, temperature, lse_hi, lse_lo, entropy, g_logp, g_entropy);
}
#endif
template <class T>
logit_row logits_row_forward(const T* x, index_t vocab, index_t token, double temperature) {
#if GRPO_CPU_AVX2_DISPATCH
    if (use_avx2()) return logits_row_forward_avx2(x, vocab, token, temperature);
#endif
    return logits_row_forward_impl(x, vocab, token, temperature);
}
/// Backward of one unmasked row from the forward's lse. log p needs lse split into a part exact in the math type
/// and a small rest; past |lse| = 2^20 the rest could have lost log s to lse's own rounding, so the row's maximum
/// and log s are recomputed (one more read of that row: only for logits far beyond any model's range).
template <class T>
void logits_row_backward(const T* x, T* g, index_t vocab, index_t token, double temperature, double lse, double entropy,
                         double g_logp, double g_entropy) {
    using C = math_type_t<T>;
    double hi = static_cast<double>(static_cast<C>(lse)), lo = lse - hi;
    if (!(std::fabs(lse) <= 1048576.0)) {
        const logit_row r = logits_row_forward(x, vocab, token, temperature);
        hi = r.max;
        lo = r.log_sum;
    }
#if GRPO_CPU_AVX2_DISPATCH
    if (use_avx2())
        return logits_row_backward_avx2(x, g, vocab, token, temperature, hi, lo, entropy, g_logp, g_entropy);
#endif
    logits_row_backward_impl(x, g, vocab, token, temperature, hi, lo, entropy, g_logp, g_entropy);
}

/// Rows per task: about 64K logits each, so that small vocabularies still make tasks worth a thread.
inline index_t logit_rows_per_task(index_t vocab) {
    return std::max<index_t>(1, index_t(65536) / std::max<index_t>(1, vocab));
}

template <class T>
bool row_is_masked(const vector_view<const T>& mask, index_t i) {
    return mask.present() && mask[i] == T(0);
}
template <class T, class Token>
bool row_is_masked(const logits_inputs<T, Token>& in, index_t i) {
    return row_is_masked(in.mask, i);
}

/// Copies the per-row forward results (lse, logp, entropy: workspace arrays of `rows`) to the outputs present and
/// sums them over the unmasked rows.
template <class T>
logprob_stats write_forward_results(const logprob_outputs<T>& out, const vector_view<const T>& mask, index_t rows,
                                    const double* lse, const double* logp, const double* entropy) {
    logprob_stats st;
    for (index_t i = 0; i < rows; ++i) {
        if (out.logp.present()) out.logp[i] = static_cast<T>(logp[i]);
        if (out.entropy.present()) out.entropy[i] = static_cast<T>(entropy[i]);
        if (out.lse.present()) out.lse[i] = lse[i];
        if (row_is_masked(mask, i)) continue;
        st.rows += 1;
        st.logp_sum += logp[i];
        st.entropy_sum += entropy[i];
    }
    return st;
}

/// The grpo::error of an invalid row.
[[noreturn]] inline void raise_logit_error(const char* where, index_t row, const logit_row& r) {
    raise_logit_error(where, r.error, row, r.column, r.value);
}

/// Forward over every row. Results go to the workspace first (lse, logp, entropy, then the error code and
/// column of each row) so that a failed validation leaves the outputs untouched; the first invalid row in row
/// order is reported.
template <class T, class Token>
logprob_stats logprobs_from_logits(const exec::host& ex, const logits_inputs<T, Token>& in,
                                   const logprob_outputs<T>& out, const logprob_config& cfg, workspace& ws,
                                   const char* where) {
    const index_t rows = in.logits.rows(), vocab = in.logits.cols();
    const bool full = cfg.checks == validation::full;
    double* lse = ws.doubles(static_cast<std::size_t>(checked_mul(where, "logits rows", rows, 4)), where);
    double* logp = lse + rows;
    double* entropy = logp + rows;
    double* failed = entropy + rows; // the row's logit_error, 0 when valid
    parallel_for(ex, rows, logit_rows_per_task(vocab), [&](index_t first, index_t last) {
        for (index_t i = first; i < last; ++i) {
            logit_row r;
            if (!row_is_masked(in, i))
                r = logits_row_forward(in.logits.data() + i * in.logits.row_stride(), vocab,
                                       static_cast<index_t>(in.tokens[i]), cfg.temperature);
            lse[i] = r.lse;
            logp[i] = r.logp;
            entropy[i] = r.entropy;
            failed[i] = static_cast<double>(r.error);
        }
    });
    if (full)
        for (index_t i = 0; i < rows; ++i)
            if (failed[i] != 0) // read the row again for the message: the error path only
                raise_logit_error(where, i,
                                  logits_row_forward(in.logits.data() + i * in.logits.row_stride(), vocab,
                                                     static_cast<index_t>(in.tokens[i]), cfg.temperature));
    return write_forward_results(out, in.mask, rows, lse, logp, entropy);
}

/// validation::full of the backward, before anything is written: the per-row inputs of the unmasked rows are
/// finite, and their logits hold no NaN or +inf (one read, rows split over the pool; the first bad row in row
/// order is reported).
/// The per-row inputs of the backward (lse, grad_logp, and entropy with grad_entropy) are finite at unmasked rows.
template <class T>
void check_backward_rows(const char* where, const vector_view<const T>& mask, const logprob_grad_inputs<T>& grad) {
    const auto check_row_value = [&](logit_error e, double v, index_t i) {
        if (!(v - v == 0)) raise_logit_error(where, e, i, 0, v); // NaN or +-inf
    };
    for (index_t i = 0; i < grad.lse.size(); ++i) {
        if (row_is_masked(mask, i)) continue;
        check_row_value(logit_error::bad_lse, grad.lse[i], i);
        check_row_value(logit_error::bad_grad_logp, static_cast<double>(grad.grad_logp[i]), i);
        if (grad.grad_entropy.present()) {
            check_row_value(logit_error::bad_entropy, static_cast<double>(grad.entropy[i]), i);
            check_row_value(logit_error::bad_grad_entropy, static_cast<double>(grad.grad_entropy[i]), i);
        }
    }
}

template <class T, class Token>
void check_backward_values(const exec::host& ex, const char* where, const logits_inputs<T, Token>& in,
                           const logprob_grad_inputs<T>& grad, workspace& ws) {
    const index_t rows = in.logits.rows(), vocab = in.logits.cols();
    check_backward_rows(where, in.mask, grad);
    double* first_bad = ws.doubles(static_cast<std::size_t>(rows), where); // column, or -1
    parallel_for(ex, rows, logit_rows_per_task(vocab), [&](index_t first, index_t last) {
        for (index_t i = first; i < last; ++i) {
            first_bad[i] = -1;
            if (row_is_masked(in, i)) continue;
            const T* x = in.logits.data() + i * in.logits.row_stride();
            for (index_t j = 0; j < vocab; ++j)
                if (!(x[j] < std::numeric_limits<T>::infinity())) {
                    first_bad[i] = static_cast<double>(j);
                    break;
                }
        }
    });
    for (index_t i = 0; i < rows; ++i)
        if (first_bad[i] >= 0) {
            const index_t j = static_cast<index_t>(first_bad[i]);
            raise_logit_error(where, logit_error::bad_logit, i, j,
                              static_cast<double>(in.logits.data()[i * in.logits.row_stride() + j]));
        }
}

template <class T, class Token>
void logprobs_from_logits_backward(const exec::host& ex, const logits_inputs<T, Token>& in,
                                   const logprob_grad_inputs<T>& gin, const matrix_view<T>& grad_logits,
                                   const logprob_config& cfg) {
    const index_t rows = in.logits.rows(), vocab = in.logits.cols();
    parallel_for(ex, rows, logit_rows_per_task(vocab), [&](index_t first, index_t last) {
        for (index_t i = first; i < last; ++i) {
            T* g = grad_logits.data() + i * grad_logits.row_stride();
            if (row_is_masked(in, i)) {
                std::fill(g, g + vocab, T(0));
                continue;
            }
            const double ge = gin.grad_entropy.present() ? static_cast<double>(gin.grad_entropy[i]) : 0.0;
            const double h = gin.grad_entropy.present() ? static_cast<double>(gin.entropy[i]) : 0.0;
            logits_row_backward(in.logits.data() + i * in.logits.row_stride(), g, vocab,
                                static_cast<index_t>(in.tokens[i]), cfg.temperature, gin.lse[i], h,
                                static_cast<double>(gin.grad_logp[i]), ge);
        }
    });
}

} // namespace cpu
} // namespace detail
GRPO_NAMESPACE_END
