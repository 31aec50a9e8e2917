// SPDX-License-Identifier: MIT
// Log-probs and entropy from logits on the CPU (logprobs_from_logits and its backward), fp32, against memory
// baselines measured in the same run:
//
//   BM_logprobs_forward/<M>/<V>/<threads>    logp, entropy and lse of M rows of V logits (one read)
//   BM_logprobs_backward/<M>/<V>/<threads>   dLoss/dlogits with an entropy bonus, in place (one read, one write)
//   BM_logprobs_step/<M>/<V>/<threads>       forward then in-place backward: what a training step needs
//   BM_stream_read/<M>/<V>/<threads>         one read of the logits (a sum): the forward's floor
//   BM_stream_update/<M>/<V>/<threads>       one read and one write in place (a scale): the backward's floor
// Counters: bytes_per_second counts the logits' bytes once per pass that touches them (forward: M V 4, backward
// and update: 2 M V 4, step: 3 M V 4), so each figure compares directly with its baseline.
// bench/torch_eager_logprobs.py runs torch's log_softmax + gather + entropy + backward on the same shapes and
// prints the ratios.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <vector>

#include <grpo/grpo.hpp>

namespace {

std::unique_ptr<grpo::thread_pool> make_pool(int threads) {
    return threads > 1 ? std::make_unique<grpo::thread_pool>(static_cast<unsigned>(threads)) : nullptr;
}

/// M rows of V logits (a deterministic spread of values in [-8, 8]), sampled tokens and upstream gradients.
struct logits_data {
    grpo::index_t rows, vocab;
    std::vector<float> logits, logp, entropy, g_logp, g_entropy;
    std::vector<double> lse;
    std::vector<std::int64_t> tokens;
    logits_data(grpo::index_t m, grpo::index_t v)
        : rows(m),
          vocab(v),
          logits(static_cast<std::size_t>(m * v)),
          logp(static_cast<std::size_t>(m)),
          entropy(logp.size()),
          g_logp(logp.size(), 1.0f / static_cast<float>(m)),
          g_entropy(logp.size(), -0.01f),
          lse(logp.size()),
          tokens(logp.size()) {
        std::uint32_t x = 12345;
        for (float& f : logits) {
            x = x * 1664525u + 1013904223u;
            f = static_cast<float>(x >> 8) * (16.0f / 16777216.0f) - 8.0f;
        }
        for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<std::int64_t>((i * 7919) % v);
    }
    grpo::logits_inputs<float> in() const {
        grpo::logits_inputs<float> v;
        v.logits = {logits.data(), rows, vocab};
        v.tokens = {tokens.data(), rows};
        return v;
    }
    grpo::logprob_outputs<float> out() {
        grpo::logprob_outputs<float> o;
        o.logp = {logp.data(), rows};
        o.entropy = {entropy.data(), rows};
        o.lse = {lse.data(), rows};
        return o;
    }
    grpo::logprob_grad_inputs<float> grad_in() const {
        grpo::logprob_grad_inputs<float> g;
        g.lse = {lse.data(), rows};
        g.grad_logp = {g_logp.data(), rows};
        g.entropy = {entropy.data(), rows};
        g.grad_entropy = {g_entropy.data(), rows};
        return g;
    }
};

void set_counters(benchmark::State& state, const logits_data& d, double passes) {
    const double bytes = static_cast<double>(d.rows) * static_cast<double>(d.vocab) * sizeof(float);
    state.SetBytesProcessed(static_cast<int64_t>(static_cast<double>(state.iterations()) * bytes * passes));
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * d.rows));
}

void BM_logprobs_forward(benchmark::State& state) {
    logits_data d(state.range(0), state.range(1));
    auto pool = make_pool(static_cast<int>(state.range(2)));
    grpo::workspace ws;
    for (auto _ : state) {
        auto st = grpo::logprobs_from_logits(grpo::exec::host{pool.get()}, d.in(), d.out(), {}, ws);
        benchmark::DoNotOptimize(st);
        benchmark::ClobberMemory();
    }
    set_counters(state, d, 1);
}

