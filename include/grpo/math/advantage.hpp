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

    GRPO_HOST_DEVICE void add_first_pass(C x) {
        if (count == 0) pivot = x;
        add_shifted(x);
    }
    /// First-pass accumulation against a pivot fixed beforehand (parallel backends: every partial of one
    /// group uses the group's first value as pivot, then the partial count and shifted_sum are summed).
    GRPO_HOST_DEVICE void add_shifted(C x) {
        count += 1;
        shifted_sum += x - pivot;
    }
    /// Moments with a preset pivot and nothing accumulated yet.
    GRPO_HOST_DEVICE static group_moments with_pivot(C p) {
        group_moments m;
        m.pivot = p;
        return m;
    }
    GRPO_HOST_DEVICE C mean() const { return count > 0 ? pivot + shifted_sum / count : C(0); }
    GRPO_HOST_DEVICE void add_second_pass(C x, C mean_value) {
        const C d = x - mean_value;
        m2 += d * d;
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
    case advantage_estimator::group_centered_batch_std: return (r - mean) / (scale_std + epsilon);
    case advantage_estimator::rloo: return (r - mean) * n / (n - C(1));
    case advantage_estimator::group_centered:
    case advantage_estimator::group_centered_batch_whitened:
    default: return r - mean;
    }
}

/// One term of the weighted second moment used by batch whitening: w * (x - mean)^2.
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C weighted_sq_deviation(C w, C x, C mean) {
    const C d = x - mean;
    return w * d * d;
}

/// Scale of group_centered_batch_whitened: 1 / sqrt(var + whiten_epsilon), var = unbiased weighted variance
/// (verl masked_whiten: biased masked mean of the squared deviations, then * N / (N - 1)).
/// `weighted_m2` = sum w (x - mean)^2, `weight_sum` = sum w (must be > 1).
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C whitening_scale(C weighted_m2, C weight_sum, C whiten_epsilon) {
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
