// SPDX-License-Identifier: MIT
// Log-probabilities and entropies of the sampled tokens from a host's logits, and their backward into the logits
// (optionally in place): the [tokens, vocabulary] part of a GRPO step that the loss itself never sees.
#pragma once

#include <type_traits>

#include "../backend/cpu/logprob.hpp"
#include "../core/exec.hpp"
#include "../core/workspace.hpp"
#include "../types/logprob_types.hpp"

GRPO_NAMESPACE_BEGIN

/// Per row i of logits [M, V], with z = logits / temperature and y_i = tokens[i]:
///   lse_i = log sum_v exp(z_iv),   logp_i = z_{i,y_i} - lse_i,   entropy_i = -sum_v p_iv log p_iv = lse_i - sum_v p_iv z_iv
/// in one read of the logits (an online log-sum-exp over blocks of the row), fp32 math for float logits and fp64
/// for double, sums in double. Rows with mask 0 are not read and give 0. A logit of -inf is a banned token: it has
/// probability 0 (the sampled token's may not be -inf).
/// TRL: selective_log_softmax + entropy_from_logits after `logits /= temperature`
/// (GRPOTrainer._get_per_token_logps_and_entropies); verl: logprobs_from_logits + entropy_from_logits.
///
/// @param[in]  ex   exec::host{} or exec::host{&pool} (rows are split over the pool).
/// @param[in]  in   logits [M, V] (unit column stride, any row stride), tokens [M], optional mask [M]. For a
///                  [B, T] batch, M = B * T: the host's logits flattened over completions and positions.
/// @param[out] out  logp [M] (required), entropy [M] and lse [M] (optional; keep lse for the backward).
/// @param[in]  ws   scratch (4 doubles per row), reused across calls.
/// @returns the sums over the unmasked rows (logprob_stats).
/// Errors (grpo::error, outputs untouched): shapes, a temperature that is not finite and > 0, token ids outside
/// [0, V) at unmasked rows, outputs overlapping inputs; with config.checks == validation::full also mask values
/// other than 0/1, NaN or +inf logits (found in the same read) and a sampled token whose logit is -inf.
/// Bit-identical results for any pool size.
template <class T, class Token>
logprob_stats logprobs_from_logits(const exec::host& ex, const logits_inputs<T, Token, host_space>& in,
                                   const logprob_outputs<T, host_space>& out, const logprob_config& cfg,
                                   workspace& ws) {
    static_assert(std::is_floating_point<T>::value,
                  "grpo::logprobs_from_logits (host): logits must be float or double");
    static_assert(detail::is_token_type<Token>, "grpo::logprobs_from_logits: tokens must be int64 or int32");
    constexpr const char* where = "logprobs_from_logits";
    detail::check_logprob_call(where, in, out, cfg);
    const workspace_lease lease(ws, where);
    detail::check_tokens_and_mask(where, in, cfg.checks == validation::full);
    return detail::cpu::logprobs_from_logits(ex, in, out, cfg, ws, where);
}

/// Convenience overload with a temporary workspace (allocates; prefer the workspace overload in a loop).
template <class T, class Token>
logprob_stats logprobs_from_logits(const exec::host& ex, const logits_inputs<T, Token, host_space>& in,
                                   const logprob_outputs<T, host_space>& out, const logprob_config& cfg = {}) {
    workspace ws;
    return logprobs_from_logits(ex, in, out, cfg, ws);
}

/// The backward of logprobs_from_logits: for every unmasked row i and column v,
///   grad_logits_iv = ( [v == y_i] g_i - p_iv (g_i + h_i (log p_iv + entropy_i)) ) / temperature
/// with g = grad.grad_logp (dLoss/dlogp) and h = grad.grad_entropy (dLoss/dentropy, 0 when absent),
/// p_iv = exp(z_iv - lse_i); masked rows get 0. grad_logits may be the logits' own memory (the same view, made
/// mutable): each element is read before it is overwritten, so the backward needs no second [M, V] buffer.
/// It must otherwise not overlap any input. One read of the logits and one write; with validation::full the
/// logits are read once more first (NaN or +inf there would otherwise reach the gradient, and in place the
/// outputs could not stay untouched).
/// TRL/verl: the autograd backward of log_softmax + gather (+ the entropy bonus) in torch.
///
/// @param[in]  in           the forward's inputs (same logits, tokens, mask).
/// @param[in]  grad         lse [M] from the forward (required), grad_logp [M] (required), grad_entropy [M]
///                          and the forward's entropy [M] (both or neither).
/// @param[out] grad_logits  [M, V], unit column stride, any row stride.
/// @param[in]  ws           scratch (one double per row, with validation::full).
template <class T, class Token>
void logprobs_from_logits_backward(const exec::host& ex, const logits_inputs<T, Token, host_space>& in,
                                   const logprob_grad_inputs<T, host_space>& grad, const matrix_view<T>& grad_logits,
                                   const logprob_config& cfg, workspace& ws) {
    static_assert(std::is_floating_point<T>::value,
                  "grpo::logprobs_from_logits_backward (host): logits must be float or double");
    static_assert(detail::is_token_type<Token>, "grpo::logprobs_from_logits_backward: tokens must be int64 or int32");
    constexpr const char* where = "logprobs_from_logits_backward";
    detail::check_logprob_backward_call(where, in, grad, grad_logits, cfg);
    const workspace_lease lease(ws, where);
    const bool full = cfg.checks == validation::full;
    detail::check_tokens_and_mask(where, in, full);
    if (full) detail::cpu::check_backward_values(ex, where, in, grad, ws);
    detail::cpu::logprobs_from_logits_backward(ex, in, grad, grad_logits, cfg);
}

/// Convenience overload with a temporary workspace (allocates with validation::full).
template <class T, class Token>
void logprobs_from_logits_backward(const exec::host& ex, const logits_inputs<T, Token, host_space>& in,
                                   const logprob_grad_inputs<T, host_space>& grad, const matrix_view<T>& grad_logits,
                                   const logprob_config& cfg = {}) {
    workspace ws;
    logprobs_from_logits_backward(ex, in, grad, grad_logits, cfg, ws);
}

GRPO_NAMESPACE_END
