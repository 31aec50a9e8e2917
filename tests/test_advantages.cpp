// SPDX-License-Identifier: MIT
// Advantages against hand-computed values for every estimator, std convention and epsilon.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "catch.hpp"
#include <grpo/grpo.hpp>

namespace {

template <class T>
std::vector<T> advantages_of(const std::vector<T>& rewards, const grpo::groups& g, const grpo::advantage_config& cfg,
                             grpo::advantage_stats* stats = nullptr, const grpo::group_outputs& per_group = {}) {
    std::vector<T> adv(rewards.size(), T(-99));
    auto st = grpo::compute_advantages(
        grpo::exec::host{}, grpo::vector_view<const T>(rewards.data(), static_cast<grpo::index_t>(rewards.size())), g,
        grpo::vector_view<T>(adv.data(), static_cast<grpo::index_t>(adv.size())), cfg, per_group);
    if (stats) *stats = st;
    return adv;
}

} // namespace

TEMPLATE_TEST_CASE("z-score: the tutorial group 1,1,0,0,0,0.5", "[advantages]", float, double) {
    const std::vector<TestType> r{1, 1, 0, 0, 0, TestType(0.5)};
    // mean 5/12, unbiased std sqrt(174/720) = 0.4915960401250875
    auto a = advantages_of(r, grpo::groups::contiguous(6), grpo::advantage_config::trl());
    CHECK(a[0] == Approx(1.1863698011172374).epsilon(1e-6));
    CHECK(a[1] == Approx(1.1863698011172374).epsilon(1e-6));
    CHECK(a[2] == Approx(-0.8474070007980269).epsilon(1e-6));
    CHECK(a[5] == Approx(0.16948140015960533).epsilon(1e-6));
    a = advantages_of(r, grpo::groups::contiguous(6), grpo::advantage_config::verl());
    CHECK(a[0] == Approx(1.1866087175482247).epsilon(1e-6));
    CHECK(a[2] == Approx(-0.8475776553915892).epsilon(1e-6));
}

TEST_CASE("z-score: r = [1,0,0,0] under TRL's and verl's epsilons, and the biased std", "[advantages]") {
    const std::vector<double> r{1, 0, 0, 0};
    auto a = advantages_of(r, grpo::groups::contiguous(4), grpo::advantage_config::trl());
    CHECK(a[0] == Approx(1.4997000599880024).epsilon(1e-14));
    CHECK(a[1] == Approx(-0.4999000199960008).epsilon(1e-14));
    a = advantages_of(r, grpo::groups::contiguous(4), grpo::advantage_config::verl());
    CHECK(a[0] == Approx(1.499997000006).epsilon(1e-12));
    CHECK(a[3] == Approx(-0.499999000002).epsilon(1e-12));
    grpo::advantage_config openrlhf;
    openrlhf.epsilon = grpo::advantage_config::openrlhf_epsilon;
    a = advantages_of(r, grpo::groups::contiguous(4), openrlhf);
    CHECK(a[0] == Approx(1.499999997).epsilon(1e-9));
    grpo::advantage_config biased;
    biased.std = grpo::std_estimator::biased; // population std 0.4330127
    a = advantages_of(r, grpo::groups::contiguous(4), biased);
    CHECK(a[0] == Approx(1.731650899923592).epsilon(1e-14));
    CHECK(a[1] == Approx(-0.5772169666411974).epsilon(1e-14));
}

TEST_CASE("constant groups give exactly 0 and are flagged; singleton conventions of TRL and verl", "[advantages]") {
    const std::vector<double> r{0.1, 0.1, 0.1, 1, 0, 0.7};
    grpo::advantage_stats st;
    std::vector<double> mean(2), sd(2);
    std::vector<std::uint8_t> zero(2);
    std::vector<std::int64_t> count(2);
    grpo::group_outputs go{grpo::vector_view<double>(mean.data(), 2), grpo::vector_view<double>(sd.data(), 2),
                           grpo::vector_view<std::uint8_t>(zero.data(), 2),
                           grpo::vector_view<std::int64_t>(count.data(), 2)};
    auto a = advantages_of(r, grpo::groups::contiguous(3), grpo::advantage_config{}, &st, go);
    CHECK(a[0] == 0.0); // exactly: 0.1+0.1+0.1 != 0.3, but the pivot-shifted mean is exact
    CHECK(a[1] == 0.0);
    CHECK(a[2] == 0.0);
    CHECK(sd[0] == 0.0);
    CHECK(mean[0] == 0.1);
    CHECK(zero[0] == 1);
    CHECK(zero[1] == 0);
    CHECK(count[1] == 3);
    CHECK(st.zero_variance_groups == 1);
    CHECK(st.zero_variance_fraction == 0.5);

    const std::vector<double> singles{2.5, -1};
    a = advantages_of(singles, grpo::groups::contiguous(1), grpo::advantage_config::trl());
    CHECK(a[0] == 0.0);
    CHECK(a[1] == 0.0);
    a = advantages_of(singles, grpo::groups::contiguous(1), grpo::advantage_config::verl());
    CHECK(a[0] == Approx(2.5 / (1 + 1e-6)).epsilon(1e-15)); // verl: mean 0, std 1
    CHECK(a[1] == Approx(-1 / (1 + 1e-6)).epsilon(1e-15));
}

