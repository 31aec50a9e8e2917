// SPDX-License-Identifier: MIT
// Log-probabilities and entropies of the sampled tokens from logits: the online log-sum-exp of one row, the
// entropy from the same pass, and their gradient with respect to the logits. The one place these formulas live;
// the CPU backend and the kernels call them. Peers: TRL selective_log_softmax / entropy_from_logits
// (trl/trainer/utils.py), verl logprobs_from_logits / entropy_from_logits (verl/utils/torch_functional.py),
// Liger-Kernel's fused linear cross entropy (online max and rescaled sum, fp32).
#pragma once

#include "common.hpp"

GRPO_NAMESPACE_BEGIN
namespace math {

/// The softmax statistics of the elements of a row seen so far, z = logits / temperature:
///   m  the largest z seen (-inf before any finite one),
///   s  sum_j exp(z_j - m),
///   u  sum_j exp(z_j - m) (z_j - m)        (an element with z_j = -inf, a banned token, adds 0 to both)
/// so that, over the whole row, lse = log sum_j exp(z_j) = m + log s and the entropy
/// H = -sum_j p_j log p_j = lse - sum_j p_j z_j = log s - u / s. Every term of u lies in [-1/e, 0]: no
/// cancellation, and no overflow for any finite logits.
struct softmax_stats {
    double m = -HUGE_VAL;
    double s = 0;
    double u = 0;
};

/// exp(z - m) for one element against the running maximum m (finite): 0 for z = -inf, and for z - m below the
/// smallest exponent (including z - m = -inf when the difference overflows).
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C softmax_weight(C z, C m) {
    return exp(z - m);
}

/// exp(z - m) (z - m) for one element: 0 where the weight is 0 (where IEEE would give 0 * -inf = NaN for a banned
/// token or an overflowing difference, and the limit of x e^x is 0 anyway).
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C softmax_moment(C z, C m, C weight) {
    return select(weight == C(0), C(0), weight * (z - m));
}

/// The statistics after adding a block whose maximum is `block_max` and whose sums, taken against
/// new_m = max(a.m, block_max), are `block_s` and `block_u`: the old sums are rescaled to new_m
/// (exp(m - new_m) s, and u shifted by (m - new_m) s). The caller computed the block's terms against
/// new_max(a, block_max).
GRPO_HOST_DEVICE inline double new_max(const softmax_stats& a, double block_max) {
    return block_max > a.m ? block_max : a.m;
}
GRPO_HOST_DEVICE inline softmax_stats add_block(const softmax_stats& a, double new_m, double block_s, double block_u) {
    softmax_stats r;
    r.m = new_m;
    if (a.s > 0) {                         // a.m is finite
        const double shift = a.m - new_m;  // <= 0
        const double scale = ::exp(shift); // 1 when the maximum did not move
        r.s = a.s * scale + block_s;
        r.u = (a.u + shift * a.s) * scale + block_u;
    } else {
        r.s = block_s;
        r.u = block_u;
    }
    return r;
}

/// log sum_j exp(z_j) of the row; -inf when every element was -inf. (At |z| beyond about 1e15 the log s part
/// falls below lse's last bit: use log_prob, which never adds m and log s.)
GRPO_HOST_DEVICE inline double log_sum_exp(const softmax_stats& st) { return st.m + ::log(st.s); }

/// log p of an element z of the row: (z - m) - log s, exact at any magnitude of the logits (z - lse would lose
/// log s once |lse| is large).
GRPO_HOST_DEVICE inline double log_prob(double z, const softmax_stats& st) { return (z - st.m) - ::log(st.s); }

/// The entropy -sum_j p_j log p_j of the row (>= 0; 0 for a one-hot row). Needs st.s > 0.
GRPO_HOST_DEVICE inline double softmax_entropy(const softmax_stats& st) {
    const double h = ::log(st.s) - st.u / st.s;
    return h > 0 ? h : 0.0; // rounding can leave -1e-17 for a one-hot row
}

/// d loss / d z_j of one element, from dL/dlogp (g_logp, for the row's sampled token y) and dL/dH (g_entropy):
///   d logp_y / d z_j = [j == y] - p_j,        d H / d z_j = -p_j (log p_j + H),    p_j = exp(z_j - lse)
///   => d loss / d z_j = [j == y] g_logp - p_j (g_logp + g_entropy (log p_j + H)).
/// softmax_grad is the second term, for every element; the caller adds g_logp at j == y (one element per row,
/// which keeps the loop over the row free of index comparisons). lse arrives split as lse_hi + lse_lo (lse
/// rounded to C and the rest, or the row's maximum m and log s), so that log p_j = (z_j - lse_hi) - lse_lo loses
/// nothing to the rounding of a large lse. An element with p_j = 0 (z_j = -inf, or far below the maximum) gets
/// exactly 0. The caller divides by the temperature (d z_j / d logits_j = 1 / temperature).
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C softmax_grad(C z, C lse_hi, C lse_lo, C entropy, C g_logp, C g_entropy) {
    const C log_p = (z - lse_hi) - lse_lo;
    const C p = exp(log_p);
    // p = 0 (a banned token, or log p below the smallest exponent): exactly 0, never 0 * (-inf).
    return select(p == C(0), C(0), -p * (g_logp + g_entropy * (log_p + entropy)));
}

} // namespace math
GRPO_NAMESPACE_END
