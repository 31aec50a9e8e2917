// SPDX-License-Identifier: MIT
// The composition of one token's loss and gradient from the formulas of objective.hpp and kl.hpp: ratio,
// objective, KL term, row weight and the sequence-ratio term. Both backends call token_loss() for every
// unmasked token and keep only their iteration and reduction, so the composition exists once.
#pragma once

#include "correction.hpp"
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
    bool kl_bias_correction;         ///< KL_it *= r_it, gradient through r (TRL use_bias_correction_kl)
    correction_params<C> correction; ///< the sampling correction (correction.hpp)
    // Per row:
    C weight;              ///< dL/dloss_it: loss_scale * w_i (aggregation.hpp)
    bool sequence;         ///< the ratio is the row's sequence ratio s_i (GSPO), not the token's
    C sequence_ratio;      ///< s_i
    C sequence_dratio;     ///< d s_i / d logp_it used per token: s_i for sequence_token, 0 for sequence
    C sequence_term;       ///< ratio_level::sequence: the gradient through the mean log-ratio (sequence_gradient)
    C row_sampling_weight; ///< the sequence-level correction weight of the row (1 otherwise)
    bool row_off_policy;   ///< the row failed the off-policy test: tokens with A < 0 lose their policy term
    // Entropy (loss_inputs::entropy):
    bool entropy_given;  ///< the host passed per-token entropies (else the entropy terms are 0)
    C entropy_coef;      ///< the bonus: loss_it -= entropy_coef * H_it
    C entropy_threshold; ///< tokens with H < threshold lose their policy term (-infinity: none)
};

/// One token's results. Flags are 0 or 1 in C so that they sum directly and token loops vectorize.
template <class C>
struct token_result {
    C loss;          ///< policy loss + beta * KL (the per_token_loss output)
    C policy_loss;   ///< the objective's loss
    C kl;            ///< the KL estimate (0 without KL)
    C grad;          ///< dL/dlogp
    C ratio;         ///< the importance ratio the objective saw
    C neg_log_ratio; ///< -(clamped log-ratio): verl's ppo_kl per token
    C clipped_low, clipped_high, dual_clipped;
    C sampling_weight;   ///< the correction weight applied to the policy term (1 without correction)
    C off_policy_masked; ///< 1 when the off-policy mask removed the policy term
    C entropy;           ///< H_it (0 without entropies)
    C entropy_masked;    ///< 1 when the top-entropy mask removed the policy term
    C grad_entropy;      ///< dL/dH_it = -weight * entropy_coef
    C selected;          ///< clip_cov, kl_cov: 1 when the covariance selection chose the token
};

/// Whether the top-entropy mask (TRL top_entropy_quantile) removes a token with entropy h: h below the threshold.
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE bool entropy_masked(const token_params<C>& p, C h) {
    return p.entropy_given & (h < p.entropy_threshold);
}

/// The factor on a token's policy term: the sampling correction's weight (the token's own, `token_weight`, for
/// the token modes; the row's for the sequence modes), or 0 where the off-policy mask or the top-entropy mask
/// drops the token. Applied in TRL's order: objective, the off-policy mask, the entropy mask, the importance
/// weight, then + beta KL.
/// vespo folds the correction into its weight phi instead (objective_row_term), so its factor is the masks only.
template <policy_objective K, class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C policy_factor(const token_params<C>& p, C advantage, C token_weight, C entropy) {
    C w = select(is_token_correction(p.correction.mode), token_weight, p.row_sampling_weight);
    if constexpr (K == policy_objective::vespo) w = C(1);
    return select((p.row_off_policy & (advantage < C(0))) | entropy_masked(p, entropy), C(0), w);
}

/// dLoss/dlogp at one token: weight * (dloss/dratio * dratio/dlogp + dloss/dlogp + beta * dKL/dlogp) + the
/// sequence-ratio term. Each product is a chain(): a factor that is exactly 0 (a clipped ratio, beta = 0, a
/// zero weight) keeps the term exactly 0 even when the other factor overflowed to +-inf, so finite inputs never
/// produce a NaN gradient (docs/numerics.md).
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C token_gradient(C weight, C dloss_dratio, C dratio_dlogp, C dloss_dlogp, C beta,
                                                   C dkl_dlogp, C sequence_term) {
    return chain(weight, chain(dloss_dratio, dratio_dlogp) + dloss_dlogp + chain(beta, dkl_dlogp)) + sequence_term;
}

/// The KL term at one token, with TRL's bias correction KL * r when on (ratio r, d r / d logp = dr).
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE kl_term<C> kl_at(const token_params<C>& p, C logp, C ref_logp, C r, C dr) {
    const kl_term<C> k = kl_penalty<C>(p.kl, logp, ref_logp, p.kl_input_clamp, p.kl_value_clamp, p.kl_straight_through);
    // chain(): a zero KL or a zero ratio derivative stays 0 where r or dr overflowed.
    return {select(p.kl_bias_correction, chain(k.value, r), k.value),
            select(p.kl_bias_correction, chain(k.grad, r) + chain(k.value, dr), k.grad)};
}

