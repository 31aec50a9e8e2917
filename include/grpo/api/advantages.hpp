// SPDX-License-Identifier: MIT
// Group-relative advantages from per-completion rewards (outcome supervision): the CPU entry point.
#pragma once

#include <type_traits>

#include "../backend/cpu/advantages.hpp"
#include "../core/exec.hpp"
#include "../core/workspace.hpp"
#include "../types/advantage_types.hpp"

GRPO_NAMESPACE_BEGIN

/// Group-relative advantages A_i from per-completion rewards r_i (DeepSeekMath §4.1.2, outcome supervision).
///
/// group_zscore: A_i = (r_i - mean_g) / (std_g + epsilon); see advantage_estimator for the others.
/// TRL: GRPOTrainer._generate_and_score_completions; verl: compute_grpo_outcome_advantage (and rloo,
/// reinforce_plus_plus_baseline, grpo_passk, opo, gpg); OpenRLHF: group_norm / dr_grpo / rloo /
/// reinforce_baseline.
///
/// @param[in]  rewards     one reward per completion (NaN = unscored when config.nan == ignore)
/// @param[in]  g           groups::contiguous(G) or groups::by_id(ids, num_groups)
/// @param[out] advantages  one advantage per completion; feed broadcast_to_tokens(advantages, T) to the loss
/// @param[out] per_group   optional per-group mean / std / zero-variance flag / scored count
/// @param[in]  token_weights per-completion weights (token counts): optional for the batch whitening of
///                           group_centered_batch_whitened (verl masked_whiten is token-weighted), required
///                           for opo (its length-weighted baseline); other estimators ignore them
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
    return detail::cpu::compute_advantages(where, rewards, g, advantages, cfg, ws, per_group, token_weights);
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
