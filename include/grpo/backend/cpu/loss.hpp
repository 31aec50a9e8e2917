// SPDX-License-Identifier: MIT
// CPU backend of the fused loss pass. Work is split by rows; each row's partial sums land in the workspace
// and are added in row order on one thread, so results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "../../core/exec.hpp"
#include "dispatch.hpp"
#include "../../types/loss_record.hpp"
#include "../../core/workspace.hpp"

GRPO_NAMESPACE_BEGIN
namespace detail {
namespace cpu {

/// Doubles per row of scratch: the row's loss_partials (the pre-pass uses two of them first).
constexpr std::size_t row_partials_doubles = sizeof(loss_partials) / sizeof(double);

template <class T>
struct loss_views {
    matrix_view<const T> logp, old_logp, ref_logp, adv, mask;
    vector_view<const std::int64_t> lengths;
    matrix_view<T> grad, per_token;
    matrix_view<const T> samp;    ///< sampling_logp (read only by the sampling corrections)
    matrix_view<T> ratio;         ///< optional per-token ratio output
    matrix_view<const T> entropy; ///< per-token entropies (read only when a term uses them)
    matrix_view<T> grad_entropy;  ///< optional dLoss/dH output
};

/// The backend's view of a call's inputs and outputs.
template <class T>
loss_views<T> views_of(const loss_inputs<T, host_space>& in, const loss_outputs<T, host_space>& out) {
    return {in.logp,       in.old_logp,        in.ref_logp,      in.advantages, in.mask,    in.lengths,
            out.grad_logp, out.per_token_loss, in.sampling_logp, out.ratio,     in.entropy, out.grad_entropy};
}

/// Tokens [0, valid_end(i)) may count; a mask may remove more of them.
template <class T>
index_t valid_end(const loss_views<T>& v, index_t i) {
    const index_t cols = v.logp.cols();
    return v.lengths.present() ? std::min<index_t>(cols, static_cast<index_t>(v.lengths[i])) : cols;
}

/// What check_row found in a row.
struct row_check {
    loss_error code = loss_error::none;
    index_t column = 0;
    double tokens = 0;
};
/// The unmasked tokens of row i: its valid tokens whose mask is non-zero. An integer count in a branch-free loop
/// (it vectorizes); the count is exact, so it equals check_row's.
template <class T>
GRPO_CPU_HOT_LOOP double unmasked_tokens(const loss_views<T>& v, index_t i) {
    const index_t end = valid_end(v, i);
    if (!v.mask.present()) return static_cast<double>(end);
    const T* m = v.mask.row_data(i);
    const index_t stride = v.mask.col_stride();
    index_t n = 0;
    if (stride == 1)
        for (index_t t = 0; t < end; ++t) n += m[t] != T(0);
    else
        for (index_t t = 0; t < end; ++t) n += m[t * stride] != T(0);
    return static_cast<double>(n);
}

/// 0 for +-inf and NaN, 1 otherwise, from the exponent bits: a test that vectorizes and that -ffinite-math-only
/// cannot fold away (unsigned, so that the scan below combines them with bitwise operators).
template <class T>
unsigned finite_bits(T x) {
    using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    static_assert(sizeof(T) == sizeof(U), "finite_bits: float or double");
    constexpr U exponent = sizeof(T) == 4 ? U(0x7f800000u) : U(0x7ff0000000000000ull);
    U bits;
    std::memcpy(&bits, &x, sizeof bits);
    return static_cast<unsigned>((bits & exponent) != exponent);
}

/// check_row's verdict on a row whose arrays are contiguous, in one branch-free pass that vectorizes: true, with
/// the row's token count, when the row has no problem; false when check_row must look for the first one (or the
/// layout is not contiguous). Absent arrays are stood in for by logp (finite wherever logp is checked anyway).
template <class T>
GRPO_CPU_HOT_LOOP bool row_values_clean(const loss_views<T>& v, index_t i, bool need_ref, bool need_samp,
                                        bool need_entropy, double& tokens) {
    const auto unit = [](const matrix_view<const T>& m, bool used) { return !used || m.col_stride() == 1; };
    const index_t adv_stride = v.adv.col_stride();
    if (!unit(v.logp, true) || !unit(v.old_logp, v.old_logp.present()) || !unit(v.ref_logp, need_ref) ||
        !unit(v.mask, v.mask.present()) || !unit(v.samp, need_samp) || !unit(v.entropy, need_entropy) ||
        (adv_stride != 0 && adv_stride != 1))
        return false;
    const index_t end = valid_end(v, i);
    const T* lp = v.logp.row_data(i);
    const T* old = v.old_logp.present() ? v.old_logp.row_data(i) : lp;
    const T* ref = need_ref ? v.ref_logp.row_data(i) : lp;
    const T* samp = need_samp ? v.samp.row_data(i) : lp;
    const T* ent = need_entropy ? v.entropy.row_data(i) : lp;
    const T* adv = adv_stride == 1 ? v.adv.row_data(i) : lp; // broadcast: its one value is checked below
    const T* mask = v.mask.present() ? v.mask.row_data(i) : nullptr;
    unsigned bad = 0;
    index_t n = 0;
    for (index_t t = 0; t < end; ++t) {
        const T m = mask != nullptr ? mask[t] : T(1);
        const unsigned on = static_cast<unsigned>(m != T(0)), not_one = static_cast<unsigned>(m != T(1));
        const unsigned ok = finite_bits(lp[t]) & finite_bits(old[t]) & finite_bits(ref[t]) & finite_bits(adv[t]) &
                            finite_bits(samp[t]) & finite_bits(ent[t]);
        n += on;
        bad |= on & (not_one | (ok ^ 1u));
    }
    if (adv_stride == 0 && n > 0 && finite_bits(v.adv(i, 0)) == 0) bad = 1;
    tokens = static_cast<double>(n);
    return bad == 0;
}

// AVX2 copies of the two scans (compares and integer counts only: the same results as the baseline's).
#if GRPO_CPU_AVX2_DISPATCH
template <class T>
GRPO_AVX2_FUNCTION double unmasked_tokens_avx2(const loss_views<T>& v, index_t i) {
    return unmasked_tokens(v, i);
}
template <class T>
GRPO_AVX2_FUNCTION bool row_values_clean_avx2(const loss_views<T>& v, index_t i, bool need_ref, bool need_samp,
                                              bool need_entropy, double& tokens) {
    return row_values_clean(v, i, need_ref, need_samp, need_entropy, tokens);
}
#endif

/// First problem of row i (code none if there is none) and its column; also the row's token count. Checks mask
/// values and, at unmasked tokens, finiteness of every input the loss reads, in loss_error's order. Without
/// check_values, only the count.
template <class T>
row_check check_row(const loss_views<T>& v, index_t i, bool check_values, bool need_ref, bool need_samp,
                    bool need_entropy) {
    double clean_tokens = 0;
#if GRPO_CPU_AVX2_DISPATCH
    if (use_avx2()) {
        if (!check_values) return {loss_error::none, 0, unmasked_tokens_avx2(v, i)};
        if (row_values_clean_avx2(v, i, need_ref, need_samp, need_entropy, clean_tokens))
            return {loss_error::none, 0, clean_tokens};
    }
#endif
    if (!check_values) return {loss_error::none, 0, unmasked_tokens(v, i)};
    if (row_values_clean(v, i, need_ref, need_samp, need_entropy, clean_tokens))
        return {loss_error::none, 0, clean_tokens};
    row_check r;
    const index_t end = valid_end(v, i);
    for (index_t t = 0; t < end; ++t) {
        if (v.mask.present()) {
            const T m = v.mask(i, t);
            if (check_values && m != T(0) && m != T(1)) return {loss_error::bad_mask, t, 0};
            if (m == T(0)) continue;
        }
        r.tokens += 1;
        if (!check_values) continue;
        if (!std::isfinite(v.logp(i, t))) return {loss_error::bad_logp, t, 0};
        if (v.old_logp.present() && !std::isfinite(v.old_logp(i, t))) return {loss_error::bad_old_logp, t, 0};
        if (need_ref && !std::isfinite(v.ref_logp(i, t))) return {loss_error::bad_ref_logp, t, 0};
        if (!std::isfinite(v.adv(i, t))) return {loss_error::bad_advantages, t, 0};
        if (need_samp && !std::isfinite(v.samp(i, t))) return {loss_error::bad_sampling_logp, t, 0};
        if (need_entropy && !std::isfinite(v.entropy(i, t))) return {loss_error::bad_entropy, t, 0};
    }
    return r;
}

/// The error record of the problem check_row found in row i.
template <class T>
loss_value_error bad_value_at(const loss_views<T>& v, index_t i, const row_check& c) {
    const matrix_view<const T>& m = c.code == loss_error::bad_mask            ? v.mask
                                    : c.code == loss_error::bad_logp          ? v.logp
                                    : c.code == loss_error::bad_old_logp      ? v.old_logp
                                    : c.code == loss_error::bad_ref_logp      ? v.ref_logp
                                    : c.code == loss_error::bad_sampling_logp ? v.samp
                                    : c.code == loss_error::bad_entropy       ? v.entropy
                                                                              : v.adv;
    return {c.code, static_cast<std::int64_t>(i), static_cast<std::int64_t>(c.column), 0,
            static_cast<double>(m(i, c.column))};
}

/// Column access with a stride known at compile time (1 = contiguous, 0 = broadcast) or at run time (-1).
template <int Static>
struct column_stride {
    index_t runtime;
    index_t operator()(index_t t) const { return Static >= 0 ? t * Static : t * runtime; }
};

/// Column strides of every array of a row. Tok/Adv = -1: known at run time.
template <int Tok, int Adv>
struct row_layout {
    column_stride<Tok> lp, old, ref, mask, grad, per_token, samp, ratio, ent, gent;
    column_stride<Adv> adv;
};

/// How much of a call's configuration the row pass fixes at compile time: `plain` (ppo_clip, token ratio, k3,
/// no clamp, delta, dual clip or extra: is_plain), `lean` (ppo_clip with any ratio and clip option and k3 with
/// any clamps, but no other estimator, sampling correction, off-policy mask, bias-corrected KL or entropy input:
/// verl's defaults) or `full` (everything read at run time).
enum class row_pass { plain, lean, full };

/// Tokens per block of the main sweep: per-token results go to small stack arrays, written by a loop the
/// compiler can vectorize, and are then summed in double in a fixed lane order (deterministic, accurate).
constexpr index_t token_block = 256;
constexpr index_t sum_lanes = 8;

/// sum_k x[k] for k < n in double, 8 independent lanes then lanes in order: same result on every run.
template <class C>
double lane_sum(const C* x, index_t n) {
    double lanes[sum_lanes] = {0, 0, 0, 0, 0, 0, 0, 0};
    index_t k = 0;
    for (; k + sum_lanes <= n; k += sum_lanes)
        for (index_t l = 0; l < sum_lanes; ++l) lanes[l] += static_cast<double>(x[k + l]);
    for (; k < n; ++k) lanes[k % sum_lanes] += static_cast<double>(x[k]);
    double total = 0;
    for (index_t l = 0; l < sum_lanes; ++l) total += lanes[l];
    return total;
}

/// min_k x[k] (Max = false) or max_k x[k] (Max = true) for k < n, folded into `acc`, with 8 independent lanes
/// so that it vectorizes (a serial std::min chain does not); min and max are exact, so the lanes change nothing.
template <bool Max, class C>
double lane_extreme(const C* x, index_t n, double acc) {
    C lanes[sum_lanes];
    for (index_t l = 0; l < sum_lanes; ++l) lanes[l] = static_cast<C>(acc);
    index_t k = 0;
    for (; k + sum_lanes <= n; k += sum_lanes)
        for (index_t l = 0; l < sum_lanes; ++l) {
            const C v = x[k + l];
            lanes[l] = Max ? (v > lanes[l] ? v : lanes[l]) : (v < lanes[l] ? v : lanes[l]);
        }
    for (; k < n; ++k) lanes[0] = Max ? (x[k] > lanes[0] ? x[k] : lanes[0]) : (x[k] < lanes[0] ? x[k] : lanes[0]);
    for (index_t l = 0; l < sum_lanes; ++l) {
        const double v = static_cast<double>(lanes[l]);
        acc = Max ? (v > acc ? v : acc) : (v < acc ? v : acc);
    }
    return acc;
}


/// The fused pass over one row: iteration and reduction only; every token's loss, gradient and flags come from
/// math::token_loss (the CUDA kernel calls the same function). Per-token math runs in the input precision T
/// (fp32 math for fp32 inputs, as torch does), every sum in double.
/// Absent inputs are replaced by stand-ins that give the right numbers without branches in the loop:
/// no old_logp -> old = logp (ratio exp(0) = 1, d ratio/d logp = 1: the on-policy exp(logp - sg(logp)));
/// no mask -> a row of ones (`ones`, contiguous); beta == 0 -> the KL is skipped (WithKL = false).
/// K: the objective, fixed at compile time so that the token loop vectorizes. Pass: how much of the
/// configuration is fixed at compile time (row_pass_of).
template <class T, policy_objective K, bool WithKL, class Layout, row_pass Pass = row_pass::full>
GRPO_CPU_HOT_LOOP void loss_row_impl(const loss_views<T>& v, const T* ones, const loss_params& p, double total_tokens,
                                     index_t i, loss_partials& out, const Layout& L) {
    using C = T;
    constexpr bool Plain = Pass == row_pass::plain;
    constexpr bool Extras = Pass == row_pass::full; // corrections, masks, entropies, selections
    const index_t cols = v.logp.cols();
    const index_t end = valid_end(v, i);
    const T* lp = v.logp.row_data(i);
    const T* old = v.old_logp.present() ? v.old_logp.row_data(i) : lp;
    const T* ref = WithKL ? v.ref_logp.row_data(i) : lp;
    const T* adv = v.adv.row_data(i);
    const T* mask = v.mask.present() ? v.mask.row_data(i) : ones;
    T* grad = v.grad.present() ? v.grad.row_data(i) : nullptr;
    T* per_token = v.per_token.present() ? v.per_token.row_data(i) : nullptr;
    T* ratio_out = v.ratio.present() ? v.ratio.row_data(i) : nullptr;
    T* gent_out = v.grad_entropy.present() ? v.grad_entropy.row_data(i) : nullptr;
    const T* ent = p.entropy_given ? v.entropy.row_data(i) : lp; // stand-in: not used (entropy_given false)
    const T* samp = v.samp.present() ? v.samp.row_data(i) : old; // stand-in: log rho = 0 (not read then)
    const std::int64_t row_flat = static_cast<std::int64_t>(i) * static_cast<std::int64_t>(cols);
    const bool log_ratio_sum = !Plain && p.row_log_ratio_sum(), sampling_sum = Extras && p.row_sampling_sum();
    const bool token_sampling = Extras && p.token_sampling();
    constexpr bool objective_sum = math::has_row_term<K>;
    const math::objective_params<C> call_objective = call_objective_params<C>(p);
    const math::correction_params<C> correction{p.token.correction.mode, C(p.token.correction.ratio_min),
                                                C(p.token.correction.ratio_max)};

    // Sweep 1 (row-local, stays in cache): token count, and the row sums the row's constants need.
    row_sums sums;
    if (log_ratio_sum || sampling_sum || objective_sum) {
        alignas(64) C count[token_block], lr[token_block], slr[token_block], obj[token_block];
        for (index_t t0 = 0; t0 < end; t0 += token_block) {
            const index_t nb = std::min(token_block, end - t0);
            for (index_t k = 0; k < nb; ++k) {
                const index_t t = t0 + k;
                const bool valid = mask[L.mask(t)] != T(0);
                // Loads are unconditional so the loop vectorizes; masked values never reach a sum.
                const C d = C(lp[L.lp(t)] - old[L.old(t)]);
                count[k] = math::select(valid, C(1), C(0));
                lr[k] = math::select(valid, d, C(0));
            }
            sums.tokens += lane_sum(count, nb);
            if (log_ratio_sum) sums.log_ratio += lane_sum(lr, nb);
            if (sampling_sum) {
                for (index_t k = 0; k < nb; ++k) {
                    const index_t t = t0 + k;
                    const C d = C(old[L.old(t)] - samp[L.samp(t)]);
                    slr[k] = math::select(mask[L.mask(t)] != T(0), d, C(0));
                }
                sums.sampling_log_ratio += lane_sum(slr, nb);
            }
            if constexpr (objective_sum) {
                for (index_t k = 0; k < nb; ++k) {
                    const index_t t = t0 + k;
                    const bool valid = mask[L.mask(t)] != T(0);
                    const C d = math::select(valid, C(lp[L.lp(t)] - old[L.old(t)]), C(0));
                    const C a = math::select(valid, C(adv[L.adv(t)]), C(0));
                    const C log_w =
                        token_sampling ? math::log(math::sampling_weight(
                                             correction, math::select(valid, C(old[L.old(t)] - samp[L.samp(t)]), C(0))))
                                       : C(0);
                    obj[k] = math::select(valid, math::objective_row_term<K>(call_objective, d, a, log_w), C(0));
                }
                sums.objective += lane_sum(obj, nb);
            }
        }
    } else {
        sums.tokens = unmasked_tokens(v, i); // the count alone: an integer loop over the mask
    }
    const double n = sums.tokens;
    const row_setup rs = make_row_setup(p, sums, total_tokens);
    const double w = rs.weight;

    math::token_params<C> tp = row_token_params<C>(p, rs, 0.0);
    if (Plain) { // ppo_clip, token ratio, k3, no clamps, delta, dual clip or corrections: constants that fold away
        tp.objective.clip.delta = std::numeric_limits<C>::infinity();
        tp.objective.clip.dual_c = C(0);
        tp.log_ratio_clamp = C(0);
        tp.kl = kl_estimator::k3;
        tp.kl_input_clamp = tp.kl_value_clamp = C(0);
        tp.kl_straight_through = false;
        tp.kl_bias_correction = false;
        tp.correction.mode = sampling_correction::none;
        tp.sequence = false;
        tp.sequence_ratio = C(1);
        tp.sequence_dratio = C(0);
        tp.row_sampling_weight = C(1);
        tp.row_off_policy = false;
        tp.entropy_given = false;
        tp.entropy_coef = C(0);
        tp.entropy_threshold = -std::numeric_limits<C>::infinity();
    }
    if (!Extras) { // no correction, mask, entropy or selection: their terms fold away
        tp.kl_bias_correction = false;
        tp.correction.mode = sampling_correction::none;
        tp.row_sampling_weight = C(1);
        tp.row_off_policy = false;
        tp.entropy_given = false;
        tp.entropy_coef = C(0);
        tp.entropy_threshold = -std::numeric_limits<C>::infinity();
        // k3 (with any clamps: verl's low_var_kl), the estimator every peer defaults to: the others' formulas
        // fold away (is_lean sends k1, k2, abs and straight-through to the full pass).
        tp.kl = kl_estimator::k3;
        tp.kl_straight_through = false;
    }

    // The token-level correction weights of a block (math::sampling_weight), computed only when that
    // correction is on: its exp stays out of every other configuration's token loop.
    alignas(64) C isw[token_block];
    const auto fill_sampling_weights = [&](index_t t0, index_t nb) {
        // (token_sampling in the loop condition, not an early return: nvcc calls a loop after a constant
        // return unreachable when it compiles this pass into a .cu file)
        for (index_t k = 0; token_sampling && k < nb; ++k) {
            const index_t t = t0 + k;
            const bool valid = mask[L.mask(t)] != T(0);
            const C x = math::select(valid, C(old[L.old(t)] - samp[L.samp(t)]), C(0));
            isw[k] = math::sampling_weight(tp.correction, x);
        }
    };
    if (Extras && !token_sampling) std::fill(isw, isw + token_block, C(1));

    // One token's inputs. Loads are unconditional (so the loops vectorize); masked values are replaced by harmless
    // ones before any arithmetic, so NaN or Inf there never reaches a result.
    struct token_inputs {
        bool valid;
        C logp, old, ref, adv, entropy;
    };
    const auto load = [&](index_t t) {
        const bool valid = mask[L.mask(t)] != T(0);
        return token_inputs{valid,
                            math::select(valid, C(lp[L.lp(t)]), C(0)),
                            math::select(valid, C(old[L.old(t)]), C(0)),
                            WithKL ? math::select(valid, C(ref[L.ref(t)]), C(0)) : C(0),
                            math::select(valid, C(adv[L.adv(t)]), C(0)),
                            Extras ? math::select(valid, C(ent[L.ent(t)]), C(0)) : C(0)};
    };

    // Sweep 2, ratio_level::sequence: dL/ds_i = sum_t w * dloss_t/ds, spread back over the tokens (the mean).
    if (!Plain && p.ratio == ratio_level::sequence && n > 0) {
        alignas(64) C d[token_block];
        double dloss_ds = 0;
        for (index_t t0 = 0; t0 < end; t0 += token_block) {
            const index_t nb = std::min(token_block, end - t0);
            fill_sampling_weights(t0, nb);
            for (index_t k = 0; k < nb; ++k) {
                const token_inputs in = load(t0 + k);
                d[k] = math::select(in.valid,
                                    math::sequence_sensitivity<K, WithKL>(tp, in.logp, in.ref, in.adv,
                                                                          Extras ? isw[k] : C(1), in.entropy),
                                    C(0));
            }
            dloss_ds += lane_sum(d, nb);
        }
        tp.sequence_term = C(math::sequence_gradient(w, dloss_ds, rs.sequence, rs.sequence_count));
    }

    constexpr C inf = std::numeric_limits<C>::infinity();
    alignas(64) C pol[token_block], kl[token_block], ratio[token_block], neg_lr[token_block], gbuf[token_block],
        lbuf[token_block], sw[token_block], hsum[token_block], hgrad[token_block];
    // Per-slot running minima, maxima and flag counts (slot k collects tokens t0 + k of every block), updated
    // element-wise in the token loop and reduced once per row rather than once per block. Min and max are exact and
    // a slot's count stays an integer below 2^24 (flushed every flush_blocks blocks), so the results are the bits
    // a per-block reduction gives.
    constexpr index_t flush_blocks = index_t(1) << 16;
    const index_t slots = std::min(token_block, end);
    alignas(64) C run_min[token_block], run_max[token_block], low[token_block], high[token_block], dual[token_block],
        drop[token_block], hdrop[token_block], sel[token_block];
    std::fill(run_min, run_min + slots, inf);
    std::fill(run_max, run_max + slots, -inf);
    loss_partials acc = loss_partials::identity();
    const auto reset_counts = [&] {
        for (C* f : {low, high, dual}) std::fill(f, f + slots, C(0));
        if (Extras)
            for (C* f : {drop, hdrop, sel}) std::fill(f, f + slots, C(0));
    };
    const auto flush_counts = [&] {
        acc.clip_low += lane_sum(low, slots);
        acc.clip_high += lane_sum(high, slots);
        if (!Plain) acc.dual += lane_sum(dual, slots); // (no dual clip in the plain pass)
        if (Extras) {
            acc.off_policy_masked += lane_sum(drop, slots);
            acc.entropy_masked += lane_sum(hdrop, slots);
            if (math::selects_by_covariance(K)) acc.selected += lane_sum(sel, slots);
        }
        reset_counts();
    };
    reset_counts();
    index_t blocks = 0;
    for (index_t t0 = 0; t0 < end; t0 += token_block) {
        const index_t nb = std::min(token_block, end - t0);
        fill_sampling_weights(t0, nb);
        for (index_t k = 0; k < nb; ++k) {
            const token_inputs in = load(t0 + k);
            const bool valid = in.valid;
            const math::token_result<C> r = math::token_loss<K, WithKL>(
                tp, in.logp, in.old, in.ref, in.adv, Extras ? isw[k] : C(1), in.entropy, row_flat + t0 + k);
            gbuf[k] = math::select(valid, r.grad, C(0));
            lbuf[k] = math::select(valid, r.loss, C(0));
            pol[k] = math::select(valid, r.policy_loss, C(0));
            kl[k] = math::select(valid, r.kl, C(0));
            ratio[k] = math::select(valid, r.ratio, C(0));
            neg_lr[k] = r.neg_log_ratio; // 0 at masked tokens (x = o = 0 there)
            low[k] += math::select(valid, r.clipped_low, C(0));
            high[k] += math::select(valid, r.clipped_high, C(0));
            if (!Plain) dual[k] += math::select(valid, r.dual_clipped, C(0));
            // (A NaN ratio, possible under shapes_only, never compares below or above: it is ignored.)
            run_min[k] = math::select(valid & (r.ratio < run_min[k]), r.ratio, run_min[k]);
            run_max[k] = math::select(valid & (r.ratio > run_max[k]), r.ratio, run_max[k]);
            if (Extras) {
                sw[k] = math::select(valid, r.sampling_weight, C(0));
                drop[k] += math::select(valid, r.off_policy_masked, C(0));
                hsum[k] = math::select(valid, r.entropy, C(0));
                hdrop[k] += math::select(valid, r.entropy_masked, C(0));
                hgrad[k] = math::select(valid, r.grad_entropy, C(0));
                sel[k] += math::select(valid, r.selected, C(0));
            }
        }
        if (grad)
            for (index_t k = 0; k < nb; ++k) grad[L.grad(t0 + k)] = static_cast<T>(gbuf[k]);
        if (per_token)
            for (index_t k = 0; k < nb; ++k) per_token[L.per_token(t0 + k)] = static_cast<T>(lbuf[k]);
        if (ratio_out)
            for (index_t k = 0; k < nb; ++k) ratio_out[L.ratio(t0 + k)] = static_cast<T>(ratio[k]);
        if (gent_out)
            for (index_t k = 0; k < nb; ++k) gent_out[L.gent(t0 + k)] = Extras ? static_cast<T>(hgrad[k]) : T(0);
        acc.policy += lane_sum(pol, nb);
        if (WithKL) acc.kl_sum += lane_sum(kl, nb);
        acc.ratio_sum += lane_sum(ratio, nb);
        acc.neg_log_ratio += lane_sum(neg_lr, nb);
        if (Extras) {
            acc.sampling_weight += lane_sum(sw, nb);
            acc.entropy_sum += lane_sum(hsum, nb);
        }
        if (++blocks == flush_blocks) {
            flush_counts();
            blocks = 0;
        }
    }
    if (end > 0) {
        flush_counts();
        acc.ratio_min = lane_extreme<false>(run_min, slots, acc.ratio_min);
        acc.ratio_max = lane_extreme<true>(run_max, slots, acc.ratio_max);
    }
    for (index_t t = end; t < cols; ++t) {
        if (grad) grad[L.grad(t)] = T(0);
        if (per_token) per_token[L.per_token(t)] = T(0);
        if (ratio_out) ratio_out[L.ratio(t)] = T(0);
        if (gent_out) gent_out[L.gent(t)] = T(0);
    }
    acc.tokens = n;
    if (!Extras) acc.sampling_weight = n; // weight 1 at every token
    acc.weigh(w);
    out = acc;
}

// The FMA copies of the contiguous-row pass (backend/cpu/dispatch.hpp).
#if GRPO_CPU_AVX2_DISPATCH
template <class T, policy_objective K, bool WithKL, class Layout, row_pass Pass>
GRPO_AVX2_FMA_FUNCTION void loss_row_avx2_fma(const loss_views<T>& v, const T* ones, const loss_params& p,
                                              double total_tokens, index_t i, loss_partials& out, const Layout& L) {
    loss_row_impl<T, K, WithKL, Layout, Pass>(v, ones, p, total_tokens, i, out, L);
}
template <class T, policy_objective K, bool WithKL, class Layout, row_pass Pass>
GRPO_AVX512_FUNCTION void loss_row_avx512(const loss_views<T>& v, const T* ones, const loss_params& p,
                                          double total_tokens, index_t i, loss_partials& out, const Layout& L) {
    loss_row_impl<T, K, WithKL, Layout, Pass>(v, ones, p, total_tokens, i, out, L);
}
#endif

/// Contiguous rows: the widest version the CPU has (and cpu_version_limit allows), the baseline otherwise.
template <class T, policy_objective K, bool WithKL, row_pass Pass, class Layout>
void loss_row_contiguous(const loss_views<T>& v, const T* ones, const loss_params& p, double total_tokens, index_t i,
                         loss_partials& out, const Layout& L) {
#if GRPO_CPU_AVX2_DISPATCH
    switch (active_cpu_version()) {
    case cpu_version::avx512: return loss_row_avx512<T, K, WithKL, Layout, Pass>(v, ones, p, total_tokens, i, out, L);
    case cpu_version::avx2_fma:
        return loss_row_avx2_fma<T, K, WithKL, Layout, Pass>(v, ones, p, total_tokens, i, out, L);
    default: break; // (AVX2 without FMA: the baseline; no such x86-64 CPU is in use)
    }
#endif
    loss_row_impl<T, K, WithKL, Layout, Pass>(v, ones, p, total_tokens, i, out, L);
}

/// True for the configuration loss_row_impl<..., row_pass::plain> hard-codes (the KL settings matter only with KL).
inline bool is_plain(const loss_params& p) {
    const math::token_params<double>& t = p.token;
    const bool plain_kl = t.beta == 0 || (t.kl == kl_estimator::k3 && !t.kl_straight_through &&
                                          !(t.kl_input_clamp > 0) && !(t.kl_value_clamp > 0));
    const bool plain_corrections = t.correction.mode == sampling_correction::none && !p.off_policy_mask &&
                                   !t.kl_bias_correction && !p.entropy_given;
    return plain_kl && plain_corrections && t.objective.kind == policy_objective::ppo_clip &&
           p.ratio == ratio_level::token && !(t.log_ratio_clamp > 0) && !(t.objective.clip.dual_c > 0) &&
           t.objective.clip.delta == std::numeric_limits<double>::infinity();
}

/// True when the call uses none of the extras the lean pass leaves out, and its KL (if any) is k3 with or without
/// clamps (low_var_kl included).
inline bool is_lean(const loss_params& p) {
    const bool k3_kl = p.token.beta == 0 || (p.token.kl == kl_estimator::k3 && !p.token.kl_straight_through);
    return p.token.correction.mode == sampling_correction::none && !p.off_policy_mask && !p.entropy_given &&
           !p.token.kl_bias_correction && k3_kl;
}

/// Contiguous rows: picks the instantiation for the objective, the KL term (or not) and the pass.
template <class T, class Layout>
void loss_row_unit_stride(const loss_views<T>& v, const T* ones, const loss_params& p, double total_tokens, index_t i,
                          loss_partials& out, const Layout& L) {
    constexpr policy_objective ppo = policy_objective::ppo_clip;
    const bool kl = p.with_kl();
    if (is_plain(p))
        return kl ? loss_row_contiguous<T, ppo, true, row_pass::plain>(v, ones, p, total_tokens, i, out, L)
                  : loss_row_contiguous<T, ppo, false, row_pass::plain>(v, ones, p, total_tokens, i, out, L);
    if (p.token.objective.kind == ppo && is_lean(p))
        return kl ? loss_row_contiguous<T, ppo, true, row_pass::lean>(v, ones, p, total_tokens, i, out, L)
                  : loss_row_contiguous<T, ppo, false, row_pass::lean>(v, ones, p, total_tokens, i, out, L);
    if (p.token.objective.kind == ppo)
        return kl ? loss_row_contiguous<T, ppo, true, row_pass::full>(v, ones, p, total_tokens, i, out, L)
                  : loss_row_contiguous<T, ppo, false, row_pass::full>(v, ones, p, total_tokens, i, out, L);
    // The other objectives: the default target only. An AVX2 copy of every objective's pass (flattened) would
    // triple the compile time of every program that calls loss_and_grad.
    math::visit_objective(p.token.objective.kind, [&](auto k) {
        constexpr policy_objective K = decltype(k)::value;
        kl ? loss_row_impl<T, K, true, Layout, row_pass::full>(v, ones, p, total_tokens, i, out, L)
           : loss_row_impl<T, K, false, Layout, row_pass::full>(v, ones, p, total_tokens, i, out, L);
    });
}

/// Picks the instantiation: rows whose arrays are all contiguous (torch, numpy, ggml) get compile-time unit
/// strides, with the advantage broadcast (stride 0) or per token (stride 1), so the token loop vectorizes;
/// any other layout uses run-time strides per array.
template <class T>
void loss_row(const loss_views<T>& v, const T* ones, const loss_params& p, double total_tokens, index_t i,
              loss_partials& out) {
    const index_t s_lp = v.logp.col_stride();
    const index_t s_old = v.old_logp.present() ? v.old_logp.col_stride() : s_lp; // stand-in: logp itself
    const index_t s_ref = p.with_kl() ? v.ref_logp.col_stride() : s_lp;
    const index_t s_mask = v.mask.present() ? v.mask.col_stride() : 1; // stand-in: a row of ones
    const index_t s_grad = v.grad.present() ? v.grad.col_stride() : 1;
    const index_t s_per = v.per_token.present() ? v.per_token.col_stride() : 1;
    const index_t s_ratio = v.ratio.present() ? v.ratio.col_stride() : 1;
    const index_t s_ent = p.entropy_given ? v.entropy.col_stride() : s_lp; // stand-in: logp itself
    const index_t s_gent = v.grad_entropy.present() ? v.grad_entropy.col_stride() : 1;
    const index_t s_samp = v.samp.present() ? v.samp.col_stride() : s_old; // stand-in: old_logp
    const index_t s_adv = v.adv.col_stride();
    const bool contiguous = s_lp == 1 && s_old == 1 && s_ref == 1 && s_mask == 1 && s_grad == 1 && s_per == 1 &&
                            s_samp == 1 && s_ratio == 1 && s_ent == 1 && s_gent == 1;
    if (contiguous && (s_adv == 0 || s_adv == 1)) {
        const column_stride<1> u{1};
        if (s_adv == 0)
            return loss_row_unit_stride(v, ones, p, total_tokens, i, out,
                                        row_layout<1, 0>{u, u, u, u, u, u, u, u, u, u, {0}});
        return loss_row_unit_stride(v, ones, p, total_tokens, i, out,
                                    row_layout<1, 1>{u, u, u, u, u, u, u, u, u, u, u});
    }
    const row_layout<-1, -1> L{{s_lp},   {s_old},   {s_ref}, {s_mask}, {s_grad}, {s_per},
                               {s_samp}, {s_ratio}, {s_ent}, {s_gent}, {s_adv}};
    math::visit_objective(p.token.objective.kind, [&](auto k) {
        constexpr policy_objective K = decltype(k)::value;
        p.with_kl() ? loss_row_impl<T, K, true>(v, ones, p, total_tokens, i, out, L)
                    : loss_row_impl<T, K, false>(v, ones, p, total_tokens, i, out, L);
    });
}

/// The entropies of the unmasked tokens, in row order, into `h` (rows * cols doubles of scratch); returns how
/// many there are.
template <class T>
index_t unmasked_entropies(const loss_views<T>& v, double* h) {
    index_t n = 0;
    for (index_t i = 0; i < v.logp.rows(); ++i)
        for (index_t t = 0, end = valid_end(v, i); t < end; ++t)
            if (!v.mask.present() || v.mask(i, t) != T(0)) h[n++] = static_cast<double>(v.entropy(i, t));
    return n;
}

/// TRL's top-entropy threshold: torch.quantile(h[0..n), q), linear, reordering h. Selected with nth_element (the
/// k-th smallest value is the same whatever the algorithm or the order of h, so the result is deterministic and
/// a gather of every rank's entropies gives the one-process value). -infinity when n is 0; NaN entropies count
/// as the largest values.
inline double quantile_of(double* h, index_t n, double q) {
    if (n == 0) return -std::numeric_limits<double>::infinity();
    const math::quantile_position at = math::quantile_at(q, static_cast<double>(n));
    const index_t lo = static_cast<index_t>(at.lo);
    // NaN (an entropy unchecked under validation::shapes_only) orders after every number: std::nth_element
    // needs a strict weak order, which operator< is not once NaN is present.
    const auto less = [](double a, double b) { return a < b || (b != b && a == a); };
    std::nth_element(h, h + lo, h + n, less);
    const double v_lo = h[lo];
    const double v_hi = lo + 1 < n ? *std::min_element(h + lo + 1, h + n, less) : v_lo;
    return math::quantile_value(v_lo, v_hi, at.frac);
}

/// The covariance selection of clip_cov and kl_cov over this call (math::covariance_selection): the means of A
/// and logp over the unmasked tokens (per row in parallel into `row_sums`, 2 * rows doubles, then added in row
/// order), then the k-th smallest (key, row * cols + column) among the eligible tokens, found with nth_element
/// in `pairs` (2 * rows * cols doubles). The k-th smallest pair is unique, so the result is deterministic.
template <class T>
math::covariance_selection select_by_covariance(const exec::host& ex, const loss_views<T>& v, const loss_params& p,
                                                double tokens, double* row_sums, double* pairs, index_t grain) {
    using C = T;
    const index_t rows = v.logp.rows(), cols = v.logp.cols();
    const auto valid = [&](index_t i, index_t t) { return !v.mask.present() || v.mask(i, t) != T(0); };
    const auto old_at = [&](index_t i, index_t t) { return v.old_logp.present() ? v.old_logp(i, t) : v.logp(i, t); };
    parallel_for(ex, rows, grain, [&](index_t first, index_t last) {
        for (index_t i = first; i < last; ++i) {
            double a = 0, lp = 0;
            for (index_t t = 0, end = valid_end(v, i); t < end; ++t)
                if (valid(i, t)) {
                    a += static_cast<double>(C(v.adv(i, t)));
                    lp += static_cast<double>(C(v.logp(i, t)));
                }
            row_sums[2 * i] = a;
            row_sums[2 * i + 1] = lp;
        }
    });
    math::covariance_selection s = p.token.objective.cov;
    double a = 0, lp = 0;
    for (index_t i = 0; i < rows; ++i) {
        a += row_sums[2 * i];
        lp += row_sums[2 * i + 1];
    }
    s.mean_advantage = tokens > 0 ? a / tokens : 0.0;
    s.mean_logp = tokens > 0 ? lp / tokens : 0.0;
    math::objective_params<C> o = call_objective_params<C>(p);
    o.cov = s;
    struct pair {
        double key, flat;
        bool operator<(const pair& b) const { return key < b.key || (key == b.key && flat < b.flat); }
    };
    pair* candidates = reinterpret_cast<pair*>(pairs);
    index_t m = 0;
    const C clamp = C(p.token.log_ratio_clamp);
    for (index_t i = 0; i < rows; ++i)
        for (index_t t = 0, end = valid_end(v, i); t < end; ++t) {
            if (!valid(i, t)) continue;
            const std::int64_t flat = static_cast<std::int64_t>(i) * static_cast<std::int64_t>(cols) + t;
            const math::selection_candidate c =
                math::selection_at<C>(o, clamp, C(v.logp(i, t)), C(old_at(i, t)), C(v.adv(i, t)), flat);
            if (c.eligible) candidates[m++] = {c.key, static_cast<double>(flat)};
        }
    const double k = std::min(math::covariance_selection_count(p.cov_ratio, tokens), static_cast<double>(m));
    if (k < 1) return s; // (key, index) = (-infinity, -1): none selected
    const index_t at = static_cast<index_t>(k) - 1;
    std::nth_element(candidates, candidates + at, candidates + m);
    s.key = candidates[at].key;
    s.index = candidates[at].flat;
    return s;
}

/// Rows per task: enough work per task to amortize scheduling, independent of the thread count.
inline index_t row_grain(index_t cols) { return std::max<index_t>(1, 16384 / std::max<index_t>(1, cols)); }

/// The pass's scratch, in doubles: per-row partials, then (when no mask is given) a row of ones standing in for
/// the mask, then the top-entropy quantile's up to rows * cols entropies, then the covariance selection's two
/// sums per row and up to rows * cols (key, index) pairs. grpo::error (errc::size_overflow) if it overflows.
struct pass_scratch {
    index_t partial_doubles, ones_doubles, entropy_doubles, cov_doubles, total;
};

template <class T>
pass_scratch pass_scratch_of(const char* where, const loss_views<T>& v, const loss_params& p) {
    const index_t rows = v.logp.rows(), cols = v.logp.cols();
    pass_scratch s;
    s.partial_doubles = checked_mul(where, "rows", rows, static_cast<index_t>(row_partials_doubles));
    s.ones_doubles =
        v.mask.present() ? 0 : checked_add(where, "cols", checked_mul(where, "cols", cols, sizeof(T)), 7) / 8;
    s.entropy_doubles = p.entropy_quantile_needed() ? checked_mul(where, "rows", rows, cols) : 0;
    s.cov_doubles =
        p.covariance_selection()
            ? checked_add(where, "rows", checked_mul(where, "rows", checked_mul(where, "rows", rows, cols), 2),
                          checked_mul(where, "rows", rows, 2))
            : 0;
    s.total = checked_add(
        where, "rows",
        checked_add(where, "rows", checked_add(where, "rows", s.partial_doubles, s.ones_doubles), s.entropy_doubles),
        s.cov_doubles);
    return s;
}

/// The pass over a call. `row_partials`, when given (rows of them), receives each row's partials before they are
/// combined (the data-parallel entry points combine every rank's rows in one order).
template <class T>
loss_stats loss_and_grad(const exec::host& ex, const loss_views<T>& v, const loss_params& call, bool check_values,
                         double global_tokens, workspace& ws, loss_partials* row_partials = nullptr) {
    loss_params p = call;
    const index_t rows = v.logp.rows(), cols = v.logp.cols();
    constexpr const char* where = "loss_and_grad";
    // No tokens at all: nothing to read or write, and no row pointer to form (an empty view's strides are
    // arbitrary, so data + i * row_stride may not even be a valid address computation).
    if (rows == 0 || cols == 0) return loss_stats{};
    const pass_scratch sizes = pass_scratch_of(where, v, p);
    const index_t partial_doubles = sizes.partial_doubles, ones_doubles = sizes.ones_doubles,
                  entropy_doubles = sizes.entropy_doubles;
    double* scratch = ws.doubles(static_cast<std::size_t>(sizes.total), where);
    T* ones = reinterpret_cast<T*>(scratch + partial_doubles);
    if (!v.mask.present()) std::fill(ones, ones + cols, T(1));
    const index_t grain = row_grain(v.logp.cols());

    // Pre-pass, only when needed: value checks (before any write) and/or the local token count.
    double local_tokens = -1;
    const bool pre_pass =
        p.checks_global_tokens(check_values) || (p.agg == aggregation::token_mean && global_tokens <= 0);
    const bool need_ref = p.with_kl(), need_samp = p.token.correction.mode != sampling_correction::none;
    if (pre_pass) {
        parallel_for(ex, rows, grain, [&](index_t first, index_t last) {
            for (index_t i = first; i < last; ++i) {
                const row_check c = check_row(v, i, check_values, need_ref, need_samp, p.entropy_given);
                scratch[2 * i] = static_cast<double>(c.code);
                scratch[2 * i + 1] = c.tokens;
            }
        });
        local_tokens = 0;
        double nonempty = 0;
        for (index_t i = 0; i < rows; ++i) {
            if (scratch[2 * i] != 0)
                raise_loss_value_error(
                    where, bad_value_at(v, i, check_row(v, i, true, need_ref, need_samp, p.entropy_given)), cols);
            local_tokens += scratch[2 * i + 1];
            nonempty += scratch[2 * i + 1] > 0 ? 1 : 0;
        }
        if (p.count_nonempty_rows) p.sequences = nonempty;
        check_global_tokens(where, global_tokens, local_tokens);
    }
    const double total_tokens = global_tokens > 0 ? global_tokens : local_tokens;
    if (p.entropy_quantile_needed())
        p.entropy_threshold =
            quantile_of(scratch + partial_doubles + ones_doubles,
                        unmasked_entropies(v, scratch + partial_doubles + ones_doubles), p.entropy_quantile);
    if (p.covariance_selection()) {
        double* cov_scratch = scratch + partial_doubles + ones_doubles + entropy_doubles;
        p.token.objective.cov =
            select_by_covariance(ex, v, p, local_tokens, cov_scratch, cov_scratch + 2 * rows, grain);
    }

    auto* partials = reinterpret_cast<loss_partials*>(scratch);
    parallel_for(ex, rows, grain, [&](index_t first, index_t last) {
        for (index_t i = first; i < last; ++i) loss_row(v, ones, p, total_tokens, i, partials[i]);
    });

    if (row_partials != nullptr) std::copy(partials, partials + rows, row_partials);
    // Rows in order on this thread: the same sums for any thread count.
    loss_partials total = loss_partials::identity();
    for (index_t i = 0; i < rows; ++i) total.merge(partials[i]);
    return total.finalize(p.token.beta, p.entropy_coef);
}

} // namespace cpu
} // namespace detail
GRPO_NAMESPACE_END
