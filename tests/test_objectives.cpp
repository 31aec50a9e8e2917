// SPDX-License-Identifier: MIT
// Policy objectives (loss_config::objective): hand-computed peer cases, every catalogue variant against the
// peers' formulas, validation of the combinations grpo rejects, and the KL / diagnostics semantics verl relies on.
#include <cmath>
#include <string>
#include <vector>

#include "catch.hpp"
#include "loss_catalogue.hpp"
#include "test_helpers.hpp"

namespace {

/// Two completions of one token each: logp -0.7, old_logp -1.1 (r = e^0.4 = 1.4918...), A = 2 and -1.5,
/// token_sum aggregation, no KL: the per-token values are the objective's own.
struct two_tokens {
    std::vector<double> logp{-0.7, -0.7}, old{-1.1, -1.1}, adv{2.0, -1.5}, grad{9, 9}, loss{9, 9};
    grpo::loss_stats run(grpo::loss_config cfg) {
        cfg.agg = grpo::aggregation::token_sum;
        grpo::loss_inputs<double> in;
        in.logp = {logp.data(), 2, 1};
        in.old_logp = {old.data(), 2, 1};
        in.advantages = {adv.data(), 2, 1};
        grpo::loss_outputs<double> out;
        out.grad_logp = {grad.data(), 2, 1};
        out.per_token_loss = {loss.data(), 2, 1};
        return grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);
    }
};

constexpr double r = 1.4918246976412703; // e^0.4

std::string error_of(const grpo::loss_config& cfg) {
    two_tokens t;
    try {
        t.run(cfg);
    } catch (const grpo::error& e) {
        return e.what();
    }
    return {};
}

} // namespace

TEST_CASE("ppo_clip by hand: the clipped branch for A > 0, the unclipped one for A < 0", "[loss][objective]") {
    two_tokens t;
    const auto st = t.run(grpo::loss_config{});
    CHECK(t.loss[0] == Approx(-2.4).epsilon(1e-15)); // -min(r A, 1.2 A) = -1.2 * 2
    CHECK(t.grad[0] == 0.0);
    CHECK(t.loss[1] == Approx(1.5 * r).epsilon(1e-15)); // -min(-1.5 r, -1.8)
    CHECK(t.grad[1] == Approx(1.5 * r).epsilon(1e-15));
    CHECK(st.clip_fraction_high == 0.5);
}

// TRL GRPOTrainer._compute_loss, loss_type "cispo": clamped = torch.clamp(coef_1, max=self.epsilon_high).detach();
// per_token_loss = -clamped * advantages * per_token_logps; cispo_clip_ratio = (coef_1 > eps_high) & (A > 0).
TEST_CASE("cispo (TRL) by hand: -sg(min(r, cap)) A logp", "[loss][objective]") {
    two_tokens t;
    grpo::loss_config cfg = grpo::loss_config::cispo();
    cfg.cispo_ratio_cap = 1.3;
    const auto st = t.run(cfg);
    CHECK(t.loss[0] == Approx(-1.3 * 2 * -0.7).epsilon(1e-15)); // 1.82
    CHECK(t.grad[0] == Approx(-2.6).epsilon(1e-15));            // -w A: the weight is a constant
    CHECK(t.loss[1] == Approx(-1.3 * -1.5 * -0.7).epsilon(1e-15));
    CHECK(t.grad[1] == Approx(1.95).epsilon(1e-15));
    CHECK(st.clip_fraction_high == 0.5); // capped with A > 0: the first token only
    CHECK(st.clip_fraction_low == 0);
    cfg.cispo_ratio_cap = 5.0; // the default: nothing capped, the weight is r itself
    t.run(cfg);
    CHECK(t.grad[0] == Approx(-2 * r).epsilon(1e-15));
}

// verl compute_policy_loss_cispo (core_algos.py L2006-2064): clipped_ratio = clamp(ratio, 1 - low, 1 + high)
// .detach(); pg_losses = -clipped_ratio * advantages * log_prob; pg_clipfrac = mean(ratio != clipped_ratio).
TEST_CASE("cispo_clip (verl) by hand: -sg(clip(r, 1-eps_low, 1+eps_high)) A logp", "[loss][objective]") {
    two_tokens t;
    const auto st = t.run(grpo::loss_config::cispo_verl());
    CHECK(t.loss[0] == Approx(-1.2 * 2 * -0.7).epsilon(1e-15)); // 1.68
    CHECK(t.grad[0] == Approx(-2.4).epsilon(1e-15));
    CHECK(t.loss[1] == Approx(-1.2 * -1.5 * -0.7).epsilon(1e-15));
    CHECK(t.grad[1] == Approx(1.8).epsilon(1e-15));
    CHECK(st.clip_fraction_high == 1.0); // clipped whatever the sign of A (verl's pg_clipfrac)
    CHECK(st.clip_fraction_region == 1.0);
}

