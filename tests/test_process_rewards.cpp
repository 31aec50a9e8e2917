// SPDX-License-Identifier: MIT
// Process supervision (DeepSeekMath §4.1.3) against the worked example of peers.md b.8.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <grpo/grpo.hpp>

#include "catch.hpp"

TEMPLATE_TEST_CASE("process_advantages: worked example (suffix sums of normalized step rewards)", "[process]", float,
                   double) {
    using T = TestType;
    // One group of two outputs. Output 0: steps [0.9 ending at token 1, 0.2 ending at token 3];
    // output 1: one step 0.5 ending at token 2. Five token columns.
    const std::vector<T> rewards = {T(0.9), T(0.2), T(0.5)};
    const std::vector<std::int64_t> offsets = {0, 2, 3};
    const std::vector<std::int64_t> ends = {1, 3, 2};
    std::vector<T> adv(10, T(-7)), norm(3, T(-7));
    grpo::process_reward_config cfg;
    cfg.epsilon = 0; // the paper's formula
    const auto st = grpo::process_advantages(
        grpo::exec::host{}, grpo::vector_view<const T>(rewards.data(), 3),
        grpo::vector_view<const std::int64_t>(offsets.data(), 3), grpo::vector_view<const std::int64_t>(ends.data(), 3),
        grpo::groups::contiguous(2), grpo::matrix_view<T>(adv.data(), 2, 5), cfg, grpo::vector_view<T>(norm.data(), 3));
    const double tol = std::is_same<T, float>::value ? 1e-5 : 1e-6;
    CHECK(norm[0] == Approx(1.044074).margin(tol));
    CHECK(norm[1] == Approx(-0.949158).margin(tol));
    CHECK(norm[2] == Approx(-0.094916).margin(tol));
    // Output 0: tokens 0-1 (step 1) get 1.044074 - 0.949158, tokens 2-3 get -0.949158, token 4 (after the last
    // step) gets 0. Output 1: tokens 0-2 get -0.094916, tokens 3-4 get 0.
    CHECK(adv[0] == Approx(0.094916).margin(tol));
    CHECK(adv[1] == Approx(0.094916).margin(tol));
    CHECK(adv[2] == Approx(-0.949158).margin(tol));
    CHECK(adv[3] == Approx(-0.949158).margin(tol));
    CHECK(adv[4] == T(0));
    CHECK(adv[5] == Approx(-0.094916).margin(tol));
    CHECK(adv[6] == Approx(-0.094916).margin(tol));
    CHECK(adv[7] == Approx(-0.094916).margin(tol));
    CHECK(adv[8] == T(0));
    CHECK(adv[9] == T(0));
    CHECK(st.reward_mean == Approx(0.533333).margin(1e-6));
    CHECK(st.reward_std == Approx(0.351188).margin(1e-6));
    CHECK(st.zero_variance_groups == 0);
}

TEST_CASE("process_advantages: default epsilon, groups, zero-variance group and the builder", "[process]") {
    // Group 0 as in the worked example; group 1: every step reward 1 -> all zero.
    grpo::process_steps s;
    s.begin_row();
    s.add(0.9, 1);
    s.add(0.2, 3);
    s.begin_row();
    s.add(0.5, 2);
    s.begin_row();
    s.add(1, 0);
    s.add(1, 1);
    s.begin_row(); // a row with no steps
    std::vector<double> adv(16, -7);
    const auto st = grpo::process_advantages(grpo::exec::host{}, s, grpo::groups::contiguous(2),
                                             grpo::matrix_view<double>(adv.data(), 4, 4));
    // The default epsilon is the paper's 0: the worked example's values.
    CHECK(adv[0] == Approx(0.094916).epsilon(1e-5));
    CHECK(adv[1] == Approx(adv[0]));
    CHECK(adv[3] == Approx(-0.949158).epsilon(1e-5));
    CHECK(adv[4] == Approx(-0.094916).epsilon(1e-5));
    CHECK(adv[7] == 0.0);
    for (int i = 8; i < 16; ++i) CHECK(adv[i] == 0.0);
    CHECK(st.zero_variance_groups == 1);
    CHECK(st.zero_variance_fraction == 0.5);
}

TEST_CASE("process_advantages: steps sharing an end token and every token covered", "[process]") {
    // One row in a group of 2 with the other row: steps [1 @ t0, 0 @ t0, 1 @ t2] and [0 @ t2].
    // R = {1, 0, 1, 0}: mean 0.5, unbiased std 0.57735 -> r~ = +-0.866025.
    const std::vector<double> r = {1, 0, 1, 0};
    const std::vector<std::int64_t> off = {0, 3, 4}, ends = {0, 0, 2, 2};
    std::vector<double> adv(6);
    grpo::process_reward_config cfg;
    cfg.epsilon = 0;
    grpo::process_advantages(grpo::exec::host{}, grpo::vector_view<const double>(r.data(), 4),
                             grpo::vector_view<const std::int64_t>(off.data(), 3),
                             grpo::vector_view<const std::int64_t>(ends.data(), 4), grpo::groups::contiguous(2),
                             grpo::matrix_view<double>(adv.data(), 2, 3), cfg);
    const double z = 0.5 / std::sqrt(1.0 / 3.0);
    CHECK(adv[0] == Approx(z)); // z - z + z
    CHECK(adv[1] == Approx(z)); // step ending at 2
    CHECK(adv[2] == Approx(z));
    CHECK(adv[3] == Approx(-z));
    CHECK(adv[5] == Approx(-z));
}

TEST_CASE("process_advantages: errors name the argument and leave outputs untouched", "[process][errors]") {
    const std::vector<double> r = {1, 0};
    const std::vector<std::int64_t> off = {0, 1, 2};
    std::vector<double> adv(6, -7);
    auto call = [&](const std::vector<std::int64_t>& o, const std::vector<std::int64_t>& e,
                    const std::vector<double>& rr, grpo::index_t g) {
        grpo::process_advantages(grpo::exec::host{},
                                 grpo::vector_view<const double>(rr.data(), static_cast<grpo::index_t>(rr.size())),
                                 grpo::vector_view<const std::int64_t>(o.data(), static_cast<grpo::index_t>(o.size())),
                                 grpo::vector_view<const std::int64_t>(e.data(), static_cast<grpo::index_t>(e.size())),
                                 grpo::groups::contiguous(g), grpo::matrix_view<double>(adv.data(), 2, 3));
    };
    auto message = [&](const std::vector<std::int64_t>& o, const std::vector<std::int64_t>& e,
                       const std::vector<double>& rr, grpo::index_t g) -> std::string {
        try {
            call(o, e, rr, g);
        } catch (const grpo::error& ex) {
            return ex.what();
        }
        return "no throw";
    };
    CHECK(message(off, {0, 3}, r, 2).find("'step_ends'") != std::string::npos);
    CHECK(message(off, {2}, r, 2).find("'step_ends'") != std::string::npos);
    CHECK(message({0, 1, 1}, {0, 1}, r, 2).find("'step_offsets'") != std::string::npos);
    CHECK(message({1, 1, 2}, {0, 1}, r, 2).find("'step_offsets'") != std::string::npos);
    CHECK(message(off, {0, 1}, {1, std::numeric_limits<double>::quiet_NaN()}, 2).find("'step_rewards'") !=
          std::string::npos);
    CHECK(message(off, {0, 1}, r, 4).find("'groups'") != std::string::npos);
    const std::vector<std::int64_t> two_steps_row = {0, 2, 2};
    CHECK(message(two_steps_row, {2, 1}, r, 2).find("non-decreasing") != std::string::npos);
    for (double v : adv) CHECK(v == -7);
}
