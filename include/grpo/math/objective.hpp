// SPDX-License-Identifier: MIT
// Policy objectives at one token: the per-token loss as a function of the importance ratio r, the advantage A
// and logp, with its derivatives and the clip flags peers log. The one place these formulas live; both
// backends reach them through token_loss() (token_loss.hpp). Adding an objective: a value in policy_objective,
// a branch in objective_at(), a case in visit_objective(), its parameters in objective_params and loss_config
// (docs/architecture.md, "Adding an objective").
#pragma once

#include <cstdint>

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
    /// GMPO: -A rho_i with rho_i = exp(sum_t m d'_t / (n_i + 1e-8)) the geometric mean of the row's token ratios,
    /// each log-ratio d = logp - old clipped to [-eps_low, eps_high] on the side that matters for sign(A):
    /// d' = sgn(A) min(sgn(A) d, sgn(A) clamp(d)) (Zhao et al., arXiv 2507.20673). Needs ratio_level::sequence
    /// (rho_i is this objective's sequence ratio); with seq_mean_token_mean it is verl loss_mode "geo_mean".
    geo_mean,
    /// VESPO: -sg(phi_i) A logp with phi_i = exp(lambda + k log w_i - lambda w_i), log w_i the row's summed
    /// token log-ratios (each clamped to +-20, plus the sampling correction's log-weights when one is on) clamped
    /// to [log 1e-8, 20], (k, lambda) = (vespo_k_pos, vespo_lambda_pos) for A >= 0, else the _neg pair. TRL
    /// loss_type "vespo" (get_gamma_weights).
    vespo,
    /// Clip-Cov: ppo_clip's loss (no dual clip) with the loss of a few high-covariance tokens dropped. Among the
    /// unmasked tokens that ppo_clip did not clip and whose cov = (A - mean A)(logp - mean logp) (means over the
    /// call's unmasked tokens) lies strictly inside (clip_cov_lb, clip_cov_ub), max(1, floor(cov_ratio N)) are
    /// chosen uniformly at random (Cui et al., arXiv 2505.22617). verl loss_mode "clip_cov" draws them with
    /// torch.randperm; grpo draws them with a hash of (selection_seed, row * cols + column), so a call is
    /// reproducible and independent of the thread count. Token ratios only.
    clip_cov,
    /// KL-Cov: -A r (no clip), plus kl_cov_coef |logp - old_logp| at the max(1, floor(cov_ratio N)) unmasked
    /// tokens with the largest cov (as clip_cov; ties broken by the lower row * cols + column, where torch.topk
    /// leaves the order unspecified) (Cui et al., arXiv 2505.22617). verl loss_mode "kl_cov". Token ratios only.
    kl_cov,
    /// DRO: -(A logp - (dro_beta / 2) (logp - old_logp)^2), a policy gradient with a quadratic penalty on the
    /// log-ratio instead of a clip (Direct Reward Optimization). verl loss_mode "dro" (policy_loss.dro_beta).
    /// Token ratios only.
    dro,
};
/// Number of policy_objective values (for validation).
constexpr int policy_objective_count = 10;