TEST_CASE("mean-only (Dr. GRPO), batch std (TRL scale_rewards=batch), RLOO", "[advantages]") {
    const std::vector<double> r{1, 0, 0, 0, 3, 1};
    grpo::advantage_config cfg;
    cfg.estimator = grpo::advantage_estimator::group_centered;
    auto a = advantages_of(r, grpo::groups::contiguous(3), cfg);
    CHECK(a[0] == Approx(2.0 / 3));
    CHECK(a[1] == Approx(-1.0 / 3));
    CHECK(a[3] == Approx(-4.0 / 3));
    CHECK(a[4] == Approx(5.0 / 3));

    cfg.estimator = grpo::advantage_estimator::group_centered_batch_std;
    // batch: mean 5/6, unbiased std sqrt((1/36+25/36*3... )/5) computed below
    double m = 5.0 / 6, ss = 0;
    for (double x : r) ss += (x - m) * (x - m);
    const double batch_std = std::sqrt(ss / 5);
    a = advantages_of(r, grpo::groups::contiguous(3), cfg);
    CHECK(a[0] == Approx((1 - 1.0 / 3) / (batch_std + 1e-4)));
    CHECK(a[4] == Approx((3 - 4.0 / 3) / (batch_std + 1e-4)));

    cfg.estimator = grpo::advantage_estimator::rloo;
    a = advantages_of(r, grpo::groups::contiguous(3), cfg);
    CHECK(a[0] == Approx(1.0));  // 1 - mean(0, 0)
    CHECK(a[1] == Approx(-0.5)); // 0 - mean(1, 0)
    CHECK(a[3] == Approx(-2.0)); // 0 - mean(3, 1)
    CHECK(a[4] == Approx(2.5));  // 3 - mean(0, 1)
}

TEST_CASE("REINFORCE++-baseline: group centering then (token-weighted) batch whitening", "[advantages]") {
    const std::vector<double> r{1, 0, 2, 2};
    grpo::advantage_config cfg;
    cfg.estimator = grpo::advantage_estimator::group_centered_batch_whitened;
    // centered: [0.5, -0.5, 0, 0]; mean 0; unbiased var = 0.5/3; A = c / sqrt(var + 1e-8)
    auto a = advantages_of(r, grpo::groups::contiguous(2), cfg);
    const double s = std::sqrt(0.5 / 3 + 1e-8);
    CHECK(a[0] == Approx(0.5 / s).epsilon(1e-12));
    CHECK(a[1] == Approx(-0.5 / s).epsilon(1e-12));
    CHECK(a[2] == Approx(0.0).margin(1e-15));
    // Token weights [3, 1, 1, 1]: weighted mean (1.5 - 0.5)/6 = 1/6; unbiased weighted var = sum w d^2 / (6 - 1)
    std::vector<double> adv(4), w{3, 1, 1, 1};
    grpo::compute_advantages(grpo::exec::host{}, grpo::vector_view<const double>(r.data(), 4),
                             grpo::groups::contiguous(2), grpo::vector_view<double>(adv.data(), 4), cfg, {},
                             grpo::vector_view<const double>(w.data(), 4));
    const double mu = 1.0 / 6, var = (3 * (1.0 / 9) + (4.0 / 9) + 2 * (1.0 / 36)) / 5; // = 1/6
    CHECK(adv[0] == Approx((0.5 - mu) / std::sqrt(var + 1e-8)).epsilon(1e-12));
    CHECK(adv[1] == Approx((-0.5 - mu) / std::sqrt(var + 1e-8)).epsilon(1e-12));
}

TEST_CASE("groups by id: arbitrary order and sizes equal the contiguous result", "[advantages]") {
    const std::vector<double> contiguous{1, 0, 0, 0, 0.5, 0.25, 2};
    // same rewards, shuffled, with ids: group 0 = {1,0,0,0}, group 1 = {0.5, 0.25}, group 2 = {2}
    const std::vector<double> shuffled{0.5, 0, 2, 1, 0, 0.25, 0};
    const std::vector<std::int64_t> ids{1, 0, 2, 0, 0, 1, 0};
    grpo::advantage_config cfg = grpo::advantage_config::verl();
    std::vector<double> adv(7);
    grpo::compute_advantages(grpo::exec::host{}, grpo::vector_view<const double>(shuffled.data(), 7),
                             grpo::groups::by_id(grpo::vector_view<const std::int64_t>(ids.data(), 7), 3),
                             grpo::vector_view<double>(adv.data(), 7), cfg);
    auto g4 = advantages_of(std::vector<double>{1, 0, 0, 0}, grpo::groups::contiguous(4), cfg);
    auto g2 = advantages_of(std::vector<double>{0.5, 0.25}, grpo::groups::contiguous(2), cfg);
    CHECK(adv[3] == g4[0]);
    CHECK(adv[1] == g4[1]);
    CHECK(adv[0] == g2[0]);
    CHECK(adv[5] == g2[1]);
    CHECK(adv[2] == Approx(2 / (1 + 1e-6))); // singleton, verl convention
    (void)contiguous;
}

