// SPDX-License-Identifier: MIT
// Outcome reward adapter, verifiable rewards and DAPO extras against hand-computed values.
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <grpo/grpo.hpp>

#include "catch.hpp"

namespace {
const double nan_v = std::numeric_limits<double>::quiet_NaN();

// A rollout of num_prompts x G rows whose completions are given as token lists.
struct fake_rollout {
    grpo::rollout_buffer<double> buf;
    fake_rollout(grpo::index_t prompts, grpo::index_t g, grpo::index_t cols,
                 const std::vector<std::vector<grpo::token_id>>& rows, const std::vector<int>& truncated = {}) {
        buf.reset(prompts, g, cols);
        for (std::size_t i = 0; i < rows.size(); ++i) {
            for (std::size_t t = 0; t < rows[i].size(); ++t)
                buf.tokens()(static_cast<grpo::index_t>(i), static_cast<grpo::index_t>(t)) = rows[i][t];
            buf.lengths()[static_cast<grpo::index_t>(i)] = static_cast<std::int64_t>(rows[i].size());
            if (!truncated.empty())
                buf.truncated()[static_cast<grpo::index_t>(i)] = static_cast<std::uint8_t>(truncated[i]);
        }
    }
};
} // namespace

TEST_CASE("combine_rewards: weighted nansum, all-NaN row stays NaN", "[rewards]") {
    const std::vector<double> s = {1.0, 2.0, nan_v, 3.0, nan_v, nan_v};
    const std::vector<double> w = {0.5, 2.0};
    std::vector<double> r(3, -7);
    grpo::combine_rewards(grpo::matrix_view<const double>(s.data(), 3, 2), grpo::vector_view<const double>(w.data(), 2),
                          grpo::vector_view<double>(r.data(), 3));
    CHECK(r[0] == Approx(4.5));
    CHECK(r[1] == Approx(6.0));
    CHECK(std::isnan(r[2]));
}

TEST_CASE("outcome_advantages sum_then_normalize matches TRL, declined rows do not poison the group", "[rewards]") {
    // Group 0: R = [1, 0, 0, 0] (TRL worked example: A = 1.4997000599880024, -0.4999000199960008 x3).
    // Group 1: R = [2, NaN, 0, 1]: nanmean 1, nanstd 1 -> A = [1/(1+1e-4), 0, -1/(1+1e-4), 0].
    const std::vector<double> scores = {1, 0, 0, 0, 2, nan_v, 0, 1};
    const std::vector<double> w = {1.0};
    std::vector<double> adv(8, -7), rew(8, -7);
    const auto st = grpo::outcome_advantages(grpo::exec::host{}, grpo::matrix_view<const double>(scores.data(), 8, 1),
                                             grpo::vector_view<const double>(w.data(), 1), grpo::groups::contiguous(4),
                                             grpo::vector_view<double>(adv.data(), 8), grpo::advantage_config::trl(),
                                             grpo::reward_aggregation::sum_then_normalize,
                                             grpo::vector_view<double>(rew.data(), 8));
    CHECK(adv[0] == Approx(1.4997000599880024).epsilon(1e-12));
    for (int i = 1; i < 4; ++i) CHECK(adv[i] == Approx(-0.4999000199960008).epsilon(1e-12));
    CHECK(adv[4] == Approx(1 / (1 + 1e-4)).epsilon(1e-12));
    CHECK(adv[5] == 0.0);
    CHECK(adv[6] == Approx(-1 / (1 + 1e-4)).epsilon(1e-12));
    CHECK(adv[7] == Approx(0.0).margin(1e-15));
    CHECK(std::isnan(rew[5]));
    CHECK(st.scored == 7);
    CHECK(st.zero_variance_groups == 0);
}

TEST_CASE("outcome_advantages with weights and a partly declined row", "[rewards]") {
    // Two functions, weights [1, 0.5]. Row 1 declines function 0 -> R = 0.5 * 4 = 2 (nansum of the rest).
    const std::vector<double> scores = {1, 2, nan_v, 4, 0, 0};
    const std::vector<double> w = {1.0, 0.5};
    std::vector<double> adv(3), rew(3);
    grpo::advantage_config cfg = grpo::advantage_config::trl();
    cfg.epsilon = 0;
    grpo::outcome_advantages(grpo::exec::host{}, grpo::matrix_view<const double>(scores.data(), 3, 2),
                             grpo::vector_view<const double>(w.data(), 2), grpo::groups::contiguous(3),
                             grpo::vector_view<double>(adv.data(), 3), cfg,
                             grpo::reward_aggregation::sum_then_normalize, grpo::vector_view<double>(rew.data(), 3));
    // R = [2, 2, 0]: mean 4/3, unbiased std sqrt(4/3) -> A = [(2/3)/1.1547, same, (-4/3)/1.1547]
    CHECK(rew[0] == Approx(2.0));
    CHECK(rew[1] == Approx(2.0));
    CHECK(rew[2] == Approx(0.0));
    const double sd = std::sqrt(4.0 / 3.0);
    CHECK(adv[0] == Approx((2 - 4.0 / 3) / sd));
    CHECK(adv[2] == Approx((0 - 4.0 / 3) / sd));
}