// TRL _compute_loss, loss_type "sapo": temperatures = where(A > 0, pos, neg);
// soft_coef_1 = sigmoid(temperatures * (coef_1 - 1)) * 4 / temperatures; per_token_loss = -soft_coef_1 * A.
// verl compute_policy_loss_sapo (L1622) is the same on a log-ratio clamped to +-20.
TEST_CASE("sapo by hand: -(4/tau) sigmoid(tau (r - 1)) A, tau by the sign of A", "[loss][objective]") {
    two_tokens t;
    const auto st = t.run(grpo::loss_config::sapo());
    // Values from the formula in double (Python): s = 1 / (1 + exp(-tau (r - 1))).
    CHECK(t.loss[0] == Approx(-4.964289521383891).epsilon(1e-14)); // tau 1
    CHECK(t.grad[0] == Approx(-2.810251947572665).epsilon(1e-14)); // -4 s (1 - s) A r
    CHECK(t.loss[1] == Approx(3.5789103444233494).epsilon(1e-14)); // tau 1.05
    CHECK(t.grad[1] == Approx(2.0949332444010573).epsilon(1e-14));
    CHECK(st.clip_fraction_region == 0); // a soft gate clips nothing
}

// verl compute_policy_loss_gpg (L1707): pg_losses = -log_prob * advantages.
TEST_CASE("policy_gradient (verl gpg) by hand: -A logp, the ratio unused", "[loss][objective]") {
    two_tokens t;
    const auto st = t.run(grpo::loss_config::gpg());
    CHECK(t.loss[0] == Approx(1.4).epsilon(1e-15));
    CHECK(t.grad[0] == -2.0);
    CHECK(t.loss[1] == Approx(-1.05).epsilon(1e-15));
    CHECK(t.grad[1] == 1.5);
    CHECK(st.ratio_mean == Approx(r).epsilon(1e-15)); // still reported
}

TEST_CASE("every catalogue variant matches the peers' per-token formulas", "[loss][objective]") {
    std::uint64_t seed = 500;
    for (const auto& var : grpo_test::loss_catalogue()) {
        for (bool per_token_adv : {true, false}) {
            grpo_test::batch<double> b(5, 9, ++seed);
            grpo::loss_config cfg = var.cfg;
            cfg.agg = grpo::aggregation::token_sum;
            const auto in = b.inputs(per_token_adv);
            const auto st = grpo::loss_and_grad(grpo::exec::host{}, in, b.outputs(), cfg);
            std::vector<double> advantages(b.logp.size());
            for (grpo::index_t i = 0; i < b.rows; ++i)
                for (grpo::index_t t = 0; t < b.cols; ++t)
                    advantages[static_cast<std::size_t>(i * b.cols + t)] = in.advantages(i, t);
            const std::vector<bool> selected =
                grpo_test::peer_cov_selection(cfg, b.logp, b.old_logp, advantages, b.mask);
            double selected_count = 0;
            for (std::size_t k = 0; k < selected.size(); ++k) selected_count += selected[k] ? 1 : 0;
            double policy = 0, kl = 0;
            for (grpo::index_t i = 0; i < b.rows; ++i)
                for (grpo::index_t t = 0; t < b.cols; ++t) {
                    const std::size_t k = static_cast<std::size_t>(i * b.cols + t);
                    INFO(var.name << " token " << k);
                    if (b.mask[k] == 0) {
                        CHECK(b.per_token[k] == 0.0);
                        continue;
                    }
                    const double a = in.advantages(i, t);
                    const double factor = grpo_test::peer_policy_factor(cfg, b.logp, b.old_logp, b.sampling_logp,
                                                                        b.mask, b.entropy, b.cols, i, t, a);
                    const double h = cfg.entropy_coef != 0 || cfg.top_entropy_quantile < 1 ? b.entropy[k] : 0.0;
                    double row = 1; // the row-level factor: a sequence ratio, geo_mean's ratio, vespo's phi
                    if (cfg.ratio == grpo::ratio_level::sequence)
                        row = grpo_test::peer_sequence_ratio(b.logp, b.old_logp, b.mask, b.cols, i);
                    if (cfg.objective == grpo::policy_objective::geo_mean)
                        row = grpo_test::peer_geo_mean_ratio(cfg, b.logp, b.old_logp, advantages, b.mask, b.cols, i);
                    if (cfg.objective == grpo::policy_objective::vespo)
                        row = grpo_test::peer_vespo_phi(cfg, b.logp, b.old_logp, b.sampling_logp, b.mask, b.cols, i, a);
                    const auto peer = grpo_test::peer_token_loss(cfg, b.logp[k], b.old_logp[k], b.ref_logp[k], a,
                                                                 factor, h, row, selected[k]);
                    CHECK(b.per_token[k] == Approx(peer.loss).epsilon(1e-12).margin(1e-15));
                    policy += peer.policy;
                    kl += peer.kl;
                }
            INFO(var.name);
            CHECK(st.policy_loss == Approx(policy).epsilon(1e-12).margin(1e-14));
            CHECK(st.kl_loss == Approx(kl).epsilon(1e-12).margin(1e-14));
            if (grpo::math::selects_by_covariance(cfg.objective)) {
                CHECK(selected_count > 1);
                CHECK(st.cov_selection_fraction == Approx(selected_count / st.token_count).epsilon(1e-15));
            } else {
                CHECK(st.cov_selection_fraction == 0);
            }
        }
    }
}

