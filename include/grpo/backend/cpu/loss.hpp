// SPDX-License-Identifier: MIT
// CPU backend of the fused loss pass. Work is split by rows; each row's partial sums land in the workspace
// and are added in row order on one thread, so results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "../../exec.hpp"
#include "../../loss_types.hpp"
#include "../../workspace.hpp"

GRPO_NAMESPACE_BEGIN
namespace detail {
namespace cpu {

/// Per-row partial results, stored as consecutive doubles in the workspace.
struct row_partials {
    double policy, kl, kl_sum, tokens, clip_low, clip_high, dual, ratio_sum, ratio_min, ratio_max, neg_log_ratio;
};
constexpr std::size_t row_partials_doubles = sizeof(row_partials) / sizeof(double);

template <class T>
struct loss_views {
    matrix_view<const T> logp, old_logp, ref_logp, adv, mask;
    vector_view<const std::int64_t> lengths;
    matrix_view<T> grad, per_token;
};

/// Tokens [0, valid_end(i)) may count; a mask may remove more of them.
template <class T>
index_t valid_end(const loss_views<T>& v, index_t i) {
    const index_t cols = v.logp.cols();
    return v.lengths.present() ? std::min<index_t>(cols, static_cast<index_t>(v.lengths[i])) : cols;
}
template <class T>
bool masked_out(const loss_views<T>& v, index_t i, index_t t) {
    return v.mask.present() && v.mask(i, t) == T(0);
}

/// First problem of row i as (column, argument), or column -1. Checks mask values and, at unmasked tokens,
/// finiteness of every input the loss reads. Also returns the row's token count.
struct row_check {
    index_t column = -1;
    const char* argument = nullptr;
    double tokens = 0;
};
template <class T>
row_check check_row(const loss_views<T>& v, index_t i, bool check_values, bool need_ref) {
    row_check r;
    const index_t end = valid_end(v, i);
    for (index_t t = 0; t < end; ++t) {
        if (v.mask.present()) {
            const T m = v.mask(i, t);
            if (check_values && m != T(0) && m != T(1)) return {t, "mask", 0};
            if (m == T(0)) continue;
        }
        r.tokens += 1;
        if (!check_values) continue;
        if (!std::isfinite(v.logp(i, t))) return {t, "logp", 0};
        if (v.old_logp.present() && !std::isfinite(v.old_logp(i, t))) return {t, "old_logp", 0};
        if (need_ref && !std::isfinite(v.ref_logp(i, t))) return {t, "ref_logp", 0};
        if (!std::isfinite(v.adv(i, t))) return {t, "advantages", 0};
    }
    return r;
}

/// Throws the error for the first bad value of row i, found by check_row.
template <class T>
[[noreturn]] void raise_bad_value(const loss_views<T>& v, index_t i, const row_check& c) {
    const std::string arg = c.argument;
    const index_t t = c.column;
    const std::string at = " at (" + to_str(i) + ", " + to_str(t) + ")";
    if (arg == "mask")
        raise_argument(errc::invalid_value, "loss_and_grad", "mask", "values 0 or 1",
                       num_str(static_cast<double>(v.mask(i, t))) + at);
    const matrix_view<const T>& m = arg == "logp"       ? v.logp
                                    : arg == "old_logp" ? v.old_logp
                                    : arg == "ref_logp" ? v.ref_logp
                                                        : v.adv;
    raise_argument(errc::non_finite, "loss_and_grad", c.argument, "finite values at unmasked tokens",
                   num_str(static_cast<double>(m(i, t))) + at);
}

/// The fused pass over one row: loss terms, gradient, diagnostics.
template <class T>
void loss_row(const loss_views<T>& v, const loss_params& p, double total_tokens, index_t i, row_partials& out) {
    using C = double;
    const index_t cols = v.logp.cols();
    const index_t end = valid_end(v, i);
    const bool has_old = v.old_logp.present();
    const bool sequence = p.ratio != ratio_level::token;

    // Sweep 1 (row-local, stays in cache): token count, and the mean log-ratio for sequence-level ratios.
    C n = 0, log_ratio_sum = 0;
    if (v.mask.present() || sequence) {
        for (index_t t = 0; t < end; ++t) {
            if (masked_out(v, i, t)) continue;
            n += 1;
            if (sequence && has_old) log_ratio_sum += C(v.logp(i, t)) - C(v.old_logp(i, t));
        }
    } else {
        n = static_cast<C>(end);
    }
    const C w = p.loss_scale * math::row_weight<C>(p.agg, n, total_tokens, p.sequences, p.constant_length);

    // Sequence ratio s_i = exp(clamp(mean_t log r)); ds/dlogp_t = s * clamp' / n (TRL/GSPO) for every token.
    C s = 1, ds_per_token = 0, cross_grad = 0;
    if (sequence && n > 0) {
        const math::clamped<C> lr = math::clamp_symmetric(log_ratio_sum / n, p.log_ratio_clamp);
        s = math::exp(lr.value);
        ds_per_token = s * lr.grad;
        if (p.ratio == ratio_level::sequence) {
            // Sweep 2: dL/ds_i = sum_t w * dloss_t/ds, spread back over the tokens through the mean.
            C dloss_ds = 0;
            for (index_t t = 0; t < end; ++t) {
                if (masked_out(v, i, t)) continue;
                dloss_ds += math::clipped_surrogate<C>(s, C(v.adv(i, t)), p.clip).dloss_dratio;
            }
            cross_grad = w * dloss_ds * ds_per_token / n;
        }
    }

    row_partials acc{0, 0, 0, 0, 0, 0, 0, 0, std::numeric_limits<double>::infinity(),
                     -std::numeric_limits<double>::infinity(), 0};
    const bool write_grad = v.grad.present(), write_loss = v.per_token.present();
    for (index_t t = 0; t < cols; ++t) {
        if (t >= end || masked_out(v, i, t)) {
            if (write_grad) v.grad(i, t) = T(0);
            if (write_loss) v.per_token(i, t) = T(0);
            continue;
        }
        const C logp = v.logp(i, t);
        const C log_ratio = has_old ? logp - C(v.old_logp(i, t)) : C(0);
        C ratio, dratio_dlogp;
        if (sequence) {
            ratio = s;
            dratio_dlogp = p.ratio == ratio_level::sequence_token ? ds_per_token : C(0);
        } else {
            const math::clamped<C> lr = math::clamp_symmetric(log_ratio, p.log_ratio_clamp);
            ratio = has_old ? math::exp(lr.value) : C(1);
            dratio_dlogp = ratio * lr.grad; // on-policy: d exp(logp - sg(logp)) = 1
        }
        const math::surrogate_term<C> sur = math::clipped_surrogate<C>(ratio, C(v.adv(i, t)), p.clip);
        math::kl_term<C> kl{0, 0};
        if (p.beta != 0)
            kl = math::kl_penalty<C>(p.kl, logp, C(v.ref_logp(i, t)), p.kl_log_ratio_clamp, p.kl_value_clamp,
                                     p.kl_straight_through);
        if (write_grad)
            v.grad(i, t) = static_cast<T>(w * (sur.dloss_dratio * dratio_dlogp + p.beta * kl.grad) + cross_grad);
        if (write_loss) v.per_token(i, t) = static_cast<T>(sur.loss + p.beta * kl.value);
        acc.policy += sur.loss;
        acc.kl_sum += kl.value;
        acc.tokens += 1;
        acc.clip_low += sur.clipped_low;
        acc.clip_high += sur.clipped_high;
        acc.dual += sur.dual_clipped;
        acc.ratio_sum += ratio;
        acc.ratio_min = std::min(acc.ratio_min, ratio);
        acc.ratio_max = std::max(acc.ratio_max, ratio);
        acc.neg_log_ratio -= log_ratio;
    }
    // Store the row's share already weighted, so the final reduction is a plain ordered sum.
    acc.policy *= w;
    acc.kl = acc.kl_sum * w;
    out = acc;
}

/// Rows per task: enough work per task to amortize scheduling, independent of the thread count.
inline index_t row_grain(index_t cols) { return std::max<index_t>(1, 16384 / std::max<index_t>(1, cols)); }

template <class T>
loss_stats loss_and_grad(const exec::host& ex, const loss_views<T>& v, const loss_params& p, bool check_values,
                         double global_tokens, workspace& ws) {
    const index_t rows = v.logp.rows();
    double* scratch = ws.doubles(static_cast<std::size_t>(rows) * row_partials_doubles);
    const index_t grain = row_grain(v.logp.cols());

    // Pre-pass, only when needed: value checks (before any write) and/or the local token count.
    double local_tokens = -1;
    const bool need_count = p.agg == aggregation::token_mean && global_tokens <= 0;
    if (check_values || need_count) {
        const bool need_ref = p.beta != 0;
        parallel_for(ex, rows, grain, [&](index_t first, index_t last) {
            for (index_t i = first; i < last; ++i) {
                const row_check c = check_row(v, i, check_values, need_ref);
                scratch[2 * i] = static_cast<double>(c.column);
                scratch[2 * i + 1] = c.tokens;
            }
        });
        local_tokens = 0;
        for (index_t i = 0; i < rows; ++i) {
            if (scratch[2 * i] >= 0) raise_bad_value(v, i, check_row(v, i, true, need_ref));
            local_tokens += scratch[2 * i + 1];
        }
        if (global_tokens > 0 && global_tokens < local_tokens)
            raise_argument(errc::invalid_value, "loss_and_grad", "config.global_token_count",
                           "0 (local) or at least this call's unmasked tokens (" + num_str(local_tokens) + ")",
                           num_str(global_tokens));
    }
    const double total_tokens = global_tokens > 0 ? global_tokens : local_tokens;

    auto* partials = reinterpret_cast<row_partials*>(scratch);
    parallel_for(ex, rows, grain, [&](index_t first, index_t last) {
        for (index_t i = first; i < last; ++i) loss_row(v, p, total_tokens, i, partials[i]);
    });

    loss_stats st;
    double kl_sum = 0, clip_low = 0, clip_high = 0, dual = 0, ratio_sum = 0, neg_log_ratio = 0;
    double ratio_min = std::numeric_limits<double>::infinity(), ratio_max = -ratio_min;
    for (index_t i = 0; i < rows; ++i) {
        const row_partials& r = partials[i];
        st.policy_loss += r.policy;
        st.kl_loss += r.kl;
        st.token_count += r.tokens;
        kl_sum += r.kl_sum;
        clip_low += r.clip_low;
        clip_high += r.clip_high;
        dual += r.dual;
        ratio_sum += r.ratio_sum;
        neg_log_ratio += r.neg_log_ratio;
        ratio_min = std::min(ratio_min, r.ratio_min);
        ratio_max = std::max(ratio_max, r.ratio_max);
    }
    st.loss = st.policy_loss + p.beta * st.kl_loss;
    if (st.token_count > 0) {
        const double n = st.token_count;
        st.clip_fraction_low = clip_low / n;
        st.clip_fraction_high = clip_high / n;
        st.clip_fraction_region = (clip_low + clip_high) / n;
        st.dual_clip_fraction = dual / n;
        st.ratio_mean = ratio_sum / n;
        st.ratio_min = ratio_min;
        st.ratio_max = ratio_max;
        st.approx_kl = neg_log_ratio / n;
        st.kl_mean = kl_sum / n;
    }
    return st;
}

} // namespace cpu
} // namespace detail
GRPO_NAMESPACE_END
