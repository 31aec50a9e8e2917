// SPDX-License-Identifier: MIT
// Configuration, group layouts, statistics and the shared checks of the advantage estimators (CPU and CUDA).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "../core/check.hpp"
#include "../core/view.hpp"
#include "../math/advantage.hpp"
#include "groups.hpp"

GRPO_NAMESPACE_BEGIN

/// What to do with NaN rewards (TRL: a reward function returned None).
enum class nan_rewards {
    reject, ///< NaN is an error (default)
    ignore, ///< NaN rewards are left out of every statistic and get advantage 0 (TRL nanmean/nanstd)
};

/// Knobs of compute_advantages. Defaults are TRL's (z-score, unbiased std, eps = 1e-4 added to the std,
/// singleton groups get 0) except `nan`: a NaN reward is an error unless the host asks for TRL's semantics of
/// a declined reward (trl() sets nan_rewards::ignore), so that an accidental NaN fails loudly.
struct advantage_config {
    static constexpr double trl_epsilon = 1e-4;      ///< TRL GRPOTrainer (hard-coded)
    static constexpr double verl_epsilon = 1e-6;     ///< verl compute_grpo_outcome_advantage default
    static constexpr double openrlhf_epsilon = 1e-9; ///< OpenRLHF group_norm

    advantage_estimator estimator = advantage_estimator::group_zscore;
    std_estimator std = std_estimator::unbiased;
    /// Added to the std (never to the variance, never max(std, eps)), as every peer does.
    double epsilon = trl_epsilon;
    singleton_group singleton = singleton_group::zero;
    nan_rewards nan = nan_rewards::reject;
    /// group_centered_batch_whitened: (x - mu) * rsqrt(var + whiten_epsilon) (verl masked_whiten: 1e-8).
    double whiten_epsilon = 1e-8;
    /// z-score denominators (group_zscore, passk) use sqrt(max(var, variance_floor)) + epsilon. 0 = off (TRL,
    /// verl grpo); verl grpo_vectorized used 1e-6 here before verl PR #6348 (its newest tree: 0).
    double variance_floor = 0;
    /// passk: divide the margin by (std_g + epsilon) (verl norm_adv_by_std_in_grpo, default true).
    bool passk_scale_by_std = true;

    /// The formulas' view of these settings.
    math::advantage_params params() const {
        math::advantage_params p;
        p.est = estimator;
        p.std = std;
        p.singleton = singleton;
        p.epsilon = epsilon;
        p.variance_floor = variance_floor;
        p.passk_scale_by_std = passk_scale_by_std;
        return p;
    }

    /// TRL GRPOTrainer: z-score, unbiased std + 1e-4, singleton -> 0, NaN rewards ignored.
    static advantage_config trl() {
        advantage_config c;
        c.nan = nan_rewards::ignore;
        return c;
    }
    /// verl compute_grpo_outcome_advantage: z-score, unbiased std + 1e-6, singleton -> raw reward.
    static advantage_config verl() {
        advantage_config c;
        c.epsilon = verl_epsilon;
        c.singleton = singleton_group::raw_reward;
        return c;
    }
};

/// Batch-level figures peers log (TRL reward/reward_std/frac_reward_zero_std, verl critic/advantages/*).
struct advantage_stats {
    index_t num_groups = 0;
    index_t zero_variance_groups = 0;
    double zero_variance_fraction = 0;      ///< TRL frac_reward_zero_std; DAPO dynamic sampling drops these groups
    index_t scored = 0;                     ///< rewards that are not NaN
    double reward_mean = 0, reward_std = 0; ///< over scored rewards, std with config.std
    double advantage_mean = 0, advantage_std = 0, advantage_min = 0, advantage_max = 0;
};


/// The optimal token baseline's tail rule: where a group's single longest row runs past its runner-up (by
/// unmasked tokens), the baseline there averages that row with itself and A ~ 0. verl's handle_zero_tail
/// sets B = 0 from the runner-up's length on (A = G) instead.
enum class otb_tail {
    estimator_default, ///< verl v0.7's defaults: keep for optimal_token_baseline, zero for the TIR variant
    keep,              ///< B_t as computed
    zero,              ///< B = 0 on the longest row's tail
};

