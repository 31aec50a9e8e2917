// SPDX-License-Identifier: MIT
// The group-statistics module: group_index (dense ids from the ids hosts have), one zero-variance test shared by
// every entry point, outcome_advantages' per-group figures and float scores.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <grpo/grpo.hpp>

#include "catch.hpp"

namespace {
const double nan_v = std::numeric_limits<double>::quiet_NaN();

template <class T>
grpo::vector_view<const T> cv(const std::vector<T>& v) {
    return grpo::vector_view<const T>(v.data(), static_cast<grpo::index_t>(v.size()));
}
template <class T>
grpo::vector_view<T> mv(std::vector<T>& v) {
    return grpo::vector_view<T>(v.data(), static_cast<grpo::index_t>(v.size()));
}
} // namespace

TEST_CASE("group_index: first-seen dense ids from strings and sparse int64 ids", "[groups]") {
    // verl's uid strings: groups numbered in the order their first row appears.
    const std::vector<std::string> uids = {"q7", "q2", "q7", "q9", "q2", "q2"};
    const grpo::group_index gi(uids);
    CHECK(gi.num_groups() == 3);
    CHECK(gi.rows() == 6);
    CHECK(gi.ids() == std::vector<std::int64_t>{0, 1, 0, 2, 1, 1});
    CHECK(gi.first_row(0) == 0);
    CHECK(gi.first_row(1) == 1);
    CHECK(gi.first_row(2) == 3);
    CHECK_THROWS(gi.first_row(3));

    // Sparse, negative and huge ids (hashes) give the same dense layout as the strings.
    const std::vector<std::int64_t> hashes = {-5,
                                              std::int64_t(1) << 62,
                                              -5,
                                              std::numeric_limits<std::int64_t>::min(),
                                              std::int64_t(1) << 62,
                                              std::int64_t(1) << 62};
    const grpo::group_index gh(hashes);
    CHECK(gh.ids() == gi.ids());
    CHECK(gh.num_groups() == 3);

    // A strided view of ids reads only its elements.
    const std::vector<std::int64_t> strided = {4, 99, 8, 99, 4};
    const grpo::group_index gs(grpo::vector_view<const std::int64_t>(strided.data(), 3, 2));
    CHECK(gs.ids() == std::vector<std::int64_t>{0, 1, 0});

    const grpo::group_index empty(std::vector<std::string>{});
    CHECK(empty.num_groups() == 0);
    CHECK(empty.rows() == 0);
}

TEST_CASE("group_index drives compute_advantages exactly like the dense ids it holds", "[groups]") {
    const std::vector<std::string> uids = {"b", "a", "b", "c", "a", "b"};
    const std::vector<double> r = {1, 0, 0, 1, 1, 0.5};
    const grpo::group_index gi(uids);
    std::vector<double> a1(6, -7), a2(6, -7), mean(3, -7);
    grpo::group_outputs go;
    go.mean = mv(mean);
    const auto st1 =
        grpo::compute_advantages(grpo::exec::host{}, cv(r), gi.as_groups(), mv(a1), grpo::advantage_config{}, go);
    const std::vector<std::int64_t> dense = {0, 1, 0, 2, 1, 0};
    const auto st2 = grpo::compute_advantages(grpo::exec::host{}, cv(r), grpo::groups::by_id(cv(dense), 3), mv(a2));
    CHECK(a1 == a2);
    CHECK(st1.num_groups == 3);
    CHECK(st1.zero_variance_groups == st2.zero_variance_groups);
    // Group "b" (dense 0) = {1, 0, 0.5}, "a" = {0, 1}, "c" = {1} (a singleton: advantage 0 with TRL's default).
    CHECK(mean[0] == Approx(0.5));
    CHECK(mean[1] == Approx(0.5));
    CHECK(mean[2] == 1.0);
    CHECK(a1[3] == 0.0);
}

