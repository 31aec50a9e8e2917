// SPDX-License-Identifier: MIT
// The standalone per-token KL between the current and the reference policy, with its per-token gradient.
#pragma once

#include <type_traits>

#include "../backend/cpu/kl.hpp"
#include "../core/exec.hpp"
#include "../core/workspace.hpp"
#include "../types/kl_types.hpp"

GRPO_NAMESPACE_BEGIN

/// Computes the per-token KL estimate KL_it(logp, ref_logp) and d KL_it / d logp_it on the CPU, with the
/// estimator and options loss_and_grad uses for its beta * KL term (kl_config::of(loss_config) gives the same
/// numbers), but without a policy term: for logging the KL, for a KL penalty on the rewards, or for a host
/// that adds its own KL loss. x = logp - ref_logp:
///   k1  x  |  k2  x^2 / 2  |  k3  exp(-x) + x - 1  |  abs  |x|  |  low_var_kl  k3 with x and the value clamped
/// TRL: the per_token_kl of GRPOTrainer._compute_loss; verl: kl_penalty(logprob, ref_logprob, kl_penalty).
///
/// @param[in]  ex   exec::host{} (calling thread) or exec::host{&pool}.
/// @param[in]  in   logp and ref_logp (required), mask, lengths.
/// @param[out] out  kl: KL_it; grad_logp: d KL_it / d logp_it, per token and not aggregated (multiply by your
///                  own weights); both optional, exactly 0 at masked positions.
/// @param[in]  ws   scratch reused across calls.
/// @returns the sum and the mean over the unmasked tokens (kl_stats).
/// Preconditions and errors as loss_and_grad: shapes agree, outputs do not overlap inputs, lengths in
/// [0, cols]; with config.checks == validation::full, finite logp and ref_logp at unmasked tokens and mask values
/// 0/1. Violations throw grpo::error and leave the outputs untouched. Bit-identical results for any pool size.
template <class T>
kl_stats per_token_kl(const exec::host& ex, const kl_inputs<T, host_space>& in, const kl_outputs<T, host_space>& out,
                      const kl_config& cfg, workspace& ws) {
    static_assert(std::is_floating_point<T>::value, "grpo::per_token_kl (host): element type must be float or double");
    constexpr const char* where = "per_token_kl";
    const detail::kl_params k = detail::check_kl_call(where, in, out, cfg);
    const workspace_lease lease(ws, where);
    detail::check_lengths_on_host(where, in.lengths, in.logp.rows(), in.logp.cols());
    // The loss's views: logp stands in for the advantages (validated like them, never used).
    const detail::cpu::loss_views<T> v{in.logp,       {},     in.ref_logp, in.logp, in.mask, in.lengths,
                                       out.grad_logp, out.kl, {},          {},      {},      {}};
    return detail::cpu::per_token_kl(ex, v, k, cfg.checks == validation::full, ws);
}

/// Convenience overload with a temporary workspace (allocates; prefer the workspace overload in a loop).
template <class T>
kl_stats per_token_kl(const exec::host& ex, const kl_inputs<T, host_space>& in, const kl_outputs<T, host_space>& out,
                      const kl_config& cfg) {
    workspace ws;
    return per_token_kl(ex, in, out, cfg, ws);
}

/// Device views given to the host executor: a compile error that names the fix.
template <class T, class... Rest>
kl_stats per_token_kl(const exec::host&, const kl_inputs<T, device_space>&, const kl_outputs<T, device_space>&,
                      Rest&&...) {
    static_assert(detail::always_false<T>::value,
                  "grpo::per_token_kl: exec::host takes host_space views; device_space views need a device executor "
                  "(exec::cuda from <grpo/cuda.cuh>, or exec::cuda_emulated)");
    return {};
}

GRPO_NAMESPACE_END