/// Knobs of token_advantages.
struct token_advantage_config {
    token_estimator estimator = token_estimator::reinforce_plus_plus;
    double gamma = 1.0;           ///< discount of reinforce_plus_plus (verl algorithm.gamma, default 1.0)
    double whiten_epsilon = 1e-8; ///< verl masked_whiten
    double otb_epsilon = 1e-8;    ///< the optimal token baseline's denominator term (verl epsilon, 1e-8)
    otb_tail tail = otb_tail::estimator_default; ///< the optimal token baseline's tail rule
    /// Whether the tail rule zeroes the baseline for this estimator.
    bool zero_tail() const {
        return tail == otb_tail::zero ||
               (tail == otb_tail::estimator_default && estimator == token_estimator::tir_optimal_token_baseline);
    }
    /// The estimators with a per-group, per-position baseline (they read prompts, old_logp, sum_pi_squared).
    bool optimal_baseline() const {
        return estimator == token_estimator::optimal_token_baseline ||
               estimator == token_estimator::tir_optimal_token_baseline;
    }
};

/// What token_advantages reads: [rows, tokens] views, plus one baseline per row for remax, and the prompt
/// groups and the policy's per-token figures for the optimal token baseline. Host views for exec::host,
/// device views (`token_advantage_inputs<T, device_space>`) for the CUDA backend.
template <class T, class Space = host_space>
struct token_advantage_inputs {
    matrix_view<const T, Space> rewards;   ///< per-token rewards (required); read at unmasked tokens only
    matrix_view<const T, Space> mask;      ///< 1 = the token counts, 0 = masked (required)
    vector_view<const T, Space> baselines; ///< remax: the greedy completion's reward per row (required there)
    basic_groups<Space> prompts;           ///< optimal token baseline: the rows of each prompt (contiguous or by id)
    matrix_view<const T, Space> old_logp;  ///< optimal token baseline: log pi_old of each token (<= 0)
    /// optimal token baseline: sum over the vocabulary of pi^2 at each position, in [0, 1] (verl
    /// sum_pi_squared = exp(logsumexp(2 logits) - 2 logsumexp(logits)))
    matrix_view<const T, Space> sum_pi_squared;
    matrix_view<const T, Space> is_weights; ///< optional, optimal token baseline: rollout IS weights rho (w *= rho^2)
};

/// Where token_advantages writes: advantages (required), returns G (optional); both 0 at masked tokens.
template <class T, class Space = host_space>
struct token_advantage_outputs {
    matrix_view<T, Space> advantages;
    matrix_view<T, Space> returns;
};

/// Figures over the unmasked tokens.
struct token_advantage_stats {
    double tokens = 0;                      ///< unmasked tokens
    double return_mean = 0, return_std = 0; ///< of G (unbiased std)
    double advantage_mean = 0, advantage_std = 0, advantage_min = 0, advantage_max = 0;
};

