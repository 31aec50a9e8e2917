// SPDX-License-Identifier: MIT
// Loss+gradient throughput of the CPU backend, against a memory-bandwidth baseline measured in the same run.
//
//   BM_loss_and_grad/<rows>/<cols>/<threads>/<full validation>  fused pass, fp32, beta = 0.04, mask, old + ref
//   BM_loss_and_grad_config/<preset>                            one configuration each (see preset())
//   BM_peer_config/<config>/<rows>/<cols>/<threads>              TRL's (0), verl's (1) and DeepSeekMath's (2)
//                                                               defaults (peer_config()) on both shapes
//   BM_cpu_version/<config>/<rows>/<cols>/<threads>/<version>   BM_peer_config in one version of the row pass:
//                                                               0 baseline, 2 AVX2 + FMA, 3 AVX-512 + FMA
//   BM_stream_baseline/<rows>/<cols>/<threads>                  reads the same 4 arrays, writes 1: the
//                                                               machine's attainable bandwidth for this pattern
// Counters: tokens/s ("items_per_second") and bytes/s ("bytes_per_second"), 20 bytes per token in fp32
// (logp, old_logp, ref_logp, mask read; gradient written; the per-completion advantage is negligible).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <vector>

#include <grpo/grpo.hpp>

#include "loss_data.hpp"

namespace {

using data = grpo_bench::loss_data;

constexpr double bytes_per_token = 5 * sizeof(float);

std::unique_ptr<grpo::thread_pool> make_pool(int threads) {
    return threads > 1 ? std::make_unique<grpo::thread_pool>(static_cast<unsigned>(threads)) : nullptr;
}

/// The fused pass over `d` with `cfg` for as long as the benchmark runs; counters in tokens and bytes.
void run_loss(benchmark::State& state, data& d, const grpo::loss_config& cfg, const grpo::exec::host& ex) {
    grpo::loss_inputs<float> in;
    in.logp = {d.logp.data(), d.rows, d.cols};
    in.old_logp = {d.old_logp.data(), d.rows, d.cols};
    in.ref_logp = {d.ref_logp.data(), d.rows, d.cols};
    in.mask = {d.mask.data(), d.rows, d.cols};
    in.advantages = grpo::broadcast_to_tokens(grpo::vector_view<const float>(d.adv.data(), d.rows), d.cols);
    grpo::loss_outputs<float> out;
    out.grad_logp = {d.grad.data(), d.rows, d.cols};
    grpo::workspace ws;
    for (auto _ : state) {
        auto st = grpo::loss_and_grad(ex, in, out, cfg, ws);
        benchmark::DoNotOptimize(st);
        benchmark::ClobberMemory();
    }
    const double tokens = static_cast<double>(d.rows * d.cols);
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * tokens));
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * tokens * bytes_per_token));
}

void BM_loss_and_grad(benchmark::State& state) {
    data d(state.range(0), state.range(1));
    auto pool = make_pool(static_cast<int>(state.range(2)));
    grpo::loss_config cfg = grpo::loss_config::deepseekmath(); // beta 0.04, k3, seq-mean-token-mean
    cfg.checks = state.range(3) ? grpo::validation::full : grpo::validation::shapes_only;
    run_loss(state, d, cfg, grpo::exec::host{pool.get()});
}

/// The configurations users run, by index: the fused pass on 64 x 4096 fp32 tokens, one thread, shapes_only.
grpo::loss_config preset(int k) {
    grpo::loss_config c;
    switch (k) {
    case 0: c = grpo::loss_config::deepseekmath(); break; // ppo_clip, k3 (beta 0.04): the plain instantiation
    case 1: c = grpo::loss_config::trl(); break;          // ppo_clip, no KL: plain
    case 2:
        c = grpo::loss_config::verl();
        c.beta = 0.001;
        break;                                    // dual clip, clamps, low_var_kl: general
    case 3: c = grpo::loss_config::gspo(); break; // sequence-level ratio
    case 4: c = grpo::loss_config::cispo(); break;
    case 5: c = grpo::loss_config::sapo(); break;
    case 6: c = grpo::loss_config::gpg(); break;
    default: break;
    }
    c.checks = grpo::validation::shapes_only;
    return c;
}

void BM_loss_and_grad_config(benchmark::State& state) {
    data d(64, 4096);
    run_loss(state, d, preset(static_cast<int>(state.range(0))), grpo::exec::host{});
}

