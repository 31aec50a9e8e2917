// SPDX-License-Identifier: MIT
// Configuration, inputs, outputs and diagnostics of the GRPO loss, shared by every backend.
#pragma once

#include <cstdint>
#include <limits>
#include <utility>

#include "../core/config.hpp"
#include "../core/check.hpp"
#include "../math/aggregation.hpp"
#include "../math/correction.hpp"
#include "../math/token_loss.hpp"
#include "../core/view.hpp"

GRPO_NAMESPACE_BEGIN

/// Where the importance ratio is taken.
enum class ratio_level {
    /// r_it = exp(logp_it - old_it). TRL importance_sampling_level="token"; verl loss_mode="vanilla".
    token,
    /// GSPO: s_i = exp(mean_t(logp - old)) for every token of row i, gradient through the mean.
    /// TRL importance_sampling_level="sequence"; OpenRLHF policy_loss_type="gspo".
    sequence,
    /// GSPO-token: value s_i, gradient s_i * d logp_it (sg[s_i] * pi/sg[pi]). verl loss_mode="gspo";
    /// TRL experimental gspo_token.
    sequence_token,
};

/// How much of the input is checked before any work.
enum class validation {
    /// Shapes, configuration, lengths, mask values and finiteness of every unmasked input (one extra read
    /// of the inputs). The default: a NaN from the host never turns into a silent NaN gradient.
    full,
    /// Shapes, configuration and lengths only. For hosts that already guarantee finite inputs.
    shapes_only,
};

/// Every knob of the policy loss. Defaults are TRL GRPOConfig's (loss_type "dapo", beta 0, epsilon 0.2);
/// the named presets below give the other trainers' defaults.
struct loss_config {
    /// The per-token policy objective (policy_objective): ppo_clip (default), cispo, cispo_clip, sapo,
    /// policy_gradient. Orthogonal to the ratio level, the KL term and the aggregation.
    policy_objective objective = policy_objective::ppo_clip;
    /// Lower clip: ratios below 1 - epsilon_low are clipped. TRL `epsilon`; verl `clip_ratio_low`.
    double epsilon_low = 0.2;
    /// Upper clip: ratios above 1 + epsilon_high are clipped (DAPO clip-higher: 0.28). TRL `epsilon_high`;
    /// verl `clip_ratio_high`.
    double epsilon_high = 0.2;
    /// Two-sided cap on the unclipped ratio, min(r, delta) (INTELLECT-2); 0 = off, else > 1. TRL `delta`.
    /// ppo_clip only (TRL applies it in that branch only); other objectives reject a non-zero value.
    double delta = 0;
    /// Dual clip for A < 0: the loss is capped at -c*A; 0 = off, else > 1. verl `clip_ratio_c` (3.0).
    /// ppo_clip only (verl's vanilla loss); other objectives reject a non-zero value.
    double dual_clip_c = 0;
    /// objective cispo: the absolute cap on the importance weight, min(r, cap). TRL reuses `epsilon_high` for
    /// it with loss_type "cispo" (MiniMax-M1 uses 5.0, grpo's default here).
    double cispo_ratio_cap = 5.0;
    /// objective sapo: gate temperature for tokens with A > 0. TRL `sapo_temperature_pos`; verl `tau_pos`.
    double sapo_temperature_pos = 1.0;
    /// objective sapo: gate temperature for tokens with A <= 0. TRL `sapo_temperature_neg`; verl `tau_neg`.
    double sapo_temperature_neg = 1.05;
    /// objective vespo: shape k and rate lambda of the gamma weight for A >= 0. TRL `vespo_k_pos` / `vespo_lambda_pos`.
    double vespo_k_pos = 2.0;
    double vespo_lambda_pos = 3.0;
    /// objective vespo: the same for A < 0. TRL `vespo_k_neg` / `vespo_lambda_neg`.
    double vespo_k_neg = 3.0;
    double vespo_lambda_neg = 2.0;
    /// objectives clip_cov and kl_cov: the fraction of the call's unmasked tokens selected by covariance (at
    /// least one). verl `policy_loss.clip_cov_ratio` / `policy_loss.kl_cov_ratio` (2e-4).
    double cov_ratio = 2e-4;
    /// objective clip_cov: tokens with cov strictly inside (clip_cov_lb, clip_cov_ub) are candidates. verl
    /// `policy_loss.clip_cov_lb` (1.0) / `clip_cov_ub` (5.0).
    double clip_cov_lb = 1.0;
    double clip_cov_ub = 5.0;
    /// objective kl_cov: coefficient of |logp - old_logp| at the selected tokens. verl `policy_loss.ppo_kl_coef`
    /// (0.1 in verl's config; its code falls back to 1.0 when the key is unset).
    double kl_cov_coef = 0.1;
    /// objective dro: the coefficient of the quadratic log-ratio penalty (> 0). verl `policy_loss.dro_beta`.
    double dro_beta = 0.1;
    /// objective clip_cov: the seed of its reproducible random choice among the candidates (change it per step
    /// to draw different tokens, as verl's torch.randperm does).
    std::uint64_t selection_seed = 0;
    /// Clamp of log(ratio) to +-limit before exp (zero gradient outside); 0 = off. verl: 20 (vanilla),
    /// 10 (gspo); TRL: off.
    double log_ratio_clamp = 0;
    /// Token or sequence-level ratio (GSPO). Objective geo_mean needs ratio_level::sequence (its ratio is the
    /// geometric mean of the clipped token ratios).
    ratio_level ratio = ratio_level::token;

