// SPDX-License-Identifier: MIT
// Per-completion advantage formulas over group statistics: the one definition both backends use.
#pragma once

#include <cstdint>

#include "group_stats.hpp"

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
    /// Pass@k training (arXiv 2503.19595): only the group's best completion gets an advantage, the margin
    /// r_max - r_second over the runner-up, divided by (std_g + eps) unless passk_scale_by_std is false; every
    /// other completion gets 0. Ties: the first best row in row order is "the best", and its margin is 0.
    /// Groups with fewer than two scored rewards get 0 (verl raises). verl "grpo_passk".
    passk,
    /// r - b_g with the length-weighted baseline b_g = sum_j L_j r_j / sum_j L_j, L = token_weights
    /// (completion lengths, required; a group of total length 0 falls back to the plain mean). OPO
    /// (arXiv 2505.23585). verl "opo".
    opo,
    /// alpha (r - mean_g) with alpha = scored / max(nonzero, 1) over the whole batch (rewards != 0 among the
    /// scored). GPG (arXiv 2504.02546). verl "gpg" (f_norm 1).
    gpg,
};
constexpr int advantage_estimator_count = 8;

/// Token-level estimators: per-token rewards in, per-token advantages out (process rewards, a reward at the
/// last token, KL-shaped rewards). The sequence-level estimators above take one reward per completion.
enum class token_estimator {
    /// REINFORCE++ (arXiv 2501.03262): returns G_t = r_t + gamma G_{t+1} per row (restarting where the mask
    /// ends), then whitened over every unmasked token of the batch, (G - mu) / sqrt(var + whiten_epsilon) with
    /// the unbiased variance. verl "reinforce_plus_plus".
    reinforce_plus_plus,
    /// ReMax (arXiv 2310.10505): G_t = sum_{s >= t} r_s m_s (masked tokens add 0 and do not restart the sum)
    /// and A_t = G_t - b_i, b_i = the reward of the
    /// prompt's greedy completion (`baselines`, one per row). verl "remax".
    remax,
    /// Optimal token baseline (OTB, arXiv 2602.07078): G_t = sum_{s >= t} r_s m_s, and per prompt group and
    /// token position t a baseline B_t = sum_i G_it W_it / (sum_i W_it + otb_epsilon) over the group's rows
    /// unmasked at t, where W_it = sum_{s <= t} w_is m_is is the realized energy and
    /// w = (1 - 2 exp(old_logp) + sum_pi_squared) * is_weight^2 (the logit-gradient proxy of ||score||^2).
    /// A_t = G_t - B_t; a group of one row has B = 0. verl "optimal_token_baseline".
    optimal_token_baseline,
    /// The same with positions counted over each row's unmasked tokens only (the k-th response token of every
    /// row shares a baseline, whatever tool or observation tokens came before it), and groups counting only
    /// rows with at least one unmasked token. verl "tir_optimal_token_baseline" (multi-turn, tool use).
    tir_optimal_token_baseline,
};
constexpr int token_estimator_count = 4;

/// What a group with a single scored completion gets.
enum class singleton_group {
    zero,       ///< advantage 0 (TRL: its std is NaN and NaN advantages become 0; verl rloo_vectorized)
    raw_reward, ///< mean 0 and std 1, so the advantage is the raw reward (verl grpo, rloo)
};

namespace math {

/// The estimators' settings as every backend passes them to the formulas (advantage_config's fields).
struct advantage_params {
    advantage_estimator est = advantage_estimator::group_zscore;
    std_estimator std = std_estimator::unbiased;
    singleton_group singleton = singleton_group::zero;
    double epsilon = 1e-4;
    double variance_floor = 0; ///< z-score denominators use sqrt(max(var, floor)) (verl grpo_vectorized)
    bool passk_scale_by_std = true;
};

/// A group's figures beyond its moments, for the estimators that read them (passk, opo).
struct group_extras {
    double best = -infinity<double>();   ///< largest scored reward
    double second = -infinity<double>(); ///< second largest (equal to best on a tie)
    std::int64_t best_row = -1;          ///< first row holding `best`
    group_moments<double> weighted;      ///< token_weights-weighted moments (first pass: the weighted mean)