TEST_CASE("groups by id: an empty batch (ids without storage) keeps its empty groups", "[advantages]") {
    const std::vector<std::int64_t> no_ids; // data() may be nullptr: still id-based, not contiguous
    const std::vector<double> no_rewards;
    std::vector<double> adv, mean(3, -1.0);
    std::vector<std::int64_t> count(3, -1);
    grpo::group_outputs go;
    go.mean = grpo::vector_view<double>(mean.data(), 3);
    go.count = grpo::vector_view<std::int64_t>(count.data(), 3);
    const grpo::groups g = grpo::groups::by_id(grpo::vector_view<const std::int64_t>(no_ids.data(), 0), 3);
    CHECK_FALSE(g.is_contiguous());
    const grpo::advantage_stats st =
        grpo::compute_advantages(grpo::exec::host{}, grpo::vector_view<const double>(no_rewards.data(), 0), g,
                                 grpo::vector_view<double>(adv.data(), 0), grpo::advantage_config{}, go);
    CHECK(st.num_groups == 3);
    CHECK(st.scored == 0);
    CHECK(st.zero_variance_groups == 3);
    CHECK(mean == std::vector<double>(3, 0.0));
    CHECK(count == std::vector<std::int64_t>(3, 0));
}

TEST_CASE("NaN rewards (TRL None) are left out of the statistics and get advantage 0", "[advantages]") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const std::vector<double> r{1, nan, 0, 0, nan, 5, nan, nan};
    grpo::advantage_stats st;
    auto a = advantages_of(r, grpo::groups::contiguous(4), grpo::advantage_config::trl(), &st);
    // group 0 scored {1, 0, 0}: mean 1/3, std sqrt(1/3)
    const double sd = std::sqrt(1.0 / 3);
    CHECK(a[0] == Approx((2.0 / 3) / (sd + 1e-4)));
    CHECK(a[1] == 0.0);
    CHECK(a[2] == Approx((-1.0 / 3) / (sd + 1e-4)));
    // group 1 has one scored reward: a singleton, advantage 0, and nothing is NaN
    CHECK(a[5] == 0.0);
    CHECK(a[4] == 0.0);
    CHECK(st.scored == 4);
    for (double x : a) CHECK(std::isfinite(x));
}

TEST_CASE("advantage statistics for logging", "[advantages]") {
    const std::vector<double> r{1, 0, 0, 0, 1, 1, 1, 1};
    grpo::advantage_stats st;
    advantages_of(r, grpo::groups::contiguous(4), grpo::advantage_config{}, &st);
    CHECK(st.num_groups == 2);
    CHECK(st.zero_variance_groups == 1);
    CHECK(st.reward_mean == Approx(5.0 / 8));
    CHECK(st.advantage_max == Approx(1.4997000599880024));
    CHECK(st.advantage_min == Approx(-0.4999000199960008));
}

TEST_CASE("batch statistics of large batches: accurate, exactly 0 for constants, NaN rows left out", "[advantages]") {
    // More rows than one chunk of the pool's sums (and a tail that is not a multiple of their lanes).
    const std::size_t n = 100003;
    std::vector<double> r(n), a(n);
    long double sum = 0, sq = 0;
    std::size_t scored = 0;
    for (std::size_t i = 0; i < n; ++i) {
        r[i] = i % 101 == 0 ? std::nan("") : 1e6 + static_cast<double>((i * 7919) % 1000) / 1000;
        if (std::isnan(r[i])) continue;
        sum += r[i];
        ++scored;
    }
    const long double mean = sum / scored;
    for (double x : r)
        if (!std::isnan(x)) sq += (x - mean) * (x - mean);
    grpo::advantage_config cfg;
    cfg.estimator = grpo::advantage_estimator::group_centered;
    cfg.nan = grpo::nan_rewards::ignore;
    grpo::thread_pool pool(3);
    const grpo::advantage_stats st =
        grpo::compute_advantages(grpo::exec::host{&pool}, grpo::vector_view<const double>(r),
                                 grpo::groups::contiguous(1), grpo::vector_view<double>(a), cfg);
    CHECK(st.scored == static_cast<grpo::index_t>(scored));
    CHECK(st.reward_mean == Approx(static_cast<double>(mean)).epsilon(1e-15));
    CHECK(st.reward_std == Approx(std::sqrt(static_cast<double>(sq / (scored - 1)))).epsilon(1e-12));
    // A constant batch after NaN rows: the pivot-shifted sums give a std of exactly 0.
    std::vector<double> c(n, 0.1);
    for (std::size_t i = 0; i < 40000; i += 3) c[i] = std::nan("");
    const grpo::advantage_stats cs =
        grpo::compute_advantages(grpo::exec::host{&pool}, grpo::vector_view<const double>(c),
                                 grpo::groups::contiguous(1), grpo::vector_view<double>(a), cfg);
    CHECK(cs.reward_mean == 0.1);
    CHECK(cs.reward_std == 0);
    CHECK(cs.advantage_std == 0);
}