    /// KL coefficient: loss_it += beta * KL_it. TRL `beta` (0.0); verl `kl_loss_coef`; DeepSeekMath 0.04.
    double beta = 0;
    /// KL estimator. TRL: k3 only; verl `kl_loss_type` (its default low_var_kl = k3 with clamps).
    kl_estimator kl = kl_estimator::k3;
    /// Clamp of logp - ref before the estimator; 0 = off (low_var_kl: 20 when 0).
    double kl_log_ratio_clamp = 0;
    /// Clamp of the estimate itself; 0 = off (low_var_kl: 10 when 0). OpenRLHF: 10.
    double kl_value_clamp = 0;
    /// Keep the estimator's value but use the k2 gradient (logp - ref): verl's "k3+" style names.
    bool kl_straight_through = false;
    /// KL_it *= r_it, with the gradient through r (an importance-weighted, unbiased KL under off-policy
    /// samples). TRL `use_bias_correction_kl`.
    bool kl_bias_correction = false;

    /// Importance-sampling correction with the sampling engine's log-probs (loss_inputs::sampling_logp):
    /// rho = exp(old_logp - sampling_logp) per token or per sequence, truncated or masked to
    /// [sampling_ratio_min, sampling_ratio_max], multiplies the policy term. TRL
    /// `vllm_importance_sampling_correction` + `vllm_importance_sampling_mode`; verl `rollout_is`.
    sampling_correction sampling = sampling_correction::none;
    /// Lower bound of the sampling ratio (0: none). TRL `vllm_importance_sampling_clip_min`; verl
    /// `rollout_is_threshold_lower`.
    double sampling_ratio_min = 0;
    /// Upper bound of the sampling ratio. TRL `vllm_importance_sampling_cap` (2.0); verl `rollout_is_threshold`.
    double sampling_ratio_max = 2.0;
    /// DeepSeek-V3.2 off-policy sequence masking: a row whose mean of old_logp - logp exceeds this drops the
    /// policy term of its tokens with A < 0 (+infinity = off). TRL `off_policy_mask_threshold`.
    double off_policy_mask_threshold = std::numeric_limits<double>::infinity();

    /// Entropy bonus with the host's per-token entropies (loss_inputs::entropy): loss_it -= entropy_coef * H_it,
    /// aggregated like the policy term; dLoss/dH goes to loss_outputs::grad_entropy. verl `entropy_coeff`.
    double entropy_coef = 0;
    /// TRL `top_entropy_quantile` rho: only tokens whose entropy is at least the (1 - rho) quantile of the
    /// unmasked tokens' entropies keep their policy term (torch.quantile, linear). 1 = off.
    double top_entropy_quantile = 1;
    /// The threshold of that mask when the host computed it (TRL takes the quantile over every process's
    /// tokens: gather, compute, pass it here); NaN = the quantile of this call's tokens.
    double entropy_threshold = std::numeric_limits<double>::quiet_NaN();

    /// Loss normalizer (see aggregation).
    aggregation agg = aggregation::token_mean;
    /// N for token_mean: unmasked tokens of the whole optimizer step across all processes and micro-batches
    /// (TRL dapo num_items_in_batch; verl batch_num_tokens). 0 = count the tokens of this call (TRL bnpo).
    double global_token_count = 0;
    /// S for the seq_mean_* and token_sum_over_constant modes: sequences of the whole optimizer step
    /// (verl global_batch_size); at least this call's rows, or, with count_empty_sequences false, the rows with
    /// tokens of the whole step. 0 = the rows of this call (see count_empty_sequences).
    double global_sequence_count = 0;
    /// With global_sequence_count = 0: whether rows without any unmasked token count in S (true, TRL's
    /// mean over the batch) or not (false: S = rows with tokens, so padding rows do not dilute the mean).
    bool count_empty_sequences = true;
    /// L for token_sum_over_constant. TRL max_completion_length; verl loss_scale_factor. 0 = padded length.
    double max_completion_length = 0;
    /// Multiplies loss and gradient: the data-parallel world size to cancel DDP gradient averaging (verl
    /// dp_size, TRL dapo's /(N/W)), or 1/gradient_accumulation_steps (TRL grpo/bnpo/dr_grpo).
    double loss_scale = 1;

    validation checks = validation::full;