/// The defaults of the three peers whose users this library serves, as bench/torch_eager.py --peer-configs writes
/// them in eager PyTorch: 0 TRL (ppo_clip, token mean, no KL), 1 verl (dual clip 3, log-ratio clamp 20,
/// low_var_kl with its clamps at verl's kl_loss_coef 0.001, token mean), 2 DeepSeekMath (k3, beta 0.04, per-sequence
/// token mean). shapes_only validation, fp32.
grpo::loss_config peer_config(int k) {
    grpo::loss_config c = k == 0   ? grpo::loss_config::trl()
                          : k == 1 ? grpo::loss_config::verl()
                                   : grpo::loss_config::deepseekmath();
    if (k == 1) c.beta = 0.001;
    c.checks = grpo::validation::shapes_only;
    return c;
}

void BM_peer_config(benchmark::State& state) {
    data d(state.range(1), state.range(2));
    auto pool = make_pool(static_cast<int>(state.range(3)));
    run_loss(state, d, peer_config(static_cast<int>(state.range(0))), grpo::exec::host{pool.get()});
}

/// BM_peer_config limited to one version of the row pass (backend/cpu/dispatch.hpp): 0 the build's target,
/// 2 AVX2 + FMA, 3 AVX-512 + FMA; skipped where the CPU lacks it.
void BM_cpu_version(benchmark::State& state) {
    using grpo::detail::cpu::cpu_version;
    const auto version = static_cast<cpu_version>(state.range(4));
    if (static_cast<int>(version) > static_cast<int>(grpo::detail::cpu::cpu_best_version())) {
        state.SkipWithError("this CPU lacks the version");
        return;
    }
    grpo::detail::cpu::cpu_version_limit() = version;
    BM_peer_config(state);
    grpo::detail::cpu::cpu_version_limit() = cpu_version::avx512;
}

void BM_stream_baseline(benchmark::State& state) {
    data d(state.range(0), state.range(1));
    auto pool = make_pool(static_cast<int>(state.range(2)));
    grpo::exec::host ex{pool.get()};
    const grpo::index_t n = d.rows * d.cols;
    for (auto _ : state) {
        grpo::detail::parallel_for(ex, d.rows, 4, [&](grpo::index_t first, grpo::index_t last) {
            for (grpo::index_t k = first * d.cols; k < last * d.cols; ++k)
                d.grad[k] = d.logp[k] + d.old_logp[k] + d.ref_logp[k] + d.mask[k];
        });
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n * bytes_per_token));
}

void shapes(benchmark::internal::Benchmark* b, bool with_validation) {
    for (auto shape : {std::pair<int, int>{64, 4096}, {512, 8192}})
        for (int threads : {1, 2}) {
            if (with_validation)
                for (int full : {0, 1}) b->Args({shape.first, shape.second, threads, full});
            else b->Args({shape.first, shape.second, threads});
        }
    b->Unit(benchmark::kMillisecond)->UseRealTime();
}

} // namespace

BENCHMARK(BM_loss_and_grad)->Apply([](benchmark::internal::Benchmark* b) { shapes(b, true); });
// A small call (8 x 64 tokens), where per-call costs (argument checks, the workspace's in-use flag, the pool
// hand-off) are visible next to the token work.
BENCHMARK(BM_loss_and_grad)->Args({8, 64, 1, 0})->Args({8, 64, 1, 1})->Unit(benchmark::kMicrosecond)->UseRealTime();
// One configuration each (see preset): 0 deepseekmath, 1 trl, 2 verl + KL, 3 gspo, 4 cispo, 5 sapo, 6 gpg.
BENCHMARK(BM_loss_and_grad_config)->DenseRange(0, 6)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_peer_config)->Apply([](benchmark::internal::Benchmark* b) {
    for (int config : {0, 1, 2})
        for (auto shape : {std::pair<int, int>{64, 4096}, {512, 8192}})
            for (int threads : {1, 2}) b->Args({config, shape.first, shape.second, threads});
    b->Unit(benchmark::kMillisecond)->UseRealTime();
});
BENCHMARK(BM_cpu_version)->Apply([](benchmark::internal::Benchmark* b) {
    for (int config : {0, 1, 2})
        for (int threads : {1, 2})
            for (int version : {0, 2, 3}) b->Args({config, 512, 8192, threads, version});
    b->Unit(benchmark::kMillisecond)->UseRealTime();
});
BENCHMARK(BM_stream_baseline)->Apply([](benchmark::internal::Benchmark* b) { shapes(b, false); });
BENCHMARK_MAIN();
