// SPDX-License-Identifier: MIT
// compute_advantages at scale (10^6 completions), on 1 and 2 threads, against a bandwidth baseline in the same run.
//
//   BM_compute_advantages/<estimator>/<groups>/<threads>   one call over 10^6 fp32 rewards, groups of 16;
//                                                          <groups> 0: groups::contiguous(16), 1: groups::by_id
//                                                          (ids shuffled); estimators: advantage_bench_estimator()
//   BM_advantage_stream_baseline/<threads>                 reads the rewards and the ids, writes the advantages
//                                                          (the bytes a single pass would move)
// Counters: completions/s ("items_per_second") and bytes/s ("bytes_per_second"), 16 bytes per completion (fp32
// reward read, int64 id read, fp32 advantage written; contiguous groups read no id but are counted the same, so
// the rates compare).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include <grpo/grpo.hpp>

namespace {

constexpr grpo::index_t completions = 1000000, group_size = 16;
constexpr double bytes_per_completion = sizeof(float) + sizeof(std::int64_t) + sizeof(float);

grpo::advantage_estimator advantage_bench_estimator(int k) {
    switch (k) {
    case 0: return grpo::advantage_estimator::group_zscore; // TRL / verl GRPO
    case 1: return grpo::advantage_estimator::rloo;
    case 2: return grpo::advantage_estimator::group_centered_batch_whitened; // verl reinforce_plus_plus_baseline
    case 3: return grpo::advantage_estimator::passk;
    default: return grpo::advantage_estimator::group_centered; // Dr. GRPO
    }
}

struct advantage_data {
    std::vector<float> rewards, advantages;
    std::vector<std::int64_t> ids;
    std::vector<double> weights;
    advantage_data() : rewards(completions), advantages(completions), ids(completions), weights(completions) {
        std::mt19937 gen(7);
        std::bernoulli_distribution correct(0.4);
        std::uniform_int_distribution<int> length(20, 4000);
        for (grpo::index_t i = 0; i < completions; ++i) {
            rewards[i] = correct(gen) ? 1.0f : 0.0f; // verifiable rewards
            weights[i] = length(gen);
            ids[i] = i / group_size;
        }
        std::shuffle(ids.begin(), ids.end(), gen); // by_id: each group's rows spread over the batch
    }
};

std::unique_ptr<grpo::thread_pool> make_pool(int threads) {
    return threads > 1 ? std::make_unique<grpo::thread_pool>(static_cast<unsigned>(threads)) : nullptr;
}

void set_counters(benchmark::State& state) {
    const double n = static_cast<double>(completions);
    state.SetItemsProcessed(static_cast<int64_t>(static_cast<double>(state.iterations()) * n));
    state.SetBytesProcessed(static_cast<int64_t>(static_cast<double>(state.iterations()) * n * bytes_per_completion));
}

void BM_compute_advantages(benchmark::State& state) {
    static advantage_data d;
    auto pool = make_pool(static_cast<int>(state.range(2)));
    const grpo::exec::host ex{pool.get()};
    grpo::advantage_config cfg;
    cfg.estimator = advantage_bench_estimator(static_cast<int>(state.range(0)));
    const grpo::groups g = state.range(1) == 0 ? grpo::groups::contiguous(group_size)
                                               : grpo::groups::by_id(grpo::vector_view<const std::int64_t>(d.ids),
                                                                     completions / group_size);
    const grpo::vector_view<const double> weights =
        cfg.estimator == grpo::advantage_estimator::group_centered_batch_whitened
            ? grpo::vector_view<const double>(d.weights)
            : grpo::vector_view<const double>{};
    grpo::workspace ws;
    for (auto _ : state) {
        auto st = grpo::compute_advantages(ex, grpo::vector_view<const float>(d.rewards), g,
                                           grpo::vector_view<float>(d.advantages), cfg, ws, {}, weights);
        benchmark::DoNotOptimize(st);
        benchmark::ClobberMemory();
    }
    set_counters(state);
}

void BM_advantage_stream_baseline(benchmark::State& state) {
    static advantage_data d;
    auto pool = make_pool(static_cast<int>(state.range(0)));
    const grpo::exec::host ex{pool.get()};
    const float* r = d.rewards.data();
    const std::int64_t* id = d.ids.data();
    float* a = d.advantages.data();
    for (auto _ : state) {
        grpo::detail::parallel_for(ex, completions, 65536, [&](grpo::index_t first, grpo::index_t last) {
            for (grpo::index_t i = first; i < last; ++i) a[i] = r[i] + static_cast<float>(id[i] & 1);
        });
        benchmark::ClobberMemory();
    }
    set_counters(state);
}

} // namespace

BENCHMARK(BM_compute_advantages)
    ->ArgsProduct({{0, 1, 2, 3, 4}, {0, 1}, {1, 2}})
    ->ArgNames({"estimator", "by_id", "threads"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_advantage_stream_baseline)
    ->ArgsProduct({{1, 2}})
    ->ArgNames({"threads"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