    /// TRL GRPOConfig defaults: loss_type "dapo", beta 0, epsilon 0.2, no clamps.
    static loss_config trl() { return loss_config{}; }
    /// verl actor defaults: loss_mode "vanilla" (ppo_clip), token-mean, clip 0.2, dual clip c = 3, log-ratio
    /// clamp 20, and (when beta > 0) kl_loss_type low_var_kl; verl's recommended kl_loss_coef is 0.001.
    /// Choosing another KL estimator afterwards drops low_var_kl's clamps, as in verl.
    static loss_config verl() {
        loss_config c;
        c.dual_clip_c = 3.0;
        c.log_ratio_clamp = 20.0;
        c.kl = kl_estimator::low_var_kl;
        return c;
    }
    /// DeepSeekMath Eq. 3: per-sequence token mean, beta 0.04, k3, epsilon 0.2.
    static loss_config deepseekmath() {
        loss_config c;
        c.agg = aggregation::seq_mean_token_mean;
        c.beta = 0.04;
        return c;
    }
    /// DAPO: clip-higher 0.2/0.28, token-level mean, no KL.
    static loss_config dapo() {
        loss_config c;
        c.epsilon_high = 0.28;
        return c;
    }
    /// Dr. GRPO: sum over tokens divided by (sequences * max_completion_length), no KL.
    static loss_config dr_grpo(double max_completion_length) {
        loss_config c;
        c.agg = aggregation::token_sum_over_constant;
        c.max_completion_length = max_completion_length;
        return c;
    }
    /// GSPO: sequence-level ratio, epsilon 3e-4 / 4e-4, sequence mean of token means.
    static loss_config gspo() {
        loss_config c;
        c.ratio = ratio_level::sequence;
        c.epsilon_low = 3e-4;
        c.epsilon_high = 4e-4;
        c.agg = aggregation::seq_mean_token_mean;
        return c;
    }
    /// TRL loss_type "cispo": -sg(min(r, 5)) A logp, normalized like "dapo" (token_mean).
    static loss_config cispo() {
        loss_config c;
        c.objective = policy_objective::cispo;
        return c;
    }
    /// verl loss_mode "cispo": -sg(clip(r, 0.8, 1.2)) A logp on a log-ratio clamped to +-20, token-mean.
    static loss_config cispo_verl() {
        loss_config c;
        c.objective = policy_objective::cispo_clip;
        c.log_ratio_clamp = 20.0;
        return c;
    }
    /// SAPO as TRL ships it (loss_type "sapo"): temperatures 1.0 / 1.05, sequence mean of token means. verl
    /// loss_mode "sapo" is the same with log_ratio_clamp = 20.
    static loss_config sapo() {
        loss_config c;
        c.objective = policy_objective::sapo;
        c.agg = aggregation::seq_mean_token_mean;
        return c;
    }
    /// verl loss_mode "gpg": -A logp, token-mean.
    static loss_config gpg() {
        loss_config c;
        c.objective = policy_objective::policy_gradient;
        return c;
    }
    /// verl loss_mode "geo_mean" (GMPO): the geometric mean of the token ratios, each log-ratio clipped to
    /// [-0.4, 0.4] (GMPO's range; verl reads it from clip_ratio_low / clip_ratio_high), averaged over sequences
    /// (verl's torch.mean over the rows, whatever loss_agg_mode says).
    static loss_config gmpo() {
        loss_config c;
        c.objective = policy_objective::geo_mean;
        c.ratio = ratio_level::sequence;
        c.epsilon_low = 0.4;
        c.epsilon_high = 0.4;
        c.agg = aggregation::seq_mean_token_mean;
        return c;
    }
    /// TRL loss_type "vespo": -sg(phi_i) A logp with TRL's gamma parameters (2, 3) / (3, 2), normalized like
    /// "dapo" (token_mean).
    static loss_config vespo() {
        loss_config c;
        c.objective = policy_objective::vespo;
        return c;
    }
    /// TRL loss_type "luspo" (Length-Unbiased Sequence Policy Optimization) as TRL recommends it: GSPO's clipped
    /// sequence ratio with each sequence's loss weighted by its length, (1/S) sum_i sum_t loss_it m_it =
    /// (1/S) sum_i n_i loss_i (aggregation seq_mean_token_sum), GSPO's epsilons.
    static loss_config luspo() {
        loss_config c = gspo();
        c.agg = aggregation::seq_mean_token_sum;
        return c;
    }
    /// verl loss_mode "clip_cov" with its defaults: ratio 2e-4, cov in (1, 5), clip 0.2, token-mean.
    static loss_config clip_cov() {
        loss_config c;
        c.objective = policy_objective::clip_cov;
        return c;
    }
    /// verl loss_mode "dro": -(A logp - (dro_beta / 2)(logp - old_logp)^2), token-mean.
    static loss_config dro(double dro_beta) {
        loss_config c;
        c.objective = policy_objective::dro;
        c.dro_beta = dro_beta;
        return c;
    }
    /// verl loss_mode "kl_cov" with its defaults: ratio 2e-4, coefficient 0.1, token-mean.
    static loss_config kl_cov() {
        loss_config c;
        c.objective = policy_objective::kl_cov;
        return c;
    }
};

/// The per-token inputs of the loss, all [completions, tokens] views of the host's buffers.
/// A default-constructed (absent) optional view means "not given".
template <class T, class Space = host_space>
struct loss_inputs {
    matrix_view<const T, Space> logp;               ///< log-probs under the current policy (required)
    matrix_view<const T, Space> old_logp;           ///< log-probs of the sampling policy; absent = on-policy, ratio 1
    matrix_view<const T, Space> ref_logp;           ///< log-probs of the reference policy; required when beta != 0
    matrix_view<const T, Space> advantages;         ///< per token, or broadcast_to_tokens(per-completion vector)
    matrix_view<const T, Space> mask;               ///< 1 = token counts, 0 = masked; absent = all ones
    vector_view<const std::int64_t, Space> lengths; ///< tokens t >= lengths[i] are masked; absent = all valid
    /// log-probs the sampling engine (vLLM, SGLang) reported; required when config.sampling != none
    matrix_view<const T, Space> sampling_logp = {}; // (= {}: brace-initializing the fields above stays warning-free)
    /// per-token entropies H_it of the current policy (the host computes them from its logits); required when
    /// config.entropy_coef != 0 or config.top_entropy_quantile < 1
    matrix_view<const T, Space> entropy = {};
};

/// Where results go. Both optional: without grad_logp the call is forward-only.
template <class T, class Space = host_space>
struct loss_outputs {
    matrix_view<T, Space> grad_logp;      ///< dLoss/dlogp, exactly 0 at masked positions
    matrix_view<T, Space> per_token_loss; ///< policy term + beta*KL per token, 0 at masked positions
    /// the importance ratio each token's objective saw, 0 at masked positions
    matrix_view<T, Space> ratio = {}; // (= {}: brace-initializing the fields above stays warning-free)
    /// dLoss/dH_it for the entropy bonus (-entropy_coef times the row weight), 0 at masked positions: the host
    /// backpropagates it through its entropy computation like grad_logp
    matrix_view<T, Space> grad_entropy = {};
};