TEST_CASE("objective options are rejected where the objective has no use for them", "[loss][objective][errors]") {
    grpo::loss_config c = grpo::loss_config::sapo();
    c.delta = 1.5;
    CHECK(error_of(c).find("config.delta") != std::string::npos);
    c = grpo::loss_config::verl(); // dual clip 3: part of ppo_clip only
    c.objective = grpo::policy_objective::cispo_clip;
    CHECK(error_of(c).find("config.dual_clip_c") != std::string::npos);
    c.dual_clip_c = 0;
    CHECK(error_of(c).empty());
    c = grpo::loss_config::gpg();
    c.ratio = grpo::ratio_level::sequence;
    CHECK(error_of(c).find("config.ratio") != std::string::npos);
    c = grpo::loss_config::cispo();
    c.ratio = grpo::ratio_level::sequence; // TRL accepts cispo with sequence-level ratios, and so does grpo
    CHECK(error_of(c).empty());
    c = grpo::loss_config::cispo();
    c.cispo_ratio_cap = 0;
    CHECK(error_of(c).find("config.cispo_ratio_cap") != std::string::npos);
    c.cispo_ratio_cap = std::nan("");
    CHECK(error_of(c).find("config.cispo_ratio_cap") != std::string::npos);
    c = grpo::loss_config::sapo();
    c.sapo_temperature_neg = -1;
    CHECK(error_of(c).find("config.sapo_temperature_neg") != std::string::npos);
    c.sapo_temperature_neg = 1;
    c.objective = static_cast<grpo::policy_objective>(grpo::policy_objective_count);
    CHECK(error_of(c).find("config.objective") != std::string::npos);
    c.objective = grpo::policy_objective::sapo;
    c.kl = static_cast<grpo::kl_estimator>(grpo::kl_estimator_count);
    CHECK(error_of(c).find("config.kl") != std::string::npos);
}

TEST_CASE("low_var_kl is k3 clamped to +-20 / +-10; another estimator drops the clamps (verl)", "[loss][kl]") {
    // x = logp - ref = 30: low_var_kl clamps x to 20, and k3(20) = e^-20 + 19 is then clamped to 10;
    // k1 after verl() is x itself, unclamped.
    std::vector<double> logp{-1.0}, ref{-31.0}, adv{1.0}, loss{0};
    grpo::loss_inputs<double> in;
    in.logp = {logp.data(), 1, 1};
    in.ref_logp = {ref.data(), 1, 1};
    in.advantages = {adv.data(), 1, 1};
    grpo::loss_outputs<double> out;
    out.per_token_loss = {loss.data(), 1, 1};
    grpo::loss_config c = grpo::loss_config::verl();
    c.beta = 1;
    CHECK(grpo::loss_and_grad(grpo::exec::host{}, in, out, c).kl_mean == 10.0);
    c.kl = grpo::kl_estimator::k1;
    CHECK(grpo::loss_and_grad(grpo::exec::host{}, in, out, c).kl_mean == 30.0);
    c.kl = grpo::kl_estimator::k3;
    CHECK(grpo::loss_and_grad(grpo::exec::host{}, in, out, c).kl_mean == Approx(29.0).epsilon(1e-12));
    c.kl = grpo::kl_estimator::low_var_kl;
    c.kl_value_clamp = 5; // an explicit clamp overrides low_var_kl's
    CHECK(grpo::loss_and_grad(grpo::exec::host{}, in, out, c).kl_mean == 5.0);
}

TEST_CASE("approx_kl is verl's ppo_kl: the mean of -(clamped log-ratio)", "[loss][stats]") {
    two_tokens t;
    grpo::loss_config c = grpo::loss_config::verl();
    c.log_ratio_clamp = 0.3; // log r = 0.4 is clamped to 0.3
    CHECK(t.run(c).approx_kl == Approx(-0.3).epsilon(1e-15));
    c.log_ratio_clamp = 0;
    CHECK(t.run(c).approx_kl == Approx(-0.4).epsilon(1e-12));
}

TEST_CASE("sampling corrections need sampling_logp, check it, and never read it otherwise", "[loss][correction]") {
    grpo_test::batch<double> b(3, 8, 71);
    for (double& m : b.mask) m = 1;
    grpo::loss_config cfg;
    cfg.sampling = grpo::sampling_correction::token_truncate;
    auto in = b.inputs();
    in.sampling_logp = {};
    std::string what;
    try {
        grpo::loss_and_grad(grpo::exec::host{}, in, b.outputs(), cfg);
    } catch (const grpo::error& e) {
        what = e.what();
    }
    CHECK(what.find("sampling_logp") != std::string::npos);
    CHECK(b.grad[0] == -7.0); // outputs untouched

    b.sampling_logp[1 * 8 + 2] = std::nan("");
    what.clear();
    try {
        grpo::loss_and_grad(grpo::exec::host{}, b.inputs(), b.outputs(), cfg);
    } catch (const grpo::error& e) {
        what = e.what();
        CHECK(e.code() == grpo::errc::non_finite);
    }
    CHECK(what.find("sampling_logp") != std::string::npos);
    CHECK(what.find("(1, 2)") != std::string::npos);
    cfg.sampling = grpo::sampling_correction::none; // not read: NaN there is harmless
    const auto st = grpo::loss_and_grad(grpo::exec::host{}, b.inputs(), b.outputs(), cfg);
    CHECK(std::isfinite(st.loss));
    CHECK(st.sampling_weight_mean == 1.0);
}