void BM_logprobs_backward(benchmark::State& state) {
    logits_data d(state.range(0), state.range(1));
    auto pool = make_pool(static_cast<int>(state.range(2)));
    grpo::workspace ws;
    grpo::logprobs_from_logits(grpo::exec::host{pool.get()}, d.in(), d.out(), {}, ws);
    // In place over a copy that is refreshed outside the timing (the gradient replaces the logits).
    const std::vector<float> pristine = d.logits;
    grpo::logprob_config cfg;
    cfg.checks = grpo::validation::shapes_only; // the step's forward has validated these logits
    for (auto _ : state) {
        state.PauseTiming();
        d.logits = pristine;
        state.ResumeTiming();
        grpo::logprobs_from_logits_backward(grpo::exec::host{pool.get()}, d.in(), d.grad_in(),
                                            grpo::matrix_view<float>(d.logits.data(), d.rows, d.vocab), cfg, ws);
        benchmark::ClobberMemory();
    }
    set_counters(state, d, 2);
}

void BM_logprobs_step(benchmark::State& state) {
    logits_data d(state.range(0), state.range(1));
    auto pool = make_pool(static_cast<int>(state.range(2)));
    grpo::workspace ws;
    const std::vector<float> pristine = d.logits;
    grpo::logprob_config quick;
    quick.checks = grpo::validation::shapes_only;
    for (auto _ : state) {
        state.PauseTiming();
        d.logits = pristine;
        state.ResumeTiming();
        grpo::logprobs_from_logits(grpo::exec::host{pool.get()}, d.in(), d.out(), {}, ws);
        grpo::logprobs_from_logits_backward(grpo::exec::host{pool.get()}, d.in(), d.grad_in(),
                                            grpo::matrix_view<float>(d.logits.data(), d.rows, d.vocab), quick, ws);
        benchmark::ClobberMemory();
    }
    set_counters(state, d, 3);
}

void BM_stream_read(benchmark::State& state) {
    logits_data d(state.range(0), state.range(1));
    auto pool = make_pool(static_cast<int>(state.range(2)));
    std::vector<double> sums(static_cast<std::size_t>(d.rows));
    for (auto _ : state) {
        grpo::detail::parallel_for(grpo::exec::host{pool.get()}, d.rows, 4,
                                   [&](grpo::index_t first, grpo::index_t last) {
                                       for (grpo::index_t i = first; i < last; ++i) {
                                           const float* x = d.logits.data() + i * d.vocab;
                                           float lanes[8] = {};
                                           grpo::index_t j = 0;
                                           for (; j + 8 <= d.vocab; j += 8)
                                               for (int l = 0; l < 8; ++l) lanes[l] += x[j + l];
                                           double s = 0;
                                           for (float v : lanes) s += v;
                                           sums[static_cast<std::size_t>(i)] = s;
                                       }
                                   });
        benchmark::DoNotOptimize(sums.data());
        benchmark::ClobberMemory();
    }
    set_counters(state, d, 1);
}

void BM_stream_update(benchmark::State& state) {
    logits_data d(state.range(0), state.range(1));
    auto pool = make_pool(static_cast<int>(state.range(2)));
    for (auto _ : state) {
        grpo::detail::parallel_for(grpo::exec::host{pool.get()}, d.rows, 4,
                                   [&](grpo::index_t first, grpo::index_t last) {
                                       for (grpo::index_t k = first * d.vocab; k < last * d.vocab; ++k)
                                           d.logits[static_cast<std::size_t>(k)] *= 0.999f;
                                   });
        benchmark::ClobberMemory();
    }
    set_counters(state, d, 2);
}

void shapes(benchmark::internal::Benchmark* b) {
    for (const int threads : {1, 2}) {
        b->Args({4096, 32768, threads});
        b->Args({4096, 151936, threads});
    }
    b->Unit(benchmark::kMillisecond)->UseRealTime();
}

} // namespace

BENCHMARK(BM_logprobs_forward)->Apply(shapes);
BENCHMARK(BM_logprobs_backward)->Apply(shapes);
BENCHMARK(BM_logprobs_step)->Apply(shapes);
BENCHMARK(BM_stream_read)->Apply(shapes);
BENCHMARK(BM_stream_update)->Apply(shapes);
BENCHMARK_MAIN();