/// The loss and the diagnostics peers log. Means are over this call's unmasked tokens.
struct loss_stats {
    double loss = 0;        ///< policy_loss + beta * kl_loss
    double policy_loss = 0; ///< aggregated objective (config.objective)
    double kl_loss = 0;     ///< aggregated KL estimate (before beta), same normalizer
    double token_count = 0; ///< unmasked tokens in this call
    /// ppo_clip: TRL clip_ratio/low_mean (r < 1-eps_low and A < 0); cispo_clip: r < 1-eps_low; else 0.
    double clip_fraction_low = 0;
    /// ppo_clip: TRL clip_ratio/high_mean (r > 1+eps_high and A > 0); cispo: TRL cispo_clip_ratio
    /// (r > cap and A > 0); cispo_clip: r > 1+eps_high; else 0.
    double clip_fraction_high = 0;
    double clip_fraction_region = 0; ///< low + high: TRL clip_ratio/region_mean; verl actor/pg_clipfrac
    double dual_clip_fraction = 0;   ///< verl actor/pg_clipfrac_lower (ppo_clip with dual clip)
    double ratio_mean = 0;
    double ratio_min = 0;
    double ratio_max = 0;
    double kl_mean = 0; ///< token mean of the KL estimate (TRL "kl"); 0 when beta == 0
    /// Token mean of old - logp after config.log_ratio_clamp: verl actor/ppo_kl; 0 when on-policy.
    double approx_kl = 0;
    /// Token mean of the sampling correction's weight on the policy term (1 without correction); TRL logs
    /// sampling/importance_sampling_ratio.
    double sampling_weight_mean = 0;
    /// Fraction of tokens whose policy term the off-policy mask removed.
    double off_policy_mask_fraction = 0;
    /// Aggregated entropy (same normalizer as the loss): loss = policy_loss + beta kl_loss - entropy_coef
    /// entropy_loss. 0 without entropies.
    double entropy_loss = 0;
    double entropy_mean = 0;          ///< token mean of the entropies (0 without entropies)
    double entropy_mask_fraction = 0; ///< fraction of tokens the top-entropy mask removed
    /// clip_cov: fraction of tokens whose loss the covariance selection dropped (verl actor/pg_clipfrac for
    /// clip_cov); kl_cov: fraction that got the |logp - old| penalty; else 0.
    double cov_selection_fraction = 0;
};