TEST_CASE("outcome_advantages normalize_then_sum (GDPO) by hand", "[rewards]") {
    // One group of 3, two functions with weights [1, 2], epsilon 0:
    // f0 = [1, 0, 0]: mean 1/3, std sqrt(1/3) -> z0 = [1.1547, -0.57735, -0.57735]
    // f1 = [0, 0, 3]: mean 1, std sqrt(3) -> z1 = [-0.57735, -0.57735, 1.1547]
    // R = z0 + 2 z1 = [0, -1.73205, 1.73205]; batch mean 0, std 1.73205 -> A = [0, -1, 1]
    const std::vector<double> scores = {1, 0, 0, 0, 0, 3};
    const std::vector<double> w = {1.0, 2.0};
    std::vector<double> adv(3), rew(3);
    grpo::advantage_config cfg;
    cfg.epsilon = 0;
    grpo::outcome_advantages(grpo::exec::host{}, grpo::matrix_view<const double>(scores.data(), 3, 2),
                             grpo::vector_view<const double>(w.data(), 2), grpo::groups::contiguous(3),
                             grpo::vector_view<double>(adv.data(), 3), cfg,
                             grpo::reward_aggregation::normalize_then_sum, grpo::vector_view<double>(rew.data(), 3));
    CHECK(rew[0] == Approx(0.0).margin(1e-12));
    CHECK(rew[1] == Approx(-std::sqrt(3.0)));
    CHECK(rew[2] == Approx(std::sqrt(3.0)));
    CHECK(adv[0] == Approx(0.0).margin(1e-12));
    CHECK(adv[1] == Approx(-1.0));
    CHECK(adv[2] == Approx(1.0));
}

TEST_CASE("outcome_advantages: errors name the argument and leave outputs untouched", "[rewards][errors]") {
    const std::vector<double> scores = {1, std::numeric_limits<double>::infinity(), 0, 1};
    const std::vector<double> w = {1.0};
    std::vector<double> adv(4, -7);
    try {
        grpo::outcome_advantages(grpo::exec::host{}, grpo::matrix_view<const double>(scores.data(), 4, 1),
                                 grpo::vector_view<const double>(w.data(), 1), grpo::groups::contiguous(2),
                                 grpo::vector_view<double>(adv.data(), 4));
        FAIL("no throw");
    } catch (const grpo::error& e) {
        CHECK(e.code() == grpo::errc::non_finite);
        CHECK(std::string(e.what()).find("'scores'") != std::string::npos);
    }
    CHECK(adv[0] == -7);
    const std::vector<double> ok = {1, 0, 0, 1};
    CHECK_THROWS_AS(grpo::outcome_advantages(grpo::exec::host{}, grpo::matrix_view<const double>(ok.data(), 4, 1),
                                             grpo::vector_view<const double>(w.data(), 1), grpo::groups::contiguous(3),
                                             grpo::vector_view<double>(adv.data(), 4)),
                    grpo::error);
    const std::vector<double> w2 = {1.0, 1.0};
    CHECK_THROWS_AS(grpo::outcome_advantages(grpo::exec::host{}, grpo::matrix_view<const double>(ok.data(), 4, 1),
                                             grpo::vector_view<const double>(w2.data(), 2), grpo::groups::contiguous(2),
                                             grpo::vector_view<double>(adv.data(), 4)),
                    grpo::error);
    CHECK(adv[3] == -7);
}

TEST_CASE("outcome_rewards adapter: callables, optional -> NaN, weights", "[rewards]") {
    struct prompt {
        int answer;
    };
    const std::vector<prompt> prompts = {{7}, {3}};
    // 2 prompts x 2 completions; completion = one token.
    fake_rollout ro(2, 2, 3, {{7}, {1}, {3}, {3}});
    grpo::outcome_rewards<prompt> r;
    r.add("correct",
          [](const prompt& p, const grpo::completion_view& c) { return c.tokens[0] == p.answer ? 1.0 : 0.0; });
    r.add(
        "declines_odd",
        [](const prompt&, const grpo::completion_view& c) -> std::optional<double> {
            if (c.row % 2 == 1) return std::nullopt;
            return 0.5;
        },
        2.0);
    REQUIRE(r.size() == 2);
    CHECK(r[1].name == "declines_odd");
    CHECK(r.weights()[1] == 2.0);
    std::vector<double> s(8, -7);
    r.score(prompts.data(), ro.buf.view(), grpo::matrix_view<double>(s.data(), 4, 2));
    CHECK(s[0] == 1.0);
    CHECK(s[1] == 0.5);
    CHECK(s[2] == 0.0);
    CHECK(std::isnan(s[3]));
    CHECK(s[4] == 1.0);
    CHECK(s[6] == 1.0);
    CHECK(std::isnan(s[7]));
    CHECK_THROWS_AS(r.add(
                        "bad", [](const prompt&, const grpo::completion_view&) { return 0.0; },
                        std::numeric_limits<double>::infinity()),
                    grpo::error);
}

