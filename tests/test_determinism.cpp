// SPDX-License-Identifier: MIT
// Bit-identical results for every thread count and on every run.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "catch.hpp"
#include "loss_catalogue.hpp"
#include "test_helpers.hpp"

namespace {
template <class T>
bool same_bits(T a, T b) {
    return std::memcmp(&a, &b, sizeof a) == 0;
}
} // namespace

TEMPLATE_TEST_CASE("loss, statistics and gradient are bit-identical for 1..7 threads, in every CPU version",
                   "[loss][determinism]", float, double) {
    for (const grpo::detail::cpu::cpu_version version : grpo_test::loss_versions()) {
        const grpo_test::cpu_version_scope scope(version);
        for (const auto& var : grpo_test::loss_catalogue()) {
            for (auto level : {grpo::ratio_level::token, grpo::ratio_level::sequence}) {
                if (!var.allows(level)) continue;
                INFO(var.name << ", level " << static_cast<int>(level) << ", CPU version "
                              << static_cast<int>(version));
                grpo::loss_config cfg = var.cfg;
                cfg.ratio = level;
                cfg.agg = grpo::aggregation::seq_mean_token_mean;
                grpo_test::batch<TestType> ref(67, 301, 3);
                grpo::workspace ws;
                const auto base =
                    grpo::loss_and_grad(grpo::exec::host{}, ref.inputs(true, true, true, true), ref.outputs(), cfg, ws);
                for (unsigned threads : {2u, 3u, 4u, 7u}) {
                    grpo::thread_pool pool(threads);
                    for (int run = 0; run < 2; ++run) {
                        grpo_test::batch<TestType> b(67, 301, 3);
                        const auto st = grpo::loss_and_grad(grpo::exec::host{&pool}, b.inputs(true, true, true, true),
                                                            b.outputs(), cfg, ws);
                        CHECK(same_bits(st.loss, base.loss));
                        CHECK(same_bits(st.kl_mean, base.kl_mean));
                        CHECK(same_bits(st.ratio_mean, base.ratio_mean));
                        CHECK(same_bits(st.clip_fraction_region, base.clip_fraction_region));
                        CHECK(std::memcmp(b.grad.data(), ref.grad.data(), b.grad.size() * sizeof(TestType)) == 0);
                        CHECK(std::memcmp(b.per_token.data(), ref.per_token.data(),
                                          b.per_token.size() * sizeof(TestType)) == 0);
                    }
                }
            }
        }
    }
}

namespace {
/// max_k |a_k - b_k| <= 16 eps * max(1, max_k |b_k|): the cross-version tolerance of docs/numerics.md.
template <class T>
bool within_version_tolerance(const std::vector<T>& a, const std::vector<T>& b) {
    double scale = 1, worst = 0;
    for (std::size_t k = 0; k < b.size(); ++k) {
        scale = std::max(scale, std::fabs(static_cast<double>(b[k])));
        worst = std::max(worst, std::fabs(static_cast<double>(a[k]) - static_cast<double>(b[k])));
    }
    return worst <= 16 * static_cast<double>(std::numeric_limits<T>::epsilon()) * scale;
}
template <class T>
bool within_version_tolerance(double a, double b) {
    return std::fabs(a - b) <=
           16 * static_cast<double>(std::numeric_limits<T>::epsilon()) * std::max(1.0, std::fabs(b));
}
} // namespace

TEMPLATE_TEST_CASE("the FMA versions of the row pass agree with the baseline within the documented tolerance",
                   "[loss][determinism]", float, double) {
    using grpo::detail::cpu::cpu_version;
    INFO("this CPU's widest version: " << static_cast<int>(grpo::detail::cpu::cpu_best_version())
                                       << "; dispatch compiled in: " << GRPO_CPU_AVX2_DISPATCH);
    std::vector<grpo::loss_config> configs{grpo::loss_config::deepseekmath(), grpo::loss_config::gspo(),
                                           grpo::loss_config::verl(), grpo::loss_config::trl()};
    for (const auto& var : grpo_test::loss_catalogue()) configs.push_back(var.cfg);
    for (const cpu_version version : grpo_test::loss_versions()) {
        for (const grpo::loss_config& cfg : configs) {
            for (bool per_token_adv : {true, false}) {
                INFO("CPU version " << static_cast<int>(version) << ", objective " << static_cast<int>(cfg.objective)
                                    << ", per-token A " << per_token_adv);
                grpo_test::batch<TestType> a(9, 1031, 5), b(9, 1031, 5); // 1031: a vector tail in every row
                grpo::loss_stats base, fast;
                {
                    const grpo_test::cpu_version_scope scope(cpu_version::baseline);
                    base = grpo::loss_and_grad(grpo::exec::host{}, a.inputs(per_token_adv), a.outputs(), cfg);
                }
                {
                    const grpo_test::cpu_version_scope scope(version);
                    fast = grpo::loss_and_grad(grpo::exec::host{}, b.inputs(per_token_adv), b.outputs(), cfg);
                }
                CHECK(within_version_tolerance<TestType>(fast.loss, base.loss));
                CHECK(within_version_tolerance<TestType>(fast.kl_mean, base.kl_mean));
                CHECK(within_version_tolerance<TestType>(fast.ratio_mean, base.ratio_mean));
                CHECK(within_version_tolerance<TestType>(fast.ratio_max, base.ratio_max));
                CHECK(fast.token_count == base.token_count);
                CHECK(within_version_tolerance(b.grad, a.grad));
                CHECK(within_version_tolerance(b.per_token, a.per_token));
                if (version == cpu_version::baseline) { // the baseline against itself: the same bits
                    CHECK(std::memcmp(a.grad.data(), b.grad.data(), a.grad.size() * sizeof(TestType)) == 0);
                    CHECK(same_bits(fast.loss, base.loss));
                }
            }
        }
    }
}

