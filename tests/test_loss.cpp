// SPDX-License-Identifier: MIT
// The fused loss pass against hand-computed values: aggregation modes, masks, lengths, sequence-level
// ratios, KL, the on-policy case, and fp32 vs fp64.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "catch.hpp"
#include "test_helpers.hpp"

using grpo::index_t;

namespace {

/// 2 x 3 on-policy batch: A = 1 on row 0, -3 on row 1; mask row 0 = [1, 1, 0], row 1 = [1, 0, 0].
/// Per-token loss = -A: row 0 -> -1, -1; row 1 -> 3.
struct small_case {
    std::vector<double> logp{-1, -2, -3, -0.5, -0.5, -0.5};
    std::vector<double> adv{1, -3};
    std::vector<double> mask{1, 1, 0, 1, 0, 0};
    std::vector<double> grad = std::vector<double>(6, 42.0);

    grpo::loss_stats run(const grpo::loss_config& cfg) {
        grpo::loss_inputs<double> in;
        in.logp = {logp.data(), 2, 3};
        in.advantages = grpo::broadcast_to_tokens(grpo::vector_view<const double>(adv.data(), 2), 3);
        in.mask = {mask.data(), 2, 3};
        grpo::loss_outputs<double> out;
        out.grad_logp = {grad.data(), 2, 3};
        return grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);
    }
};

} // namespace

TEST_CASE("aggregation modes on a hand-computed batch", "[loss][aggregation]") {
    small_case c;
    grpo::loss_config cfg;

    cfg.agg = grpo::aggregation::token_mean; // (-1 - 1 + 3) / 3
    auto st = c.run(cfg);
    CHECK(st.loss == Approx(1.0 / 3));
    CHECK(c.grad[0] == Approx(-1.0 / 3));
    CHECK(c.grad[3] == Approx(1.0));
    CHECK(c.grad[2] == 0.0);
    CHECK(c.grad[4] == 0.0);
    CHECK(st.token_count == 3);

    cfg.global_token_count = 6; // TRL dapo / verl token-mean with the step's global count
    st = c.run(cfg);
    CHECK(st.loss == Approx(1.0 / 6));
    CHECK(c.grad[3] == Approx(0.5));
    cfg.loss_scale = 2; // e.g. DDP world size 2
    st = c.run(cfg);
    CHECK(st.loss == Approx(1.0 / 3));
    CHECK(c.grad[0] == Approx(-1.0 / 3));
    cfg.global_token_count = 0;
    cfg.loss_scale = 1;

    cfg.agg = grpo::aggregation::seq_mean_token_mean; // ((-2)/2 + 3/1) / 2
    st = c.run(cfg);
    CHECK(st.loss == Approx(1.0));
    CHECK(c.grad[0] == Approx(-0.25));
    CHECK(c.grad[1] == Approx(-0.25));
    CHECK(c.grad[3] == Approx(1.5));

    cfg.global_sequence_count = 4;
    st = c.run(cfg);
    CHECK(st.loss == Approx(0.5));
    cfg.global_sequence_count = 0;

    cfg.agg = grpo::aggregation::seq_mean_token_sum; // (-2 + 3) / 2
    st = c.run(cfg);
    CHECK(st.loss == Approx(0.5));
    CHECK(c.grad[0] == Approx(-0.5));
    CHECK(c.grad[3] == Approx(1.5));

    cfg.agg = grpo::aggregation::token_sum_over_constant; // (-2 + 3) / (2 * 3): L defaults to padded length
    st = c.run(cfg);
    CHECK(st.loss == Approx(1.0 / 6));
    CHECK(c.grad[3] == Approx(0.5));
    cfg.max_completion_length = 10; // TRL dr_grpo: / (B * max_completion_length)
    st = c.run(cfg);
    CHECK(st.loss == Approx(1.0 / 20));
    CHECK(c.grad[0] == Approx(-1.0 / 20));
    cfg.max_completion_length = 0;

    cfg.agg = grpo::aggregation::token_sum;
    st = c.run(cfg);
    CHECK(st.loss == Approx(1.0));
    CHECK(c.grad[0] == Approx(-1.0));
    CHECK(c.grad[3] == Approx(3.0));
    CHECK(c.grad[5] == 0.0);
}

