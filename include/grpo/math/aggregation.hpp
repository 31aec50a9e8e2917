// SPDX-License-Identifier: MIT
// How per-token losses are reduced to one number. Every normalizer is a per-row weight w_i, so that
// L = loss_scale * sum_i w_i * sum_t loss_it * mask_it and dL/dloss_it = loss_scale * w_i * mask_it.
#pragma once

#include "../core/config.hpp"

GRPO_NAMESPACE_BEGIN

/// Loss aggregation modes, named after what they compute (n_i = unmasked tokens of row i,
/// N = total unmasked tokens, S = number of sequences, L = a constant length).
enum class aggregation {
    /// sum_it l m / N. TRL "bnpo" (N local); TRL "dapo" (default) and verl "token-mean" (default) with N the
    /// global token count (loss_config::global_token_count); OpenRLHF token_level_loss=True.
    token_mean,
    /// (1/S) sum_i (1/n_i) sum_t l m. DeepSeekMath Eq. 3; TRL "grpo"; verl "seq-mean-token-mean".
    seq_mean_token_mean,
    /// (1/S) sum_i sum_t l m. verl "seq-mean-token-sum".
    seq_mean_token_sum,
    /// sum_it l m / (S * L). Dr. GRPO: TRL "dr_grpo" (L = max_completion_length);
    /// verl "seq-mean-token-sum-norm" (L = loss_scale_factor, default the padded length).
    token_sum_over_constant,
    /// sum_it l m. verl "token-sum".
    token_sum,
};

namespace math {

/// Weight w_i of every unmasked token of a row with n_i unmasked tokens. Rows without tokens weigh 0, and a
/// batch without tokens has loss 0 (TRL's max(N, 1), without its bias when N >= 1).
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C row_weight(aggregation mode, C row_tokens, C total_tokens, C sequences,
                                               C constant_length) {
    switch (mode) {
    case aggregation::token_mean: return total_tokens > C(0) ? C(1) / total_tokens : C(0);
    case aggregation::seq_mean_token_mean:
        return row_tokens > C(0) && sequences > C(0) ? C(1) / (sequences * row_tokens) : C(0);
    case aggregation::seq_mean_token_sum: return sequences > C(0) ? C(1) / sequences : C(0);
    case aggregation::token_sum_over_constant:
        return sequences > C(0) && constant_length > C(0) ? C(1) / (sequences * constant_length) : C(0);
    case aggregation::token_sum:
    default: return C(1);
    }
}

} // namespace math
GRPO_NAMESPACE_END
