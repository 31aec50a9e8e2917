// SPDX-License-Identifier: MIT
// The catalogue of loss variants: every objective and every option of loss_config that changes the per-token
// math, once each. It drives the finite-difference checks (test_loss_gradcheck.cpp), the peer-formula checks
// (test_objectives.cpp), the determinism tests (test_determinism.cpp) and the CUDA/emulator parity tests
// (tests/cuda/test_cuda_loss.cu). Adding an objective or an option: add a row here, and a branch to
// peer_token_loss() written from the peer's code.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <grpo/grpo.hpp>

namespace grpo_test {

struct loss_variant {
    std::string name;
    grpo::loss_config cfg;
    /// The objective's ratio is under a stop-gradient (cispo, cispo_clip) or unused (policy_gradient): finite
    /// differences must move old_logp with logp so that the ratio stays put.
    bool ratio_stop_gradient = false;
    /// The ratio levels the objective accepts: every level, token only (policy_gradient has no ratio; vespo
    /// weighs by its own sequence weight) or sequence only (geo_mean's ratio is a sequence ratio).
    enum class levels { all, token_only, sequence_only } ratio_levels = levels::all;
    /// The gradient is the derivative of the loss (not so for kl_straight_through: k3's value with k2's
    /// gradient, checked on its own in test_loss_gradcheck.cpp).
    bool is_derivative = true;