TEST_CASE("an independent test vector: B=1, G=2, S=2 (LeetGPU GRPO surrogate)", "[loss]") {
    // rewards [10, 0], population std, eps 1e-8 -> A = [1, -1]; old = ref = 0; eps 0.2; beta 0.01;
    // mean over all 4 tokens -> -0.17563 (independently published), -0.17563244381768803 in fp64.
    std::vector<double> rewards{10, 0}, adv(2);
    grpo::advantage_config acfg;
    acfg.std = grpo::std_estimator::biased;
    acfg.epsilon = 1e-8;
    grpo::compute_advantages(grpo::exec::host{}, grpo::vector_view<const double>(rewards.data(), 2),
                             grpo::groups::contiguous(2), grpo::vector_view<double>(adv.data(), 2), acfg);
    std::vector<double> logp{0.1, 0.2, -0.5, -0.4}, zeros(4, 0.0), grad(4);
    grpo::loss_inputs<double> in;
    in.logp = {logp.data(), 2, 2};
    in.old_logp = {zeros.data(), 2, 2};
    in.ref_logp = {zeros.data(), 2, 2};
    in.advantages = grpo::broadcast_to_tokens(grpo::vector_view<const double>(adv.data(), 2), 2);
    grpo::loss_config cfg;
    cfg.beta = 0.01;
    auto st = grpo::loss_and_grad(grpo::exec::host{}, in, {grpo::matrix_view<double>(grad.data(), 2, 2), {}}, cfg);
    CHECK(st.loss == Approx(-0.17563244381768803).epsilon(1e-12));
    CHECK(st.loss == Approx(-0.17563).margin(5e-6));
    // Row 0 token 1: r = e^0.2 > 1.2 is clipped, A > 0: only the KL gradient beta*(1 - e^-0.2)/4 remains.
    CHECK(grad[1] == Approx(0.01 * (1 - std::exp(-0.2)) / 4).epsilon(1e-12));
    // Row 0 token 0: r = e^0.1 inside: -A*r/4 + beta*(1 - e^-0.1)/4.
    CHECK(grad[0] == Approx((-adv[0] * std::exp(0.1) + 0.01 * (1 - std::exp(-0.1))) / 4).epsilon(1e-12));
    CHECK(st.clip_fraction_high == Approx(0.25));
    CHECK(st.clip_fraction_low == Approx(0.5)); // row 1: r = e^-0.5, e^-0.4 < 0.8 with A < 0
    CHECK(st.ratio_max == Approx(std::exp(0.2)));
    CHECK(st.ratio_min == Approx(std::exp(-0.5)));
    CHECK(st.approx_kl == Approx(-(0.1 + 0.2 - 0.5 - 0.4) / 4));
    CHECK(st.kl_mean == Approx((std::exp(-0.1) + 0.1 - 1 + std::exp(-0.2) + 0.2 - 1 + std::exp(0.5) - 0.5 - 1 +
                                std::exp(0.4) - 0.4 - 1) /
                               4));
}

TEST_CASE("on-policy (no old log-probs): ratio 1 and gradient -A * w, like exp(logp - sg(logp))", "[loss]") {
    std::vector<double> logp{-1, -2, -3, -4}, adv{0.5, -0.25, 2, 1}, grad(4);
    grpo::loss_inputs<double> in;
    in.logp = {logp.data(), 2, 2};
    in.advantages = {adv.data(), 2, 2}; // per-token (process-style) advantages
    auto st = grpo::loss_and_grad(grpo::exec::host{}, in, {grpo::matrix_view<double>(grad.data(), 2, 2), {}},
                                  grpo::loss_config{});
    CHECK(st.loss == Approx(-(0.5 - 0.25 + 2 + 1) / 4));
    CHECK(grad[0] == Approx(-0.125));
    CHECK(grad[1] == Approx(0.0625));
    CHECK(st.ratio_mean == 1.0);
    CHECK(st.clip_fraction_region == 0.0); // trl#3757: nothing can clip on-policy
}

