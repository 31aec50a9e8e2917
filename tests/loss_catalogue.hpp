// SPDX-License-Identifier: MIT
// The catalogue of loss variants: every objective and every option of loss_config that changes the per-token
// math, once each. It drives the finite-difference checks (test_loss_gradcheck.cpp), the peer-formula checks
// (test_objectives.cpp), the determinism tests (test_determinism.cpp) and the CUDA/emulator parity tests
// (tests/cuda/test_cuda_loss.cu). Adding an objective or an option: add a row here, and a branch to
// peer_token_loss() written from the peer's code.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <grpo/grpo.hpp>

namespace grpo_test {

struct loss_variant {
    std::string name;
    grpo::loss_config cfg;
    /// The objective's ratio is under a stop-gradient (cispo, cispo_clip) or unused (policy_gradient): finite
    /// differences must move old_logp with logp so that the ratio stays put.
    bool ratio_stop_gradient = false;
    /// The objective accepts sequence-level ratios (policy_gradient does not: it has no ratio).
    bool sequence_levels = true;
    /// The gradient is the derivative of the loss (not so for kl_straight_through: k3's value with k2's
    /// gradient, checked on its own in test_loss_gradcheck.cpp).
    bool is_derivative = true;
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
    v.push_back({"kl straight-through", c, false, true, false});
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
    v.push_back({"policy_gradient (gpg)", c, true, false});
    return v;
}

/// One token's loss written from the peers' code (not from grpo's math), for ratio_level::token:
/// r = exp(clamp(logp - old, +-log_ratio_clamp)), loss = objective + beta * KL.
///  ppo_clip    TRL GRPOTrainer._compute_loss (grpo/bnpo/dr_grpo/dapo branch: coef_2 = clamp(coef_1, 1-eps_low,
///              1+eps_high); coef_1 = clamp(coef_1, max=delta); -min(coef_1 A, coef_2 A)); verl
///              compute_policy_loss_vanilla (core_algos.py, dual clip: min(-A c, max(-A r, -A clip(r))) for A < 0).
///  cispo       TRL _compute_loss cispo branch: -clamp(coef_1, max=epsilon_high).detach() * A * logp.
///  cispo_clip  verl compute_policy_loss_cispo (core_algos.py L2006-2064): -clamp(r, 1-low, 1+high).detach() A lp.
///  sapo        TRL sapo branch / verl compute_policy_loss_sapo (L1622): -(4/tau) sigmoid(tau (r - 1)) A,
///              tau = tau_pos if A > 0 else tau_neg.
///  gpg         verl compute_policy_loss_gpg (L1707): -logp * A.
///  KL          TRL: exp(ref - lp) - (ref - lp) - 1; verl kl_penalty: k1 = x, k2 = x^2/2, abs = |x|,
///              low_var_kl = clamp(k3 on clamp(x, +-20), +-10) (x = lp - ref).
struct peer_token {
    double loss, policy, kl;
};
inline peer_token peer_token_loss(const grpo::loss_config& c, double lp, double old, double ref, double a) {
    using grpo::policy_objective;
    double log_r = lp - old;
    if (c.log_ratio_clamp > 0) log_r = std::max(-c.log_ratio_clamp, std::min(c.log_ratio_clamp, log_r));
    const double r = std::exp(log_r);
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
    }
    double x = lp - ref;
    const bool low_var = c.kl == grpo::kl_estimator::low_var_kl;
    const double in_clamp = c.kl_log_ratio_clamp > 0 ? c.kl_log_ratio_clamp : low_var ? 20.0 : 0.0;
    const double out_clamp = c.kl_value_clamp > 0 ? c.kl_value_clamp : low_var ? 10.0 : 0.0;
    if (in_clamp > 0) x = std::max(-in_clamp, std::min(in_clamp, x));
    double kl = 0;
    if (c.beta == 0) return {pol, pol, 0}; // TRL computes no KL at beta 0, grpo neither
    switch (c.kl) {
    case grpo::kl_estimator::k1: kl = x; break;
    case grpo::kl_estimator::k2: kl = 0.5 * x * x; break;
    case grpo::kl_estimator::abs: kl = std::fabs(x); break;
    default: kl = std::exp(-x) + x - 1; break;
    }
    if (out_clamp > 0) kl = std::max(-out_clamp, std::min(out_clamp, kl));
    return {pol + c.beta * kl, pol, kl};
}

} // namespace grpo_test