TEST_CASE("one zero-variance test: compute_advantages, the dynamic-sampling filter and process rewards agree",
          "[groups]") {
    // Groups of 3: constant non-dyadic values, mixed, one scored value, none scored, two equal and a NaN.
    const std::vector<double> r = {0.1, 0.1, 0.1, 1, 0, 0, nan_v, 2, nan_v, nan_v, nan_v, nan_v, 0.7, nan_v, 0.7};
    const std::vector<std::uint8_t> expected_zero = {1, 0, 1, 1, 1};
    std::vector<double> adv(15);
    std::vector<std::uint8_t> zero(5, 9), keep(5, 9);
    grpo::group_outputs go;
    go.zero_variance = mv(zero);
    grpo::advantage_config cfg = grpo::advantage_config::trl(); // NaN rewards ignored
    const auto st = grpo::compute_advantages(grpo::exec::host{}, cv(r), grpo::groups::contiguous(3), mv(adv), cfg, go);
    CHECK(zero == expected_zero);
    CHECK(st.zero_variance_groups == 4);
    const auto f = grpo::filter_zero_variance_groups(cv(r), grpo::groups::contiguous(3), mv(keep));
    CHECK(f.dropped_groups == 4);
    for (std::size_t j = 0; j < 5; ++j) CHECK(keep[j] == 1 - zero[j]);

    // Process rewards: one step per row with the same values (NaN rows have no step); same flags counted.
    grpo::process_steps steps;
    for (std::size_t i = 0; i < r.size(); ++i) {
        steps.begin_row();
        if (!std::isnan(r[i])) steps.add(r[i], 0);
    }
    std::vector<double> tok(15, -7);
    const auto ps = grpo::process_advantages(grpo::exec::host{}, steps, grpo::groups::contiguous(3),
                                             grpo::matrix_view<double>(tok.data(), 15, 1));
    CHECK(ps.zero_variance_groups == 4);
    CHECK(ps.num_groups == 5);
}

TEST_CASE("outcome_advantages: per-group figures of the combined reward, both aggregations", "[groups][rewards]") {
    // Two functions, weights [1, 1], groups of 2. R = [1 + 0, 0 + NaN, 1 + 1, 1 + 1] = [1, 0, 2, 2].
    const std::vector<double> scores = {1, 0, 0, nan_v, 1, 1, 1, 1};
    const std::vector<double> w = {1, 1};
    for (const auto agg :
         {grpo::reward_aggregation::sum_then_normalize, grpo::reward_aggregation::normalize_then_sum}) {
        std::vector<double> adv(4), mean(2, -7), sd(2, -7);
        std::vector<std::uint8_t> zero(2, 9);
        std::vector<std::int64_t> count(2, -7);
        grpo::group_outputs go{mv(mean), mv(sd), mv(zero), mv(count)};
        std::vector<double> rew(4);
        const auto st = grpo::outcome_advantages(
            grpo::exec::host{}, grpo::matrix_view<const double>(scores.data(), 4, 2), cv(w),
            grpo::groups::contiguous(2), mv(adv), grpo::advantage_config::trl(), agg, mv(rew), go);
        INFO("aggregation " << static_cast<int>(agg));
        if (agg == grpo::reward_aggregation::sum_then_normalize) {
            CHECK(rew == std::vector<double>{1, 0, 2, 2});
            CHECK(mean == std::vector<double>{0.5, 2});
            CHECK(sd[0] == Approx(std::sqrt(0.5)));
            CHECK(sd[1] == 0.0);
            CHECK(zero == std::vector<std::uint8_t>{0, 1});
            CHECK(count == std::vector<std::int64_t>{2, 2});
        } else {
            // Group 0: f0 = [1, 0] -> z = +-0.5 / (sqrt(0.5) + 1e-4); f1 = [0, NaN] has one score, so its
            // z-scores are NaN (TRL nanstd) and R is f0's z alone. Group 1: both functions constant -> z = 0.
            // (This call threw "z-score nan" before the single-score case was told apart from an overflow.)
            const double z = 0.5 / (std::sqrt(0.5) + 1e-4);
            CHECK(rew[0] == Approx(z).epsilon(1e-12));
            CHECK(rew[1] == Approx(-z).epsilon(1e-12));
            CHECK(rew[2] == 0.0);
            CHECK(rew[3] == 0.0);
            CHECK(mean[0] == Approx(0.0).margin(1e-15));
            CHECK(mean[1] == 0.0);
            CHECK(zero == std::vector<std::uint8_t>{0, 1});
            CHECK(count == std::vector<std::int64_t>{2, 2});
        }
        CHECK(st.num_groups == 2);
        CHECK(st.zero_variance_groups == zero[0] + zero[1]);
    }
}