    bool allows(grpo::ratio_level level) const {
        switch (ratio_levels) {
        case levels::token_only: return level == grpo::ratio_level::token;
        case levels::sequence_only: return level == grpo::ratio_level::sequence;
        default: return true;
        }
    }
};

/// Every row: beta > 0 unless the row is about the KL being off, so the KL composition is always exercised.
inline std::vector<loss_variant> loss_catalogue() {
    using grpo::kl_estimator;
    using grpo::loss_config;
    using grpo::policy_objective;
    std::vector<loss_variant> v;
    loss_config base;
    base.beta = 0.05;
    v.push_back({"ppo_clip + k3", base});
    auto c = base;
    c.epsilon_high = 0.28;
    v.push_back({"ppo_clip clip-higher", c});
    c = base;
    c.dual_clip_c = 1.3;
    v.push_back({"ppo_clip dual clip", c});
    c = base;
    c.delta = 1.25;
    v.push_back({"ppo_clip two-sided delta", c});
    c = loss_config::verl();
    c.beta = 0.05;
    c.log_ratio_clamp = 0.3; // small, so that some tokens are clamped
    v.push_back({"verl: dual clip, log-ratio clamp, low_var_kl", c});
    for (auto kl : {kl_estimator::k1, kl_estimator::k2, kl_estimator::abs}) {
        c = base;
        c.kl = kl;
        v.push_back({"kl estimator " + std::to_string(static_cast<int>(kl)), c});
    }
    c = base;
    c.kl_log_ratio_clamp = 0.3;
    c.kl_value_clamp = 0.02;
    v.push_back({"kl clamps", c});
    c = base;
    c.kl = kl_estimator::abs;
    c.kl_straight_through = true;
    v.push_back({"kl straight-through", c, false, loss_variant::levels::all, false});
    c = base;
    c.beta = 0;
    v.push_back({"no kl", c});
    c = loss_config::cispo();
    c.beta = 0.05;
    c.cispo_ratio_cap = 1.3; // inside the test batches' ratio range, so that some weights are capped
    v.push_back({"cispo (TRL)", c, true});
    c = loss_config::cispo_verl();
    c.beta = 0.05;
    c.epsilon_low = 0.1;
    v.push_back({"cispo_clip (verl)", c, true});
    c = loss_config::sapo();
    c.beta = 0.05;
    v.push_back({"sapo", c});
    c = loss_config::sapo();
    c.beta = 0.05;
    c.sapo_temperature_pos = 3;
    c.sapo_temperature_neg = 0.5;
    c.log_ratio_clamp = 0.3;
    v.push_back({"sapo, other temperatures, log-ratio clamp", c});
    c = loss_config::gpg();
    c.beta = 0.05;
    v.push_back({"policy_gradient (gpg)", c, true, loss_variant::levels::token_only});
    c = loss_config::gmpo();
    c.beta = 0.05;
    c.epsilon_low = 0.1; // inside the test batches' log-ratio range (+-0.3), so that some tokens are clipped
    c.epsilon_high = 0.15;
    v.push_back({"geo_mean (verl GMPO)", c, false, loss_variant::levels::sequence_only});
    c = loss_config::vespo();
    c.beta = 0.05;
    v.push_back({"vespo (TRL)", c, true, loss_variant::levels::token_only});
    c = loss_config::vespo();
    c.vespo_k_pos = 1.5;
    c.vespo_lambda_pos = 0.5;
    c.vespo_k_neg = 4;
    c.vespo_lambda_neg = 3;
    c.sampling = grpo::sampling_correction::token_mask;
    c.sampling_ratio_min = 0.9;
    c.sampling_ratio_max = 1.2;
    v.push_back({"vespo, other gamma, token_mask folded into phi", c, true, loss_variant::levels::token_only});
    c = loss_config::vespo();
    c.beta = 0.05;
    c.sampling = grpo::sampling_correction::sequence_truncate;
    c.sampling_ratio_min = 0.5;
    c.sampling_ratio_max = 1.5;
    v.push_back({"vespo + sequence_truncate", c, true, loss_variant::levels::token_only});
    c = loss_config::luspo();
    c.beta = 0.05;
    c.epsilon_low = 0.02; // the test batches' sequence ratios are within ~3% of 1: some rows clip
    c.epsilon_high = 0.01;
    v.push_back({"luspo (TRL)", c});
    // Covariance selections: a large ratio and a low bound so that the small test batches select several tokens.
    c = loss_config::clip_cov();
    c.beta = 0.05;
    c.cov_ratio = 0.1;
    c.clip_cov_lb = 0.02;
    c.selection_seed = 7;
    v.push_back({"clip_cov (verl)", c, false, loss_variant::levels::token_only});
    c = loss_config::kl_cov();
    c.beta = 0.05;
    c.cov_ratio = 0.1;
    c.kl_cov_coef = 0.5;
    v.push_back({"kl_cov (verl)", c, false, loss_variant::levels::token_only});
    c = loss_config::dro(0.7);
    c.beta = 0.05;
    v.push_back({"dro (verl)", c, false, loss_variant::levels::token_only});
    // Off-policy corrections, bounds inside the test batches' range of rho (~[0.74, 1.35] per token).
    const grpo::sampling_correction modes[] = {
        grpo::sampling_correction::token_truncate, grpo::sampling_correction::token_mask,
        grpo::sampling_correction::sequence_truncate, grpo::sampling_correction::sequence_mask};
    for (auto mode : modes) {
        c = base;
        c.sampling = mode;
        const bool sequence =
            mode == grpo::sampling_correction::sequence_truncate || mode == grpo::sampling_correction::sequence_mask;
        c.sampling_ratio_min = sequence ? 0.5 : 0.9;
        c.sampling_ratio_max = sequence ? 1.5 : 1.2;
        v.push_back({"sampling correction " + std::to_string(static_cast<int>(mode)), c});
    }
    c = loss_config::sapo();
    c.beta = 0.05;
    c.sampling = grpo::sampling_correction::token_truncate;
    c.sampling_ratio_max = 1.1;
    v.push_back({"sapo + token_truncate", c});
    c = base;
    c.off_policy_mask_threshold = 0.01; // rows whose mean old - logp exceeds 0.01 drop their A < 0 tokens
    v.push_back({"off-policy sequence mask", c});
    c = base;
    c.kl_bias_correction = true;
    v.push_back({"bias-corrected kl", c});
    c = loss_config::verl();
    c.beta = 0.05;
    c.kl_bias_correction = true;
    c.off_policy_mask_threshold = 0.02;
    c.sampling = grpo::sampling_correction::sequence_mask;
    c.sampling_ratio_min = 0.5;
    c.sampling_ratio_max = 1.5;
    v.push_back({"verl + every correction", c});
    c = base;
    c.entropy_coef = 0.01;
    v.push_back({"entropy bonus", c});
    c = base;
    c.top_entropy_quantile = 0.4;
    v.push_back({"top-entropy quantile", c});
    c = loss_config::sapo();
    c.beta = 0.05;
    c.entropy_coef = -0.02;
    c.top_entropy_quantile = 0.7;
    c.sampling = grpo::sampling_correction::token_mask;
    c.sampling_ratio_min = 0.9;
    c.sampling_ratio_max = 1.2;
    v.push_back({"sapo + entropy bonus and mask + token_mask", c});
    return v;
}

/// One token's loss written from the peers' code (not from grpo's math), for ratio_level::token:
/// r = exp(clamp(logp - old, +-log_ratio_clamp)), loss = factor * objective + beta * KL, with `factor` from
/// peer_policy_factor().
///  ppo_clip    TRL GRPOTrainer._compute_loss (grpo/bnpo/dr_grpo/dapo branch: coef_2 = clamp(coef_1, 1-eps_low,
///              1+eps_high); coef_1 = clamp(coef_1, max=delta); -min(coef_1 A, coef_2 A)); verl
///              compute_policy_loss_vanilla (core_algos.py, dual clip: min(-A c, max(-A r, -A clip(r))) for A < 0).
///  cispo       TRL _compute_loss cispo branch: -clamp(coef_1, max=epsilon_high).detach() * A * logp.
///  cispo_clip  verl compute_policy_loss_cispo (core_algos.py L2006-2064): -clamp(r, 1-low, 1+high).detach() A lp.
///  sapo        TRL sapo branch / verl compute_policy_loss_sapo (L1622): -(4/tau) sigmoid(tau (r - 1)) A,
///              tau = tau_pos if A > 0 else tau_neg.
///  gpg         verl compute_policy_loss_gpg (L1707): -logp * A.
///  KL          TRL: exp(ref - lp) - (ref - lp) - 1; verl kl_penalty: k1 = x, k2 = x^2/2, abs = |x|,
///              low_var_kl = clamp(k3 on clamp(x, +-20), +-10) (x = lp - ref); TRL use_bias_correction_kl:
///              per_token_kl * coef_1.
///  geo_mean    verl compute_policy_loss_geo_mean (L1928): pg_losses = -advantage * ratio per row; `row` is the
///              row's ratio from peer_geo_mean_ratio(), and each token carries -A_it row (their token mean over
///              the row is verl's -mean_t(A) ratio).
///  vespo       TRL _compute_loss vespo branch: -phi_seq * advantages * logp; `row` is phi from peer_vespo_phi().
///  luspo       TRL: the ppo_clip branch ("grpo", "bnpo", "dr_grpo", "dapo", "luspo"), aggregated differently.
///  With c.ratio == sequence, r is `row` (peer_sequence_ratio; geo_mean: its own ratio).
struct peer_token {
    double loss, policy, kl;
};
///  clip_cov    verl compute_policy_loss_clip_cov (L1743): maximum(-A r, -A clamp(r)) * corr, corr = 0 where
///              `selected` (peer_cov_selection); the ratio is not clamped.
///  kl_cov      verl compute_policy_loss_kl_cov (L1848): -A r, plus ppo_kl_coef |lp - old| where `selected`.
///  dro         verl compute_policy_loss_dro: -(log_prob * A - 0.5 * dro_beta * (log_prob - old_log_prob)^2).
inline peer_token peer_token_loss(const grpo::loss_config& c, double lp, double old, double ref, double a,
                                  double factor = 1, double entropy = 0, double row = 1, bool selected = false) {
    using grpo::policy_objective;
    double log_r = lp - old;
    if (c.log_ratio_clamp > 0) log_r = std::max(-c.log_ratio_clamp, std::min(c.log_ratio_clamp, log_r));
    // TRL importance_sampling_level="sequence": coef_1 is the row's (peer_sequence_ratio), passed as `row`.
    const double r = c.ratio == grpo::ratio_level::sequence ? row : std::exp(log_r);
    double pol = 0;
    switch (c.objective) {
    case policy_objective::ppo_clip: {
        const double coef2 = std::max(1 - c.epsilon_low, std::min(1 + c.epsilon_high, r));
        const double coef1 = c.delta != 0 ? std::min(r, c.delta) : r;
        pol = -std::min(coef1 * a, coef2 * a);
        if (c.dual_clip_c != 0 && a < 0) pol = std::min(-a * c.dual_clip_c, pol);
        break;
    }
    case policy_objective::cispo: pol = -std::min(r, c.cispo_ratio_cap) * a * lp; break;
    case policy_objective::cispo_clip:
        pol = -std::max(1 - c.epsilon_low, std::min(1 + c.epsilon_high, r)) * a * lp;
        break;
    case policy_objective::sapo: {
        const double tau = a > 0 ? c.sapo_temperature_pos : c.sapo_temperature_neg;
        pol = -(4 / tau) / (1 + std::exp(-tau * (r - 1))) * a;
        break;
    }
    case policy_objective::policy_gradient: pol = -lp * a; break;
    case policy_objective::geo_mean: pol = -a * row; break;
    case policy_objective::vespo: pol = -row * a * lp; break;
    case policy_objective::clip_cov:
        pol = selected ? 0.0 : std::max(-a * r, -a * std::max(1 - c.epsilon_low, std::min(1 + c.epsilon_high, r)));
        break;
    case policy_objective::kl_cov: pol = -a * r + (selected ? c.kl_cov_coef * std::fabs(lp - old) : 0.0); break;
    case policy_objective::dro: pol = -(lp * a - 0.5 * c.dro_beta * log_r * log_r); break;
    }
    pol *= factor;
    double x = lp - ref;
    const bool low_var = c.kl == grpo::kl_estimator::low_var_kl;
    const double in_clamp = c.kl_log_ratio_clamp > 0 ? c.kl_log_ratio_clamp : low_var ? 20.0 : 0.0;
    const double out_clamp = c.kl_value_clamp > 0 ? c.kl_value_clamp : low_var ? 10.0 : 0.0;
    if (in_clamp > 0) x = std::max(-in_clamp, std::min(in_clamp, x));
    const double bonus = c.entropy_coef * entropy; // verl: pg_loss - entropy_coeff * agg(entropy)
    double kl = 0;
    if (c.beta == 0) return {pol - bonus, pol, 0}; // TRL computes no KL at beta 0, grpo neither
    switch (c.kl) {
    case grpo::kl_estimator::k1: kl = x; break;
    case grpo::kl_estimator::k2: kl = 0.5 * x * x; break;
    case grpo::kl_estimator::abs: kl = std::fabs(x); break;
    default: kl = std::exp(-x) + x - 1; break;
    }
    if (out_clamp > 0) kl = std::max(-out_clamp, std::min(out_clamp, kl));
    if (c.kl_bias_correction) kl *= r;
    return {pol + c.beta * kl - bonus, pol, kl};
}

/// TRL's sequence-level coef_1 of row i: exp(sum_t (lp - old) m / max(sum_t m, 1)).
inline double peer_sequence_ratio(const std::vector<double>& lp, const std::vector<double>& old,
                                  const std::vector<double>& m, grpo::index_t cols, grpo::index_t i) {
    double sum = 0, n = 0;
    for (grpo::index_t u = 0; u < cols; ++u) {
        const std::size_t q = static_cast<std::size_t>(i * cols + u);
        sum += (lp[q] - old[q]) * m[q];
        n += m[q];
    }
    return std::exp(sum / std::max(n, 1.0));
}

/// The tokens verl's clip_cov / kl_cov select in a [rows, cols] batch with mask m (flags in row-major order).
/// cov = (A - mean A)(lp - mean lp) over the unmasked tokens; k = max(int(cov_ratio N), 1).
///  kl_cov:   torch.topk(cov, k) over the unmasked tokens; ties (which torch leaves unordered) by lower index.
///  clip_cov: candidates = unmasked & not clip_by_origin (-A clamp(r) > -A r) & lb < cov < ub; verl picks
///            min(k, #candidates) of them with torch.randperm; grpo's documented draw is the candidates with the
///            smallest grpo::math::selection_hash(seed, index), which this reproduces.
inline std::vector<bool> peer_cov_selection(const grpo::loss_config& c, const std::vector<double>& lp,
                                            const std::vector<double>& old, const std::vector<double>& adv,
                                            const std::vector<double>& m) {
    double n = 0, sum_a = 0, sum_lp = 0;
    for (std::size_t q = 0; q < m.size(); ++q)
        if (m[q] != 0) {
            n += 1;
            sum_a += adv[q];
            sum_lp += lp[q];
        }
    std::vector<std::pair<double, std::size_t>> keys;
    for (std::size_t q = 0; q < m.size(); ++q) {
        if (m[q] == 0) continue;
        const double cov = (adv[q] - sum_a / n) * (lp[q] - sum_lp / n);
        if (c.objective == grpo::policy_objective::kl_cov) {
            keys.push_back({-cov, q});
        } else {
            double log_r = lp[q] - old[q];
            if (c.log_ratio_clamp > 0) log_r = std::max(-c.log_ratio_clamp, std::min(c.log_ratio_clamp, log_r));
            const double r = std::exp(log_r);
            const double clipped = std::max(1 - c.epsilon_low, std::min(1 + c.epsilon_high, r));
            if (-adv[q] * clipped > -adv[q] * r || !(cov > c.clip_cov_lb && cov < c.clip_cov_ub)) continue;
            keys.push_back({grpo::math::selection_hash(c.selection_seed, static_cast<std::int64_t>(q)), q});
        }
    }
    std::sort(keys.begin(), keys.end());
    const std::size_t k = std::min(keys.size(), std::max<std::size_t>(1, static_cast<std::size_t>(c.cov_ratio * n)));
    std::vector<bool> selected(m.size(), false);
    for (std::size_t j = 0; j < k; ++j) selected[keys[j].second] = true;
    return selected;
}

/// verl compute_policy_loss_geo_mean's ratio of row i (L1950-1962): d = lp - old (no clamp);
/// d' = sign(A) * min(sign(A) d, sign(A) clamp(d, -clip_low, clip_high)); exp(sum_t d' m / (sum_t m + 1e-8)).
inline double peer_geo_mean_ratio(const grpo::loss_config& c, const std::vector<double>& lp,
                                  const std::vector<double>& old, const std::vector<double>& adv,
                                  const std::vector<double>& m, grpo::index_t cols, grpo::index_t i) {
    double sum = 0, n = 0;
    for (grpo::index_t u = 0; u < cols; ++u) {
        const std::size_t q = static_cast<std::size_t>(i * cols + u);
        const double d = lp[q] - old[q];
        const double sgn = adv[q] > 0 ? 1.0 : adv[q] < 0 ? -1.0 : 0.0;
        const double clamped = std::max(-c.epsilon_low, std::min(c.epsilon_high, d));
        sum += sgn * std::min(sgn * d, sgn * clamped) * m[q];
        n += m[q];
    }
    return std::exp(sum / (n + 1e-8));
}

/// TRL get_gamma_weights for row i and the sign of advantage a: log w = clamp(sum_t clamp(lp - old, +-20) m
/// [+ sum of clamp(log IS ratio, log 1e-8, 20)], log 1e-8, 20); phi = exp(lambda + k log w - lambda w) with
/// (k, lambda) by a >= 0, lambda >= 1e-4; nan/inf -> 0. The IS ratio (TRL's importance_sampling_ratio: exp(old -
/// sampling), per token or per row, truncated or masked) is summed over the row's unmasked tokens.
inline double peer_vespo_phi(const grpo::loss_config& c, const std::vector<double>& lp, const std::vector<double>& old,
                             const std::vector<double>& samp, const std::vector<double>& m, grpo::index_t cols,
                             grpo::index_t i, double a) {
    using grpo::sampling_correction;
    const double lower = std::log(1e-8);
    const bool truncate =
        c.sampling == sampling_correction::token_truncate || c.sampling == sampling_correction::sequence_truncate;
    const auto is_weight = [&](double log_rho) {
        const double rho = std::exp(log_rho);
        if (truncate) return std::max(c.sampling_ratio_min, std::min(c.sampling_ratio_max, rho));
        return rho > c.sampling_ratio_max || rho < c.sampling_ratio_min ? 0.0 : rho;
    };
    double seq_rho = 0;
    for (grpo::index_t u = 0; u < cols; ++u) {
        const std::size_t q = static_cast<std::size_t>(i * cols + u);
        seq_rho += (old[q] - samp[q]) * m[q];
    }
    double sum = 0;
    for (grpo::index_t u = 0; u < cols; ++u) {
        const std::size_t q = static_cast<std::size_t>(i * cols + u);
        if (m[q] == 0) continue;
        sum += std::max(-20.0, std::min(20.0, lp[q] - old[q]));
        if (c.sampling == sampling_correction::none) continue;
        const bool token =
            c.sampling == sampling_correction::token_truncate || c.sampling == sampling_correction::token_mask;
        sum += std::max(lower, std::min(20.0, std::log(is_weight(token ? old[q] - samp[q] : seq_rho))));
    }
    const double log_w = std::max(lower, std::min(20.0, sum));
    const double k = a >= 0 ? c.vespo_k_pos : c.vespo_k_neg;
    const double lambda = std::max(1e-4, a >= 0 ? c.vespo_lambda_pos : c.vespo_lambda_neg);
    const double phi = std::exp(lambda + k * log_w - lambda * std::exp(log_w));
    return std::isfinite(phi) ? phi : 0.0;
}

/// TRL get_high_entropy_mask's threshold: torch.quantile(entropies of the unmasked tokens, 1 - rho), with
/// linear interpolation (sort, then lerp between the neighbours of position q (n - 1)).
inline double peer_entropy_threshold(const std::vector<double>& entropy, const std::vector<double>& m, double rho) {
    std::vector<double> h;
    for (std::size_t k = 0; k < m.size(); ++k)
        if (m[k] != 0) h.push_back(entropy[k]);
    std::sort(h.begin(), h.end());
    const double pos = (1 - rho) * static_cast<double>(h.size() - 1);
    const std::size_t lo = static_cast<std::size_t>(pos);
    const double hi = h[std::min(lo + 1, h.size() - 1)];
    return h[lo] + (pos - static_cast<double>(lo)) * (hi - h[lo]);
}

/// The factor on the policy term of token (i, t) of a [rows, cols] batch (mask m, no lengths), from TRL:
///  _generate_and_score_completions: per_token_logps_diff = (old - sampling) * mask; sequence modes sum it over
///  the row; ratio = exp(diff); *_truncate: clamp(max=cap) (and min); *_mask: masked_fill(ratio > cap, 0);
///  get_off_policy_mask (DeepSeek-V3.2): kl_i = sum_t (old - lp) m / max(sum_t m, 1); keep A >= 0 or kl_i <= delta;
///  _compute_loss: per_token_loss *= off_policy_mask; *= importance_sampling_ratio.
inline double peer_policy_factor(const grpo::loss_config& c, const std::vector<double>& lp,
                                 const std::vector<double>& old, const std::vector<double>& samp,
                                 const std::vector<double>& m, grpo::index_t cols, grpo::index_t i, grpo::index_t t,
                                 double a) {
    using grpo::sampling_correction;
    const std::size_t k = static_cast<std::size_t>(i * cols + t);
    double rho = 1;
    if (c.sampling == sampling_correction::token_truncate || c.sampling == sampling_correction::token_mask) {
        rho = std::exp(old[k] - samp[k]);
    } else if (c.sampling != sampling_correction::none) {
        double sum = 0;
        for (grpo::index_t u = 0; u < cols; ++u) {
            const std::size_t q = static_cast<std::size_t>(i * cols + u);
            sum += (old[q] - samp[q]) * m[q];
        }
        rho = std::exp(sum);
    }
    if (c.sampling == sampling_correction::token_truncate || c.sampling == sampling_correction::sequence_truncate)
        rho = std::max(c.sampling_ratio_min, std::min(c.sampling_ratio_max, rho));
    if (c.sampling == sampling_correction::token_mask || c.sampling == sampling_correction::sequence_mask)
        rho = rho > c.sampling_ratio_max || rho < c.sampling_ratio_min ? 0.0 : rho;
    if (c.objective == grpo::policy_objective::vespo)
        rho = 1; // TRL: "vespo applies the IS ratio inside
                 // get_gamma_weights, so skip it here"
    if (c.off_policy_mask_threshold < std::numeric_limits<double>::infinity() && a < 0) {
        double sum = 0, n = 0;
        for (grpo::index_t u = 0; u < cols; ++u) {
            const std::size_t q = static_cast<std::size_t>(i * cols + u);
            sum += (old[q] - lp[q]) * m[q];
            n += m[q];
        }
        if (sum / std::max(n, 1.0) > c.off_policy_mask_threshold) rho = 0;
    }
    return rho;
}

/// peer_policy_factor with TRL's top-entropy mask (entropy_mask = H >= threshold) on top.
inline double peer_policy_factor(const grpo::loss_config& c, const std::vector<double>& lp,
                                 const std::vector<double>& old, const std::vector<double>& samp,
                                 const std::vector<double>& m, const std::vector<double>& entropy, grpo::index_t cols,
                                 grpo::index_t i, grpo::index_t t, double a) {
    double f = peer_policy_factor(c, lp, old, samp, m, cols, i, t, a);
    if (c.top_entropy_quantile < 1 &&
        entropy[static_cast<std::size_t>(i * cols + t)] < peer_entropy_threshold(entropy, m, c.top_entropy_quantile))
        f = 0;
    return f;
}

} // namespace grpo_test