// verl core_algos.py (commit 26b5d6b2): compute_grpo_passk_outcome_advantage L258-315, compute_opo_outcome_advantage
// L406-450, compute_gpg_outcome_advantage L520-579. Expected values: those functions' formulas run in torch
// float64 on the same inputs.
TEST_CASE("pass@k (verl grpo_passk): only the best row gets the margin; ties give 0", "[advantages][estimators]") {
    // Group 0: best 0.9 (row 1), runner-up 0.5. Group 1: 1 twice -> margin 0 everywhere.
    const std::vector<double> r{0.2, 0.9, 0.5, 0.1, 1, 0, 1, 0.5};
    grpo::advantage_config cfg = grpo::advantage_config::verl();
    cfg.estimator = grpo::advantage_estimator::passk;
    auto a = advantages_of(r, grpo::groups::contiguous(4), cfg);
    CHECK(a[1] == Approx(1.1129702530588268).epsilon(1e-14));
    for (int i : {0, 2, 3, 4, 5, 6, 7}) CHECK(a[i] == 0.0);
    cfg.passk_scale_by_std = false;
    a = advantages_of(r, grpo::groups::contiguous(4), cfg);
    CHECK(a[1] == 0.9 - 0.5);
    // A group of one scored reward (verl raises) gets 0, as does a single-row group.
    const std::vector<double> s{3, std::numeric_limits<double>::quiet_NaN(), 5};
    const std::vector<std::int64_t> ids{0, 0, 1};
    cfg.nan = grpo::nan_rewards::ignore;
    a = advantages_of(s, grpo::groups::by_id(grpo::vector_view<const std::int64_t>(ids.data(), 3), 2), cfg);
    CHECK(a == std::vector<double>{0, 0, 0});
    // Permuting the rows of a group permutes the advantages.
    const std::vector<double> p{0.5, 0.1, 0.9, 0.2};
    cfg.passk_scale_by_std = true;
    const auto ap = advantages_of(p, grpo::groups::contiguous(4), cfg);
    const auto a0 = advantages_of(std::vector<double>(r.begin(), r.begin() + 4), grpo::groups::contiguous(4), cfg);
    CHECK(ap[2] == Approx(a0[1]).epsilon(1e-14)); // the std is summed in another order
    CHECK(ap[0] == 0.0);
}

TEST_CASE("OPO (verl opo): length-weighted group baseline", "[advantages][estimators]") {
    // Groups by id: {1, 0, 1} with lengths {10, 30, 20}; {0.3, 0.7} with {5, 15}; a singleton 2 (length 7).
    const std::vector<double> r{1, 0, 1, 0.3, 0.7, 2}, len{10, 30, 20, 5, 15, 7};
    const std::vector<std::int64_t> ids{0, 0, 0, 1, 1, 2};
    grpo::advantage_config cfg = grpo::advantage_config::verl(); // singleton: the raw reward (verl b = 0)
    cfg.estimator = grpo::advantage_estimator::opo;
    std::vector<double> a(6);
    grpo::compute_advantages(grpo::exec::host{}, grpo::vector_view<const double>(r.data(), 6),
                             grpo::groups::by_id(grpo::vector_view<const std::int64_t>(ids.data(), 6), 3),
                             grpo::vector_view<double>(a.data(), 6), cfg, {},
                             grpo::vector_view<const double>(len.data(), 6));
    const std::vector<double> verl{0.5, -0.5, 0.5, -0.3, 0.09999999999999998, 2.0};
    for (std::size_t i = 0; i < 6; ++i) CHECK(a[i] == Approx(verl[i]).epsilon(1e-14).margin(1e-15));
    // Lengths are required and named when missing.
    try {
        grpo::compute_advantages(grpo::exec::host{}, grpo::vector_view<const double>(r.data(), 6),
                                 grpo::groups::contiguous(3), grpo::vector_view<double>(a.data(), 6), cfg);
        FAIL("expected grpo::error");
    } catch (const grpo::error& e) {
        CHECK(std::string(e.what()).find("token_weights") != std::string::npos);
    }
    // A group of total length 0 falls back to the plain mean (verl: 0/0).
    const std::vector<double> z{0, 0, 0, 0, 0, 0};
    grpo::compute_advantages(grpo::exec::host{}, grpo::vector_view<const double>(r.data(), 2),
                             grpo::groups::contiguous(2), grpo::vector_view<double>(a.data(), 2), cfg, {},
                             grpo::vector_view<const double>(z.data(), 2));
    CHECK(a[0] == 0.5);
    CHECK(a[1] == -0.5);
}

TEST_CASE("GPG (verl gpg): alpha = batch / nonzero rewards times the group-centered reward",
          "[advantages][estimators]") {
    const std::vector<double> r{1, 0, 0, 0, 1, 1, 0, 0, 3};
    const std::vector<std::int64_t> ids{0, 0, 0, 0, 1, 1, 1, 1, 2};
    grpo::advantage_config cfg = grpo::advantage_config::verl();
    cfg.estimator = grpo::advantage_estimator::gpg;
    std::vector<double> a(9);
    grpo::compute_advantages(grpo::exec::host{}, grpo::vector_view<const double>(r.data(), 9),
                             grpo::groups::by_id(grpo::vector_view<const std::int64_t>(ids.data(), 9), 3),
                             grpo::vector_view<double>(a.data(), 9), cfg);
    const std::vector<double> verl{1.6875, -0.5625, -0.5625, -0.5625, 1.125, 1.125, -1.125, -1.125, 6.75};
    for (std::size_t i = 0; i < 9; ++i) CHECK(a[i] == Approx(verl[i]).epsilon(1e-15));
    // Every reward 0: alpha = n / max(0, 1), advantages 0.
    const std::vector<double> zeros(4, 0.0);
    CHECK(advantages_of(zeros, grpo::groups::contiguous(2), cfg) == std::vector<double>(4, 0.0));
}