TEST_CASE("sampling correction by hand: token_truncate and sequence_mask", "[loss][correction]") {
    // Two tokens in one row, A = 1, on-policy (r = 1, ppo_clip loss -A = -1 per token), token_sum.
    std::vector<double> logp{-1.0, -2.0}, samp{-1.5, -1.9}, adv{1.0, 1.0}, grad{0, 0}, loss{0, 0};
    grpo::loss_inputs<double> in;
    in.logp = {logp.data(), 1, 2};
    in.sampling_logp = {samp.data(), 1, 2};
    in.advantages = {adv.data(), 1, 2};
    grpo::loss_outputs<double> out;
    out.grad_logp = {grad.data(), 1, 2};
    out.per_token_loss = {loss.data(), 1, 2};
    grpo::loss_config cfg;
    cfg.agg = grpo::aggregation::token_sum;
    cfg.sampling = grpo::sampling_correction::token_truncate;
    cfg.sampling_ratio_max = 1.5;
    // rho = exp(old - sampling) with old = logp (on-policy): e^0.5 = 1.6487 -> 1.5, e^-0.1 = 0.9048.
    auto st = grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);
    CHECK(loss[0] == Approx(-1.5).epsilon(1e-15));
    CHECK(loss[1] == Approx(-std::exp(-0.1)).epsilon(1e-15));
    CHECK(grad[1] == Approx(-std::exp(-0.1)).epsilon(1e-15)); // the weight is a constant factor
    CHECK(st.sampling_weight_mean == Approx((1.5 + std::exp(-0.1)) / 2).epsilon(1e-15));
    // Sequence: rho = exp(0.5 - 0.1) = e^0.4 = 1.49 inside [0, 1.5]: kept; with max 1.4 the row is masked.
    cfg.sampling = grpo::sampling_correction::sequence_mask;
    st = grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);
    CHECK(st.policy_loss == Approx(-2 * std::exp(0.4)).epsilon(1e-15));
    cfg.sampling_ratio_max = 1.4;
    st = grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);
    CHECK(st.policy_loss == 0.0);
    CHECK(grad[0] == 0.0);
    CHECK(st.token_count == 2); // masked by the correction, still counted by the aggregation (as in TRL)
}

TEST_CASE("off-policy sequence mask by hand: a row past the threshold loses its A < 0 tokens", "[loss][correction]") {
    // Row 0: mean(old - logp) = 0.3 > 0.1: off-policy; A = [1, -1]: only the A < 0 token is dropped.
    // Row 1: mean(old - logp) = -0.3: kept.
    std::vector<double> logp{-1.0, -1.0, -1.0, -1.0}, old{-0.7, -0.7, -1.3, -1.3}, adv{1.0, -1.0, 1.0, -1.0};
    std::vector<double> grad(4, 0.0);
    grpo::loss_inputs<double> in;
    in.logp = {logp.data(), 2, 2};
    in.old_logp = {old.data(), 2, 2};
    in.advantages = {adv.data(), 2, 2};
    grpo::loss_outputs<double> out;
    out.grad_logp = {grad.data(), 2, 2};
    grpo::loss_config cfg;
    cfg.agg = grpo::aggregation::token_sum;
    cfg.epsilon_low = cfg.epsilon_high = 0.9; // nothing clipped: grad = -A r
    cfg.off_policy_mask_threshold = 0.1;
    const auto st = grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);
    CHECK(grad[0] == Approx(-std::exp(-0.3)).epsilon(1e-15));
    CHECK(grad[1] == 0.0);
    CHECK(grad[2] == Approx(-std::exp(0.3)).epsilon(1e-15));
    CHECK(grad[3] == Approx(std::exp(0.3)).epsilon(1e-15));
    CHECK(st.off_policy_mask_fraction == 0.25);
}

TEST_CASE("bias-corrected KL by hand: k3 * r, gradient through r", "[loss][kl]") {
    // One token: logp -1, old -1.2 (r = e^0.2), ref -1.5 (x = 0.5), A = 0, beta 1: loss = k3(x) r.
    std::vector<double> logp{-1.0}, old{-1.2}, ref{-1.5}, adv{0.0}, grad{0};
    grpo::loss_inputs<double> in;
    in.logp = {logp.data(), 1, 1};
    in.old_logp = {old.data(), 1, 1};
    in.ref_logp = {ref.data(), 1, 1};
    in.advantages = {adv.data(), 1, 1};
    grpo::loss_outputs<double> out;
    out.grad_logp = {grad.data(), 1, 1};
    grpo::loss_config cfg;
    cfg.beta = 1;
    cfg.kl_bias_correction = true;
    const double r = std::exp(0.2), k3 = std::exp(-0.5) + 0.5 - 1, dk3 = 1 - std::exp(-0.5);
    const auto st = grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);
    CHECK(st.kl_mean == Approx(k3 * r).epsilon(1e-15));
    CHECK(grad[0] == Approx(dk3 * r + k3 * r).epsilon(1e-14));
}