TEMPLATE_TEST_CASE("the plain-configuration instantiation is bit-identical to the general one", "[loss][determinism]",
                   float, double) {
    // Clamps far outside the data (1e30) change no value, but they make the configuration not plain, so the
    // second call takes the general instantiation (run-time clamps, estimator and dual clip).
    for (double beta : {0.0, 0.04}) {
        for (bool per_token_adv : {true, false}) {
            grpo::loss_config plain = grpo::loss_config::deepseekmath();
            plain.beta = beta;
            grpo::loss_config general = plain;
            general.log_ratio_clamp = 1e30;
            general.kl_value_clamp = 1e30;
            grpo_test::batch<TestType> a(7, 517, 9), b(7, 517, 9);
            const auto st_plain = grpo::loss_and_grad(grpo::exec::host{}, a.inputs(per_token_adv), a.outputs(), plain);
            const auto st_general =
                grpo::loss_and_grad(grpo::exec::host{}, b.inputs(per_token_adv), b.outputs(), general);
            CHECK(same_bits(st_plain.loss, st_general.loss));
            CHECK(same_bits(st_plain.kl_mean, st_general.kl_mean));
            CHECK(same_bits(st_plain.ratio_min, st_general.ratio_min));
            CHECK(same_bits(st_plain.clip_fraction_low, st_general.clip_fraction_low));
            CHECK(std::memcmp(a.grad.data(), b.grad.data(), a.grad.size() * sizeof(TestType)) == 0);
            CHECK(std::memcmp(a.per_token.data(), b.per_token.data(), a.per_token.size() * sizeof(TestType)) == 0);
        }
    }
}

TEMPLATE_TEST_CASE("the lean instantiation (verl's defaults) is bit-identical to the full one", "[loss][determinism]",
                   float, double) {
    // With every entropy equal, top_entropy_quantile's threshold is that entropy and no token falls below it: it
    // changes no value, but it reads the entropies, which only the full instantiation does.
    for (const grpo::kl_estimator kl : {grpo::kl_estimator::low_var_kl, grpo::kl_estimator::k3}) {
        for (bool per_token_adv : {true, false}) {
            grpo::loss_config lean = grpo::loss_config::verl();
            lean.beta = 0.001;
            lean.kl = kl;
            grpo::loss_config full = lean;
            full.top_entropy_quantile = 0.5;
            for (const grpo::detail::cpu::cpu_version version : grpo_test::loss_versions()) {
                const grpo_test::cpu_version_scope scope(version);
                grpo_test::batch<TestType> a(7, 517, 9), b(7, 517, 9);
                std::fill(b.entropy.begin(), b.entropy.end(), TestType(1.5));
                const auto st_lean =
                    grpo::loss_and_grad(grpo::exec::host{}, a.inputs(per_token_adv), a.outputs(), lean);
                const auto st_full =
                    grpo::loss_and_grad(grpo::exec::host{}, b.inputs(per_token_adv), b.outputs(), full);
                CHECK(same_bits(st_lean.loss, st_full.loss));
                CHECK(same_bits(st_lean.kl_mean, st_full.kl_mean));
                CHECK(same_bits(st_lean.ratio_max, st_full.ratio_max));
                CHECK(same_bits(st_lean.dual_clip_fraction, st_full.dual_clip_fraction));
                CHECK(std::memcmp(a.grad.data(), b.grad.data(), a.grad.size() * sizeof(TestType)) == 0);
                CHECK(std::memcmp(a.per_token.data(), b.per_token.data(), a.per_token.size() * sizeof(TestType)) == 0);
            }
        }
    }
}

