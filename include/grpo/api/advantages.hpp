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
/// @param[in]  ws          scratch: 7 doubles per group (14 for passk and opo) plus one per completion, reused
/// A constant group has std exactly 0 and advantage exactly 0 (two-pass, pivot-shifted statistics).
/// Throws grpo::error, outputs untouched, on size mismatches, a group size < 1 or not dividing the batch,
/// ids out of range, Inf rewards, NaN rewards unless config.nan == ignore, or whitening with < 2 weights.
/// Deterministic: the same inputs always give bit-identical outputs, for any pool size (exec::host{&pool}
/// spreads the per-completion formulas and the statistics of contiguous groups over its threads; every sum
/// keeps row order).
template <class R, class T>
advantage_stats compute_advantages(const exec::host& ex, vector_view<R> rewards_in, const groups& g,
                                   vector_view<T> advantages, const advantage_config& cfg, workspace& ws,
                                   const group_outputs& per_group = {}, vector_view<const double> token_weights = {}) {
    static_assert(std::is_same<std::remove_const_t<R>, T>::value && std::is_floating_point<T>::value,
                  "grpo::compute_advantages: rewards and advantages must have the same float/double type");
    const vector_view<const T> rewards = rewards_in;
    const char* where = "compute_advantages";
    detail::check_advantage_call(where, rewards, g, advantages, cfg, per_group, token_weights);
    const workspace_lease lease(ws, where);
    return detail::cpu::compute_advantages(ex, where, rewards, g, advantages, cfg, ws, per_group, token_weights);
}

/// Convenience overload with a temporary workspace.
template <class R, class T>
advantage_stats compute_advantages(const exec::host& ex, vector_view<R> rewards, const groups& g,
                                   vector_view<T> advantages, const advantage_config& cfg = {},
                                   const group_outputs& per_group = {}, vector_view<const double> token_weights = {}) {
    workspace ws;
    return compute_advantages(ex, rewards, g, advantages, cfg, ws, per_group, token_weights);
}

/// Token-level advantages from per-token rewards (verl compute_reinforce_plus_plus_outcome_advantage,
/// compute_remax_outcome_advantage, compute_optimal_token_baseline_advantage and
/// compute_multi_turn_optimal_token_baseline_advantage).
///
/// reinforce_plus_plus: G_it = r_it + gamma G_i,t+1 (restarting where the mask ends), A = (G - mu) /
///   sqrt(var + whiten_epsilon) over the unmasked tokens of the batch (unbiased var; verl masked_whiten).
/// remax: G_it = sum_{s >= t} r_is m_is, A_it = G_it - baselines[i].
/// optimal_token_baseline: G as remax, A_it = G_it - B_jt with, over the rows i of prompt group j unmasked at t,
///   B_jt = sum_i G_it W_it / (sum_i W_it + otb_epsilon), W_it = sum_{s <= t} (1 - 2 exp(old_logp_is) +
///   sum_pi_squared_is) is_weights_is^2 m_is; B = 0 for a group of one row, and on the tail rule's tokens.
/// tir_optimal_token_baseline: the same with t counted over each row's unmasked tokens (see token_estimator).
/// Advantages and returns are exactly 0 at masked tokens (verl keeps G there; its advantages are masked too).
/// Process rewards become token rewards with process_token_rewards (rl/process_rewards.hpp).
///
/// @param[in]  in   rewards and mask [rows, tokens]; baselines [rows] for remax; prompts, old_logp,
///                  sum_pi_squared (and optionally is_weights) for the optimal token baseline
/// @param[out] out  advantages [rows, tokens]; optional returns G
/// @param[in]  ws   scratch: rows * tokens doubles (twice that, plus 2 * groups * tokens, for the optimal
///                  token baseline), reused across calls
/// Throws grpo::error, outputs untouched, on shape mismatches, mask values other than 0/1, non-finite rewards
/// at unmasked tokens or baselines, fewer than 2 unmasked tokens (reinforce_plus_plus), bad prompt groups,
/// old_logp > 0, sum_pi_squared outside [0, 1] or negative is_weights at unmasked tokens, or values that do not
/// fit T. Runs on the calling thread; deterministic.
template <class T>
token_advantage_stats token_advantages(const exec::host&, const token_advantage_inputs<T>& in,
                                       const token_advantage_outputs<T>& out, const token_advantage_config& cfg,
                                       workspace& ws) {
    static_assert(std::is_floating_point<T>::value, "grpo::token_advantages: element type must be float or double");
    const char* where = "token_advantages";
    detail::check_token_advantage_call(where, in, out, cfg);
    const workspace_lease lease(ws, where);
    return detail::cpu::token_advantages(where, in, out, cfg, ws);
}
/// Convenience overload with a temporary workspace.
template <class T>
token_advantage_stats token_advantages(const exec::host& ex, const token_advantage_inputs<T>& in,
                                       const token_advantage_outputs<T>& out, const token_advantage_config& cfg = {}) {
    workspace ws;
    return token_advantages(ex, in, out, cfg, ws);
}

/// Device views given to the host executor: a compile error that names the fix.
template <class R, class Groups, class T, class... Rest>
advantage_stats compute_advantages(const exec::host&, vector_view<R, device_space>, const Groups&,
                                   vector_view<T, device_space>, Rest&&...) {
    static_assert(detail::always_false<T>::value,
                  "grpo::compute_advantages: exec::host takes host_space views; device_space views need a device "
                  "executor (exec::cuda from <grpo/cuda.cuh>, or exec::cuda_emulated)");
    return {};
}
template <class T, class... Rest>
token_advantage_stats token_advantages(const exec::host&, const token_advantage_inputs<T, device_space>&,
                                       const token_advantage_outputs<T, device_space>&, Rest&&...) {
    static_assert(detail::always_false<T>::value,
                  "grpo::token_advantages: exec::host takes host_space views; device_space views need a device "
                  "executor (exec::cuda from <grpo/cuda.cuh>, or exec::cuda_emulated)");
    return {};
}

GRPO_NAMESPACE_END
