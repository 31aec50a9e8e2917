// SPDX-License-Identifier: MIT
// Policy objectives at one token: the per-token loss as a function of the importance ratio r, the advantage A
// and logp, with its derivatives and the clip flags peers log. The one place these formulas live; both
// backends reach them through token_loss() (token_loss.hpp). Adding an objective: a value in policy_objective,
// a branch in objective_at(), a case in visit_objective(), its parameters in objective_params and loss_config
// (docs/architecture.md, "Adding an objective").
#pragma once

#include "surrogate.hpp"

GRPO_NAMESPACE_BEGIN

/// The per-token policy objective (the loss before the KL term, aggregation and corrections).
enum class policy_objective {
    /// PPO's clipped surrogate -min(min(r, delta) A, clip(r, 1-eps_low, 1+eps_high) A), dual clip for A < 0
    /// (Schulman et al. 2017; DeepSeekMath). The default. TRL loss_type "grpo"/"bnpo"/"dr_grpo"/"dapo";
    /// verl loss_mode "vanilla"; OpenRLHF "ppo".
    ppo_clip,
    /// CISPO as TRL ships it: -sg(min(r, cispo_ratio_cap)) A logp, an absolute cap on the importance weight and
    /// no lower clip (MiniMax-M1, arXiv 2506.13585). TRL loss_type "cispo" (its epsilon_high is the cap).
    cispo,
    /// CISPO as verl ships it: -sg(clip(r, 1-eps_low, 1+eps_high)) A logp, a two-sided relative clip.
    /// verl loss_mode "cispo".
    cispo_clip,
    /// SAPO's soft gate: -(4/tau) sigmoid(tau (r - 1)) A with tau = sapo_temperature_pos for A > 0, else
    /// sapo_temperature_neg (Qwen, arXiv 2511.20347). TRL loss_type "sapo"; verl loss_mode "sapo".
    sapo,
    /// Plain policy gradient -A logp; the ratio is not used (GPG, arXiv 2504.02546). verl loss_mode "gpg".
    policy_gradient,
};
/// Number of policy_objective values (for validation).
constexpr int policy_objective_count = 5;

namespace math {

/// Parameters of every objective, in the element type of the per-token math.
template <class C>
struct objective_params {
    policy_objective kind;
    clip_bounds<C> clip; ///< ppo_clip; cispo_clip uses low and high
    C cispo_ratio_cap;   ///< cispo: the absolute cap on r
    C sapo_tau_pos;      ///< sapo: temperature for A > 0
    C sapo_tau_neg;      ///< sapo: temperature for A <= 0
};

/// One token's objective: its loss, d loss / d r (through the ratio), d loss / d logp (direct: the logp
/// factor of cispo and policy_gradient), and the clip flags (0 or 1, summed into the diagnostics).
template <class C>
struct objective_term {
    C loss;
    C dloss_dratio;
    C dloss_dlogp;
    C clipped_low;  ///< loss_stats::clip_fraction_low counts these
    C clipped_high; ///< loss_stats::clip_fraction_high counts these
    C dual_clipped; ///< loss_stats::dual_clip_fraction counts these
};

/// A compile-time policy_objective (visit_objective passes one to its callable).
template <policy_objective K>
struct objective_constant {
    static constexpr policy_objective value = K;
};

/// 1/(1 + exp(-z)), branch-free (exp(-z) = inf gives 0, as the limit).
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C sigmoid(C z) {
    return C(1) / (C(1) + math::exp(-z));
}

/// The objective K at one token with ratio r, advantage A and log-prob logp. Stop-gradient factors (sg) have
/// no derivative; every product with a factor that may overflow goes through chain() so that a zero
/// advantage or a zero derivative stays exactly 0 (docs/numerics.md).
template <policy_objective K, class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE objective_term<C> objective_at(const objective_params<C>& o, C ratio, C advantage,
                                                                 C logp) {
    if constexpr (K == policy_objective::ppo_clip) {
        const surrogate_term<C> s = clipped_surrogate(ratio, advantage, o.clip);
        return {s.loss, s.dloss_dratio, C(0), s.clipped_low, s.clipped_high, s.dual_clipped};
    } else if constexpr (K == policy_objective::cispo) {
        // TRL: clamp(coef_1, max=epsilon_high).detach(); is_cispo_clipped = (coef_1 > eps_high) & (A > 0).
        const C weight = select(ratio > o.cispo_ratio_cap, o.cispo_ratio_cap, ratio);
        const C wa = weight * advantage;
        return {-(wa * logp), C(0), -wa, C(0),
                select((ratio > o.cispo_ratio_cap) & (advantage > C(0)), C(1), C(0)), C(0)};
    } else if constexpr (K == policy_objective::cispo_clip) {
        // verl: clipped_ratio = clamp(ratio, 1 - low, 1 + high).detach(); pg_clipfrac = mean(ratio != clipped).
        const C weight = select(ratio < o.clip.low, o.clip.low, select(ratio > o.clip.high, o.clip.high, ratio));
        const C wa = weight * advantage;
        return {-(wa * logp), C(0), -wa, select(ratio < o.clip.low, C(1), C(0)),
                select(ratio > o.clip.high, C(1), C(0)), C(0)};
    } else if constexpr (K == policy_objective::sapo) {
        // loss = -(4/tau) s A with s = sigmoid(tau (r - 1)); d loss/d r = -4 s (1 - s) A.
        const C tau = select(advantage > C(0), o.sapo_tau_pos, o.sapo_tau_neg);
        const C s = sigmoid(tau * (ratio - C(1)));
        return {-((C(4) / tau) * s) * advantage, -(C(4) * s * (C(1) - s)) * advantage, C(0), C(0), C(0), C(0)};
    } else {
        static_assert(K == policy_objective::policy_gradient, "objective_at: every policy_objective has a branch");
        return {-(advantage * logp), C(0), -advantage, C(0), C(0), C(0)};
    }
}

/// Calls f(objective_constant<K>{}) for the run-time value k: backends instantiate their token loop (CPU) or
/// evaluate (CUDA) the objective with K known at compile time. Unknown values are rejected by validation
/// before any backend runs; they map to ppo_clip here.
template <class F>
GRPO_HOST_DEVICE GRPO_FORCEINLINE decltype(auto) visit_objective(policy_objective k, F&& f) {
    switch (k) {
    case policy_objective::cispo: return f(objective_constant<policy_objective::cispo>{});
    case policy_objective::cispo_clip: return f(objective_constant<policy_objective::cispo_clip>{});
    case policy_objective::sapo: return f(objective_constant<policy_objective::sapo>{});
    case policy_objective::policy_gradient: return f(objective_constant<policy_objective::policy_gradient>{});
    case policy_objective::ppo_clip:
    default: return f(objective_constant<policy_objective::ppo_clip>{});
    }
}

} // namespace math
GRPO_NAMESPACE_END
