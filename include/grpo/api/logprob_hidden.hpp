// SPDX-License-Identifier: MIT
// Log-probabilities and entropies of the sampled tokens from the final hidden states and the LM head, without
// ever holding the [tokens, vocabulary] logits: a chunk of rows at a time. Needs Eigen (the matrix products):
// include <grpo/logprobs_hidden.hpp> and link grpo::eigen.
#pragma once

#include <type_traits>

#include "../backend/cpu/logprob_hidden.hpp"
#include "../core/exec.hpp"
#include "../core/workspace.hpp"
#include "../types/logprob_types.hpp"

GRPO_NAMESPACE_BEGIN

/// Per row i of hidden [M, H], with the logits z_i = (hidden_i weight^T + bias) / temperature and y_i = tokens[i]:
///   lse_i = log sum_v exp(z_iv),   logp_i = z_{i,y_i} - lse_i,   entropy_i = -sum_v p_iv log p_iv
/// (the logits form's formulas, logprobs_from_logits), computed config.chunk_rows unmasked rows at a time: the
/// chunk's logits come from one matrix product per vocabulary tile and are reduced at once, so the extra memory is
/// about chunk_rows x (V + H) elements, never M x V. Masked rows are neither multiplied nor read and give 0.
/// TRL: the lm_head projection followed by selective_log_softmax and entropy_from_logits
/// (GRPOTrainer._get_per_token_logps_and_entropies); verl: the fused linear-for-ppo path
/// (FusedLinearForPPO, verl/utils/experimental/torch_functional.py); Liger-Kernel: LigerFusedLinearGRPOLoss.
///
/// @param[in]  ex   exec::host{} or exec::host{&pool} (each product's vocabulary tiles and each chunk's rows are
///                  split over the pool; Eigen's own threading is not used).
/// @param[in]  in   hidden [M, H], weight [V, H], optional bias [V], tokens [M], optional mask [M]; unit column
///                  strides, any row strides.
/// @param[out] out  logp [M] (required), entropy [M] and lse [M] (optional; keep lse for the backward).
/// @param[in]  cfg  temperature, checks, chunk_rows (hidden_logprob_config).
/// @param[in]  ws   scratch (6 doubles per row and the chunk's buffers), reused across calls.
/// Errors (grpo::error, outputs untouched): those of logprobs_from_logits, a weight whose columns are not H,
/// a bias not of size V, a negative chunk_rows; with validation::full also non-finite hidden (at unmasked rows),
/// weight or bias values, and logits that overflow the element type. Bit-identical for any pool size.
template <class T, class Token>
logprob_stats logprobs_from_hidden(const exec::host& ex, const hidden_inputs<T, Token, host_space>& in,
                                   const logprob_outputs<T, host_space>& out, const hidden_logprob_config& cfg,
                                   workspace& ws) {
    static_assert(std::is_floating_point<T>::value,
                  "grpo::logprobs_from_hidden (host): hidden states must be float or double");
    static_assert(detail::is_token_type<Token>, "grpo::logprobs_from_hidden: tokens must be int64 or int32");
    constexpr const char* where = "logprobs_from_hidden";
    const index_t vocab = detail::check_hidden_call(where, in, out, cfg);
    const workspace_lease lease(ws, where);
    const bool full = cfg.checks == validation::full;
    detail::check_tokens_and_mask(where, in.tokens, in.mask, vocab, full);
    if (full) detail::cpu::check_hidden_values(ex, where, in, ws);
    return detail::cpu::logprobs_from_hidden(ex, in, out, cfg, ws, where);
}

/// Convenience overload with a temporary workspace (allocates; prefer the workspace overload in a loop).
template <class T, class Token>
logprob_stats logprobs_from_hidden(const exec::host& ex, const hidden_inputs<T, Token, host_space>& in,
                                   const logprob_outputs<T, host_space>& out, const hidden_logprob_config& cfg = {}) {
    workspace ws;
    return logprobs_from_hidden(ex, in, out, cfg, ws);
}

/// The backward of logprobs_from_hidden. With G_iv = dLoss/dlogits_iv of the logits form
/// (logprobs_from_logits_backward: ([v == y_i] g_i - p_iv (g_i + h_i (log p_iv + entropy_i))) / temperature):
///   grads.hidden  = G weight             [M, H], written (0 at masked rows)
///   grads.weight += G^T hidden           [V, H], accumulated
///   grads.bias   += sum_i G_i            [V], accumulated
/// chunk by chunk: the chunk's logits are computed again (the forward's products, so the same values: call it
/// with the forward's inputs and configuration), turned into G in place, and multiplied out. Peak extra memory
/// about chunk_rows x (V + 2 H) elements. Each gradient output is optional; none may overlap an input or another
/// output. With validation::full the inputs are checked (as the forward does, plus the per-row lse, entropy and
/// gradients, and bounds under which no logit and no gradient element can overflow T, so that finite inputs give
/// finite gradients) before anything is written.
/// TRL/verl: the autograd backward of the lm_head projection, log_softmax + gather and the entropy bonus.
///
/// @param[in]  in     the forward's inputs.
/// @param[in]  grad   lse [M] from the forward (required), grad_logp [M] (required), grad_entropy [M] and the
///                    forward's entropy [M] (both or neither).
/// @param[out] grads  hidden [M, H], weight [V, H], bias [V]; unit column strides.
template <class T, class Token>
void logprobs_from_hidden_backward(const exec::host& ex, const hidden_inputs<T, Token, host_space>& in,
                                   const logprob_grad_inputs<T, host_space>& grad, const hidden_grads<T>& grads,
                                   const hidden_logprob_config& cfg, workspace& ws) {
    static_assert(std::is_floating_point<T>::value,
                  "grpo::logprobs_from_hidden_backward (host): hidden states must be float or double");
    static_assert(detail::is_token_type<Token>, "grpo::logprobs_from_hidden_backward: tokens must be int64 or int32");
    constexpr const char* where = "logprobs_from_hidden_backward";
    const index_t vocab = detail::check_hidden_backward_call(where, in, grad, grads, cfg);
    const workspace_lease lease(ws, where);
    const bool full = cfg.checks == validation::full;
    detail::check_tokens_and_mask(where, in.tokens, in.mask, vocab, full);
    if (full) {
        detail::cpu::check_backward_rows(where, in.mask, grad);
        detail::cpu::check_hidden_values(ex, where, in, ws);
        detail::cpu::check_gradient_bounds(ex, where, in, grad, cfg.temperature, ws);
    }
    detail::cpu::logprobs_from_hidden_backward(ex, in, grad, grads, cfg, ws, where);
}

/// Convenience overload with a temporary workspace (allocates).
template <class T, class Token>
void logprobs_from_hidden_backward(const exec::host& ex, const hidden_inputs<T, Token, host_space>& in,
                                   const logprob_grad_inputs<T, host_space>& grad, const hidden_grads<T>& grads,
                                   const hidden_logprob_config& cfg = {}) {
    workspace ws;
    logprobs_from_hidden_backward(ex, in, grad, grads, cfg, ws);
}

GRPO_NAMESPACE_END
