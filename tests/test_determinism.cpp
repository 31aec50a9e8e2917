// SPDX-License-Identifier: MIT
// Bit-identical results for every thread count and on every run.
#include <cstring>
#include <vector>

#include "catch.hpp"
#include "loss_catalogue.hpp"
#include "test_helpers.hpp"

namespace {
bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }
} // namespace

TEMPLATE_TEST_CASE("loss, statistics and gradient are bit-identical for 1..7 threads", "[loss][determinism]", float,
                   double) {
    for (const auto& var : grpo_test::loss_catalogue()) {
        for (auto level : {grpo::ratio_level::token, grpo::ratio_level::sequence}) {
            if (!var.allows(level)) continue;
            INFO(var.name << ", level " << static_cast<int>(level));
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

TEMPLATE_TEST_CASE("the AVX2 version of the row pass is bit-identical to the baseline", "[loss][determinism]", float,
                   double) {
    INFO("this CPU " << (grpo::detail::cpu::cpu_has_avx2() ? "has" : "lacks")
                     << " AVX2; dispatch compiled in: " << GRPO_CPU_AVX2_DISPATCH);
    std::vector<grpo::loss_config> configs{grpo::loss_config::deepseekmath(), grpo::loss_config::gspo()};
    for (const auto& var : grpo_test::loss_catalogue()) configs.push_back(var.cfg);
    for (const grpo::loss_config& cfg : configs) {
        for (bool per_token_adv : {true, false}) {
            grpo_test::batch<TestType> a(9, 1031, 5), b(9, 1031, 5); // 1031: a vector tail in every row
            grpo::detail::cpu::cpu_dispatch_enabled() = false;
            const auto base = grpo::loss_and_grad(grpo::exec::host{}, a.inputs(per_token_adv), a.outputs(), cfg);
            grpo::detail::cpu::cpu_dispatch_enabled() = true;
            const auto fast = grpo::loss_and_grad(grpo::exec::host{}, b.inputs(per_token_adv), b.outputs(), cfg);
            CHECK(same_bits(fast.loss, base.loss));
            CHECK(same_bits(fast.kl_mean, base.kl_mean));
            CHECK(same_bits(fast.ratio_mean, base.ratio_mean));
            CHECK(same_bits(fast.ratio_max, base.ratio_max));
            CHECK(same_bits(fast.clip_fraction_region, base.clip_fraction_region));
            CHECK(std::memcmp(a.grad.data(), b.grad.data(), a.grad.size() * sizeof(TestType)) == 0);
            CHECK(std::memcmp(a.per_token.data(), b.per_token.data(), a.per_token.size() * sizeof(TestType)) == 0);
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

TEST_CASE("the thread pool runs every task exactly once", "[exec]") {
    grpo::thread_pool pool(4);
    for (int rep = 0; rep < 50; ++rep) {
        std::vector<int> hits(1000, 0);
        pool.run(hits.size(), [&](std::size_t k) { hits[k] += 1; });
        for (int h : hits) REQUIRE(h == 1);
    }
}
