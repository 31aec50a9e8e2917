// SPDX-License-Identifier: MIT
// Log-probs and entropy from hidden states and the LM head on the CPU (logprobs_from_hidden and its backward),
// fp32, without a [M, V] logits buffer:
//
//   BM_hidden_step/<M>/<V>/<H>/<threads>   forward, then the backward into dhidden and dweight (no bias, as
//                                           most LM heads), with an entropy bonus; the default chunk size.
// Counters: gflops (the four products of a step, 4 x 2 M V H flops, per second), workspace_bytes (grpo's scratch)
// and peak_extra_bytes (the process's peak resident memory above what it held once the inputs and gradients were
// allocated: meaningful when the case runs alone in its process, as bench/torch_eager_logprobs.py runs it).
// Built with -mavx2 -mfma where the machine runs them (bench/CMakeLists.txt): Eigen's products use the instruction
// set the compiler targets.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include <grpo/logprobs_hidden.hpp>

namespace {

std::unique_ptr<grpo::thread_pool> make_pool(int threads) {
    return threads > 1 ? std::make_unique<grpo::thread_pool>(static_cast<unsigned>(threads)) : nullptr;
}

/// A line of /proc/self/status ("VmRSS", "VmHWM") in bytes; 0 where there is no /proc.
double status_bytes(const char* key) {
    std::FILE* f = std::fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    double kib = 0;
    const std::size_t n = std::strlen(key);
    while (std::fgets(line, sizeof line, f))
        if (std::strncmp(line, key, n) == 0 && line[n] == ':') {
            std::sscanf(line + n + 1, "%lf", &kib);
            break;
        }
    std::fclose(f);
    return kib * 1024;
}

void BM_hidden_step(benchmark::State& state) {
    const grpo::index_t rows = state.range(0), vocab = state.range(1), width = state.range(2);
    auto pool = make_pool(static_cast<int>(state.range(3)));
    // Hidden states and a head at the scale of a trained model's (logits of a few units).
    std::vector<float> hidden(static_cast<std::size_t>(rows * width)), weight(static_cast<std::size_t>(vocab * width));
    std::uint32_t x = 12345;
    const auto next = [&] {
        x = x * 1664525u + 1013904223u;
        return static_cast<float>(x >> 8) * (2.0f / 16777216.0f) - 1.0f;
    };
    for (float& h : hidden) h = next();
    for (float& w : weight) w = next() * 0.1f;
    std::vector<std::int64_t> tokens(static_cast<std::size_t>(rows));
    for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<std::int64_t>((i * 7919) % vocab);
    std::vector<float> logp(tokens.size()), entropy(tokens.size()), g_logp(tokens.size(), 1.0f / rows),
        g_entropy(tokens.size(), -0.01f);
    std::vector<double> lse(tokens.size());
    std::vector<float> d_hidden(hidden.size()), d_weight(weight.size());
    grpo::hidden_inputs<float> in;
    in.hidden = {hidden.data(), rows, width};
    in.weight = {weight.data(), vocab, width};
    in.tokens = {tokens.data(), rows};
    grpo::logprob_outputs<float> out;
    out.logp = {logp.data(), rows};
    out.entropy = {entropy.data(), rows};
    out.lse = {lse.data(), rows};
    grpo::logprob_grad_inputs<float> g;
    g.lse = {lse.data(), rows};
    g.grad_logp = {g_logp.data(), rows};
    g.entropy = {entropy.data(), rows};
    g.grad_entropy = {g_entropy.data(), rows};
    grpo::hidden_grads<float> grads;
    grads.hidden = {d_hidden.data(), rows, width};
    grads.weight = {d_weight.data(), vocab, width};
    grpo::hidden_logprob_config cfg;
    grpo::hidden_logprob_config quick = cfg;
    quick.checks = grpo::validation::shapes_only; // the step's forward has validated these inputs
    grpo::workspace ws;
    const double resident = status_bytes("VmRSS");
    for (auto _ : state) {
        auto st = grpo::logprobs_from_hidden(grpo::exec::host{pool.get()}, in, out, cfg, ws);
        grpo::logprobs_from_hidden_backward(grpo::exec::host{pool.get()}, in, g, grads, quick, ws);
        benchmark::DoNotOptimize(st);
        benchmark::ClobberMemory();
    }
    const double flops = 8.0 * static_cast<double>(rows) * static_cast<double>(vocab) * static_cast<double>(width);
    state.counters["gflops"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["workspace_bytes"] = static_cast<double>(ws.capacity_doubles() * sizeof(double));
    state.counters["peak_extra_bytes"] = status_bytes("VmHWM") - resident;
}

void shapes(benchmark::internal::Benchmark* b) {
    for (const int threads : {1, 2}) {
        b->Args({4096, 32768, 1024, threads});
        b->Args({4096, 151936, 1024, threads});
        b->Args({512, 32768, 1024, threads}); // a quick case
    }
    b->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
}

} // namespace

BENCHMARK(BM_hidden_step)->Apply(shapes);
BENCHMARK_MAIN();
