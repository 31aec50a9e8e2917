// SPDX-License-Identifier: MIT
// Bit-identical results for every thread count and on every run.
#include <cstring>
#include <vector>

#include "catch.hpp"
#include "test_helpers.hpp"

namespace {
bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }
} // namespace

TEMPLATE_TEST_CASE("loss, statistics and gradient are bit-identical for 1..7 threads", "[loss][determinism]", float,
                   double) {
    for (auto level : {grpo::ratio_level::token, grpo::ratio_level::sequence}) {
        grpo::loss_config cfg;
        cfg.beta = 0.04;
        cfg.ratio = level;
        cfg.agg = grpo::aggregation::seq_mean_token_mean;
        grpo_test::batch<TestType> ref(67, 301, 3);
        grpo::workspace ws;
        const auto base = grpo::loss_and_grad(grpo::exec::host{}, ref.inputs(true, true, true, true), ref.outputs(), cfg, ws);
        for (unsigned threads : {2u, 3u, 4u, 7u}) {
            grpo::thread_pool pool(threads);
            for (int run = 0; run < 2; ++run) {
                grpo_test::batch<TestType> b(67, 301, 3);
                const auto st = grpo::loss_and_grad(grpo::exec::host{&pool}, b.inputs(true, true, true, true), b.outputs(), cfg, ws);
                CHECK(same_bits(st.loss, base.loss));
                CHECK(same_bits(st.kl_mean, base.kl_mean));
                CHECK(same_bits(st.ratio_mean, base.ratio_mean));
                CHECK(same_bits(st.clip_fraction_region, base.clip_fraction_region));
                CHECK(std::memcmp(b.grad.data(), ref.grad.data(), b.grad.size() * sizeof(TestType)) == 0);
                CHECK(std::memcmp(b.per_token.data(), ref.per_token.data(), b.per_token.size() * sizeof(TestType)) == 0);
            }
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
