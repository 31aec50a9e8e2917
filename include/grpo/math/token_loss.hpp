// SPDX-License-Identifier: MIT
// The composition of one token's loss and gradient from the formulas of objective.hpp and kl.hpp: ratio,
// objective, KL term, row weight and the sequence-ratio term. Both backends call token_loss() for every
// unmasked token and keep only their iteration and reduction, so the composition exists once.
#pragma once

#include "kl.hpp"
#include "objective.hpp"

GRPO_NAMESPACE_BEGIN
namespace math {

/// Everything a token's loss depends on besides its own inputs, in the element type's precision: the call's
/// settings and its row's weight and sequence ratio.
template <class C>
struct token_params {
    objective_params<C> objective;
    C log_ratio_clamp; ///< clamp of logp - old_logp before exp; 0 = off
    C beta;            ///< KL coefficient
    kl_estimator kl;
    C kl_input_clamp, kl_value_clamp;
    bool kl_straight_through;
    // Per row:
    C weight;          ///< dL/dloss_it: loss_scale * w_i (aggregation.hpp)
    bool sequence;     ///< the ratio is the row's sequence ratio s_i (GSPO), not the token's
    C sequence_ratio;  ///< s_i
    C sequence_dratio; ///< d s_i / d logp_it used per token: s_i for sequence_token, 0 for sequence
    C sequence_term;   ///< ratio_level::sequence: the gradient through the mean log-ratio (sequence_gradient)
};

/// One token's results. Flags are 0 or 1 in C so that they sum directly and token loops vectorize.
template <class C>
struct token_result {
    C loss;        ///< policy loss + beta * KL (the per_token_loss output)
    C policy_loss; ///< the objective's loss
    C kl;          ///< the KL estimate (0 without KL)
    C grad;        ///< dL/dlogp
    C ratio;       ///< the importance ratio the objective saw
    C neg_log_ratio; ///< -(clamped log-ratio): verl's ppo_kl per token
    C clipped_low, clipped_high, dual_clipped;
};

/// dLoss/dlogp at one token: weight * (dloss/dratio * dratio/dlogp + dloss/dlogp + beta * dKL/dlogp) + the
/// sequence-ratio term. Each product is a chain(): a factor that is exactly 0 (a clipped ratio, beta = 0, a
/// zero weight) keeps the term exactly 0 even when the other factor overflowed to +-inf, so finite inputs never
/// produce a NaN gradient (docs/numerics.md).
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C token_gradient(C weight, C dloss_dratio, C dratio_dlogp, C dloss_dlogp, C beta,
                                                   C dkl_dlogp, C sequence_term) {
    return chain(weight, chain(dloss_dratio, dratio_dlogp) + dloss_dlogp + chain(beta, dkl_dlogp)) + sequence_term;
}

/// The loss, gradient and diagnostics of one unmasked token with objective K, with or without the KL term.
/// r = exp(clamp(logp - old_logp)) (or the row's sequence ratio); loss = objective(r, A, logp) + beta KL.
template <policy_objective K, bool WithKL, class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE token_result<C> token_loss(const token_params<C>& p, C logp, C old_logp,
                                                             C ref_logp, C advantage) {
    const clamped<C> lr = clamp_symmetric(logp - old_logp, p.log_ratio_clamp);
    const C token_ratio = math::exp(lr.value);
    const C r = select(p.sequence, p.sequence_ratio, token_ratio);
    const C dr = select(p.sequence, p.sequence_dratio, token_ratio * lr.grad);
    const objective_term<C> o = objective_at<K>(p.objective, r, advantage, logp);
    C kl_value = C(0), kl_grad = C(0);
    if constexpr (WithKL) {
        const kl_term<C> k =
            kl_penalty<C>(p.kl, logp, ref_logp, p.kl_input_clamp, p.kl_value_clamp, p.kl_straight_through);
        kl_value = k.value;
        kl_grad = k.grad;
    }
    const C grad = token_gradient(p.weight, o.dloss_dratio, dr, o.dloss_dlogp, p.beta, kl_grad, p.sequence_term);
    return {o.loss + p.beta * kl_value, o.loss, kl_value, grad, r, -lr.value, o.clipped_low, o.clipped_high,
            o.dual_clipped};
}

/// token_loss with the objective and the KL switch known only at run time (the CUDA kernel; the CPU backend
/// instantiates its token loop per objective instead).
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE token_result<C> token_loss(const token_params<C>& p, bool with_kl, C logp,
                                                             C old_logp, C ref_logp, C advantage) {
    return visit_objective(p.objective.kind, [&](auto k) {
        constexpr policy_objective K = decltype(k)::value;
        return with_kl ? token_loss<K, true>(p, logp, old_logp, ref_logp, advantage)
                       : token_loss<K, false>(p, logp, old_logp, ref_logp, advantage);
    });
}

/// The sequence ratio s_i = exp(clamp(mean_t log r_it)) of a row with n unmasked tokens whose log-ratios sum
/// to log_ratio_sum, and ds_i / d logp_it = s_i * clamp' / n (the same for every token of the row; GSPO).
struct sequence_ratio_term {
    double value = 1;
    double grad = 0; ///< s_i * clamp' (divide by n for d s / d logp_it)
};
GRPO_HOST_DEVICE inline sequence_ratio_term sequence_ratio(double log_ratio_sum, double n, double clamp) {
    if (!(n > 0)) return {};
    const clamped<double> c = clamp_symmetric(log_ratio_sum / n, clamp);
    const double s = math::exp(c.value);
    return {s, s * c.grad};
}

/// ratio_level::sequence: the gradient every token of the row gets through s_i, (weight * sum_t dloss_t/ds)
/// * ds/dlogp_t. Exactly 0 when no token's loss depends on s (chain()), even where ds overflowed.
GRPO_HOST_DEVICE inline double sequence_gradient(double weight, double dloss_ds_sum, const sequence_ratio_term& s,
                                                 double n) {
    return n > 0 ? chain(weight * dloss_ds_sum, s.grad) / n : 0.0;
}

} // namespace math
GRPO_NAMESPACE_END