namespace detail {

/// The estimators that read token_weights: whitening weights, or opo's lengths.
GRPO_HOST_DEVICE inline bool uses_token_weights(advantage_estimator e) {
    return e == advantage_estimator::group_centered_batch_whitened || e == advantage_estimator::opo;
}

/// The configuration checks every advantage entry point shares.
inline void check_advantage_config(const char* where, const advantage_config& cfg) {
    check_enum(where, "config.estimator", cfg.estimator, advantage_estimator_count);
    check_enum(where, "config.std", cfg.std, 2);
    check_enum(where, "config.singleton", cfg.singleton, 2);
    check_enum(where, "config.nan", cfg.nan, 2);
    check_range(where, "config.epsilon", cfg.epsilon, 0, std::numeric_limits<double>::infinity(), "a value >= 0");
    check_range(where, "config.whiten_epsilon", cfg.whiten_epsilon, 0, std::numeric_limits<double>::infinity(),
                "a value >= 0");
    check_range(where, "config.variance_floor", cfg.variance_floor, 0, std::numeric_limits<double>::infinity(),
                "a finite value >= 0 (0 = off)");
}

/// The shape and configuration checks of a compute_advantages call, for host views (groups, group_outputs) and
/// device views (device_groups, device_group_outputs in cuda.cuh) alike: nothing here reads an element.
template <class T, class Space, class Groups, class GroupOutputs>
void check_advantage_shapes(const char* where, vector_view<const T, Space> rewards, const Groups& g,
                            vector_view<T, Space> advantages, const advantage_config& cfg, const GroupOutputs& go,
                            vector_view<const double, Space> token_weights) {
    const index_t n = rewards.size();
    check_advantage_config(where, cfg);
    check_size(where, "advantages", advantages, n);
    check_group_layout(where, n, g);
    const index_t k = g.num_groups(n);
    if (go.mean.present()) check_size(where, "group_outputs.mean", go.mean, k);
    if (go.std.present()) check_size(where, "group_outputs.std", go.std, k);
    if (go.zero_variance.present()) check_size(where, "group_outputs.zero_variance", go.zero_variance, k);
    if (go.count.present()) check_size(where, "group_outputs.count", go.count, k);
    if (uses_token_weights(cfg.estimator) && token_weights.present())
        check_size(where, "token_weights", token_weights, n);
    if (cfg.estimator == advantage_estimator::opo && !token_weights.present())
        raise_argument(errc::invalid_value, where, "token_weights",
                       "the completion lengths (opo's baseline is length-weighted)", "an absent view");
    // Every output against every input and every other output.
    const auto ids = g.ids();
    check_outputs_disjoint(
        where,
        {{"advantages", range_of(advantages)},
         {"group_outputs.mean", range_of(go.mean)},
         {"group_outputs.std", range_of(go.std)},
         {"group_outputs.zero_variance", range_of(go.zero_variance)},
         {"group_outputs.count", range_of(go.count)}},
        {{"rewards", range_of(rewards)}, {"groups.ids", range_of(ids)}, {"token_weights", range_of(token_weights)}});
}

/// Every check of a host compute_advantages call: the shapes, then the values (ids in range, rewards finite or
/// NaN as cfg.nan allows, token weights >= 0).
template <class T>
void check_advantage_call(const char* where, vector_view<const T> rewards, const groups& g, vector_view<T> advantages,
                          const advantage_config& cfg, const group_outputs& go,
                          vector_view<const double> token_weights) {
    check_advantage_shapes(where, rewards, g, advantages, cfg, go, token_weights);
    const index_t n = rewards.size();
    check_group_ids(where, n, g);
    for (index_t i = 0; i < n; ++i) {
        const double r = static_cast<double>(rewards[i]);
        if (std::isinf(r) || (std::isnan(r) && cfg.nan == nan_rewards::reject))
            raise_argument(errc::non_finite, where, "rewards",
                           cfg.nan == nan_rewards::reject ? "finite values (set config.nan = ignore for NaN)"
                                                          : "finite values or NaN",
                           num_str(r) + " at index " + to_str(i));
    }
    if (uses_token_weights(cfg.estimator) && token_weights.present())
        for (index_t i = 0; i < n; ++i)
            check_range(where, "token_weights", token_weights[i], 0, std::numeric_limits<double>::infinity(),
                        "finite weights >= 0");
}

/// The shape and configuration checks of a token_advantages call, for host and device views alike: nothing
/// here reads an element.
template <class T, class Space>
void check_token_advantage_shapes(const char* where, const token_advantage_inputs<T, Space>& in,
                                  const token_advantage_outputs<T, Space>& out, const token_advantage_config& cfg) {
    constexpr double inf = std::numeric_limits<double>::infinity();
    check_enum(where, "config.estimator", cfg.estimator, token_estimator_count);
    check_enum(where, "config.tail", cfg.tail, 3);
    check_range(where, "config.gamma", cfg.gamma, 0, inf, "a finite value >= 0");
    check_range(where, "config.whiten_epsilon", cfg.whiten_epsilon, 0, inf, "a finite value >= 0");
    check_range(where, "config.otb_epsilon", cfg.otb_epsilon, 0, inf, "a finite value >= 0");
    if (!in.rewards.present())
        raise_argument(errc::invalid_value, where, "rewards", "per-token rewards", "an absent view");
    const index_t rows = in.rewards.rows(), cols = in.rewards.cols();
    if (!in.mask.present())
        raise_argument(errc::invalid_value, where, "mask", "a [rows, tokens] mask", "an absent view");
    check_shape(where, "mask", in.mask, rows, cols);
    if (!out.advantages.present())
        raise_argument(errc::invalid_value, where, "advantages", "a [rows, tokens] output", "an absent view");
    check_shape(where, "advantages", out.advantages, rows, cols);
    if (out.returns.present()) check_shape(where, "returns", out.returns, rows, cols);
    const bool remax = cfg.estimator == token_estimator::remax;
    if (remax && !in.baselines.present())
        raise_argument(errc::invalid_value, where, "baselines", "one baseline reward per row (remax)",
                       "an absent view");
    if (remax) check_size(where, "baselines", in.baselines, rows);
    const bool otb = cfg.optimal_baseline();
    if (otb) {
        check_group_layout(where, rows, in.prompts);
        auto required = [&](const char* name, const matrix_view<const T, Space>& m) {
            if (!m.present())
                raise_argument(errc::invalid_value, where, name, "a [rows, tokens] view (optimal token baseline)",
                               "an absent view");
            check_shape(where, name, m, rows, cols);
        };
        required("old_logp", in.old_logp);
        required("sum_pi_squared", in.sum_pi_squared);
        if (in.is_weights.present()) check_shape(where, "is_weights", in.is_weights, rows, cols);
    }
    using cmatrix = matrix_view<const T, Space>;
    const auto ids = otb ? in.prompts.ids() : vector_view<const std::int64_t, Space>();
    check_outputs_disjoint(where, {{"advantages", range_of(out.advantages)}, {"returns", range_of(out.returns)}},
                           {{"rewards", range_of(in.rewards)},
                            {"mask", range_of(in.mask)},
                            {"baselines", range_of(in.baselines)},
                            {"prompts.ids", range_of(ids)},
                            {"old_logp", range_of(otb ? in.old_logp : cmatrix())},
                            {"sum_pi_squared", range_of(otb ? in.sum_pi_squared : cmatrix())},
                            {"is_weights", range_of(otb ? in.is_weights : cmatrix())}});
}

/// Every check of a token_advantages call on host views (shapes, configuration, then values), before anything
/// is written.
template <class T>
void check_token_advantage_call(const char* where, const token_advantage_inputs<T>& in,
                                const token_advantage_outputs<T>& out, const token_advantage_config& cfg) {
    check_token_advantage_shapes(where, in, out, cfg);
    const index_t rows = in.rewards.rows(), cols = in.rewards.cols();
    const bool remax = cfg.estimator == token_estimator::remax, otb = cfg.optimal_baseline();
    if (otb) check_group_ids(where, rows, in.prompts);
    for (index_t i = 0; i < rows; ++i) {
        for (index_t t = 0; t < cols; ++t) {
            const double m = static_cast<double>(in.mask(i, t));
            if (m != 0 && m != 1)
                raise_argument(errc::invalid_value, where, "mask", "values 0 or 1",
                               num_str(m) + " at (" + to_str(i) + ", " + to_str(t) + ")");
            if (m == 0) continue;
            auto at = [&] { return " at (" + to_str(i) + ", " + to_str(t) + ")"; }; // built only for a message
            if (!std::isfinite(static_cast<double>(in.rewards(i, t))))
                raise_argument(errc::non_finite, where, "rewards", "finite values at unmasked tokens",
                               num_str(static_cast<double>(in.rewards(i, t))) + at());
            if (!otb) continue;
            const double lp = static_cast<double>(in.old_logp(i, t)), sq = static_cast<double>(in.sum_pi_squared(i, t));
            if (!(lp <= 0) || std::isinf(lp))
                raise_argument(std::isnan(lp) || std::isinf(lp) ? errc::non_finite : errc::invalid_value, where,
                               "old_logp", "finite log-probabilities <= 0 at unmasked tokens", num_str(lp) + at());
            if (!(sq >= 0 && sq <= 1))
                raise_argument(std::isnan(sq) ? errc::non_finite : errc::invalid_value, where, "sum_pi_squared",
                               "values in [0, 1] at unmasked tokens", num_str(sq) + at());
            if (in.is_weights.present()) {
                const double rho = static_cast<double>(in.is_weights(i, t));
                if (!(rho >= 0) || std::isinf(rho))
                    raise_argument(std::isnan(rho) || std::isinf(rho) ? errc::non_finite : errc::invalid_value, where,
                                   "is_weights", "finite weights >= 0 at unmasked tokens", num_str(rho) + at());
            }
        }
        if (remax && !std::isfinite(static_cast<double>(in.baselines[i])))
            raise_argument(errc::non_finite, where, "baselines", "finite values",
                           num_str(static_cast<double>(in.baselines[i])) + " at index " + to_str(i));
    }
}

} // namespace detail

GRPO_NAMESPACE_END