TEST_CASE("variance floor (verl grpo_vectorized before PR #6348): sqrt(max(var, floor)) in the z-score",
          "[advantages][estimators]") {
    const std::vector<double> r{1, 1 + 1e-6, 0, 1};
    grpo::advantage_config cfg = grpo::advantage_config::verl();
    const auto plain = advantages_of(r, grpo::groups::contiguous(2), cfg);
    cfg.variance_floor = 1e-6;
    const auto floored = advantages_of(r, grpo::groups::contiguous(2), cfg);
    // Group 0: var = 5e-13 < floor -> std 1e-3; group 1: var = 0.5 > floor, unchanged.
    CHECK(floored[1] == Approx(0.5e-6 / (1e-3 + 1e-6)).epsilon(1e-9));
    CHECK(plain[1] == Approx(0.5e-6 / (std::sqrt(5e-13) + 1e-6)).epsilon(1e-6));
    CHECK(floored[2] == plain[2]);
    CHECK(floored[3] == plain[3]);
    cfg.variance_floor = -1;
    CHECK_THROWS_AS(advantages_of(r, grpo::groups::contiguous(2), cfg), grpo::error);
}

// verl core_algos.py (26b5d6b2) L453-487 (reinforce_plus_plus) and L490-517 (remax), torch_functional.py
// masked_whiten; expected values: those functions run in torch float64 on the same inputs. verl keeps G (and
// remax's G - b m) at masked tokens; grpo writes 0 there, so only unmasked tokens are compared.
TEST_CASE("every estimator: permuting rows within their groups permutes the advantages", "[advantages][estimators]") {
    // Three groups by id, interleaved; the permutation reverses the batch (ids follow their rows), so every row
    // moves but keeps its group.
    const std::vector<double> r{0.5, 1, 0, 2, 1, 0.25, 0, 3, 1, 1, 0.75, -1};
    const std::vector<std::int64_t> ids{0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2};
    const std::vector<double> lengths{3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8};
    std::vector<double> rr(r.rbegin(), r.rend()), lr(lengths.rbegin(), lengths.rend());
    std::vector<std::int64_t> ir(ids.rbegin(), ids.rend());
    for (int e = 0; e < grpo::advantage_estimator_count; ++e) {
        grpo::advantage_config cfg;
        cfg.estimator = static_cast<grpo::advantage_estimator>(e);
        CAPTURE(e);
        std::vector<double> a(12), b(12);
        grpo::compute_advantages(grpo::exec::host{}, grpo::vector_view<const double>(r.data(), 12),
                                 grpo::groups::by_id({ids.data(), 12}, 3), grpo::vector_view<double>(a.data(), 12), cfg,
                                 {}, grpo::vector_view<const double>(lengths.data(), 12));
        grpo::compute_advantages(grpo::exec::host{}, grpo::vector_view<const double>(rr.data(), 12),
                                 grpo::groups::by_id({ir.data(), 12}, 3), grpo::vector_view<double>(b.data(), 12), cfg,
                                 {}, grpo::vector_view<const double>(lr.data(), 12));
        for (std::size_t i = 0; i < 12; ++i) CHECK(b[11 - i] == Approx(a[i]).epsilon(1e-14).margin(1e-15));
    }
}

TEST_CASE("z-score: invariant under r -> s r + c (s > 0), sign-flipped for s < 0", "[advantages]") {
    const std::vector<double> r{0.5, 1, 0, 2, 1, 0.25, 0, 3};
    grpo::advantage_config cfg;
    cfg.epsilon = 0; // the epsilon term is the only thing not scale-invariant
    const auto base = advantages_of(r, grpo::groups::contiguous(4), cfg);
    for (const double s : {3.0, 1e-3, -2.0})
        for (const double c : {0.0, 7.5, -1e3}) {
            std::vector<double> t;
            for (double x : r) t.push_back(s * x + c);
            const auto a = advantages_of(t, grpo::groups::contiguous(4), cfg);
            for (std::size_t i = 0; i < r.size(); ++i) CHECK(a[i] == Approx(s > 0 ? base[i] : -base[i]).epsilon(1e-9));
        }
}