TEST_CASE("the per-token ratio output, and S without empty rows (count_empty_sequences = false)", "[loss][stats]") {
    // Rows: [r = e^0.4, masked], [fully masked]. seq_mean_token_sum: S = 2 rows, or 1 row with tokens.
    std::vector<double> logp{-0.7, -0.7, -1.0, -1.0}, old{-1.1, -1.1, -1.0, -1.0}, adv{-1.0, -1.0, 1.0, 1.0};
    std::vector<double> mask{1, 0, 0, 0}, ratio(4, 9.0), grad(4, 9.0);
    grpo::loss_inputs<double> in;
    in.logp = {logp.data(), 2, 2};
    in.old_logp = {old.data(), 2, 2};
    in.advantages = {adv.data(), 2, 2};
    in.mask = {mask.data(), 2, 2};
    grpo::loss_outputs<double> out;
    out.grad_logp = {grad.data(), 2, 2};
    out.ratio = {ratio.data(), 2, 2};
    grpo::loss_config cfg;
    cfg.agg = grpo::aggregation::seq_mean_token_sum;
    cfg.epsilon_high = 1; // A < 0 and r = 1.49: unclipped, loss = -A r = r
    auto st = grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);
    CHECK(ratio[0] == Approx(r).epsilon(1e-15));
    CHECK(ratio[1] == 0.0);
    CHECK(ratio[2] == 0.0);
    CHECK(st.loss == Approx(r / 2).epsilon(1e-15));
    cfg.count_empty_sequences = false;
    st = grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);
    CHECK(st.loss == Approx(r).epsilon(1e-15));
    CHECK(grad[0] == Approx(r).epsilon(1e-15));
    cfg.global_sequence_count = 4; // a global S wins
    st = grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);
    CHECK(st.loss == Approx(r / 4).epsilon(1e-15));
    // The ratio output may not alias another output.
    out.ratio = {grad.data(), 2, 2};
    CHECK_THROWS_AS(grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg), grpo::error);
}

TEST_CASE("top-entropy mask by hand: torch.quantile's threshold, policy term only", "[loss][entropy]") {
    // One row of four tokens with H = [3, 1, 4, 2], rho = 0.5: quantile 0.5 of [1, 2, 3, 4] = 2.5 (linear), so
    // the tokens with H 3 and 4 keep their policy term. On-policy, A = 1: policy loss -1 per kept token.
    std::vector<double> logp{-1, -1, -1, -1}, ent{3, 1, 4, 2}, adv{1, 1, 1, 1}, grad(4, 9.0), gent(4, 9.0);
    grpo::loss_inputs<double> in;
    in.logp = {logp.data(), 1, 4};
    in.entropy = {ent.data(), 1, 4};
    in.advantages = {adv.data(), 1, 4};
    grpo::loss_outputs<double> out;
    out.grad_logp = {grad.data(), 1, 4};
    out.grad_entropy = {gent.data(), 1, 4};
    grpo::loss_config cfg;
    cfg.agg = grpo::aggregation::token_sum;
    cfg.top_entropy_quantile = 0.5;
    auto st = grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);
    CHECK(st.policy_loss == -2.0);
    CHECK(grad == std::vector<double>{-1, 0, -1, 0});
    CHECK(st.entropy_mask_fraction == 0.5);
    CHECK(st.entropy_mean == 2.5);
    CHECK(gent == std::vector<double>{0, 0, 0, 0}); // no bonus: dL/dH = 0
    // The host's own (global) threshold replaces this call's quantile.
    cfg.entropy_threshold = 3.5;
    st = grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);
    CHECK(grad == std::vector<double>{0, 0, -1, 0});
    // Bonus: loss -= 0.1 H per token, dL/dH = -0.1 (token_sum weight 1).
    cfg = grpo::loss_config{};
    cfg.agg = grpo::aggregation::token_sum;
    cfg.entropy_coef = 0.1;
    st = grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);
    CHECK(st.entropy_loss == 10.0);
    CHECK(st.loss == Approx(-4.0 - 1.0).epsilon(1e-15));
    CHECK(gent == std::vector<double>{-0.1, -0.1, -0.1, -0.1});
    // Entropies are required by either term, and checked.
    in.entropy = {};
    CHECK_THROWS_AS(grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg), grpo::error);
    ent[2] = std::nan("");
    in.entropy = {ent.data(), 1, 4};
    std::string what;
    try {
        grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);
    } catch (const grpo::error& e) {
        what = e.what();
    }
    CHECK(what.find("entropy") != std::string::npos);
}

