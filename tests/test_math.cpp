// SPDX-License-Identifier: MIT
// The per-token formulas against hand-computed values: every clip variant, every KL estimator and clamp.
#include <cmath>
#include <limits>

#include "catch.hpp"
#include <grpo/grpo.hpp>

using grpo::math::clip_bounds;
using grpo::math::clipped_surrogate;
using grpo::math::kl_penalty;

namespace {
constexpr double inf = std::numeric_limits<double>::infinity();
const clip_bounds<double> ppo{0.8, 1.2, inf, 0};
} // namespace

TEST_CASE("clipped surrogate: symmetric clip, both signs of the advantage", "[math][surrogate]") {
    // Inside the trust region: loss -r*A, d/dr = -A.
    auto t = clipped_surrogate(1.1, 2.0, ppo);
    CHECK(t.loss == Approx(-2.2));
    CHECK(t.dloss_dratio == -2.0);
    CHECK(t.clipped_low + t.clipped_high == 0.0);
    // A > 0, r above 1+eps: clipped, no gradient.
    t = clipped_surrogate(1.5, 2.0, ppo);
    CHECK(t.loss == Approx(-2.4));
    CHECK(t.dloss_dratio == 0.0);
    CHECK(t.clipped_high == 1.0);
    // A > 0, r below 1-eps: min picks the unclipped term, gradient flows, not counted as clipped.
    t = clipped_surrogate(0.5, 2.0, ppo);
    CHECK(t.loss == Approx(-1.0));
    CHECK(t.dloss_dratio == -2.0);
    CHECK(t.clipped_low + t.clipped_high == 0.0);
    // A < 0, r below 1-eps: clipped low.
    t = clipped_surrogate(0.5, -2.0, ppo);
    CHECK(t.loss == Approx(1.6));
    CHECK(t.dloss_dratio == 0.0);
    CHECK(t.clipped_low == 1.0);
    // A < 0, r above 1+eps: unclipped term wins (pessimistic bound), gradient -A.
    t = clipped_surrogate(1.5, -2.0, ppo);
    CHECK(t.loss == Approx(3.0));
    CHECK(t.dloss_dratio == 2.0);
}

TEST_CASE("clipped surrogate: asymmetric clip-higher", "[math][surrogate]") {
    const clip_bounds<double> dapo{0.8, 1.28, inf, 0};
    auto t = clipped_surrogate(1.25, 1.0, dapo); // inside [0.8, 1.28]: not clipped
    CHECK(t.loss == Approx(-1.25));
    CHECK(t.dloss_dratio == -1.0);
    t = clipped_surrogate(1.3, 1.0, dapo);
    CHECK(t.loss == Approx(-1.28));
    CHECK(t.dloss_dratio == 0.0);
    CHECK(t.clipped_high == 1.0);
    t = clipped_surrogate(0.7, -1.0, dapo);
    CHECK(t.loss == Approx(0.8));
    CHECK(t.clipped_low == 1.0);
}

TEST_CASE("clipped surrogate: verl dual clip caps the loss at -c*A for A < 0", "[math][surrogate]") {
    const clip_bounds<double> dual{0.8, 1.2, inf, 3.0};
    auto t = clipped_surrogate(2.0, -1.0, dual); // C1 = 2 < 3: unchanged
    CHECK(t.loss == Approx(2.0));
    CHECK(t.dloss_dratio == 1.0);
    CHECK(t.dual_clipped == 0.0);
    t = clipped_surrogate(4.0, -1.0, dual); // C1 = 4 > 3: capped, zero gradient
    CHECK(t.loss == Approx(3.0));
    CHECK(t.dloss_dratio == 0.0);
    CHECK(t.dual_clipped == 1.0);
    t = clipped_surrogate(4.0, 1.0, dual); // A > 0: dual clip does not apply
    CHECK(t.loss == Approx(-1.2));
    CHECK(t.dual_clipped == 0.0);
}

TEST_CASE("clipped surrogate: TRL two-sided delta caps the unclipped ratio", "[math][surrogate]") {
    clip_bounds<double> delta{0.8, 1.2, 1.5, 0};
    auto t = clipped_surrogate(2.0, 1.0, delta); // min(1.5, 1.2) -> clipped term
    CHECK(t.loss == Approx(-1.2));
    CHECK(t.dloss_dratio == 0.0);
    t = clipped_surrogate(2.0, -1.0, delta); // min(-1.5, -1.2) = -1.5: delta term, constant
    CHECK(t.loss == Approx(1.5));
    CHECK(t.dloss_dratio == 0.0);
    delta.delta = 1.05;
    t = clipped_surrogate(1.1, -1.0, delta); // min(-1.05, -1.1) = -1.1: clamp term inside its range
    CHECK(t.loss == Approx(1.1));
    CHECK(t.dloss_dratio == 1.0);
}

TEST_CASE("clipped surrogate: a tie at the clip boundary splits the gradient like torch.minimum", "[math][surrogate]") {
    // r exactly 1.2: both terms equal; unclipped path gives -A, clamp path (closed interval) gives -A.
    auto t = clipped_surrogate(1.2, 1.0, ppo);
    CHECK(t.dloss_dratio == -1.0);
    // Same at an asymmetric upper bound (1 + 0.1) with delta on but not binding.
    const clip_bounds<double> d{0.8, 1.1, 1.5, 0};
    t = clipped_surrogate(1.1, 2.0, d);
    CHECK(t.loss == Approx(-2.2));
    CHECK(t.dloss_dratio == -2.0);
}