namespace detail {

/// Backend-independent form of a loss call, built after validation.
struct loss_params {
    math::token_params<double> token; ///< the per-call part; backends fill in the per-row fields
    ratio_level ratio;
    aggregation agg;
    double sequences;       ///< S
    double constant_length; ///< L
    double loss_scale;
    bool count_nonempty_rows; ///< S is the number of rows with tokens, counted by the backend's pre-pass
    bool off_policy_mask;     ///< the off-policy test runs (its threshold is finite)
    double off_policy_threshold;
    bool entropy_given; ///< loss_inputs::entropy is present
    double entropy_coef;
    double entropy_threshold; ///< -infinity: no entropy mask
    double entropy_quantile;  ///< 1 - top_entropy_quantile
    /// The backend computes entropy_threshold, the entropy_quantile of this call's entropies, before the main
    /// pass. (A flag, not a NaN threshold: a quantile of NaN entropies, unchecked under shapes_only, is NaN.)
    bool entropy_quantile_pending;
    double cov_ratio; ///< clip_cov, kl_cov: loss_config::cov_ratio
    /// The backend computes the entropy threshold from this call's tokens before the main pass.
    GRPO_HOST_DEVICE bool entropy_quantile_needed() const { return entropy_quantile_pending; }
    GRPO_HOST_DEVICE bool with_kl() const { return token.beta != 0; }
    /// A backend sums log r over each row first: for the sequence ratio (geo_mean has its own, below) and for
    /// the off-policy test.
    GRPO_HOST_DEVICE bool row_log_ratio_sum() const {
        return (ratio != ratio_level::token && token.objective.kind != policy_objective::geo_mean) || off_policy_mask;
    }
    /// The backend computes the covariance selection (clip_cov, kl_cov) over the call before the token pass.
    GRPO_HOST_DEVICE bool covariance_selection() const { return math::selects_by_covariance(token.objective.kind); }
    /// The backend's pre-pass counts the call's unmasked tokens anyway (value checks, rows with tokens to count,
    /// the covariance selection), so it checks config.global_token_count against them: the one rule for every
    /// backend and for the data-parallel step. (token_mean without a global count counts too, with nothing to
    /// check.)
    GRPO_HOST_DEVICE bool checks_global_tokens(bool check_values) const {
        return check_values || count_nonempty_rows || covariance_selection();
    }
    /// A backend sums math::objective_row_term over each row first (geo_mean, vespo).
    GRPO_HOST_DEVICE bool row_objective_sum() const {
        return token.objective.kind == policy_objective::geo_mean || token.objective.kind == policy_objective::vespo;
    }
    /// A backend sums old_logp - sampling_logp over each row first: the sequence-level corrections.
    GRPO_HOST_DEVICE bool row_sampling_sum() const { return math::is_sequence_correction(token.correction.mode); }
    /// The token-level corrections read sampling_logp at every token.
    GRPO_HOST_DEVICE bool token_sampling() const { return math::is_token_correction(token.correction.mode); }
};

/// What a backend sums over a row's unmasked tokens before its token pass (double).
struct row_sums {
    double tokens = 0;
    double log_ratio = 0;          ///< sum of logp - old_logp (when row_log_ratio_sum())
    double sampling_log_ratio = 0; ///< sum of old_logp - sampling_logp (when row_sampling_sum())
    double objective = 0;          ///< sum of math::objective_row_term (when row_objective_sum())
};

/// A row's constants, in double: its weight, its sequence ratio, its correction weight and off-policy flag.
struct row_setup {
    double weight;
    math::sequence_ratio_term sequence;
    double sequence_count; ///< the divisor of the mean in the sequence ratio: n_i (geo_mean: n_i + 1e-8, verl's)
    double sampling_weight;
    bool off_policy;
    math::vespo_weights vespo; ///< objective vespo: the row's phi for A >= 0 and A < 0
};

/// The one place a row's constants are derived from its sums (both backends call it).
GRPO_HOST_DEVICE inline row_setup make_row_setup(const loss_params& p, const row_sums& s, double total_tokens) {
    row_setup r;
    const policy_objective kind = p.token.objective.kind;
    r.weight = p.loss_scale * math::row_weight<double>(p.agg, s.tokens, total_tokens, p.sequences, p.constant_length);
    const bool geo = kind == policy_objective::geo_mean;
    r.sequence_count = geo ? s.tokens + 1e-8 : s.tokens;
    r.sequence = p.ratio != ratio_level::token
                     ? math::sequence_ratio(geo ? s.objective : s.log_ratio, r.sequence_count, p.token.log_ratio_clamp)
                     : math::sequence_ratio_term{};
    r.sampling_weight =
        p.row_sampling_sum() ? math::sampling_weight<double>(p.token.correction, s.sampling_log_ratio) : 1.0;
    r.off_policy = p.off_policy_mask && math::off_policy_row(-s.log_ratio, s.tokens, p.off_policy_threshold);
    r.vespo = {1, 1};
    if (kind == policy_objective::vespo) {
        // A sequence-level correction adds its clamped log-weight once per token (TRL broadcasts it over the row).
        const double log_w =
            p.row_sampling_sum()
                ? s.tokens * math::clamp_with_grad(math::log(r.sampling_weight), -18.420680743952367, 20.0).value
                : 0.0;
        r.vespo = math::vespo_row_weights(p.token.objective, s.objective + log_w);
    }
    return r;
}

/// The call's objective parameters in the precision C of the per-token math (the per-row fields are 1).
template <class C>
GRPO_HOST_DEVICE inline math::objective_params<C> call_objective_params(const loss_params& p) {
    const math::objective_params<double>& o = p.token.objective;
    return {o.kind,
            {C(o.clip.low), C(o.clip.high), C(o.clip.delta), C(o.clip.dual_c)},
            C(o.cispo_ratio_cap),
            C(o.sapo_tau_pos),
            C(o.sapo_tau_neg),
            C(o.geo_log_low),
            C(o.geo_log_high),
            C(o.vespo_k_pos),
            C(o.vespo_lambda_pos),
            C(o.vespo_k_neg),
            C(o.vespo_lambda_neg),
            C(o.clip_cov_lb),
            C(o.clip_cov_ub),
            C(o.kl_cov_coef),
            C(o.dro_beta),
            C(1),
            C(1),
            o.cov};
}

/// A row's token_params in the precision C of the per-token math: the call's settings, the row's weight
/// (loss_scale * w_i) and, for sequence-level ratios, its sequence ratio and sequence-gradient term.
template <class C>
GRPO_HOST_DEVICE inline math::token_params<C> row_token_params(const loss_params& p, const row_setup& r,
                                                               double sequence_term) {
    const math::token_params<double>& t = p.token;
    math::objective_params<C> o = call_objective_params<C>(p);
    // phi beyond the element type's range is 0, as TRL's float32 get_gamma_weights gives (nan_to_num(posinf=0)).
    const C phi_pos = C(r.vespo.phi_pos), phi_neg = C(r.vespo.phi_neg);
    o.vespo_phi_pos = phi_pos - phi_pos == C(0) ? phi_pos : C(0);
    o.vespo_phi_neg = phi_neg - phi_neg == C(0) ? phi_neg : C(0);
    const math::correction_params<C> corr{t.correction.mode, C(t.correction.ratio_min), C(t.correction.ratio_max)};
    math::token_params<C> out{};
    out.objective = o;
    out.log_ratio_clamp = C(t.log_ratio_clamp);
    out.beta = C(t.beta);
    out.kl = t.kl;
    out.kl_input_clamp = C(t.kl_input_clamp);
    out.kl_value_clamp = C(t.kl_value_clamp);
    out.kl_straight_through = t.kl_straight_through;
    out.kl_bias_correction = t.kl_bias_correction;
    out.correction = corr;
    out.weight = C(r.weight);
    out.sequence = p.ratio != ratio_level::token;
    out.sequence_ratio = C(r.sequence.value);
    out.sequence_dratio = p.ratio == ratio_level::sequence_token ? C(r.sequence.grad) : C(0);
    out.sequence_term = C(sequence_term);
    out.row_sampling_weight = C(r.sampling_weight);
    out.row_off_policy = r.off_policy;
    out.entropy_given = p.entropy_given;
    out.entropy_coef = C(p.entropy_coef);
    out.entropy_threshold = C(p.entropy_threshold);
    return out;
}

/// A KL estimator's settings with low_var_kl resolved into k3 and its clamps (explicit non-zero clamps override
/// them): the loss and per_token_kl resolve it here, once.
struct kl_params {
    kl_estimator kl;
    double input_clamp, value_clamp;
    bool straight_through;