namespace math {

/// The call-level state of the covariance-selected objectives (clip_cov, kl_cov), in double: the means over the
/// call's unmasked tokens and the selection threshold, the k-th smallest (key, row * cols + column) among the
/// eligible tokens ((-infinity, -1) selects none).
struct covariance_selection {
    double mean_advantage;
    double mean_logp;
    double key;
    double index;
    std::uint64_t seed; ///< clip_cov: loss_config::selection_seed
};

/// How many tokens the covariance objectives select among n unmasked ones: verl's max(int(ratio * n), 1), 0
/// when there are none.
GRPO_HOST_DEVICE inline double covariance_selection_count(double ratio, double n) {
    if (!(n > 0)) return 0;
    const double k = static_cast<double>(static_cast<long long>(ratio * n)); // int() of a value >= 0: floor
    return k < 1 ? 1.0 : k;
}

/// clip_cov's random draw, reproducible: splitmix64 of (seed, flat index), its top 53 bits as a double (exact),
/// so that the smallest keys are a uniformly random subset of the candidates.
GRPO_HOST_DEVICE inline double selection_hash(std::uint64_t seed, std::int64_t flat) {
    std::uint64_t z = seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(flat) + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z = z ^ (z >> 31);
    return static_cast<double>(z >> 11);
}

/// Parameters of every objective, in the element type of the per-token math.
template <class C>
struct objective_params {
    policy_objective kind;
    clip_bounds<C> clip; ///< ppo_clip; cispo_clip uses low and high
    C cispo_ratio_cap;   ///< cispo: the absolute cap on r
    C sapo_tau_pos;      ///< sapo: temperature for A > 0
    C sapo_tau_neg;      ///< sapo: temperature for A <= 0
    C geo_log_low;       ///< geo_mean: lower clamp of each token's log-ratio, -epsilon_low
    C geo_log_high;      ///< geo_mean: upper clamp, epsilon_high
    C vespo_k_pos, vespo_lambda_pos, vespo_k_neg, vespo_lambda_neg; ///< vespo: the gamma weight's shape and rate
    C clip_cov_lb, clip_cov_ub; ///< clip_cov: the open interval of cov that makes a token a candidate
    C kl_cov_coef;              ///< kl_cov: the coefficient of |logp - old_logp| at the selected tokens
    C dro_beta;                 ///< dro: the coefficient of the quadratic log-ratio penalty
    // Per row (the backend sets them from the row's objective sum, vespo_row_weights):
    C vespo_phi_pos; ///< vespo: phi_i for tokens with A >= 0
    C vespo_phi_neg; ///< vespo: phi_i for tokens with A < 0
    // Per call (clip_cov, kl_cov; the backend sets them in a pass before the token pass):
    covariance_selection cov;
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
    C selected;     ///< clip_cov, kl_cov: the token was selected (loss_stats::cov_selection_fraction)
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

/// Whether objective K sums a term over each row before its token pass (objective_row_term).
template <policy_objective K>
constexpr bool has_row_term = K == policy_objective::geo_mean || K == policy_objective::vespo;

/// geo_mean's clipped log-ratio d' = sgn(A) min(sgn(A) d, sgn(A) clamp(d, low, high)) and its derivative in d,
/// torch's: 1 where d itself is selected (inside the interval, or outside it on the side that does not matter
/// for sgn(A)), 0 where the bound is, 0 for A = 0 (sgn 0). Ties (d inside) split torch.min's gradient between
/// two equal arguments whose derivatives are both 1, so the sum is 1.
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE clamped<C> geo_mean_log_ratio(const objective_params<C>& o, C d, C advantage) {
    const bool pos = advantage > C(0), neg = advantage < C(0);
    const bool bound_low = neg & (d < o.geo_log_low), bound_high = pos & (d > o.geo_log_high);
    const C value = select(bound_low, o.geo_log_low, select(bound_high, o.geo_log_high, d));
    const bool zero = !(pos | neg);
    return {select(zero, C(0), value), select(zero | bound_low | bound_high, C(0), C(1))};
}

/// What objective K sums over a row's unmasked tokens before its token pass, from the token's log-ratio
/// d = logp - old_logp, advantage and (vespo) the log of its token-level sampling-correction weight:
/// geo_mean: d' (geo_mean_log_ratio); vespo: clamp(d, +-20) + clamp(log w_sampling, log 1e-8, 20); else 0.
template <policy_objective K, class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C objective_row_term(const objective_params<C>& o, C d, C advantage,
                                                       C log_sampling_weight) {
    if constexpr (K == policy_objective::geo_mean) {
        return geo_mean_log_ratio(o, d, advantage).value;
    } else if constexpr (K == policy_objective::vespo) {
        const C lo = C(-18.420680743952367); // log(1e-8)
        return clamp_with_grad(d, C(-20), C(20)).value + clamp_with_grad(log_sampling_weight, lo, C(20)).value;
    } else {
        return C(0);
    }
}

/// VESPO's row weights from the row's objective sum (objective_row_term summed, plus n_i times the clamped log
/// of a sequence-level correction weight): phi = exp(lambda + k lw - lambda e^lw) with lw = clamp(sum, log 1e-8,
/// 20) and lambda >= 1e-4, for A >= 0 and for A < 0; NaN or infinite phi becomes 0 (TRL's nan_to_num).
struct vespo_weights {
    double phi_pos, phi_neg;
};
GRPO_HOST_DEVICE inline vespo_weights vespo_row_weights(const objective_params<double>& o, double log_weight_sum) {
    const double lw = clamp_with_grad(log_weight_sum, -18.420680743952367, 20.0).value;
    const double w = math::exp(lw);
    const auto phi = [&](double k, double lambda) {
        const double l = lambda < 1e-4 ? 1e-4 : lambda;
        const double v = math::exp(l + k * lw - l * w);
        return v - v == 0.0 ? v : 0.0; // nan_to_num(nan=0, posinf=0, neginf=0)
    };
    return {phi(o.vespo_k_pos, o.vespo_lambda_pos), phi(o.vespo_k_neg, o.vespo_lambda_neg)};
}

/// The objective K at one token with ratio r, advantage A, log-prob logp and log-ratio d = logp - old_logp
/// (after log_ratio_clamp). Stop-gradient factors (sg) have no derivative; every product with a factor that
/// may overflow goes through chain() so that a zero advantage or a zero derivative stays exactly 0
/// (docs/numerics.md).
/// Whether objective K selects tokens by covariance over the whole call (clip_cov, kl_cov).
GRPO_HOST_DEVICE inline bool selects_by_covariance(policy_objective k) {
    return k == policy_objective::clip_cov || k == policy_objective::kl_cov;
}

/// One token's standing in the covariance selection: whether it may be selected, and its sort key (the
/// selected tokens are the eligible ones with the smallest (key, row * cols + column)). Computed in double from
/// the token's inputs, by the backend's selection pass and by objective_at alike, so both see the same key.
struct selection_candidate {
    bool eligible;
    double key;
};
template <policy_objective K, class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE selection_candidate covariance_candidate(const objective_params<C>& o, C ratio,
                                                                           C advantage, C logp, std::int64_t flat) {
    // verl: cov = (A - mean(A)) * (logp - mean(sg logp)) over the unmasked tokens.
    const double cov =
        (static_cast<double>(advantage) - o.cov.mean_advantage) * (static_cast<double>(logp) - o.cov.mean_logp);
    if constexpr (K == policy_objective::kl_cov) {
        // The largest cov first. + 0.0 turns -0 into +0: the device sorts keys by their bits, the comparisons
        // below by value, and both must see one order. A NaN cov (non-finite inputs without validation) is
        // never selected.
        return {cov == cov, -cov + 0.0};
    } else if constexpr (K == policy_objective::clip_cov) {
        // verl: clip_by_origin = (pg_losses2 > pg_losses1) excludes the tokens ppo_clip clipped.
        const C clipped_ratio = select(ratio < o.clip.low, o.clip.low, select(ratio > o.clip.high, o.clip.high, ratio));
        const bool clipped = -(advantage * clipped_ratio) > -(advantage * ratio);
        const bool inside = cov > static_cast<double>(o.clip_cov_lb) && cov < static_cast<double>(o.clip_cov_ub);
        return {!clipped && inside, selection_hash(o.cov.seed, flat)};
    } else {
        return {false, 0.0};
    }
}

/// Whether a candidate is among the selected tokens: its (key, flat index) is at most the call's threshold pair.
GRPO_HOST_DEVICE inline bool covariance_selected(const covariance_selection& s, selection_candidate c,
                                                 std::int64_t flat) {
    return c.eligible && (c.key < s.key || (c.key == s.key && static_cast<double>(flat) <= s.index));
}

template <policy_objective K, class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE objective_term<C> objective_at(const objective_params<C>& o, C ratio, C advantage,
                                                                 C logp, clamped<C> log_ratio, std::int64_t flat) {
    if constexpr (K == policy_objective::ppo_clip) {
        const surrogate_term<C> s = clipped_surrogate(ratio, advantage, o.clip);
        return {s.loss, s.dloss_dratio, C(0), s.clipped_low, s.clipped_high, s.dual_clipped, C(0)};
    } else if constexpr (K == policy_objective::cispo) {
        // TRL: clamp(coef_1, max=epsilon_high).detach(); is_cispo_clipped = (coef_1 > eps_high) & (A > 0).
        const C weight = select(ratio > o.cispo_ratio_cap, o.cispo_ratio_cap, ratio);
        const C wa = weight * advantage;
        return {-(wa * logp), C(0), -wa, C(0), select((ratio > o.cispo_ratio_cap) & (advantage > C(0)), C(1), C(0)),
                C(0),         C(0)};
    } else if constexpr (K == policy_objective::cispo_clip) {
        // verl: clipped_ratio = clamp(ratio, 1 - low, 1 + high).detach(); pg_clipfrac = mean(ratio != clipped).
        const C weight = select(ratio < o.clip.low, o.clip.low, select(ratio > o.clip.high, o.clip.high, ratio));
        const C wa = weight * advantage;
        return {
            -(wa * logp), C(0), -wa, select(ratio < o.clip.low, C(1), C(0)), select(ratio > o.clip.high, C(1), C(0)),
            C(0),         C(0)};
    } else if constexpr (K == policy_objective::sapo) {
        // loss = -(4/tau) s A with s = sigmoid(tau (r - 1)); d loss/d r = -4 s (1 - s) A.
        const C tau = select(advantage > C(0), o.sapo_tau_pos, o.sapo_tau_neg);
        const C s = sigmoid(tau * (ratio - C(1)));
        return {-((C(4) / tau) * s) * advantage, -(C(4) * s * (C(1) - s)) * advantage, C(0), C(0), C(0), C(0), C(0)};
    } else if constexpr (K == policy_objective::policy_gradient) {
        return {-(advantage * logp), C(0), -advantage, C(0), C(0), C(0), C(0)};
    } else if constexpr (K == policy_objective::geo_mean) {
        // ratio is rho_i; the gradient reaches logp through it (the backend's sequence term). verl logs a token
        // as clipped when clamp(d) != d: pg_clipfrac for A > 0, pg_clipfrac_lower for A < 0.
        const bool clipped = (log_ratio.value < o.geo_log_low) | (log_ratio.value > o.geo_log_high);
        return {-(ratio * advantage),
                -advantage,
                C(0),
                select(clipped & (advantage < C(0)), C(1), C(0)),
                select(clipped & (advantage > C(0)), C(1), C(0)),
                C(0),
                C(0)};
    } else if constexpr (K == policy_objective::vespo) {
        // TRL: is_nonneg_adv = advantages >= 0 picks (k_pos, lambda_pos).
        const C phi = select(advantage >= C(0), o.vespo_phi_pos, o.vespo_phi_neg);
        const C pa = phi * advantage;
        return {-(pa * logp), C(0), -pa, C(0), C(0), C(0), C(0)};
    } else if constexpr (K == policy_objective::clip_cov) {
        // verl: pg_losses = maximum(pg_losses1, pg_losses2) * corr, corr = 0 at the selected tokens.
        const surrogate_term<C> s = clipped_surrogate(ratio, advantage, o.clip);
        const bool sel = covariance_selected(o.cov, covariance_candidate<K>(o, ratio, advantage, logp, flat), flat);
        return {select(sel, C(0), s.loss), select(sel, C(0), s.dloss_dratio), C(0), s.clipped_low, s.clipped_high, C(0),
                select(sel, C(1), C(0))};
    } else if constexpr (K == policy_objective::dro) {
        // verl: pg_losses = -(log_prob * advantages - 0.5 * dro_beta * (log_prob - old_log_prob) ** 2).
        const C d = log_ratio.value;
        return {-(logp * advantage) + C(0.5) * o.dro_beta * d * d,
                C(0),
                -advantage + chain(o.dro_beta, d * log_ratio.grad),
                C(0),
                C(0),
                C(0),
                C(0)};
    } else {
        static_assert(K == policy_objective::kl_cov, "objective_at: every policy_objective has a branch");
        // verl: pg_losses = -A r, and -A r + ppo_kl_coef |logp - old| at the selected tokens (d|d|/dd = sign, 0 at 0).
        const bool sel = covariance_selected(o.cov, covariance_candidate<K>(o, ratio, advantage, logp, flat), flat);
        const C coef = select(sel, o.kl_cov_coef, C(0));
        const C d = log_ratio.value;
        const C sign = select(d > C(0), C(1), select(d < C(0), C(-1), C(0)));
        const C abs_d = select(d < C(0), -d, d);
        return {-(ratio * advantage) + coef * abs_d,
                -advantage,
                chain(coef, sign * log_ratio.grad),
                C(0),
                C(0),
                C(0),
                select(sel, C(1), C(0))};
    }
}

/// Calls f(objective_constant<K>{}) for the run-time value k: backends instantiate their token loop (CPU) or
/// evaluate (CUDA) the objective with K known at compile time. Unknown values are rejected by validation
/// before any backend runs; they map to ppo_clip here.
/// f may be host-only (the CPU backend's token loop): nvcc's host/device check is off for this template, as
/// Thrust does for its host/device dispatchers; each backend instantiates it only where f can run.
#ifdef __CUDACC__
#pragma nv_exec_check_disable
#endif
template <class F>
GRPO_HOST_DEVICE GRPO_FORCEINLINE decltype(auto) visit_objective(policy_objective k, F&& f) {
    switch (k) {
    case policy_objective::cispo: return f(objective_constant<policy_objective::cispo>{});
    case policy_objective::cispo_clip: return f(objective_constant<policy_objective::cispo_clip>{});
    case policy_objective::sapo: return f(objective_constant<policy_objective::sapo>{});
    case policy_objective::policy_gradient: return f(objective_constant<policy_objective::policy_gradient>{});
    case policy_objective::geo_mean: return f(objective_constant<policy_objective::geo_mean>{});
    case policy_objective::vespo: return f(objective_constant<policy_objective::vespo>{});
    case policy_objective::clip_cov: return f(objective_constant<policy_objective::clip_cov>{});
    case policy_objective::kl_cov: return f(objective_constant<policy_objective::kl_cov>{});
    case policy_objective::dro: return f(objective_constant<policy_objective::dro>{});
    case policy_objective::ppo_clip:
    default: return f(objective_constant<policy_objective::ppo_clip>{});
    }
}

} // namespace math
GRPO_NAMESPACE_END