TEST_CASE("extract_answer formats", "[rewards]") {
    using grpo::answer_format;
    CHECK(*grpo::extract_answer("  42 \n", answer_format::whole) == "42");
    CHECK(!grpo::extract_answer("   ", answer_format::whole));
    CHECK(*grpo::extract_answer("so 3 + 4 = 7, then 1,234 apples", answer_format::last_number) == "1234");
    CHECK(*grpo::extract_answer("x = -2.5.", answer_format::last_number) == "-2.5");
    CHECK(!grpo::extract_answer("no digits", answer_format::last_number));
    CHECK(*grpo::extract_answer("reasoning #### 18 ", answer_format::after_marker) == "18");
    CHECK(!grpo::extract_answer("reasoning 18", answer_format::after_marker));
    CHECK(*grpo::extract_answer("\\boxed{1} then \\boxed{\\frac{1}{2}}", answer_format::boxed) == "\\frac{1}{2}");
    CHECK(!grpo::extract_answer("\\boxed{unclosed", answer_format::boxed));
}

TEST_CASE("exact_match_reward and format_reward", "[rewards]") {
    struct prompt {
        std::optional<std::string> gold;
    };
    auto decode = [](const grpo::completion_view& c) {
        std::string s;
        for (grpo::index_t t = 0; t < c.length(); ++t) s += static_cast<char>(c.tokens[t]);
        return s;
    };
    auto gold = [](const prompt& p) { return p.gold; };
    auto em = grpo::exact_match_reward<prompt>(decode, gold, grpo::answer_format::after_marker);
    auto fmt = grpo::format_reward<prompt>(decode, [](const std::string& t) {
        return grpo::tags_in_order(t, {"<think>", "</think>", "<answer>", "</answer>"});
    });
    const std::string a = "<think>x</think><answer>#### 12</answer>";
    const std::string b = "#### 13";
    std::vector<grpo::token_id> ta(a.begin(), a.end()), tb(b.begin(), b.end());
    grpo::completion_view ca, cb;
    ca.tokens = grpo::vector_view<const grpo::token_id>(ta.data(), static_cast<grpo::index_t>(ta.size()));
    cb.tokens = grpo::vector_view<const grpo::token_id>(tb.data(), static_cast<grpo::index_t>(tb.size()));
    CHECK(em(prompt{std::string("12</answer>")}, ca) == 1.0);
    CHECK(em(prompt{std::string("12")}, cb) == 0.0);
    CHECK(em(prompt{std::string("13")}, cb) == 1.0);
    CHECK(std::isnan(em(prompt{std::nullopt}, cb)));
    CHECK(fmt(prompt{}, ca) == 1.0);
    CHECK(fmt(prompt{}, cb) == 0.0);
    CHECK(grpo::tags_in_order(" <a>1</a> ", {"<a>", "</a>"}));
    CHECK(!grpo::tags_in_order("x<a>1</a>", {"<a>", "</a>"}));
    CHECK(!grpo::tags_in_order("<a>1</a>y", {"<a>", "</a>"}));
    CHECK(!grpo::tags_in_order("</a><a>", {"<a>", "</a>"}));
}