TEST_CASE("outcome_advantages: float scores give the double result; per-group outputs are checked",
          "[groups][rewards][errors]") {
    const std::vector<float> sf = {1, 0.25f, 0, 1, 0.5f, 0, 1, 1};
    std::vector<double> sd(sf.begin(), sf.end());
    const std::vector<double> w = {1, 2};
    std::vector<float> af(4), ad(4);
    const auto g = grpo::groups::contiguous(2);
    grpo::outcome_advantages(grpo::exec::host{}, grpo::matrix_view<const float>(sf.data(), 4, 2), cv(w), g, mv(af));
    grpo::outcome_advantages(grpo::exec::host{}, grpo::matrix_view<const double>(sd.data(), 4, 2), cv(w), g, mv(ad));
    CHECK(af == ad);

    // A per-group output of the wrong size names itself and leaves everything untouched.
    std::vector<double> bad_mean(3, -7);
    grpo::group_outputs go;
    go.mean = mv(bad_mean);
    std::vector<float> untouched(4, -7);
    try {
        grpo::outcome_advantages(grpo::exec::host{}, grpo::matrix_view<const float>(sf.data(), 4, 2), cv(w), g,
                                 mv(untouched), grpo::advantage_config::trl(),
                                 grpo::reward_aggregation::sum_then_normalize, grpo::vector_view<float>(), go);
        FAIL("expected grpo::error");
    } catch (const grpo::error& e) {
        CHECK(std::string(e.what()).find("per_group.mean") != std::string::npos);
    }
    CHECK(untouched == std::vector<float>(4, -7));
    CHECK(bad_mean == std::vector<double>(3, -7));

    // A per-group output over the caller's float scores is rejected (the widened copy would hide it).
    std::vector<float> overlap = sf;
    std::vector<double> gm(2);
    grpo::group_outputs ok;
    ok.mean = mv(gm);
    CHECK_THROWS_AS(grpo::outcome_advantages(grpo::exec::host{}, grpo::matrix_view<const float>(overlap.data(), 4, 2),
                                             cv(w), g, grpo::vector_view<float>(overlap.data(), 4)),
                    grpo::error);
}

TEST_CASE("outcome_advantages: opo with completion lengths, as compute_advantages", "[groups][rewards]") {
    const std::vector<double> scores = {1, 0, 0, 1};
    const std::vector<double> w = {1}, lengths = {3, 1, 2, 6};
    std::vector<double> adv(4, -7), direct(4, -7);
    grpo::advantage_config cfg;
    cfg.estimator = grpo::advantage_estimator::opo;
    // Without lengths: an error naming them, outputs untouched.
    try {
        grpo::outcome_advantages(grpo::exec::host{}, grpo::matrix_view<const double>(scores.data(), 4, 1), cv(w),
                                 grpo::groups::contiguous(2), mv(adv), cfg);
        FAIL("expected grpo::error");
    } catch (const grpo::error& e) {
        CHECK(std::string(e.what()).find("'token_weights'") != std::string::npos);
    }
    CHECK(adv == std::vector<double>(4, -7));
    // With them: one function, sum_then_normalize = compute_advantages on the scores with the same weights.
    // Group 0: baseline (3 * 1 + 1 * 0) / 4 = 0.75; group 1: (2 * 0 + 6 * 1) / 8 = 0.75.
    grpo::outcome_advantages(grpo::exec::host{}, grpo::matrix_view<const double>(scores.data(), 4, 1), cv(w),
                             grpo::groups::contiguous(2), mv(adv), cfg, grpo::reward_aggregation::sum_then_normalize,
                             {}, {}, cv(lengths));
    grpo::compute_advantages(grpo::exec::host{}, cv(scores), grpo::groups::contiguous(2), mv(direct), cfg, {},
                             cv(lengths));
    CHECK(adv == direct);
    CHECK(adv == std::vector<double>{0.25, -0.75, -0.75, 0.25});
    const std::vector<double> negative = {3, -1, 2, 6};
    CHECK_THROWS_AS(grpo::outcome_advantages(grpo::exec::host{}, grpo::matrix_view<const double>(scores.data(), 4, 1),
                                             cv(w), grpo::groups::contiguous(2), mv(adv), cfg,
                                             grpo::reward_aggregation::sum_then_normalize, {}, {}, cv(negative)),
                    grpo::error);
}
