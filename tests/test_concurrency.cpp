// SPDX-License-Identifier: MIT
// The concurrency contract (README "Threads"): a thread_pool may be shared by any number of threads, a workspace
// serves one call at a time and refuses a second with errc::in_use, a trainer steps on one thread at a time, a
// metrics_logger takes values from any thread.
// These tests hammer that from 4 to 8 threads; CI also runs them under ThreadSanitizer.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "test_helpers.hpp"

namespace {

// 32 x 2048 tokens: the CPU backend splits this into 4 row blocks (row_grain), so a pool really runs it in parallel.
constexpr grpo::index_t rows = 32, cols = 2048;

/// The reference result of one loss call, computed alone on the calling thread.
struct reference_call {
    grpo_test::batch<float> b;
    grpo::loss_stats st;
    std::vector<float> grad;
    explicit reference_call(std::uint64_t seed) : b(rows, cols, seed) {
        st = grpo::loss_and_grad(grpo::exec::host{}, b.inputs(), b.outputs(), grpo::loss_config::deepseekmath());
        grad = b.grad;
    }
};

bool same(const grpo::loss_stats& a, const grpo::loss_stats& b) {
    return a.loss == b.loss && a.policy_loss == b.policy_loss && a.kl_loss == b.kl_loss &&
           a.token_count == b.token_count && a.clip_fraction_region == b.clip_fraction_region &&
           a.ratio_min == b.ratio_min && a.ratio_max == b.ratio_max;
}

} // namespace

TEST_CASE("one thread_pool shared by several threads: every call correct, no hang", "[concurrency]") {
    for (unsigned callers : {4u, 8u}) {
        grpo::thread_pool pool(3);
        std::vector<reference_call> refs;
        for (unsigned c = 0; c < callers; ++c) refs.emplace_back(100 + c);
        std::atomic<int> wrong{0};
        std::vector<std::thread> threads;
        for (unsigned c = 0; c < callers; ++c)
            threads.emplace_back([&, c] {
                grpo_test::batch<float> mine(rows, cols, 100 + c); // own inputs and outputs, own workspace
                grpo::workspace ws;
                for (int k = 0; k < 20; ++k) {
                    const grpo::loss_stats st = grpo::loss_and_grad(
                        grpo::exec::host{&pool}, mine.inputs(), mine.outputs(), grpo::loss_config::deepseekmath(), ws);
                    if (!same(st, refs[c].st) || mine.grad != refs[c].grad) ++wrong;
                }
            });
        for (auto& t : threads) t.join();
        CHECK(wrong.load() == 0);
    }
}

TEST_CASE("a nested run() on the same pool runs inline instead of deadlocking", "[concurrency]") {
    grpo::thread_pool pool(3);
    std::vector<std::atomic<int>> hits(64);
    for (auto& h : hits) h = 0;
    pool.run(8, [&](std::size_t k) { pool.run(8, [&](std::size_t j) { hits[k * 8 + j].fetch_add(1); }); });
    for (auto& h : hits) CHECK(h.load() == 1);
}

TEST_CASE("one workspace shared by several threads: each call is correct or refused with in_use", "[concurrency]") {
    for (unsigned callers : {4u, 8u}) {
        grpo::workspace shared;
        std::vector<reference_call> refs;
        for (unsigned c = 0; c < callers; ++c) refs.emplace_back(200 + c);
        std::atomic<int> wrong{0}, refused{0}, done{0};
        std::vector<std::thread> threads;
        for (unsigned c = 0; c < callers; ++c)
            threads.emplace_back([&, c] {
                grpo_test::batch<float> mine(rows, cols, 200 + c);
                for (int k = 0; k < 30; ++k) {
                    try {
                        const grpo::loss_stats st =
                            grpo::loss_and_grad(grpo::exec::host{}, mine.inputs(), mine.outputs(),
                                                grpo::loss_config::deepseekmath(), shared);
                        if (!same(st, refs[c].st) || mine.grad != refs[c].grad) ++wrong;
                        ++done;
                    } catch (const grpo::error& e) {
                        if (e.code() != grpo::errc::in_use) ++wrong;
                        ++refused;
                    }
                }
            });
        for (auto& t : threads) t.join();
        CHECK(wrong.load() == 0);
        CHECK(done.load() + refused.load() == static_cast<int>(30 * callers));
        CHECK_FALSE(shared.in_use());
        INFO("refused " << refused.load() << " of " << 30 * callers);
        CHECK(done.load() > 0);
    }
}