TEST_CASE("token_advantages: REINFORCE++ returns with gamma and batch whitening; ReMax", "[advantages][estimators]") {
    const std::vector<double> r{0, 0, 1, 0, 0.5, 0, 0, 2, 0, 1, 0, 0};
    const std::vector<double> m{1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1};
    std::vector<double> a(12, -7), g(12, -7);
    grpo::token_advantage_inputs<double> in;
    in.rewards = grpo::matrix_view<const double>(r.data(), 3, 4);
    in.mask = grpo::matrix_view<const double>(m.data(), 3, 4);
    grpo::token_advantage_outputs<double> out{grpo::matrix_view<double>(a.data(), 3, 4),
                                              grpo::matrix_view<double>(g.data(), 3, 4)};
    grpo::token_advantage_config cfg;
    cfg.gamma = 0.9;
    const auto st = grpo::token_advantages(grpo::exec::host{}, in, out, cfg);
    const std::vector<double> adv{0.15941751018332395,
                                  0.30434251840006593,
                                  0.46537030530755696,
                                  0,
                                  -0.3397686292298986,
                                  -1.144907563767354,
                                  0,
                                  2.075648174382468,
                                  0.30434251840006593,
                                  0.46537030530755696,
                                  -1.144907563767354,
                                  -1.144907563767354};
    const std::vector<double> ret{0.81, 0.9, 1.0, 0, 0.5, 0.0, 0, 2.0, 0.9, 1.0, 0.0, 0.0};
    for (std::size_t k = 0; k < 12; ++k) {
        CAPTURE(k);
        // verl's masked mean divides by (sum m + 1e-8): relative differences near 1e-9.
        CHECK(a[k] == Approx(adv[k]).epsilon(1e-7).margin(1e-12));
        CHECK(g[k] == Approx(ret[k]).epsilon(1e-15));
        if (m[k] == 0) CHECK(a[k] == 0.0);
    }
    CHECK(st.tokens == 10);
    CHECK(st.advantage_mean == Approx(0.0).margin(1e-12));

    // ReMax: a masked token adds 0 but does not restart the sum (row 1, token 2).
    const std::vector<double> b{0.5, 1, 0};
    in.baselines = grpo::vector_view<const double>(b.data(), 3);
    cfg.estimator = grpo::token_estimator::remax;
    grpo::token_advantages(grpo::exec::host{}, in, out, cfg);
    const std::vector<double> remax_adv{0.5, 0.5, 0.5, 0, 1.5, 1.0, 0, 1.0, 1.0, 1.0, 0.0, 0.0};
    const std::vector<double> remax_ret{1.0, 1.0, 1.0, 0, 2.5, 2.0, 0, 2.0, 1.0, 1.0, 0.0, 0.0};
    for (std::size_t k = 0; k < 12; ++k) {
        CHECK(a[k] == remax_adv[k]);
        CHECK(g[k] == remax_ret[k]);
    }

    // Errors name the argument and leave the outputs untouched.
    std::vector<double> a0 = a;
    in.baselines = {};
    CHECK_THROWS_AS(grpo::token_advantages(grpo::exec::host{}, in, out, cfg), grpo::error);
    cfg.estimator = grpo::token_estimator::reinforce_plus_plus;
    std::vector<double> one{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}; // a single unmasked token cannot be whitened
    in.mask = grpo::matrix_view<const double>(one.data(), 3, 4);
    CHECK_THROWS_AS(grpo::token_advantages(grpo::exec::host{}, in, out, cfg), grpo::error);
    std::vector<double> half = m;
    half[5] = 0.5;
    in.mask = grpo::matrix_view<const double>(half.data(), 3, 4);
    CHECK_THROWS_AS(grpo::token_advantages(grpo::exec::host{}, in, out, cfg), grpo::error);
    CHECK(a == a0);
}

namespace {

/// The optimal token baseline's inputs (6 rows x 4 tokens; rows 0-4 also serve the TIR case).
struct otb_case {
    std::vector<double> rewards{0, 0.5, 0, 1, 0, 0, 0, 9, 0.25, 1, 7, 7, 0, -0.5, 0, 9, 2, 9, 9, 9, 0, 1, 9, 9};
    std::vector<double> logp{-0.1, -1.2, -0.4, -2, -0.3,  -0.05, -1.5, -9, -0.7, -0.2, -9, -9,
                             -2.5, -0.6, -0.9, -9, -0.01, -9,    -9,   -9, -1,   -0.3, -9, -9};
    std::vector<double> sq{0.9, 0.3,  0.6,  0.2, 0.8,  0.95, 0.25, 0.5, 0.5, 0.7,  0.5, 0.5,
                           0.1, 0.55, 0.45, 0.5, 0.99, 0.5,  0.5,  0.5, 0.4, 0.75, 0.5, 0.5};
    std::vector<double> rho{1, 0.8, 1.2, 0.5, 0.9,  1.1, 1, 1, 1.3,  0.7, 1, 1,
                            1, 1,   0.6, 1,   0.95, 1,   1, 1, 1.05, 0.9, 1, 1};

    std::vector<double> run(const std::vector<double>& mask, const std::vector<std::int64_t>& ids, grpo::index_t groups,
                            const grpo::token_advantage_config& cfg, bool with_rho) const {
        const grpo::index_t rows = static_cast<grpo::index_t>(ids.size());
        std::vector<double> a(static_cast<std::size_t>(rows * 4), -7.0);
        grpo::token_advantage_inputs<double> in;
        in.rewards = grpo::matrix_view<const double>(rewards.data(), rows, 4);
        in.mask = grpo::matrix_view<const double>(mask.data(), rows, 4);
        in.prompts = grpo::groups::by_id(grpo::vector_view<const std::int64_t>(ids.data(), rows), groups);
        in.old_logp = grpo::matrix_view<const double>(logp.data(), rows, 4);
        in.sum_pi_squared = grpo::matrix_view<const double>(sq.data(), rows, 4);
        if (with_rho) in.is_weights = grpo::matrix_view<const double>(rho.data(), rows, 4);
        grpo::token_advantage_outputs<double> out;
        out.advantages = grpo::matrix_view<double>(a.data(), rows, 4);
        grpo::token_advantages(grpo::exec::host{}, in, out, cfg);
        return a;
    }
};

void check_rows(const std::vector<double>& got, const std::vector<double>& want) {
    REQUIRE(got.size() == want.size());
    for (std::size_t k = 0; k < want.size(); ++k) {
        CAPTURE(k);
        CHECK(got[k] == Approx(want[k]).epsilon(1e-12).margin(1e-15));
    }
}

} // namespace