    /// One token of per_token_kl, for every backend: the estimate and its gradient. The caller passes only
    /// unmasked tokens (masked ones get {0, 0} without reading their inputs).
    template <class C>
    GRPO_HOST_DEVICE GRPO_FORCEINLINE math::kl_term<C> at(C logp, C ref_logp) const {
        return math::kl_penalty<C>(kl, logp, ref_logp, C(input_clamp), C(value_clamp), straight_through);
    }
};
/// Checks the KL settings of a loss_config or kl_config (same field names in both) and resolves low_var_kl
/// into k3 with its clamps.
inline kl_params checked_kl(const char* where, kl_estimator kl, double log_ratio_clamp, double value_clamp,
                            bool straight_through) {
    constexpr double inf = std::numeric_limits<double>::infinity();
    check_enum(where, "config.kl", kl, kl_estimator_count);
    check_range(where, "config.kl_log_ratio_clamp", log_ratio_clamp, 0, inf, "a value >= 0 (0 = off)");
    check_range(where, "config.kl_value_clamp", value_clamp, 0, inf, "a value >= 0 (0 = off)");
    const bool low_var = kl == kl_estimator::low_var_kl;
    return {low_var ? kl_estimator::k3 : kl,
            low_var && log_ratio_clamp == 0 ? low_var_kl_log_ratio_clamp : log_ratio_clamp,
            low_var && value_clamp == 0 ? low_var_kl_value_clamp : value_clamp, straight_through};
}

/// A host-set S covers the rows it normalizes: at least `rows` (the call's, or the data-parallel step's) when
/// every row counts. (Counting only rows with tokens, S may be below the rows: data-parallel steps pass the rows
/// with tokens of every rank, dist::with_global_counts.)
/// (`rows` is a double: a data-parallel step's rows, summed over ranks, may exceed index_t.)
inline void check_global_sequences(const char* where, const loss_config& cfg, double rows) {
    if (cfg.count_empty_sequences && cfg.global_sequence_count > 0 && cfg.global_sequence_count < rows)
        raise_argument(errc::invalid_value, where, "config.global_sequence_count",
                       "0 (local) or at least the rows of this call (" + num_str(rows) + ")",
                       num_str(cfg.global_sequence_count));
}

/// Checks the configuration and the shapes of every view; throws grpo::error before anything is touched.
template <class T, class S>
loss_params check_loss_call(const char* where, const loss_inputs<T, S>& in, const loss_outputs<T, S>& out,
                            const loss_config& cfg) {
    constexpr double inf = std::numeric_limits<double>::infinity();
    check_enum(where, "config.objective", cfg.objective, policy_objective_count);
    check_enum(where, "config.ratio", cfg.ratio, 3);
    check_enum(where, "config.agg", cfg.agg, 5);
    check_enum(where, "config.checks", cfg.checks, 2);
    check_enum(where, "config.sampling", cfg.sampling, sampling_correction_count);
    check_range(where, "config.epsilon_low", cfg.epsilon_low, 0, 1 - 1e-12, "a value in [0, 1)");
    check_range(where, "config.epsilon_high", cfg.epsilon_high, 0, inf, "a value >= 0");
    if (cfg.delta != 0) check_range(where, "config.delta", cfg.delta, 1 + 1e-12, inf, "0 (off) or a value > 1");
    if (cfg.dual_clip_c != 0)
        check_range(where, "config.dual_clip_c", cfg.dual_clip_c, 1 + 1e-12, inf, "0 (off) or a value > 1");
    check_range(where, "config.log_ratio_clamp", cfg.log_ratio_clamp, 0, inf, "a value >= 0 (0 = off)");
    check_range(where, "config.beta", cfg.beta, 0, inf, "a finite value >= 0");
    const kl_params kl = checked_kl(where, cfg.kl, cfg.kl_log_ratio_clamp, cfg.kl_value_clamp, cfg.kl_straight_through);
    check_range(where, "config.cispo_ratio_cap", cfg.cispo_ratio_cap, 1e-300, inf, "a finite value > 0");
    check_range(where, "config.sapo_temperature_pos", cfg.sapo_temperature_pos, 1e-300, inf, "a finite value > 0");
    check_range(where, "config.sapo_temperature_neg", cfg.sapo_temperature_neg, 1e-300, inf, "a finite value > 0");
    check_range(where, "config.sampling_ratio_min", cfg.sampling_ratio_min, 0, inf, "a finite value >= 0");
    check_range(where, "config.sampling_ratio_max", cfg.sampling_ratio_max, cfg.sampling_ratio_min, inf,
                "a finite value >= config.sampling_ratio_min");
    check_range(where, "config.entropy_coef", cfg.entropy_coef, -inf, inf, "a finite value");
    check_range(where, "config.top_entropy_quantile", cfg.top_entropy_quantile, 0, 1, "a value in [0, 1]");
    if (cfg.entropy_threshold == inf || cfg.entropy_threshold == -inf)
        raise_argument(errc::invalid_value, where, "config.entropy_threshold",
                       "a finite threshold or NaN (the quantile of this call)", num_str(cfg.entropy_threshold));
    if (cfg.off_policy_mask_threshold != cfg.off_policy_mask_threshold)
        raise_argument(errc::invalid_value, where, "config.off_policy_mask_threshold", "a threshold (+infinity = off)",
                       "NaN");
    // Options that belong to one objective: rejected with another, rather than silently ignored.
    if (cfg.objective != policy_objective::ppo_clip) {
        if (cfg.delta != 0)
            raise_argument(errc::invalid_value, where, "config.delta", "0 (delta is part of objective ppo_clip)",
                           num_str(cfg.delta));
        if (cfg.dual_clip_c != 0)
            raise_argument(errc::invalid_value, where, "config.dual_clip_c",
                           "0 (the dual clip is part of objective ppo_clip)", num_str(cfg.dual_clip_c));
    }
    const char* ratio_name = cfg.ratio == ratio_level::token      ? "ratio_level::token"
                             : cfg.ratio == ratio_level::sequence ? "ratio_level::sequence"
                                                                  : "ratio_level::sequence_token";
    if ((cfg.objective == policy_objective::policy_gradient || cfg.objective == policy_objective::vespo ||
         cfg.objective == policy_objective::dro) &&
        cfg.ratio != ratio_level::token)
        raise_argument(errc::invalid_value, where, "config.ratio",
                       cfg.objective == policy_objective::vespo
                           ? "ratio_level::token (objective vespo weighs logp by its own sequence weight)"
                       : cfg.objective == policy_objective::dro
                           ? "ratio_level::token (objective dro penalizes each token's log-ratio)"
                           : "ratio_level::token (objective policy_gradient uses no ratio)",
                       ratio_name);
    check_range(where, "config.dro_beta", cfg.dro_beta, 1e-300, inf, "a finite value > 0");
    check_representable<T>(where, "config.dro_beta", cfg.dro_beta);
    if (math::selects_by_covariance(cfg.objective) && cfg.ratio != ratio_level::token)
        raise_argument(errc::invalid_value, where, "config.ratio",
                       "ratio_level::token (objectives clip_cov and kl_cov select single tokens)", ratio_name);
    check_range(where, "config.cov_ratio", cfg.cov_ratio, 1e-300, 1, "a value in (0, 1]");
    check_range(where, "config.clip_cov_lb", cfg.clip_cov_lb, -inf, inf, "a finite value");
    check_range(where, "config.clip_cov_ub", cfg.clip_cov_ub, cfg.clip_cov_lb, inf,
                "a finite value >= config.clip_cov_lb");
    check_range(where, "config.kl_cov_coef", cfg.kl_cov_coef, -inf, inf, "a finite value");
    check_representable<T>(where, "config.kl_cov_coef", cfg.kl_cov_coef);
    if (cfg.objective == policy_objective::geo_mean && cfg.ratio != ratio_level::sequence)
        raise_argument(errc::invalid_value, where, "config.ratio",
                       "ratio_level::sequence (objective geo_mean's ratio is the geometric mean over the row)",
                       ratio_name);
    for (const auto& v : {std::make_pair("config.vespo_k_pos", cfg.vespo_k_pos),
                          std::make_pair("config.vespo_lambda_pos", cfg.vespo_lambda_pos),
                          std::make_pair("config.vespo_k_neg", cfg.vespo_k_neg),
                          std::make_pair("config.vespo_lambda_neg", cfg.vespo_lambda_neg)})
        check_range(where, v.first, v.second, -inf, inf, "a finite value");
    // Counts are 0 (local) or at least 1: then every row weight is at most 1 and |weight| <= |loss_scale|.
    auto check_count = [&](const char* name, double value, const char* expected) {
        check_range(where, name, value, 0, inf, expected);
        if (value != 0 && value < 1) raise_argument(errc::invalid_value, where, name, expected, num_str(value));
    };
    check_count("config.global_token_count", cfg.global_token_count, "0 (local) or a count >= 1");
    check_count("config.global_sequence_count", cfg.global_sequence_count, "0 (local) or a count >= 1");
    check_count("config.max_completion_length", cfg.max_completion_length, "0 (padded length) or a length >= 1");
    check_range(where, "config.loss_scale", cfg.loss_scale, -inf, inf, "a finite value");
    // Values that enter the per-token math in the element type's precision must fit it.
    check_representable<T>(where, "config.beta", cfg.beta);
    check_representable<T>(where, "config.loss_scale", cfg.loss_scale);
    check_representable<T>(where, "config.dual_clip_c", cfg.dual_clip_c);
    check_representable<T>(where, "config.cispo_ratio_cap", cfg.cispo_ratio_cap);
    check_representable<T>(where, "config.sapo_temperature_pos", cfg.sapo_temperature_pos);
    check_representable<T>(where, "config.sapo_temperature_neg", cfg.sapo_temperature_neg);
    check_representable<T>(where, "config.sampling_ratio_max", cfg.sampling_ratio_max);
    check_representable<T>(where, "config.entropy_coef", cfg.entropy_coef);

    const index_t rows = in.logp.rows(), cols = in.logp.cols();
    if (!in.logp.present()) {
        // No logp: only a call where every view is absent or empty is a (trivially empty) valid call.
        const bool anything = !in.old_logp.empty() || !in.ref_logp.empty() || !in.advantages.empty() ||
                              !in.mask.empty() || !in.lengths.empty() || !in.sampling_logp.empty() ||
                              !out.grad_logp.empty() || !out.per_token_loss.empty() || !out.ratio.empty() ||
                              !in.entropy.empty() || !out.grad_entropy.empty() || rows * cols > 0;
        if (anything)
            raise_argument(errc::invalid_value, where, "logp", "a view of the current log-probs", "an absent view");
    }
    if (in.old_logp.present()) check_shape(where, "old_logp", in.old_logp, rows, cols);
    if (cfg.beta != 0) {
        if (!in.ref_logp.present() && rows * cols > 0)
            raise_argument(errc::invalid_value, where, "ref_logp", "reference log-probs because beta != 0",
                           "an absent view");
        check_shape(where, "ref_logp", in.ref_logp, rows, cols);
    }
    if (cfg.sampling != sampling_correction::none) {
        if (!in.sampling_logp.present() && rows * cols > 0)
            raise_argument(errc::invalid_value, where, "sampling_logp",
                           "the sampling engine's log-probs because config.sampling != none", "an absent view");
        check_shape(where, "sampling_logp", in.sampling_logp, rows, cols);
    }
    const bool entropy_needed = cfg.entropy_coef != 0 || cfg.top_entropy_quantile < 1;
    if (entropy_needed && !in.entropy.present() && rows * cols > 0)
        raise_argument(errc::invalid_value, where, "entropy",
                       "per-token entropies because config.entropy_coef != 0 or config.top_entropy_quantile < 1",
                       "an absent view");
    if (entropy_needed) check_shape(where, "entropy", in.entropy, rows, cols);
    if (out.grad_entropy.present()) check_shape(where, "grad_entropy", out.grad_entropy, rows, cols);
    if (!in.advantages.present() && rows * cols > 0)
        raise_argument(errc::invalid_value, where, "advantages",
                       "a [completions, tokens] view (use broadcast_to_tokens for per-completion values)",
                       "an absent view");
    check_shape(where, "advantages", in.advantages, rows, cols);
    if (in.mask.present()) check_shape(where, "mask", in.mask, rows, cols);
    if (in.lengths.present()) check_size(where, "lengths", in.lengths, rows);
    if (out.grad_logp.present()) check_shape(where, "grad_logp", out.grad_logp, rows, cols);
    if (out.per_token_loss.present()) check_shape(where, "per_token_loss", out.per_token_loss, rows, cols);
    if (out.ratio.present()) check_shape(where, "ratio", out.ratio, rows, cols);
    check_outputs_disjoint(where,
                           {{"grad_logp", range_of(out.grad_logp)},
                            {"per_token_loss", range_of(out.per_token_loss)},
                            {"ratio", range_of(out.ratio)},
                            {"grad_entropy", range_of(out.grad_entropy)}},
                           {{"logp", range_of(in.logp)},
                            {"old_logp", range_of(in.old_logp)},
                            {"ref_logp", range_of(in.ref_logp)},
                            {"advantages", range_of(in.advantages)},
                            {"mask", range_of(in.mask)},
                            {"lengths", range_of(in.lengths)},
                            {"sampling_logp", range_of(in.sampling_logp)},
                            {"entropy", range_of(in.entropy)}});

    check_global_sequences(where, cfg, static_cast<double>(rows));

    loss_params p{};
    math::token_params<double>& t = p.token;
    t.objective = {cfg.objective,
                   {1 - cfg.epsilon_low, 1 + cfg.epsilon_high, cfg.delta != 0 ? cfg.delta : inf, cfg.dual_clip_c},
                   cfg.cispo_ratio_cap,
                   cfg.sapo_temperature_pos,
                   cfg.sapo_temperature_neg,
                   -cfg.epsilon_low,
                   cfg.epsilon_high,
                   cfg.vespo_k_pos,
                   cfg.vespo_lambda_pos,
                   cfg.vespo_k_neg,
                   cfg.vespo_lambda_neg,
                   cfg.clip_cov_lb,
                   cfg.clip_cov_ub,
                   cfg.kl_cov_coef,
                   cfg.dro_beta,
                   1.0,
                   1.0,
                   {0, 0, -inf, -1, cfg.selection_seed}};
    t.log_ratio_clamp = cfg.log_ratio_clamp;
    t.beta = cfg.beta;
    // low_var_kl is k3 with its clamps (explicit non-zero clamps override them).
    t.kl = kl.kl;
    t.kl_input_clamp = kl.input_clamp;
    t.kl_value_clamp = kl.value_clamp;
    t.kl_straight_through = kl.straight_through;
    t.kl_bias_correction = cfg.kl_bias_correction;
    t.correction = {cfg.sampling, cfg.sampling_ratio_min, cfg.sampling_ratio_max};
    t.weight = 1;
    t.row_sampling_weight = 1;
    p.off_policy_mask = cfg.off_policy_mask_threshold < inf;
    p.off_policy_threshold = cfg.off_policy_mask_threshold;
    // The entropies are read only when a term uses them (an unused view is not read, like ref_logp at beta 0).
    p.entropy_given = entropy_needed && in.entropy.present();
    p.entropy_coef = cfg.entropy_coef;
    p.entropy_quantile = 1 - cfg.top_entropy_quantile;
    p.entropy_threshold = !(cfg.top_entropy_quantile < 1) ? -inf : cfg.entropy_threshold;
    p.entropy_quantile_pending = cfg.top_entropy_quantile < 1 && cfg.entropy_threshold != cfg.entropy_threshold;
    p.cov_ratio = cfg.cov_ratio;
    p.ratio = cfg.ratio;
    p.agg = cfg.agg;
    p.sequences = cfg.global_sequence_count > 0 ? cfg.global_sequence_count : static_cast<double>(rows);
    p.count_nonempty_rows = !cfg.count_empty_sequences && !(cfg.global_sequence_count > 0) &&
                            cfg.agg != aggregation::token_mean && cfg.agg != aggregation::token_sum;
    p.constant_length = cfg.max_completion_length > 0 ? cfg.max_completion_length : static_cast<double>(cols);
    p.loss_scale = cfg.loss_scale;
    return p;
}

} // namespace detail
GRPO_NAMESPACE_END