TEST_CASE("dLoss/dentropy equals finite differences of the loss in the entropies", "[loss][entropy][gradcheck]") {
    for (auto agg : {grpo::aggregation::token_mean, grpo::aggregation::seq_mean_token_mean,
                     grpo::aggregation::token_sum_over_constant}) {
        grpo_test::batch<double> b(3, 7, 91);
        grpo::loss_config cfg;
        cfg.agg = agg;
        cfg.beta = 0.05;
        cfg.entropy_coef = 0.03;
        std::vector<double> gent(b.entropy.size(), 9.0);
        auto out = b.outputs();
        out.grad_entropy = {gent.data(), b.rows, b.cols};
        const auto in = b.inputs();
        grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);
        const double h = 1e-6;
        for (std::size_t k = 0; k < b.entropy.size(); ++k) {
            const double saved = b.entropy[k];
            b.entropy[k] = saved + h;
            const double up = grpo::loss_and_grad(grpo::exec::host{}, in, grpo::loss_outputs<double>{}, cfg).loss;
            b.entropy[k] = saved - h;
            const double down = grpo::loss_and_grad(grpo::exec::host{}, in, grpo::loss_outputs<double>{}, cfg).loss;
            b.entropy[k] = saved;
            INFO("agg " << static_cast<int>(agg) << " token " << k);
            CHECK(gent[k] == Approx((up - down) / (2 * h)).epsilon(1e-6).margin(1e-9));
        }
    }
}

namespace {

/// Two completions of three tokens (the second's last token masked), A = 2 and -1.5 per row. The expected
/// values below come from the peers' code run in torch (float64, autograd for the gradients).
struct six_tokens {
    std::vector<double> logp{-0.7, -1.2, -0.3, -0.9, -0.4, -2.0}, old{-1.1, -1.05, -0.35, -0.6, -0.55, -1.0},
        adv{2, 2, 2, -1.5, -1.5, -1.5}, mask{1, 1, 1, 1, 1, 0}, grad = std::vector<double>(6, 9.0),
                                                                loss = std::vector<double>(6, 9.0);
    grpo::loss_stats run(const grpo::loss_config& cfg) {
        grpo::loss_inputs<double> in;
        in.logp = {logp.data(), 2, 3};
        in.old_logp = {old.data(), 2, 3};
        in.advantages = {adv.data(), 2, 3};
        in.mask = {mask.data(), 2, 3};
        grpo::loss_outputs<double> out;
        out.grad_logp = {grad.data(), 2, 3};
        out.per_token_loss = {loss.data(), 2, 3};
        return grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);
    }
};

} // namespace

// verl compute_policy_loss_geo_mean (core_algos.py L1928-1985): sgn = sign(A); d' = sgn * min(sgn d, sgn clamp(d,
// -clip_low, clip_high)); ratio = exp(sum(d' m) / (sum m + 1e-8)); advantage = sum(A m) / (sum m + 1e-8);
// loss = mean(-advantage * ratio); pg_clipfrac = mean((d != clamp(d)) & A > 0), _lower the same for A < 0.
TEST_CASE("geo_mean (verl GMPO) by hand against verl's code in torch", "[loss][objective]") {
    six_tokens t;
    grpo::loss_config cfg = grpo::loss_config::gmpo();
    cfg.epsilon_low = 0.1;
    cfg.epsilon_high = 0.15;
    const auto st = t.run(cfg);
    // verl divides by n + 1e-8 where seq_mean_token_mean divides by n: agreement to ~1e-8 relative.
    CHECK(st.loss == Approx(-0.24781999048815084).epsilon(1e-7));
    const double grad[6] = {0, -0.33893544118368768, -0.33893544118368768, 0, 0.38449316630366753, 0};
    for (int k = 0; k < 6; ++k) CHECK(t.grad[k] == Approx(grad[k]).epsilon(1e-7).margin(1e-300));
    CHECK(t.grad[0] == 0.0); // clipped on the side that matters for A > 0: no gradient at all
    CHECK(t.grad[3] == 0.0);
    CHECK(t.loss[0] == Approx(-2 * 1.0168063303297719).epsilon(1e-12)); // -A_it rho_i per token
    CHECK(t.loss[3] == Approx(1.5 * 1.0253151203962645).epsilon(1e-12));
    CHECK(st.clip_fraction_high == Approx(0.4).epsilon(1e-15)); // verl pg_clipfrac
    CHECK(st.clip_fraction_low == Approx(0.4).epsilon(1e-15));  // verl pg_clipfrac_lower
}