TEST_CASE("KL estimators: values and derivatives", "[math][kl]") {
    using grpo::kl_estimator;
    const double x = 0.3; // logp - ref
    auto k = kl_penalty(kl_estimator::k1, x, 0.0, 0.0, 0.0, false);
    CHECK(k.value == Approx(0.3));
    CHECK(k.grad == 1.0);
    k = kl_penalty(kl_estimator::k2, x, 0.0, 0.0, 0.0, false);
    CHECK(k.value == Approx(0.045));
    CHECK(k.grad == Approx(0.3));
    k = kl_penalty(kl_estimator::k3, x, 0.0, 0.0, 0.0, false);
    CHECK(k.value == Approx(std::exp(-0.3) + 0.3 - 1)); // 0.0408182...
    CHECK(k.value == Approx(0.040818220681717866));
    CHECK(k.grad == Approx(1 - std::exp(-0.3)));
    k = kl_penalty(kl_estimator::abs, -x, 0.0, 0.0, 0.0, false);
    CHECK(k.value == Approx(0.3));
    CHECK(k.grad == -1.0);
    // k3 of identical policies is exactly 0 with zero gradient.
    k = kl_penalty(kl_estimator::k3, -1.5, -1.5, 0.0, 0.0, false);
    CHECK(k.value == 0.0);
    CHECK(k.grad == 0.0);
}

TEST_CASE("KL estimators: verl low_var_kl clamps and the straight-through gradient", "[math][kl]") {
    using grpo::kl_estimator;
    // ref - logp = 25 -> clamped to 20 -> exp(20) - 21 -> clamped to 10; zero gradient.
    auto k = kl_penalty(kl_estimator::k3, -25.0, 0.0, 20.0, 10.0, false);
    CHECK(k.value == 10.0);
    CHECK(k.grad == 0.0);
    // Inside both clamps: unchanged. x = -1: e - 2, gradient 1 - e.
    k = kl_penalty(kl_estimator::k3, -1.0, 0.0, 20.0, 10.0, false);
    CHECK(k.value == Approx(std::exp(1.0) - 2));
    CHECK(k.grad == Approx(1 - std::exp(1.0)));
    // Unclamped TRL k3 overflows to a huge value, as TRL does (trl#3015): documented, not hidden.
    k = kl_penalty(kl_estimator::k3, -25.0, 0.0, 0.0, 0.0, false);
    CHECK(k.value == Approx(std::exp(25.0) - 26));
    // Straight-through: k3 value, k2 gradient x.
    k = kl_penalty(kl_estimator::k3, 0.3, 0.0, 0.0, 0.0, true);
    CHECK(k.value == Approx(0.040818220681717866));
    CHECK(k.grad == Approx(0.3));
}

TEST_CASE("aggregation weights", "[math][aggregation]") {
    using grpo::aggregation;
    using grpo::math::row_weight;
    CHECK(row_weight(aggregation::token_mean, 3.0, 10.0, 4.0, 8.0) == Approx(0.1));
    CHECK(row_weight(aggregation::seq_mean_token_mean, 3.0, 10.0, 4.0, 8.0) == Approx(1.0 / 12));
    CHECK(row_weight(aggregation::seq_mean_token_mean, 0.0, 10.0, 4.0, 8.0) == 0.0);
    CHECK(row_weight(aggregation::seq_mean_token_sum, 3.0, 10.0, 4.0, 8.0) == Approx(0.25));
    CHECK(row_weight(aggregation::token_sum_over_constant, 3.0, 10.0, 4.0, 8.0) == Approx(1.0 / 32));
    CHECK(row_weight(aggregation::token_sum, 3.0, 10.0, 4.0, 8.0) == 1.0);
    CHECK(row_weight(aggregation::token_mean, 0.0, 0.0, 4.0, 8.0) == 0.0); // no tokens: loss 0, not NaN
}

TEST_CASE("the vectorizable exp matches std::exp to a few ulp, with std::exp's overflow, underflow and NaN",
          "[math][exp]") {
    double worst_double = 0;
    for (double x = -700; x < 700; x += 0.0137)
        worst_double = std::max(worst_double, std::abs(grpo::math::exp(x) - std::exp(x)) / std::exp(x));
    CHECK(worst_double < 4 * std::numeric_limits<double>::epsilon());
    double worst_float = 0;
    for (float x = -85; x < 85; x += 0.00173f)
        worst_float =
            std::max(worst_float, std::abs(double(grpo::math::exp(x)) - std::exp(double(x))) / std::exp(double(x)));
    CHECK(worst_float < 4 * std::numeric_limits<float>::epsilon());
    CHECK(grpo::math::exp(0.0) == 1.0);
    CHECK(grpo::math::exp(0.0f) == 1.0f);
    CHECK(std::isinf(grpo::math::exp(1000.0)));
    CHECK(std::isinf(grpo::math::exp(100.0f)));
    CHECK(grpo::math::exp(-1000.0) == 0.0);
    CHECK(std::isnan(grpo::math::exp(std::numeric_limits<double>::quiet_NaN())));
    CHECK(grpo::math::select(true, 1.5, 2.5) == 1.5);
    CHECK(grpo::math::select(false, 1.5f, 2.5f) == 2.5f);
}