    /// One scored reward of row `row`, rows visited in increasing order.
    GRPO_HOST_DEVICE void add_candidate(double r, std::int64_t row) {
        if (r > best) {
            second = best;
            best = r;
            best_row = row;
        } else if (r > second) {
            second = r;
        }
    }
};

/// Batch-level figures of the estimators that normalize over the whole batch.
struct batch_figures {
    double std = 0;        ///< std of every scored reward (group_centered_batch_std)
    double white_mean = 0; ///< whitening statistics (group_centered_batch_whitened)
    double white_scale = 1;
    double gpg_scale = 1; ///< scored / max(nonzero, 1) (gpg)
};

/// alpha of gpg from the batch's scored and non-zero reward counts.
GRPO_HOST_DEVICE inline double gpg_scale(double scored, double nonzero) {
    return scored / (nonzero > 1 ? nonzero : 1.0);
}

/// The group std in a z-score denominator: the group's std, or sqrt(max(var, variance_floor)) with a floor.
GRPO_HOST_DEVICE inline double scale_std(const group_moments<double>& m, const advantage_params& p) {
    if (!(p.variance_floor > 0)) return m.std(p.std);
    const double dof = p.std == std_estimator::unbiased ? m.count - 1 : m.count;
    const double var = dof > 0 ? m.m2 / dof : 0.0;
    return math::sqrt(var > p.variance_floor ? var : p.variance_floor);
}

/// Advantage of one completion with reward r in a group of n scored rewards with statistics mean, std.
/// `scale_std` is the std in the denominator: the group's, or the batch's for group_centered_batch_std.
/// For group_centered_batch_whitened this is only the centering step; whitening follows over the batch.
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C group_advantage(advantage_estimator est, C r, C n, C mean, C scale_std, C epsilon,
                                                    singleton_group singleton) {
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

/// What completion_advantage reads of a group's moments, taken once per group: its count, its mean and the std
/// of its z-score denominator (scale_std).
struct group_terms {
    double count, mean, scale_std;
};
GRPO_HOST_DEVICE inline group_terms terms_of(const group_moments<double>& m, const advantage_params& p) {
    return {m.count, m.mean(), scale_std(m, p)};
}

/// Advantage of one scored completion (reward r, row `row`) in a group with terms t and extras x: every
/// estimator's formula in one place, for both backends. group_centered_batch_whitened returns the whitened
/// value (a - white_mean) * white_scale of its centering step.
GRPO_HOST_DEVICE GRPO_FORCEINLINE double completion_advantage(const advantage_params& p, double r, std::int64_t row,
                                                              const group_terms& t, const group_extras& x,
                                                              const batch_figures& batch) {
    const bool singleton = t.count < 2;
    const double alone = p.singleton == singleton_group::zero ? 0.0 : r; // verl: mean 0 (and std 1)
    switch (p.est) {
    case advantage_estimator::passk: {
        if (singleton || row != x.best_row) return 0.0;
        const double margin = x.best - x.second;
        if (!p.passk_scale_by_std) return margin;
        const double scale = t.scale_std + p.epsilon;
        return scale > 0 ? margin / scale : 0.0; // scale 0: a constant group with epsilon 0, margin 0
    }
    case advantage_estimator::opo: return singleton ? alone : r - (x.weighted.count > 0 ? x.weighted.mean() : t.mean);
    case advantage_estimator::gpg: return batch.gpg_scale * (singleton ? alone : r - t.mean);
    default: break;
    }
    const double std_used = p.est == advantage_estimator::group_centered_batch_std ? batch.std : t.scale_std;
    double a = group_advantage<double>(p.est, r, t.count, t.mean, std_used, p.epsilon, p.singleton);
    if (p.est == advantage_estimator::group_centered_batch_whitened) a = (a - batch.white_mean) * batch.white_scale;
    return a;
}
/// The same from the group's moments.
GRPO_HOST_DEVICE GRPO_FORCEINLINE double completion_advantage(const advantage_params& p, double r, std::int64_t row,
                                                              const group_moments<double>& m, const group_extras& x,
                                                              const batch_figures& batch) {
    return completion_advantage(p, r, row, terms_of(m, p), x, batch);
}

/// One step of the backward return recursion of REINFORCE++ (verl compute_reinforce_plus_plus_outcome_advantage):
/// G_t = r_t + gamma * G_{t+1}; the carry into t - 1 is G_t at an unmasked token and 0 at a masked one, so the
/// recursion restarts where the mask ends and a masked token's reward never reaches an unmasked one.
struct return_step {
    double value; ///< G_t
    double carry; ///< what G_{t-1} adds (times gamma)
};
GRPO_HOST_DEVICE inline return_step discounted_return(double reward, double gamma, double next_carry, bool valid) {
    const double g = reward + gamma * next_carry;
    return {g, valid ? g : 0.0};
}

/// The optimal token baseline's per-token energy (verl compute_optimal_token_baseline_advantage, "logit-gradient
/// proxy"): w_t = (1 - 2 pi_t + sum_pi_squared_t) rho_t^2 with pi_t = exp(old_logp_t), the squared norm of the
/// log-softmax gradient at the sampled token, scaled by the squared rollout IS weight (1 without one).
GRPO_HOST_DEVICE inline double otb_energy(double old_logp, double sum_pi_squared, double is_weight) {
    return (1 - 2 * math::exp(old_logp) + sum_pi_squared) * (is_weight * is_weight);
}
/// The optimal token baseline at one position of one group: B = sum G W / (sum W + epsilon). 0 when the
/// denominator is exactly 0 (epsilon 0 with zero energies; verl would divide 0 by 0).
GRPO_HOST_DEVICE inline double otb_baseline(double sum_return_energy, double sum_energy, double epsilon) {
    const double d = sum_energy + epsilon;
    return d != 0 ? sum_return_energy / d : 0.0;
}

/// A prompt group's members and lengths, for the optimal token baseline's two rules without a baseline: a group
/// of one row (verl: N == 1), and verl's handle_zero_tail (the single longest row, from the runner-up's length
/// on). Rows are added in row order; lengths count unmasked tokens.
struct otb_group_tail {
    double members = 0;
    double longest = -1;   ///< the largest length
    double at_longest = 0; ///< rows of that length
    double runner_up = -1; ///< the second largest length counting repeats (verl sorted_lengths[-2])
    double longest_row = -1;
    GRPO_HOST_DEVICE void add(double length, double row) {
        members += 1;
        if (length > longest) {
            runner_up = longest;
            longest = length, at_longest = 1, longest_row = row;
        } else if (length == longest) {
            at_longest += 1, runner_up = length;
        } else if (length > runner_up) {
            runner_up = length;
        }
    }
    /// True where row `row` has no baseline at position `pos` (its advantage is its return).
    GRPO_HOST_DEVICE bool no_baseline(double row, double pos, bool zero_tail) const {
        if (members < 2) return true;
        return zero_tail && at_longest == 1 && longest > runner_up && row == longest_row && pos >= runner_up;
    }
};

/// The token estimators' settings and batch figures, as both backends pass them to token_advantage.
struct token_advantage_params {
    token_estimator est = token_estimator::reinforce_plus_plus;
    double white_mean = 0, white_scale = 1; ///< reinforce_plus_plus: the batch whitening of G
};

/// Advantage of one unmasked token with return g (token_advantages): every token estimator's last step in one
/// place. `baseline` is remax's row baseline or the optimal token baseline at this position (0 where
/// otb_group_tail::no_baseline).
GRPO_HOST_DEVICE inline double token_advantage(const token_advantage_params& p, double g, double baseline) {
    return p.est == token_estimator::reinforce_plus_plus ? (g - p.white_mean) * p.white_scale : g - baseline;
}

} // namespace math
GRPO_NAMESPACE_END