// TRL GRPOTrainer.get_gamma_weights (@torch.no_grad): log_w = clamp(sum(clamp(log_ratio, -20, 20) * mask),
// log(1e-8), 20); (k, lambda) = (k_pos, lambda_pos) where A >= 0; phi = exp(lambda + k log_w - lambda e^log_w);
// _compute_loss: per_token_loss = -phi_seq * advantages * per_token_logps; "vespo" is normalized like "dapo".
TEST_CASE("vespo (TRL) by hand against TRL's code in torch", "[loss][objective]") {
    six_tokens t;
    const auto st = t.run(grpo::loss_config::vespo());
    CHECK(st.loss == Approx(0.23278678017746041).epsilon(1e-13));
    const double grad[6] = {-0.25515931744949949, -0.25515931744949949, -0.25515931744949949,
                            0.25274132170110652,  0.25274132170110652,  0};
    for (int k = 0; k < 6; ++k) CHECK(t.grad[k] == Approx(grad[k]).epsilon(1e-13).margin(1e-300));
    CHECK(t.loss[0] == Approx(-0.63789829362374872 * 2 * -0.7).epsilon(1e-13));    // phi of row 0 (A >= 0)
    CHECK(t.loss[3] == Approx(-0.84247107233702179 * -1.5 * -0.9).epsilon(1e-13)); // phi of row 1 (A < 0)
}

// TRL: loss_type "luspo" shares the ppo_clip branch; with importance_sampling_level="sequence", coef_1 =
// exp(sum(log_ratio * mask) / clamp(sum(mask), 1)) is (B, 1) and loss = (per_token_loss * mask).sum(-1).mean().
TEST_CASE("luspo (TRL) by hand: GSPO's sequence ratio, each sequence weighted by its length", "[loss][objective]") {
    six_tokens t;
    grpo::loss_config cfg = grpo::loss_config::luspo();
    cfg.epsilon_low = 0.1;
    cfg.epsilon_high = 0.05;
    const auto st = t.run(cfg);
    CHECK(st.loss == Approx(-1.7583847705071711).epsilon(1e-13));
    const double grad[6] = {0, 0, 0, 0.69580761474641462, 0.69580761474641462, 0};
    for (int k = 0; k < 6; ++k) CHECK(t.grad[k] == Approx(grad[k]).epsilon(1e-13).margin(1e-300));
    CHECK(st.ratio_max == Approx(1.1051709180756477).epsilon(1e-14)); // row 0's coef_1 (clipped: no gradient)
}

TEST_CASE("geo_mean and vespo reject the ratio levels they do not define", "[loss][objective][errors]") {
    grpo::loss_config c = grpo::loss_config::gmpo();
    c.ratio = grpo::ratio_level::token;
    CHECK(error_of(c).find("config.ratio") != std::string::npos);
    c.ratio = grpo::ratio_level::sequence_token;
    CHECK(error_of(c).find("ratio_level::sequence") != std::string::npos);
    c = grpo::loss_config::vespo();
    c.ratio = grpo::ratio_level::sequence;
    CHECK(error_of(c).find("config.ratio") != std::string::npos);
    c = grpo::loss_config::vespo();
    c.vespo_lambda_neg = std::nan("");
    CHECK(error_of(c).find("config.vespo_lambda_neg") != std::string::npos);
    c.vespo_lambda_neg = -5; // TRL clamps lambda to >= 1e-4 rather than rejecting it
    CHECK(error_of(c).empty());
}

// verl compute_policy_loss_clip_cov (core_algos.py L1743-1820), run in torch on six_tokens with clip_cov_ratio 0.4,
// lb 0.3: cov = (A - masked_mean(A)) (logp - masked_mean(logp)) = [0, -0.7, 0.56; 0.42, -0.63]; tokens 0 and 3
// are clipped by origin, so token 2 is the only candidate and torch.randperm cannot choose otherwise.
TEST_CASE("clip_cov (verl) by hand against verl's code in torch", "[loss][objective]") {
    six_tokens t;
    grpo::loss_config cfg = grpo::loss_config::clip_cov();
    cfg.cov_ratio = 0.4;
    cfg.clip_cov_lb = 0.3;
    const auto st = t.run(cfg);
    CHECK(st.loss == Approx(-0.23573291775153821).epsilon(1e-14));
    const double grad[6] = {0, -0.34428319057002321, 0, 0, 0.348550272818485, 0};
    for (int k = 0; k < 6; ++k) CHECK(t.grad[k] == Approx(grad[k]).epsilon(1e-14).margin(1e-300));
    CHECK(t.loss[2] == 0.0);                                        // the selected token's loss is dropped
    CHECK(st.cov_selection_fraction == Approx(0.2).epsilon(1e-15)); // verl's pg_clipfrac (0.2 up to its 1e-8)
}

// verl compute_policy_loss_kl_cov (core_algos.py L1848-1905), run in torch with kl_cov_ratio 0.4, ppo_kl_coef 0.5:
// torch.topk picks cov 0.56 and 0.42 (tokens 2 and 3), whose loss gains 0.5 |logp - old|.
TEST_CASE("kl_cov (verl) by hand against verl's code in torch", "[loss][objective]") {
    six_tokens t;
    grpo::loss_config cfg = grpo::loss_config::kl_cov();
    cfg.cov_ratio = 0.4;
    cfg.kl_cov_coef = 0.5;
    const auto st = t.run(cfg);
    CHECK(st.loss == Approx(-0.75572576915394074).epsilon(1e-14));
    const double grad[6] = {-0.59672987905650821, -0.34428319057002321, -0.32050843855040967,
                            0.1222454662045154,   0.348550272818485,    0};
    for (int k = 0; k < 6; ++k) CHECK(t.grad[k] == Approx(grad[k]).epsilon(1e-14).margin(1e-300));
    CHECK(st.cov_selection_fraction == Approx(0.4).epsilon(1e-15));
}