TEMPLATE_TEST_CASE("compute_advantages is bit-identical for 1..7 threads, by id and contiguous, and in row order",
                   "[advantages][determinism]", float, double) {
    // Enough completions for many tasks of the pool (fixed row ranges of advantage_grain), NaN rewards, groups
    // of 6 (contiguous, and the same groups by id), per-group outputs and token weights.
    const grpo::index_t n = 6 * 12000, k = n / 6;
    std::vector<TestType> r(static_cast<std::size_t>(n));
    std::vector<double> lengths(r.size());
    std::vector<std::int64_t> ids(r.size());
    for (grpo::index_t i = 0; i < n; ++i) {
        const auto u = static_cast<std::uint64_t>(i) * 2654435761u;
        r[i] = static_cast<TestType>(static_cast<double>(u % 1000) / 250.0 - 1.5);
        if (u % 97 == 0) r[i] = std::numeric_limits<TestType>::quiet_NaN();
        if (i / 6 == 7) r[i] = TestType(0.25); // a constant group
        lengths[i] = static_cast<double>(1 + u % 500);
        ids[i] = i / 6;
    }
    const auto run = [&](grpo::advantage_estimator e, bool by_id, unsigned threads, std::vector<TestType>& a,
                         std::vector<double>& means, grpo::advantage_stats& st) {
        std::unique_ptr<grpo::thread_pool> pool = threads > 1 ? std::make_unique<grpo::thread_pool>(threads) : nullptr;
        grpo::advantage_config cfg;
        cfg.estimator = e;
        cfg.nan = grpo::nan_rewards::ignore;
        a.assign(r.size(), TestType(-7));
        means.assign(static_cast<std::size_t>(k), -7.0);
        grpo::group_outputs go;
        go.mean = {means.data(), k};
        st =
            grpo::compute_advantages(grpo::exec::host{pool.get()}, grpo::vector_view<const TestType>(r),
                                     by_id ? grpo::groups::by_id({ids.data(), n}, k) : grpo::groups::contiguous(6),
                                     grpo::vector_view<TestType>(a), cfg, go, grpo::vector_view<const double>(lengths));
    };
    const auto same_stats = [](const grpo::advantage_stats& x, const grpo::advantage_stats& y) {
        return x.num_groups == y.num_groups && x.zero_variance_groups == y.zero_variance_groups &&
               x.scored == y.scored && same_bits(x.reward_mean, y.reward_mean) &&
               same_bits(x.reward_std, y.reward_std) && same_bits(x.advantage_mean, y.advantage_mean) &&
               same_bits(x.advantage_std, y.advantage_std) && same_bits(x.advantage_min, y.advantage_min) &&
               same_bits(x.advantage_max, y.advantage_max);
    };
    for (int e = 0; e < grpo::advantage_estimator_count; ++e) {
        const auto est = static_cast<grpo::advantage_estimator>(e);
        CAPTURE(e);
        std::vector<TestType> base;
        std::vector<double> base_means;
        grpo::advantage_stats base_st;
        run(est, false, 1, base, base_means, base_st);
        for (bool by_id : {false, true})
            for (unsigned threads : {1u, 2u, 3u, 7u}) {
                CAPTURE(by_id, threads);
                std::vector<TestType> a;
                std::vector<double> means;
                grpo::advantage_stats st;
                run(est, by_id, threads, a, means, st);
                bool same = true;
                for (std::size_t i = 0; i < a.size() && same; ++i) same = same_bits(a[i], base[i]);
                for (std::size_t j = 0; j < means.size() && same; ++j) same = same_bits(means[j], base_means[j]);
                CHECK(same);
                CHECK(same_stats(st, base_st));
            }
        if (est != grpo::advantage_estimator::group_zscore) continue;
        // The z-score spelled out serially in row order with the library's moments: the same bits.
        std::vector<grpo::math::group_moments<double>> m(static_cast<std::size_t>(k));
        for (grpo::index_t i = 0; i < n; ++i)
            if (!std::isnan(static_cast<double>(r[i]))) m[i / 6].add_first_pass(static_cast<double>(r[i]));
        for (grpo::index_t i = 0; i < n; ++i)
            if (!std::isnan(static_cast<double>(r[i])))
                m[i / 6].add_second_pass(static_cast<double>(r[i]), m[i / 6].mean());
        bool same = true;
        for (grpo::index_t i = 0; i < n && same; ++i) {
            const double x = static_cast<double>(r[i]);
            const grpo::math::group_moments<double>& g = m[i / 6];
            const double want =
                std::isnan(x) ? 0.0
                              : (g.count < 2 ? 0.0 : (x - g.mean()) / (g.std(grpo::std_estimator::unbiased) + 1e-4));
            same = same_bits(base[i], static_cast<TestType>(want));
        }
        CHECK(same);
    }
}

TEST_CASE("the thread pool runs every task exactly once", "[exec]") {
    grpo::thread_pool pool(4);
    for (int rep = 0; rep < 50; ++rep) {
        std::vector<int> hits(1000, 0);
        pool.run(hits.size(), [&](std::size_t k) { hits[k] += 1; });
        for (int h : hits) REQUIRE(h == 1);
    }
}