TEST_CASE("lengths and mask combine; NaN at masked positions is never read", "[loss][mask]") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    std::vector<double> logp{-1, -1, nan, -1, nan, nan}, adv{1, nan}, grad(6, 9.0), per_tok(6, 9.0);
    std::vector<double> mask{1, 1, 1, 0, 0, 0};
    std::vector<std::int64_t> lengths{2, 3};
    grpo::loss_inputs<double> in;
    in.logp = {logp.data(), 2, 3};
    in.advantages = grpo::broadcast_to_tokens(grpo::vector_view<const double>(adv.data(), 2), 3);
    in.mask = {mask.data(), 2, 3};
    in.lengths = {lengths.data(), 2};
    grpo::loss_config cfg;
    auto st = grpo::loss_and_grad(
        grpo::exec::host{}, in,
        {grpo::matrix_view<double>(grad.data(), 2, 3), grpo::matrix_view<double>(per_tok.data(), 2, 3)}, cfg);
    CHECK(st.token_count == 2); // row 0: tokens 0, 1 (length 2); row 1: all masked
    CHECK(st.loss == Approx(-1.0));
    for (int k : {2, 3, 4, 5}) {
        CHECK(grad[k] == 0.0);
        CHECK(per_tok[k] == 0.0);
    }
    CHECK(grad[0] == Approx(-0.5));
    CHECK(per_tok[0] == Approx(-1.0));
}

TEST_CASE("empty rows and an all-masked batch give loss 0 and zero gradients, never NaN", "[loss][mask]") {
    for (auto agg :
         {grpo::aggregation::token_mean, grpo::aggregation::seq_mean_token_mean, grpo::aggregation::seq_mean_token_sum,
          grpo::aggregation::token_sum_over_constant, grpo::aggregation::token_sum}) {
        for (auto level : {grpo::ratio_level::token, grpo::ratio_level::sequence, grpo::ratio_level::sequence_token}) {
            grpo_test::batch<double> b(3, 4, 7);
            std::fill(b.mask.begin(), b.mask.end(), 0.0);
            grpo::loss_config cfg;
            cfg.agg = agg;
            cfg.ratio = level;
            cfg.beta = 0.1;
            auto st = grpo::loss_and_grad(grpo::exec::host{}, b.inputs(), b.outputs(), cfg);
            CHECK(st.loss == 0.0);
            CHECK(st.token_count == 0);
            CHECK(st.ratio_mean == 0.0);
            for (double g : b.grad) CHECK(g == 0.0);
        }
    }
    // A 0-row batch is valid and empty.
    grpo::loss_inputs<double> in;
    in.logp = grpo::matrix_view<const double>(nullptr, 0, 5);
    in.advantages = grpo::matrix_view<const double>(nullptr, 0, 5);
    CHECK(grpo::loss_and_grad(grpo::exec::host{}, in, {}, grpo::loss_config{}).loss == 0.0);
}

TEST_CASE("sequence-level ratio (GSPO): TRL gradient through the mean vs verl GSPO-token", "[loss][gspo]") {
    // One row, lp - old = [0.1, 0.3] -> s = e^0.2; eps_high 0.3 so s is inside; A per token [1, 3].
    std::vector<double> logp{-1.0, -2.0}, old{-1.1, -2.3}, adv{1, 3}, grad(2);
    grpo::loss_inputs<double> in;
    in.logp = {logp.data(), 1, 2};
    in.old_logp = {old.data(), 1, 2};
    in.advantages = {adv.data(), 1, 2};
    grpo::loss_config cfg;
    cfg.epsilon_high = 0.3;
    cfg.agg = grpo::aggregation::token_sum;
    const double s = std::exp(0.2);
    cfg.ratio = grpo::ratio_level::sequence; // L = -s(1 + 3); dL/dlp_t = -4s / 2
    auto st = grpo::loss_and_grad(grpo::exec::host{}, in, {grpo::matrix_view<double>(grad.data(), 1, 2), {}}, cfg);
    CHECK(st.loss == Approx(-4 * s));
    CHECK(grad[0] == Approx(-2 * s));
    CHECK(grad[1] == Approx(-2 * s));
    CHECK(st.ratio_mean == Approx(s));
    cfg.ratio = grpo::ratio_level::sequence_token; // value s, gradient -A_t * s
    st = grpo::loss_and_grad(grpo::exec::host{}, in, {grpo::matrix_view<double>(grad.data(), 1, 2), {}}, cfg);
    CHECK(st.loss == Approx(-4 * s));
    CHECK(grad[0] == Approx(-s));
    CHECK(grad[1] == Approx(-3 * s));
    // Clipped: eps_high 0.2 < 0.2214: no policy gradient at all.
    cfg.epsilon_high = 0.2;
    cfg.ratio = grpo::ratio_level::sequence;
    st = grpo::loss_and_grad(grpo::exec::host{}, in, {grpo::matrix_view<double>(grad.data(), 1, 2), {}}, cfg);
    CHECK(st.loss == Approx(-4 * 1.2));
    CHECK(grad[0] == 0.0);
    CHECK(st.clip_fraction_high == 1.0);
}