/// The loss, gradient and diagnostics of one unmasked token with objective K, with or without the KL term.
/// r = exp(clamp(logp - old_logp)) (or the row's sequence ratio);
/// loss = policy_factor * objective(r, A, logp) + beta * KL - entropy_coef * H. `token_weight`: the token's
/// sampling_weight() for the token-level corrections; `entropy`: H_it when given (both unused otherwise);
/// `flat`: row * cols + column (the covariance objectives' selection reads it).
template <policy_objective K, bool WithKL, class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE token_result<C> token_loss(const token_params<C>& p, C logp, C old_logp, C ref_logp,
                                                             C advantage, C token_weight, C entropy,
                                                             std::int64_t flat) {
    const clamped<C> lr = clamp_symmetric(logp - old_logp, p.log_ratio_clamp);
    const C token_ratio = math::exp(lr.value);
    const C r = select(p.sequence, p.sequence_ratio, token_ratio);
    const C dr = select(p.sequence, p.sequence_dratio, token_ratio * lr.grad);
    const objective_term<C> o = objective_at<K>(p.objective, r, advantage, logp, lr, flat);
    const C h = select(p.entropy_given, entropy, C(0));
    const C c = policy_factor<K>(p, advantage, token_weight, h);
    const C policy = chain(c, o.loss);
    kl_term<C> k{C(0), C(0)};
    if constexpr (WithKL) k = kl_at(p, logp, ref_logp, r, dr);
    // The sequence term reaches each token through d log-ratio / d logp: 1, except where geo_mean clipped it.
    C sequence_term = p.sequence_term;
    if constexpr (K == policy_objective::geo_mean)
        sequence_term = chain(geo_mean_log_ratio(p.objective, logp - old_logp, advantage).grad, sequence_term);
    const C grad =
        token_gradient(p.weight, chain(c, o.dloss_dratio), dr, chain(c, o.dloss_dlogp), p.beta, k.grad, sequence_term);
    const C dropped = select(p.row_off_policy & (advantage < C(0)), C(1), C(0));
    // The bonus: chain() keeps it exactly 0 at entropy_coef = 0 whatever H is.
    const C loss = policy + p.beta * k.value - chain(p.entropy_coef, h);
    // 0 - x, not -x: +0 (not -0) at entropy_coef = 0, the value the passes without entropies write.
    const C grad_entropy = C(0) - p.weight * p.entropy_coef;
    return {loss,
            policy,
            k.value,
            grad,
            r,
            -lr.value,
            o.clipped_low,
            o.clipped_high,
            o.dual_clipped,
            c,
            dropped,
            h,
            select(entropy_masked(p, h), C(1), C(0)),
            grad_entropy,
            o.selected};
}

/// ratio_level::sequence: d loss_it / d s_i at one token (the factor times the objective's d loss / d r, plus
/// beta KL_it under the bias correction); a backend sums it over the row for sequence_gradient().
template <policy_objective K, bool WithKL, class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C sequence_sensitivity(const token_params<C>& p, C logp, C ref_logp, C advantage,
                                                         C token_weight, C entropy) {
    const C c = policy_factor<K>(p, advantage, token_weight, select(p.entropy_given, entropy, C(0)));
    // (The covariance objectives take token ratios only, so the selection arguments do not matter here.)
    C d = chain(
        c, objective_at<K>(p.objective, p.sequence_ratio, advantage, logp, clamped<C>{C(0), C(1)}, 0).dloss_dratio);
    if constexpr (WithKL) {
        const kl_term<C> k =
            kl_penalty<C>(p.kl, logp, ref_logp, p.kl_input_clamp, p.kl_value_clamp, p.kl_straight_through);
        d = d + select(p.kl_bias_correction, chain(p.beta, k.value), C(0));
    }
    return d;
}

/// token_loss with the objective and the KL switch known only at run time (the CUDA kernel; the CPU backend
/// instantiates its token loop per objective instead).
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE token_result<C> token_loss(const token_params<C>& p, bool with_kl, C logp, C old_logp,
                                                             C ref_logp, C advantage, C token_weight, C entropy,
                                                             std::int64_t flat) {
    return visit_objective(p.objective.kind, [&](auto k) {
        constexpr policy_objective K = decltype(k)::value;
        return with_kl ? token_loss<K, true>(p, logp, old_logp, ref_logp, advantage, token_weight, entropy, flat)
                       : token_loss<K, false>(p, logp, old_logp, ref_logp, advantage, token_weight, entropy, flat);
    });
}

/// A token's standing in the covariance selection (clip_cov, kl_cov) with the ratio token_loss would use; the
/// backends' selection pass calls it for every unmasked token. Not eligible for the other objectives.
template <policy_objective K, class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE selection_candidate selection_at(const objective_params<C>& o, C log_ratio_clamp,
                                                                   C logp, C old_logp, C advantage, std::int64_t flat) {
    const C r = math::exp(clamp_symmetric(logp - old_logp, log_ratio_clamp).value);
    return covariance_candidate<K>(o, r, advantage, logp, flat);
}
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE selection_candidate selection_at(const objective_params<C>& o, C log_ratio_clamp,
                                                                   C logp, C old_logp, C advantage, std::int64_t flat) {
    return visit_objective(o.kind, [&](auto k) {
        return selection_at<decltype(k)::value>(o, log_ratio_clamp, logp, old_logp, advantage, flat);
    });
}

/// sequence_sensitivity with the objective and the KL switch known only at run time.
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C sequence_sensitivity(const token_params<C>& p, bool with_kl, C logp, C ref_logp,
                                                         C advantage, C token_weight, C entropy) {
    return visit_objective(p.objective.kind, [&](auto k) {
        constexpr policy_objective K = decltype(k)::value;
        return with_kl ? sequence_sensitivity<K, true>(p, logp, ref_logp, advantage, token_weight, entropy)
                       : sequence_sensitivity<K, false>(p, logp, ref_logp, advantage, token_weight, entropy);
    });
}

/// objective_row_term with the objective known only at run time (the CUDA kernel).
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C objective_row_term(const objective_params<C>& o, C d, C advantage,
                                                       C log_sampling_weight) {
    return visit_objective(
        o.kind, [&](auto k) { return objective_row_term<decltype(k)::value>(o, d, advantage, log_sampling_weight); });
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
