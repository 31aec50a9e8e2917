// SPDX-License-Identifier: MIT
// The GRPO policy loss, its gradient with respect to the current log-probs and its diagnostics, in one
// fused pass over the token arrays.
#pragma once

#include <type_traits>

#include "../backend/cpu/loss.hpp"
#include "../core/exec.hpp"
#include "../types/loss_record.hpp"
#include "../core/workspace.hpp"

GRPO_NAMESPACE_BEGIN

/// Computes the GRPO loss, dLoss/dlogp and the diagnostics on the CPU.
///
/// Per unmasked token (r = exp(logp - old_logp), or 1 with d r/d logp = 1 when old_logp is absent):
///   loss_it = objective(r, A_it, logp_it) + beta * KL_it(logp, ref_logp)                   [k3 by default]
/// with config.objective one of (policy_objective):
///   ppo_clip         -min(min(r, delta) A, clamp(r, 1 - eps_low, 1 + eps_high) A)   [dual clip for A < 0]
///   cispo            -sg(min(r, cispo_ratio_cap)) A logp                            (TRL "cispo")
///   cispo_clip       -sg(clamp(r, 1 - eps_low, 1 + eps_high)) A logp                 (verl "cispo")
///   sapo             -(4/tau) sigmoid(tau (r - 1)) A, tau by the sign of A           (TRL/verl "sapo")
///   policy_gradient  -A logp                                                         (verl "gpg")
///   geo_mean         -A rho_i, rho_i the geometric mean of the clipped token ratios   (verl "geo_mean", GMPO)
///   vespo            -sg(phi_i) A logp, phi_i a gamma weight of the row's ratio       (TRL "vespo")
///   clip_cov         ppo_clip, 0 at covariance-selected tokens                        (verl "clip_cov")
///   kl_cov           -A r + kl_cov_coef |logp - old| at covariance-selected tokens    (verl "kl_cov")
///   dro              -(A logp - dro_beta/2 (logp - old)^2)                            (verl "dro")
/// (formulas and options: policy_objective, docs/numerics.md; TRL "luspo" is the preset loss_config::luspo()).
/// then L = loss_scale * sum_i w_i sum_t loss_it m_it with w_i from config.agg (see aggregation).
/// TRL: GRPOTrainer._compute_loss; verl: compute_policy_loss_<loss_mode> + kl_penalty + agg_loss.
///
/// @param[in]  ex   exec::host{} (calling thread) or exec::host{&pool}.
/// @param[in]  in   the host's buffers: logp (required), old_logp, ref_logp (required if beta != 0),
///                  advantages (required), mask, lengths.
/// @param[out] out  grad_logp: dL/dlogp, exactly 0 at masked positions (optional: forward-only without it);
///                  per_token_loss (optional).
/// @param[in]  ws   scratch reused across calls: no heap allocation once it has seen the batch size.
/// @returns the loss and the diagnostics (loss_stats).
/// Preconditions: shapes agree; outputs do not overlap inputs. Violations throw grpo::error and leave the
/// outputs untouched; with config.checks == validation::full so do non-finite unmasked inputs and mask
/// values other than 0/1. Masked inputs are never read as numbers (NaN there is harmless).
/// Determinism: bit-identical results for any pool size. Cost: one pass over the inputs, plus one read for
/// validation::full, plus one read of the mask for token_mean without global_token_count.
template <class T>
loss_stats loss_and_grad(const exec::host& ex, const loss_inputs<T, host_space>& in,
                         const loss_outputs<T, host_space>& out, const loss_config& cfg, workspace& ws) {
    static_assert(std::is_floating_point<T>::value, "grpo::loss_and_grad (host): element type must be float or double");
    const detail::loss_params p = detail::check_loss_call("loss_and_grad", in, out, cfg);
    const workspace_lease lease(ws, "loss_and_grad");
    const index_t rows = in.logp.rows(), cols = in.logp.cols();
    detail::check_lengths_on_host("loss_and_grad", in.lengths, rows, cols);
    return detail::cpu::loss_and_grad(ex, detail::cpu::views_of(in, out), p, cfg.checks == validation::full,
                                      cfg.global_token_count, ws);
}

/// Convenience overload with a temporary workspace (allocates; prefer the workspace overload in a loop).
template <class T>
loss_stats loss_and_grad(const exec::host& ex, const loss_inputs<T, host_space>& in,
                         const loss_outputs<T, host_space>& out, const loss_config& cfg) {
    workspace ws;
    return loss_and_grad(ex, in, out, cfg, ws);
}

/// Device views given to the host executor: a compile error that names the fix (a device pointer must never be
/// dereferenced on the host).
template <class T, class... Workspace>
loss_stats loss_and_grad(const exec::host&, const loss_inputs<T, device_space>&, const loss_outputs<T, device_space>&,
                         const loss_config&, Workspace&...) {
    static_assert(detail::always_false<T>::value,
                  "grpo::loss_and_grad: exec::host takes host_space views; device_space views need a device "
                  "executor (exec::cuda from <grpo/cuda.cuh>, or exec::cuda_emulated)");
    return {};
}

GRPO_NAMESPACE_END