TEST_CASE("verl log-ratio clamp: ratios beyond e^20 are clamped with zero gradient", "[loss]") {
    std::vector<double> logp{0.0}, old{-30.0}, adv{-1}, grad(1);
    grpo::loss_inputs<double> in;
    in.logp = {logp.data(), 1, 1};
    in.old_logp = {old.data(), 1, 1};
    in.advantages = {adv.data(), 1, 1};
    grpo::loss_config cfg = grpo::loss_config::verl();
    cfg.dual_clip_c = 0;
    auto st = grpo::loss_and_grad(grpo::exec::host{}, in, {grpo::matrix_view<double>(grad.data(), 1, 1), {}}, cfg);
    CHECK(st.loss == Approx(std::exp(20.0)));
    CHECK(grad[0] == 0.0);
    cfg.dual_clip_c = 3; // verl default: capped at 3
    st = grpo::loss_and_grad(grpo::exec::host{}, in, {grpo::matrix_view<double>(grad.data(), 1, 1), {}}, cfg);
    CHECK(st.loss == Approx(3.0));
    CHECK(st.dual_clip_fraction == 1.0);
}

TEST_CASE("fp32 inputs agree with the fp64 computation to 1e-6 relative", "[loss][precision]") {
    grpo_test::batch<double> d(16, 64, 11);
    grpo_test::batch<float> f(16, 64, 11);
    // Same values: round the double batch to float first.
    for (std::size_t k = 0; k < d.logp.size(); ++k) {
        d.logp[k] = f.logp[k];
        d.old_logp[k] = f.old_logp[k];
        d.ref_logp[k] = f.ref_logp[k];
        d.adv_tok[k] = f.adv_tok[k];
        d.mask[k] = f.mask[k];
    }
    for (auto agg : {grpo::aggregation::token_mean, grpo::aggregation::seq_mean_token_mean}) {
        grpo::loss_config cfg;
        cfg.agg = agg;
        cfg.beta = 0.04;
        auto sd = grpo::loss_and_grad(grpo::exec::host{}, d.inputs(), d.outputs(), cfg);
        auto sf = grpo::loss_and_grad(grpo::exec::host{}, f.inputs(), f.outputs(), cfg);
        CHECK(sf.loss == Approx(sd.loss).epsilon(1e-6));
        CHECK(sf.kl_mean == Approx(sd.kl_mean).epsilon(1e-6));
        // Normwise: a gradient element that is a near-cancellation of the policy and KL terms has no
        // meaningful fp32 relative accuracy (nor in torch); the vector as a whole must be within 1e-6.
        double max_err = 0, max_ref = 0;
        for (std::size_t k = 0; k < d.grad.size(); ++k) {
            max_err = std::max(max_err, std::abs(double(f.grad[k]) - d.grad[k]));
            max_ref = std::max(max_ref, std::abs(d.grad[k]));
            if (d.mask[k] == 0) CHECK(f.grad[k] == 0.0f);
        }
        CHECK(max_err / max_ref < 1e-6);
    }
}