// verl v0.7 core_algos.py (AlexJJ009/verl-v0.7 @ 1debdbb; not in the 26b5d6b2 tree):
// compute_optimal_token_baseline_advantage and compute_multi_turn_optimal_token_baseline_advantage. Expected
// values: both functions transcribed into a torch float64 script and run on these inputs.
TEST_CASE("optimal token baseline (verl optimal_token_baseline): per-group, per-position baselines",
          "[advantages][estimators]") {
    const otb_case c;
    // Left-aligned masks of lengths 4, 3, 2, 3, 1, 2; groups {0, 2, 4}, {1, 3}, {5} (a single row: A = G).
    std::vector<double> mask;
    for (int len : {4, 3, 2, 3, 1, 2})
        for (int t = 0; t < 4; ++t) mask.push_back(t < len ? 1 : 0);
    const std::vector<std::int64_t> ids{0, 1, 0, 1, 0, 2};
    grpo::token_advantage_config cfg;
    cfg.estimator = grpo::token_estimator::optimal_token_baseline;
    // Row 0 is group 0's single longest row: its baseline past the runner-up's length (2) averages it with
    // itself (A ~ 0), unless the tail rule zeroes the baseline there (A = G).
    const std::vector<double> keep{0.20057032252723062,
                                   0.2097421245779012,
                                   9.5483928541639784e-09,
                                   5.0591257849674776e-09,
                                   0.37308036976938069,
                                   0.39570083486041735,
                                   0,
                                   0,
                                   -0.049429677472769384,
                                   -0.2902578754220988,
                                   0,
                                   0,
                                   -0.12691963023061931,
                                   -0.10429916513958265,
                                   0,
                                   0,
                                   0.70057032252723062,
                                   0,
                                   0,
                                   0,
                                   1,
                                   1,
                                   0,
                                   0};
    check_rows(c.run(mask, ids, 3, cfg, false), keep);
    std::vector<double> zeroed = keep;
    zeroed[2] = 1, zeroed[3] = 1;
    cfg.tail = grpo::otb_tail::zero;
    check_rows(c.run(mask, ids, 3, cfg, false), zeroed);
    // Rollout IS weights scale each token's energy by rho^2.
    cfg.tail = grpo::otb_tail::estimator_default; // keep, for this estimator
    const std::vector<double> with_rho{0.21936335224904546,
                                       0.3115156974403257,
                                       1.0985693021936527e-08,
                                       8.7519139713165828e-09,
                                       0.39198562394536307,
                                       0.40743185857391523,
                                       0,
                                       0,
                                       -0.030636647750954538,
                                       -0.1884843025596743,
                                       0,
                                       0,
                                       -0.10801437605463693,
                                       -0.092568141426084771,
                                       0,
                                       0,
                                       0.71936335224904546,
                                       0,
                                       0,
                                       0,
                                       1,
                                       1,
                                       0,
                                       0};
    check_rows(c.run(mask, ids, 3, cfg, true), with_rho);

    // Permuting rows within the batch (ids follow) permutes the advantages.
    const std::vector<double> base = c.run(mask, ids, 3, cfg, false);
    otb_case swapped = c;
    std::vector<double> swapped_mask = mask;
    const std::vector<std::int64_t> swapped_ids{0, 1, 0, 1, 0, 2};
    for (int t = 0; t < 4; ++t) { // swap rows 0 and 4 (both group 0)
        std::swap(swapped.rewards[t], swapped.rewards[16 + t]);
        std::swap(swapped.logp[t], swapped.logp[16 + t]);
        std::swap(swapped.sq[t], swapped.sq[16 + t]);
        std::swap(swapped_mask[t], swapped_mask[16 + t]);
    }
    const std::vector<double> perm = swapped.run(swapped_mask, swapped_ids, 3, cfg, false);
    for (int t = 0; t < 4; ++t) {
        CHECK(perm[t] == Approx(base[16 + t]).epsilon(1e-14).margin(1e-15));
        CHECK(perm[16 + t] == Approx(base[t]).epsilon(1e-14).margin(1e-15));
    }
}

