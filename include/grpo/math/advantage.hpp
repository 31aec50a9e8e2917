// SPDX-License-Identifier: MIT
// Group statistics and per-completion advantage formulas: the one definition both backends use.
#pragma once

#include "common.hpp"

GRPO_NAMESPACE_BEGIN

/// Advantage estimators over groups of completions of the same prompt (n = scored rewards in the group).
enum class advantage_estimator {
    /// (r - mean_g) / (std_g + eps). DeepSeekMath outcome supervision; TRL scale_rewards="group" (default);
    /// verl "grpo"; OpenRLHF "group_norm".
    group_zscore,
    /// r - mean_g. Dr. GRPO; TRL scale_rewards="none"; verl norm_adv_by_std_in_grpo=False; OpenRLHF "dr_grpo".
    group_centered,
    /// (r - mean_g) / (std_batch + eps), std over every reward of the batch. TRL scale_rewards="batch".
    group_centered_batch_std,
    /// r - mean of the other n-1 rewards = (r - mean_g) * n / (n - 1). verl "rloo"; OpenRLHF "rloo".
    rloo,
    /// r - mean_g, then whitened over the batch (x - mu) / sqrt(var + whiten_epsilon) with unbiased
    /// (optionally token-weighted) variance. verl "reinforce_plus_plus_baseline"; OpenRLHF "reinforce_baseline".
    group_centered_batch_whitened,
};

/// Which standard deviation: sample (n - 1, every peer's default) or population (n).
enum class std_estimator {
    unbiased, ///< Bessel-corrected, torch.std default (TRL, verl, OpenRLHF)
    biased,   ///< population std, torch.std(unbiased=False)
};

/// What a group with a single scored completion gets.
enum class singleton_group {
    zero,       ///< advantage 0 (TRL: its std is NaN and NaN advantages become 0; verl rloo_vectorized)
    raw_reward, ///< mean 0 and std 1, so the advantage is the raw reward (verl grpo, rloo)
};

namespace math {

/// Two-pass statistics of one group, shifted by the group's first value so that a constant group has
/// exactly zero deviation (sum(x)/n does not round-trip: 0.1+0.1+0.1 != 0.3).
template <class C>
struct group_moments {
    C count = 0;
    C pivot = 0;      ///< first value seen
    C shifted_sum = 0; ///< sum of (x - pivot)
    C m2 = 0;         ///< sum of (x - mean)^2, filled by the second pass

    /// First pass; `weight` (default 1: a count) makes `count` a total weight, as batch whitening needs.
    /// With weight 1 every operation is the unweighted one (1 * y == y exactly).
    GRPO_HOST_DEVICE void add_first_pass(C x, C weight = C(1)) {
        if (count == 0) pivot = x;
        add_shifted(x, weight);
    }
    /// First-pass accumulation against a pivot fixed beforehand (parallel backends: every partial of one
    /// group uses the group's first value as pivot, then the partial count and shifted_sum are summed).
    GRPO_HOST_DEVICE void add_shifted(C x, C weight = C(1)) {
        count += weight;
        shifted_sum += weight * (x - pivot);
    }
    /// Moments with a preset pivot and nothing accumulated yet.
    GRPO_HOST_DEVICE static group_moments with_pivot(C p) {
        group_moments m;
        m.pivot = p;
        return m;
    }
    GRPO_HOST_DEVICE C mean() const { return count > 0 ? pivot + shifted_sum / count : C(0); }
    GRPO_HOST_DEVICE void add_second_pass(C x, C mean_value, C weight = C(1)) {
        const C d = x - mean_value;
        m2 += weight * d * d;
    }
    /// Every value equal (or fewer than two): no learning signal (TRL frac_reward_zero_std).
    GRPO_HOST_DEVICE bool zero_variance() const { return m2 == 0; }
    /// 0 for fewer than two values (or one with the biased estimator's single value).
    GRPO_HOST_DEVICE C std(std_estimator e) const {
        const C dof = e == std_estimator::unbiased ? count - 1 : count;
        return dof > 0 ? math::sqrt(m2 / dof) : C(0);
    }
};

/// Advantage of one completion with reward r in a group of n scored rewards with statistics mean, std.
/// `scale_std` is the std in the denominator: the group's, or the batch's for group_centered_batch_std.
/// For group_centered_batch_whitened this is only the centering step; whitening follows over the batch.
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C group_advantage(advantage_estimator est, C r, C n, C mean, C scale_std,
                                                    C epsilon, singleton_group singleton) {
    if (n < C(2)) {
        if (singleton == singleton_group::zero) return C(0);
        // verl: mean 0, std 1.
        return est == advantage_estimator::group_zscore ? r / (C(1) + epsilon) : r;
    }
    switch (est) {
    case advantage_estimator::group_zscore:
    case advantage_estimator::group_centered_batch_std: {
        // Zero-variance guard: std + epsilon is 0 only for a constant group (or batch) with epsilon = 0, whose
        // deviations are all exactly 0 (pivot-shifted moments): its advantage is 0, not 0/0.
        const C scale = scale_std + epsilon;
        return scale > C(0) ? (r - mean) / scale : C(0);
    }
    case advantage_estimator::rloo: return (r - mean) * n / (n - C(1));
    case advantage_estimator::group_centered:
    case advantage_estimator::group_centered_batch_whitened:
    default: return r - mean;
    }
}

/// Scale of group_centered_batch_whitened: 1 / sqrt(var + whiten_epsilon), var = unbiased weighted variance
/// (verl masked_whiten: biased masked mean of the squared deviations, then * N / (N - 1)).
/// `weighted_m2` = sum w (x - mean)^2 around the pivot-shifted weighted mean (group_moments with weights),
/// `weight_sum` = sum w (must be > 1). Zero-variance guard: when every deviation is exactly 0 (a constant
/// batch: the pivot-shifted mean is exact) the scale is 0, so every whitened advantage is exactly 0 for any
/// whiten_epsilon >= 0, instead of 0 * inf or rounding noise times 1 / sqrt(tiny).
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C whitening_scale(C weighted_m2, C weight_sum, C whiten_epsilon) {
    if (!(weighted_m2 > C(0))) return C(0);
    const C var = weighted_m2 / weight_sum * (weight_sum / (weight_sum - 1));
    return 1 / math::sqrt(var + whiten_epsilon);
}

/// Advantage of one scored completion with reward r in a group with moments m: group_advantage with the
/// estimator's std (the group's, or `batch_std` for group_centered_batch_std), then, for
/// group_centered_batch_whitened, (a - white_mean) * white_scale.
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C completion_advantage(advantage_estimator est, C r, const group_moments<C>& m,
                                                         std_estimator std_est, C batch_std, C epsilon,
                                                         singleton_group singleton, C white_mean, C white_scale) {
    const C scale_std = est == advantage_estimator::group_centered_batch_std ? batch_std : m.std(std_est);
    C a = group_advantage<C>(est, r, m.count, m.mean(), scale_std, epsilon, singleton);
    if (est == advantage_estimator::group_centered_batch_whitened) a = (a - white_mean) * white_scale;
    return a;
}

} // namespace math
GRPO_NAMESPACE_END