TEST_CASE("DAPO overlong shaping (Eq. 13) boundaries", "[rewards][dapo]") {
    CHECK(grpo::overlong_penalty(16384, 20480, 4096) == 0.0);
    CHECK(grpo::overlong_penalty(0, 20480, 4096) == 0.0);
    CHECK(grpo::overlong_penalty(16385, 20480, 4096) == Approx(-1.0 / 4096));
    CHECK(grpo::overlong_penalty(18432, 20480, 4096) == Approx(-0.5));
    CHECK(grpo::overlong_penalty(20480, 20480, 4096) == Approx(-1.0));
    CHECK(grpo::overlong_penalty(20481, 20480, 4096) == -1.0);
    CHECK(grpo::overlong_penalty(18432, 20480, 4096, 0.5) == Approx(-0.25));
    CHECK(grpo::overlong_penalty(30000, 20480, 4096, 0.5) == -0.5);
    CHECK(grpo::overlong_penalty(10, 10, 0) == 0.0); // no cache: a hard cut
    CHECK(grpo::overlong_penalty(11, 10, 0) == -1.0);
    CHECK_THROWS_AS(grpo::overlong_penalty(5, 10, 11), grpo::error);
    CHECK_THROWS_AS(grpo::overlong_penalty(-1, 10, 2), grpo::error);

    const std::vector<std::int64_t> len = {16384, 18432, 20481};
    std::vector<double> r = {1, 1, nan_v};
    grpo::apply_overlong_shaping(grpo::vector_view<const std::int64_t>(len.data(), 3),
                                 grpo::vector_view<double>(r.data(), 3), 20480, 4096);
    CHECK(r[0] == 1.0);
    CHECK(r[1] == Approx(0.5));
    CHECK(std::isnan(r[2]));

    auto f = grpo::soft_overlong_punishment<int>(4, 2);
    std::vector<grpo::token_id> toks(3, 0);
    grpo::completion_view c;
    c.tokens = grpo::vector_view<const grpo::token_id>(toks.data(), 3);
    CHECK(f(0, c) == Approx(-0.5));
    CHECK_THROWS_AS(grpo::soft_overlong_punishment<int>(4, 5), grpo::error);
}

TEST_CASE("completion_mask and truncation masking", "[rewards][dapo]") {
    fake_rollout ro(1, 3, 4, {{1, 2}, {1, 2, 3, 4}, {5}}, {0, 1, 0});
    std::vector<float> m(12, -1);
    const grpo::matrix_view<float> mv(m.data(), 3, 4);
    CHECK(grpo::completion_mask(ro.buf.view(), mv, false) == 0);
    const std::vector<float> plain = {1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0};
    CHECK(m == plain);
    CHECK(grpo::completion_mask(ro.buf.view(), mv, true) == 1);
    const std::vector<float> masked = {1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0};
    CHECK(m == masked);
    std::vector<float> wrong(8);
    CHECK_THROWS_AS(grpo::completion_mask(ro.buf.view(), grpo::matrix_view<float>(wrong.data(), 2, 4), true),
                    grpo::error);
}

TEST_CASE("dynamic sampling filter drops zero-variance groups", "[rewards][dapo]") {
    // G = 4: all wrong, mixed, all right, mixed with NaN, one scored only.
    const std::vector<double> r = {0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 1, 1, 0.3, nan_v, 0.3, 0.7, nan_v, nan_v, 2, nan_v};
    std::vector<std::uint8_t> keep(5, 9);
    const auto res =
        grpo::filter_zero_variance_groups(grpo::vector_view<const double>(r.data(), 20), grpo::groups::contiguous(4),
                                          grpo::vector_view<std::uint8_t>(keep.data(), 5));
    CHECK(res.kept_groups == 2);
    CHECK(res.dropped_groups == 3);
    CHECK(keep == std::vector<std::uint8_t>{0, 1, 0, 1, 0});
    // A constant group of non-dyadic values is still exactly zero variance.
    const std::vector<double> c = {0.1, 0.1, 0.1};
    std::vector<std::uint8_t> k1(1, 9);
    CHECK(grpo::filter_zero_variance_groups(grpo::vector_view<const double>(c.data(), 3), grpo::groups::contiguous(3),
                                            grpo::vector_view<std::uint8_t>(k1.data(), 1))
              .dropped_groups == 1);
    std::vector<std::uint8_t> bad(4, 9);
    CHECK_THROWS_AS(
        grpo::filter_zero_variance_groups(grpo::vector_view<const double>(r.data(), 20), grpo::groups::contiguous(4),
                                          grpo::vector_view<std::uint8_t>(bad.data(), 4)),
        grpo::error);
    CHECK(bad[0] == 9);
}

TEST_CASE("rollout_batch validation", "[sampler]") {
    grpo::rollout_buffer<float> b;
    b.reset(2, 3, 4);
    CHECK(b.rows() == 6);
    b.lengths()[2] = 5;
    try {
        b.view().validate();
        FAIL("no throw");
    } catch (const grpo::error& e) {
        CHECK(std::string(e.what()).find("rollout.lengths") != std::string::npos);
    }
    b.lengths()[2] = 2;
    b.tokens()(2, 0) = 11;
    b.tokens()(2, 1) = 12;
    const auto c = b.view().completion(2);
    CHECK(c.prompt == 0);
    CHECK(c.index_in_group == 2);
    CHECK(c.length() == 2);
    CHECK(c.tokens[1] == 12);
    CHECK_THROWS_AS(b.reset(1, 0, 4), grpo::error);
}