TEST_CASE("covariance selection: ties go to the lower index, the seed changes clip_cov's draw", "[loss][objective]") {
    // 4 rows x 1 token, A = +-1 and logp -1 +- 0.5: every token has cov 0.5 (a four-way tie).
    std::vector<double> logp{-0.5, -1.5, -0.5, -1.5}, adv{1, -1, 1, -1}, grad(4), loss(4);
    grpo::loss_inputs<double> in;
    in.logp = {logp.data(), 4, 1};
    in.advantages = {adv.data(), 4, 1};
    grpo::loss_outputs<double> out;
    out.grad_logp = {grad.data(), 4, 1};
    out.per_token_loss = {loss.data(), 4, 1};
    grpo::loss_config cfg = grpo::loss_config::kl_cov();
    cfg.cov_ratio = 0.5; // k = 2 of 4 tied tokens: the first two
    cfg.agg = grpo::aggregation::token_sum;
    std::vector<double> old{-0.6, -1.4, -0.6, -1.4}; // |logp - old| = 0.1 everywhere
    in.old_logp = {old.data(), 4, 1};
    grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);
    for (int k = 0; k < 4; ++k) {
        const double r = std::exp(logp[k] - old[k]);
        CHECK(loss[k] == Approx(-adv[k] * r + (k < 2 ? 0.1 * 0.1 : 0.0)).epsilon(1e-14));
    }
    // clip_cov: all four are candidates (cov 0.5 in (0.1, 5), nothing clipped at ratio e^+-0.1); k = 2 by seed.
    cfg = grpo::loss_config::clip_cov();
    cfg.cov_ratio = 0.5;
    cfg.clip_cov_lb = 0.1;
    cfg.agg = grpo::aggregation::token_sum;
    std::vector<std::vector<bool>> draws;
    for (std::uint64_t seed : {0u, 1u, 2u, 3u, 4u, 5u}) {
        cfg.selection_seed = seed;
        const auto st = grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);
        CHECK(st.cov_selection_fraction == 0.5);
        std::vector<bool> dropped(4);
        for (int k = 0; k < 4; ++k) dropped[static_cast<std::size_t>(k)] = loss[k] == 0.0;
        draws.push_back(dropped);
    }
    bool differ = false;
    for (const auto& d : draws) differ = differ || d != draws.front();
    CHECK(differ); // six seeds do not all draw the same two of four tokens
}

TEST_CASE("clip_cov and kl_cov take token ratios and check their options", "[loss][objective][errors]") {
    grpo::loss_config c = grpo::loss_config::kl_cov();
    c.ratio = grpo::ratio_level::sequence;
    CHECK(error_of(c).find("config.ratio") != std::string::npos);
    c = grpo::loss_config::clip_cov();
    c.cov_ratio = 0;
    CHECK(error_of(c).find("config.cov_ratio") != std::string::npos);
    c.cov_ratio = 1.5;
    CHECK(error_of(c).find("config.cov_ratio") != std::string::npos);
    c = grpo::loss_config::clip_cov();
    c.clip_cov_ub = 0.5; // below lb = 1
    CHECK(error_of(c).find("config.clip_cov_ub") != std::string::npos);
    c = grpo::loss_config::clip_cov();
    c.dual_clip_c = 3; // verl's clip_cov has no dual clip
    CHECK(error_of(c).find("config.dual_clip_c") != std::string::npos);
    c = grpo::loss_config::kl_cov();
    c.kl_cov_coef = std::nan("");
    CHECK(error_of(c).find("config.kl_cov_coef") != std::string::npos);
}

// verl compute_policy_loss_dro: pg_losses = -(log_prob * advantages - 0.5 * dro_beta * (log_prob - old_log_prob)**2).
// By hand on two_tokens (logp -0.7, old -1.1, A = 2 and -1.5), dro_beta 0.5: d = 0.4, penalty 0.5 * 0.5 * 0.16.
TEST_CASE("dro (verl) by hand: -(A logp - beta/2 (logp - old)^2)", "[loss][objective]") {
    two_tokens t;
    const auto st = t.run(grpo::loss_config::dro(0.5));
    CHECK(t.loss[0] == Approx(1.4 + 0.04).epsilon(1e-15)); // -(-0.7 * 2) + 0.04
    CHECK(t.grad[0] == Approx(-2 + 0.2).epsilon(1e-15));   // -A + beta d
    CHECK(t.loss[1] == Approx(-1.05 + 0.04).epsilon(1e-15));
    CHECK(t.grad[1] == Approx(1.5 + 0.2).epsilon(1e-15));
    CHECK(st.clip_fraction_region == 0);
    grpo::loss_config c = grpo::loss_config::dro(0);
    CHECK(error_of(c).find("config.dro_beta") != std::string::npos);
    c = grpo::loss_config::dro(0.5);
    c.ratio = grpo::ratio_level::sequence;
    CHECK(error_of(c).find("config.ratio") != std::string::npos);
}
