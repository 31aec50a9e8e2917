// SPDX-License-Identifier: MIT
// A/B timing of the fused CPU loss pass: bench/compare_revisions.sh compiles this one source against the include/
// tree of two revisions and runs both. Only presets that every 0.x revision has (64 x 4096 fp32 tokens, 10%
// padding, one advantage per row, one thread, validation::shapes_only, as BM_loss_and_grad_config).
#include <benchmark/benchmark.h>

#include <grpo/grpo.hpp>

#include "loss_data.hpp"
namespace {
using data = grpo_bench::loss_data;
grpo::loss_config preset(int k) {
    grpo::loss_config c;
    switch (k) {
    case 0: c = grpo::loss_config::deepseekmath(); break;
    case 1: c = grpo::loss_config::trl(); break;
    case 2:
        c = grpo::loss_config::verl();
        c.beta = 0.001;
        break;
    case 3: c = grpo::loss_config::gspo(); break;
    }
    c.checks = grpo::validation::shapes_only;
    return c;
}
void BM_config(benchmark::State& state) {
    data d(64, 4096);
    grpo::loss_inputs<float> in;
    in.logp = {d.logp.data(), d.rows, d.cols};
    in.old_logp = {d.old_logp.data(), d.rows, d.cols};
    in.ref_logp = {d.ref_logp.data(), d.rows, d.cols};
    in.mask = {d.mask.data(), d.rows, d.cols};
    in.advantages = grpo::broadcast_to_tokens(grpo::vector_view<const float>(d.adv.data(), d.rows), d.cols);
    grpo::loss_outputs<float> out;
    out.grad_logp = {d.grad.data(), d.rows, d.cols};
    grpo::workspace ws;
    const grpo::loss_config cfg = preset(static_cast<int>(state.range(0)));
    for (auto _ : state) {
        auto st = grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg, ws);
        benchmark::DoNotOptimize(st);
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * d.rows * d.cols));
}
} // namespace
BENCHMARK(BM_config)->DenseRange(0, 3)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_MAIN();