TEST_CASE("optimal token baseline, TIR variant (verl tir_optimal_token_baseline): positions over unmasked tokens",
          "[advantages][estimators]") {
    const otb_case c;
    // Holes (tool tokens) in rows 0 and 1; rows 3 and 4 have no unmasked token. Groups {0, 1, 3}, {2, 4}.
    const std::vector<double> mask{1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    const std::vector<std::int64_t> ids{0, 0, 1, 0, 1};
    grpo::token_advantage_config cfg;
    cfg.estimator = grpo::token_estimator::tir_optimal_token_baseline;
    // Default tail rule for TIR: zero (row 0 is group 0's longest: 3 tokens against 2). Row 2 is alone among
    // group 1's non-empty rows: A = G.
    const std::vector<double> zero_tail{0.34483519469939139,
                                        0,
                                        0.70883014396983168,
                                        1,
                                        0,
                                        -0.65516480530060861,
                                        -0.29116985603016837,
                                        0,
                                        1.25,
                                        1,
                                        0,
                                        0,
                                        0,
                                        0,
                                        0,
                                        0,
                                        0,
                                        0,
                                        0,
                                        0};
    check_rows(c.run(mask, ids, 2, cfg, false), zero_tail);
    cfg.tail = grpo::otb_tail::keep;
    std::vector<double> keep = zero_tail;
    keep[3] = 7.8185194984925488e-09;
    check_rows(c.run(mask, ids, 2, cfg, false), keep);
    // The plain estimator aligns by column and counts empty rows as members: row 2 then shares group 1 with
    // the empty row 4, and its baseline is its own return (A ~ 0).
    cfg.estimator = grpo::token_estimator::optimal_token_baseline;
    const std::vector<double> by_column{1.1071110694871322e-07,
                                        0,
                                        0.70883014396983168,
                                        7.8185194984925488e-09,
                                        0,
                                        0,
                                        -0.29116985603016837,
                                        0,
                                        2.4663131092950152e-08,
                                        1.7563336673909191e-08,
                                        0,
                                        0,
                                        0,
                                        0,
                                        0,
                                        0,
                                        0,
                                        0,
                                        0,
                                        0};
    check_rows(c.run(mask, ids, 2, cfg, false), by_column);
}

TEST_CASE("optimal token baseline: bad inputs name the argument, outputs untouched", "[advantages][estimators]") {
    otb_case c;
    std::vector<double> mask(24, 1.0);
    const std::vector<std::int64_t> ids{0, 1, 0, 1, 0, 2};
    grpo::token_advantage_config cfg;
    cfg.estimator = grpo::token_estimator::optimal_token_baseline;
    std::vector<double> a(24, -7.0);
    grpo::token_advantage_inputs<double> in;
    in.rewards = grpo::matrix_view<const double>(c.rewards.data(), 6, 4);
    in.mask = grpo::matrix_view<const double>(mask.data(), 6, 4);
    in.prompts = grpo::groups::by_id(grpo::vector_view<const std::int64_t>(ids.data(), 6), 3);
    in.old_logp = grpo::matrix_view<const double>(c.logp.data(), 6, 4);
    in.sum_pi_squared = grpo::matrix_view<const double>(c.sq.data(), 6, 4);
    grpo::token_advantage_outputs<double> out;
    out.advantages = grpo::matrix_view<double>(a.data(), 6, 4);
    auto message = [&]() -> std::string {
        try {
            grpo::token_advantages(grpo::exec::host{}, in, out, cfg);
        } catch (const grpo::error& e) {
            return e.what();
        }
        return "";
    };
    CHECK(message().empty());
    std::fill(a.begin(), a.end(), -7.0);
    c.logp[5] = 0.25;
    CHECK(message().find("'old_logp'") != std::string::npos);
    c.logp[5] = -0.25;
    c.sq[7] = 1.5;
    CHECK(message().find("'sum_pi_squared'") != std::string::npos);
    c.sq[7] = std::nan("");
    CHECK(message().find("'sum_pi_squared'") != std::string::npos);
    c.sq[7] = 0.5;
    std::vector<double> rho(24, 1.0);
    rho[9] = -1;
    in.is_weights = grpo::matrix_view<const double>(rho.data(), 6, 4);
    CHECK(message().find("'is_weights'") != std::string::npos);
    in.is_weights = {};
    const std::vector<std::int64_t> bad_ids{0, 1, 0, 3, 0, 2};
    in.prompts = grpo::groups::by_id(grpo::vector_view<const std::int64_t>(bad_ids.data(), 6), 3);
    CHECK(message().find("groups.ids") != std::string::npos);
    in.prompts = grpo::groups::contiguous(4); // 4 does not divide 6 rows
    CHECK(!message().empty());
    in.prompts = grpo::groups::contiguous(2);
    in.sum_pi_squared = {};
    CHECK(message().find("'sum_pi_squared'") != std::string::npos);
    in.sum_pi_squared = grpo::matrix_view<const double>(c.sq.data(), 6, 4);
    in.old_logp = grpo::matrix_view<const double>(a.data(), 6, 4); // aliases the output
    CHECK(message().find("'advantages'") != std::string::npos);
    CHECK(a == std::vector<double>(24, -7.0));
    // Masked tokens are never read: NaN there is fine.
    in.old_logp = grpo::matrix_view<const double>(c.logp.data(), 6, 4);
    mask[23] = 0;
    c.logp[23] = std::nan("");
    c.sq[23] = 7;
    CHECK(message().empty());
    CHECK(a[23] == 0.0);
}

TEST_CASE("process rewards as token rewards: REINFORCE++ over the steps' raw rewards", "[advantages][process]") {
    grpo::process_steps s;
    s.begin_row();
    s.add(0.9, 1);
    s.add(0.2, 3);
    s.begin_row();
    s.add(0.5, 2);
    s.add(0.25, 2); // two steps ending on one token add up
    std::vector<double> r(8, -7), m(8, -7);
    grpo::process_token_rewards(s, grpo::matrix_view<double>(r.data(), 2, 4),
                                grpo::matrix_view<double>(m.data(), 2, 4));
    CHECK(r == std::vector<double>{0, 0.9, 0, 0.2, 0, 0, 0.75, 0});
    CHECK(m == std::vector<double>{1, 1, 1, 1, 1, 1, 1, 0});
    // gamma 1: G = suffix sums of the raw step rewards.
    std::vector<double> a(8), g(8);
    grpo::token_advantage_inputs<double> in;
    in.rewards = grpo::matrix_view<const double>(r.data(), 2, 4);
    in.mask = grpo::matrix_view<const double>(m.data(), 2, 4);
    grpo::token_advantages(grpo::exec::host{}, in,
                           {grpo::matrix_view<double>(a.data(), 2, 4), grpo::matrix_view<double>(g.data(), 2, 4)});
    CHECK(g[0] == Approx(1.1));
    CHECK(g[2] == Approx(0.2));
    CHECK(g[4] == 0.75);
    CHECK(g[7] == 0.0);
    // A step ending past the row is rejected, outputs untouched.
    s.begin_row();
    s.add(1, 9);
    std::vector<double> r3(12, -7), m3(12, -7);
    CHECK_THROWS_AS(grpo::process_token_rewards(s, grpo::matrix_view<double>(r3.data(), 3, 4),
                                                grpo::matrix_view<double>(m3.data(), 3, 4)),
                    grpo::error);
    CHECK(r3 == std::vector<double>(12, -7));
}