TEST_CASE("advantages on a shared workspace: correct or refused", "[concurrency]") {
    grpo::workspace shared;
    std::vector<double> rewards(64);
    for (std::size_t i = 0; i < rewards.size(); ++i) rewards[i] = double((i * 7) % 5);
    std::vector<double> expected(64);
    grpo::compute_advantages(grpo::exec::host{}, grpo::vector_view<const double>(rewards.data(), 64),
                             grpo::groups::contiguous(8), grpo::vector_view<double>(expected.data(), 64));
    std::atomic<int> wrong{0};
    std::vector<std::thread> threads;
    for (int c = 0; c < 6; ++c)
        threads.emplace_back([&] {
            std::vector<double> a(64);
            for (int k = 0; k < 200; ++k) {
                try {
                    grpo::compute_advantages(grpo::exec::host{}, grpo::vector_view<const double>(rewards.data(), 64),
                                             grpo::groups::contiguous(8), grpo::vector_view<double>(a.data(), 64),
                                             grpo::advantage_config{}, shared);
                    if (a != expected) ++wrong;
                } catch (const grpo::error& e) {
                    if (e.code() != grpo::errc::in_use) ++wrong;
                }
            }
        });
    for (auto& t : threads) t.join();
    CHECK(wrong.load() == 0);
}

TEST_CASE("one metrics_logger shared by several threads: every value in its step's record", "[concurrency][metrics]") {
    struct keep_all : grpo::metrics_sink {
        std::vector<grpo::metric_record>* out;
        explicit keep_all(std::vector<grpo::metric_record>* o) : out(o) {}
        void write(const grpo::metric_record& r) override { out->push_back(r); } // the logger serializes writes
    };
    std::vector<grpo::metric_record> got;
    constexpr int threads = 6, steps = 20, names = 25;
    {
        grpo::metrics_logger log;
        log.add_sink(std::make_unique<keep_all>(&got));
        for (int s = 1; s <= steps; ++s) {
            // Every thread logs its names into step s while another flushes; then step s is complete.
            std::atomic<int> failures{0};
            std::vector<std::thread> pool;
            for (int t = 0; t < threads; ++t)
                pool.emplace_back([&, t] {
                    for (int k = 0; k < names; ++k) {
                        try {
                            log.log(s, "t" + std::to_string(t) + "/" + std::to_string(k), s * 1000.0 + t * 100 + k);
                            if (t == 0 && k % 5 == 0) log.flush();
                        } catch (const grpo::error&) {
                            failures.fetch_add(1);
                        }
                    }
                });
            for (auto& th : pool) th.join();
            REQUIRE(failures.load() == 0);
        }
    }
    // Flushes split a step into several records of the same step; together they hold every value once.
    std::vector<int> seen(static_cast<std::size_t>((steps + 1) * threads * names), 0);
    grpo::index_t last = 0;
    for (const auto& r : got) {
        CHECK(r.step >= last);
        last = r.step;
        for (const auto& nv : r.values) {
            const auto v = static_cast<int>(nv.second);
            const int s = v / 1000, t = v % 1000 / 100, k = v % 100;
            CHECK(s == r.step);
            CHECK(nv.first == "t" + std::to_string(t) + "/" + std::to_string(k));
            seen[static_cast<std::size_t>((s * threads + t) * names + k)] += 1;
        }
    }
    for (int s = 1; s <= steps; ++s)
        for (int i = 0; i < threads * names; ++i) CHECK(seen[static_cast<std::size_t>(s * threads * names + i)] == 1);
}
