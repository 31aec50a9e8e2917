// SPDX-License-Identifier: MIT
// Group-relative advantages from per-completion rewards (outcome supervision): the CPU entry point.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "../core/exec.hpp"
#include "../core/workspace.hpp"
#include "../types/advantage_types.hpp"

GRPO_NAMESPACE_BEGIN

/// Group-relative advantages A_i from per-completion rewards r_i (DeepSeekMath §4.1.2, outcome supervision).
///
/// group_zscore: A_i = (r_i - mean_g) / (std_g + epsilon); see advantage_estimator for the others.
/// TRL: GRPOTrainer._generate_and_score_completions; verl: compute_grpo_outcome_advantage (and rloo,
/// reinforce_plus_plus_baseline); OpenRLHF: group_norm / dr_grpo / rloo / reinforce_baseline.
///
/// @param[in]  rewards     one reward per completion (NaN = unscored when config.nan == ignore)
/// @param[in]  g           groups::contiguous(G) or groups::by_id(ids, num_groups)
/// @param[out] advantages  one advantage per completion; feed broadcast_to_tokens(advantages, T) to the loss
/// @param[out] per_group   optional per-group mean / std / zero-variance flag / scored count
/// @param[in]  token_weights optional per-completion weights (token counts) for the batch whitening of
///                           group_centered_batch_whitened (verl masked_whiten is token-weighted)
/// A constant group has std exactly 0 and advantage exactly 0 (two-pass, pivot-shifted statistics).
/// Throws grpo::error, outputs untouched, on size mismatches, a group size < 1 or not dividing the batch,
/// ids out of range, Inf rewards, NaN rewards unless config.nan == ignore, or whitening with < 2 weights.
/// Deterministic: the same inputs always give bit-identical outputs.
template <class R, class T>
advantage_stats compute_advantages(const exec::host&, vector_view<R> rewards_in, const groups& g,
                                   vector_view<T> advantages, const advantage_config& cfg, workspace& ws,
                                   const group_outputs& per_group = {},
                                   vector_view<const double> token_weights = {}) {
    static_assert(std::is_same<std::remove_const_t<R>, T>::value && std::is_floating_point<T>::value,
                  "grpo::compute_advantages: rewards and advantages must have the same float/double type");
    const vector_view<const T> rewards = rewards_in;
    const char* where = "compute_advantages";
    detail::check_advantage_call(where, rewards, g, advantages, cfg, per_group, token_weights);
    const workspace_lease lease(ws, where);
    const index_t n = rewards.size();
    const index_t k = g.num_groups(n);
    using moments = math::group_moments<double>;
    static_assert(sizeof(moments) == 4 * sizeof(double), "group_moments layout");
    auto* groups_m = reinterpret_cast<moments*>(
        ws.doubles(static_cast<std::size_t>(detail::checked_mul(where, "num_groups", k, 4)), where));
    std::fill(groups_m, groups_m + k, moments{});
    auto group_of = [&](index_t i) { return detail::group_of(g, i); };
    auto scored = [&](index_t i) { return !std::isnan(static_cast<double>(rewards[i])); };

    // Group and batch statistics, two passes each, in row order.
    moments batch;
    for (index_t i = 0; i < n; ++i)
        if (scored(i)) {
            groups_m[group_of(i)].add_first_pass(rewards[i]);
            batch.add_first_pass(rewards[i]);
        }
    const double batch_mean = batch.mean();
    for (index_t i = 0; i < n; ++i)
        if (scored(i)) {
            moments& m = groups_m[group_of(i)];
            m.add_second_pass(rewards[i], m.mean());
            batch.add_second_pass(rewards[i], batch_mean);
        }

    // Whitening statistics (group_centered_batch_whitened) over the centered values: weighted, pivot-shifted
    // two-pass moments, so a constant batch has exactly zero deviation (and whitening_scale 0).
    double white_mean = 0, white_scale = 1;
    const bool whiten = cfg.estimator == advantage_estimator::group_centered_batch_whitened;
    if (whiten) {
        auto centered = [&](index_t i) {
            const moments& m = groups_m[group_of(i)];
            return math::group_advantage<double>(cfg.estimator, rewards[i], m.count, m.mean(), 0, cfg.epsilon,
                                                 cfg.singleton);
        };
        auto weight = [&](index_t i) { return token_weights.present() ? token_weights[i] : 1.0; };
        moments white;
        for (index_t i = 0; i < n; ++i)
            if (scored(i)) white.add_first_pass(centered(i), weight(i));
        if (!(white.count > 1))
            detail::raise_argument(errc::invalid_value, where, "rewards",
                                   "a total whitening weight > 1 (verl masked_whiten needs at least 2 tokens)",
                                   detail::num_str(white.count));
        white_mean = white.mean();
        for (index_t i = 0; i < n; ++i)
            if (scored(i)) white.add_second_pass(centered(i), white_mean, weight(i));
        white_scale = math::whitening_scale(white.m2, white.count, cfg.whiten_epsilon);
    }

    const double batch_std = batch.std(cfg.std);
    auto advantage_of = [&](index_t i) {
        return scored(i) ? math::completion_advantage<double>(cfg.estimator, rewards[i], groups_m[group_of(i)],
                                                              cfg.std, batch_std, cfg.epsilon, cfg.singleton,
                                                              white_mean, white_scale)
                         : 0.0;
    };
    // Every advantage must fit the output type before anything is written (fp32 RLOO of rewards near 3e38
    // would otherwise store +-inf).
    double amin = std::numeric_limits<double>::infinity(), amax = -amin;
    moments adv;
    for (index_t i = 0; i < n; ++i)
        if (scored(i)) {
            const double a = advantage_of(i);
            if (!(std::fabs(a) <= static_cast<double>(std::numeric_limits<T>::max())))
                detail::raise_argument(errc::invalid_value, where, "rewards",
                                       std::string("rewards whose advantages fit the output type (|A| <= ") +
                                           detail::num_str(static_cast<double>(std::numeric_limits<T>::max())) + ")",
                                       "advantage " + detail::num_str(a) + " at index " + detail::to_str(i) +
                                           (std::isfinite(a) ? "" : " (the statistics of these rewards overflow double)"));
            adv.add_first_pass(a);
            amin = std::min(amin, a);
            amax = std::max(amax, a);
        }

    advantage_stats st;
    st.num_groups = k;
    for (index_t i = 0; i < n; ++i) advantages[i] = static_cast<T>(advantage_of(i));
    const double adv_mean = adv.mean();
    for (index_t i = 0; i < n; ++i)
        if (scored(i)) adv.add_second_pass(advantages[i], adv_mean);

    for (index_t j = 0; j < k; ++j) {
        const moments& m = groups_m[j];
        const bool zero_var = m.zero_variance(); // every scored reward equal (or fewer than two)
        st.zero_variance_groups += zero_var;
        if (per_group.mean.present()) per_group.mean[j] = m.mean();
        if (per_group.std.present()) per_group.std[j] = m.std(cfg.std);
        if (per_group.zero_variance.present()) per_group.zero_variance[j] = zero_var;
        if (per_group.count.present()) per_group.count[j] = static_cast<std::int64_t>(m.count);
    }
    st.zero_variance_fraction = k > 0 ? static_cast<double>(st.zero_variance_groups) / k : 0;
    st.scored = static_cast<index_t>(batch.count);
    st.reward_mean = batch_mean;
    st.reward_std = batch_std;
    if (adv.count > 0) {
        st.advantage_mean = adv_mean;
        st.advantage_std = adv.std(cfg.std);
        st.advantage_min = amin;
        st.advantage_max = amax;
    }
    return st;
}

/// Convenience overload with a temporary workspace.
template <class R, class T>
advantage_stats compute_advantages(const exec::host& ex, vector_view<R> rewards, const groups& g,
                                   vector_view<T> advantages, const advantage_config& cfg = {},
                                   const group_outputs& per_group = {},
                                   vector_view<const double> token_weights = {}) {
    workspace ws;
    return compute_advantages(ex, rewards, g, advantages, cfg, ws, per_group, token_weights);
}

GRPO_NAMESPACE_END
