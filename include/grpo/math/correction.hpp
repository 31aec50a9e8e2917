// SPDX-License-Identifier: MIT
// Off-policy corrections of the policy term: the importance weight between the training engine's old
// log-probs and the sampling engine's (vLLM, SGLang) and DeepSeek-V3.2's off-policy sequence mask. The one place
// these formulas live; token_loss() applies them.
#pragma once

#include "common.hpp"

GRPO_NAMESPACE_BEGIN

/// Importance-sampling correction for the mismatch between the sampling engine and the trainer:
/// rho = pi_old / pi_sampling per token, or per sequence prod_t rho_t, multiplies the policy term
/// (not the KL). TRL vllm_importance_sampling_mode; verl rollout_is = "token" / "sequence".
enum class sampling_correction {
    none,              ///< no correction (sampling_logp is not read)
    token_truncate,    ///< w_it = clamp(rho_it, min, max).          TRL "token_truncate"; verl token TIS
    token_mask,        ///< w_it = rho_it if min <= rho_it <= max, else 0.  TRL "token_mask"
    sequence_truncate, ///< w_i = clamp(prod_t rho_it, min, max).    TRL "sequence_truncate"; verl sequence TIS
    sequence_mask,     ///< w_i = prod_t rho_it inside [min, max], else 0.  TRL "sequence_mask"
};
/// Number of sampling_correction values (for validation).
constexpr int sampling_correction_count = 5;

namespace math {

inline GRPO_HOST_DEVICE bool is_token_correction(sampling_correction m) {
    return m == sampling_correction::token_truncate || m == sampling_correction::token_mask;
}
inline GRPO_HOST_DEVICE bool is_sequence_correction(sampling_correction m) {
    return m == sampling_correction::sequence_truncate || m == sampling_correction::sequence_mask;
}

/// The correction's settings in the precision of the math.
template <class C>
struct correction_params {
    sampling_correction mode;
    C ratio_min; ///< TRL vllm_importance_sampling_clip_min (0); verl rollout_is_threshold_lower
    C ratio_max; ///< TRL vllm_importance_sampling_cap / clip_max; verl rollout_is_threshold
};

/// The importance weight for log rho = log_ratio (old_logp - sampling_logp, summed over the row's unmasked
/// tokens for the sequence modes): truncated to [min, max] or masked to 0 outside it. A stop-gradient factor.
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C sampling_weight(const correction_params<C>& c, C log_ratio) {
    const C rho = math::exp(log_ratio);
    const bool mask = c.mode == sampling_correction::token_mask || c.mode == sampling_correction::sequence_mask;
    const bool below = rho<c.ratio_min, above = rho> c.ratio_max;
    const C truncated = select(below, c.ratio_min, select(above, c.ratio_max, rho));
    return select(mask, select(below | above, C(0), rho), truncated);
}

/// DeepSeek-V3.2's off-policy sequence mask (TRL get_off_policy_mask): a row whose mean of old_logp - logp over
/// its unmasked tokens exceeds the threshold drops the policy term of its tokens with A < 0.
GRPO_HOST_DEVICE inline bool off_policy_row(double old_minus_logp_sum, double tokens, double threshold) {
    return old_minus_logp_sum / (tokens > 1 ? tokens : 1.0) > threshold;
}

/// torch.quantile(values, q) with linear interpolation, given the two sorted values around the position
/// q (n - 1): lo = floor(q (n - 1)), v_lo = sorted[lo], v_hi = sorted[min(lo + 1, n - 1)]. Used for TRL's
/// top_entropy_quantile threshold (quantile 1 - rho of the unmasked tokens' entropies).
struct quantile_position {
    double lo;   ///< floor(q (n - 1)), as a double (an index)
    double frac; ///< q (n - 1) - lo
};
GRPO_HOST_DEVICE inline quantile_position quantile_at(double q, double n) {
    const double pos = q * (n - 1);
    const double lo = pos < 0 ? 0.0 : static_cast<double>(static_cast<long long>(pos)); // floor for pos >= 0
    return {lo, pos - lo};
}
/// torch.lerp(v_lo, v_hi, frac), which torch.quantile uses (two formulas, for accuracy at both ends).
GRPO_HOST_DEVICE inline double quantile_value(double v_lo, double v_hi, double frac) {
    return frac < 0.5 ? v_lo + frac * (v_hi - v_lo) : v_hi - (v_hi - v_lo) * (1 - frac);
}

} // namespace math
GRPO_NAMESPACE_END
