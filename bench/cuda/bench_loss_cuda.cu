// SPDX-License-Identifier: MIT
// Fused loss + gradient on device, timed with CUDA events (UseManualTime). Reports bytes/s over the bytes
// the pass must move: logp, old_logp, advantages (per token), mask read; grad_logp written.
// The 1024x16384 case runs in fp32 and in bf16 (fp32 math, bf16 loads/stores).
//
// Advantages: one value per completion (row), so they are sized by rows: 64 and 512 rows (the row counts
// of the 64x4096 and 512x8192 loss shapes: one training step's completions) and 65536 / 1048576 rows to see
// the throughput once launch latency no longer dominates. Groups of G = 16 (the last arg is 1 for id-based
// groups: ids scattered over the batch, which adds the radix sort). bytes/s counts rewards read and
// advantages written (+ the int64 ids for id-based groups); the small-row cases are latency-bound.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <vector>

#include <grpo/cuda.cuh>

namespace {

bool have_gpu() {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

template <class T>
void bm_loss(benchmark::State& state) {
    if (!have_gpu()) {
        state.SkipWithError("no CUDA device");
        for (auto _ : state) {
        }
        return;
    }
    const grpo::index_t rows = state.range(0), cols = state.range(1);
    const std::size_t n = static_cast<std::size_t>(rows * cols);
    std::vector<T> h(n);
    for (std::size_t k = 0; k < n; ++k) h[k] = T(static_cast<float>(-1.0 - 0.001 * double(k % 997)));
    std::vector<T> ones(n, T(1.0f));
    T *lp, *old, *adv, *mask, *grad;
    cudaMalloc(&lp, n * sizeof(T));
    cudaMalloc(&old, n * sizeof(T));
    cudaMalloc(&adv, n * sizeof(T));
    cudaMalloc(&mask, n * sizeof(T));
    cudaMalloc(&grad, n * sizeof(T));
    cudaMemcpy(lp, h.data(), n * sizeof(T), cudaMemcpyHostToDevice);
    cudaMemcpy(old, h.data(), n * sizeof(T), cudaMemcpyHostToDevice);
    cudaMemcpy(adv, ones.data(), n * sizeof(T), cudaMemcpyHostToDevice);
    cudaMemcpy(mask, ones.data(), n * sizeof(T), cudaMemcpyHostToDevice);
    using CV = grpo::matrix_view<const T, grpo::device_space>;
    grpo::loss_inputs<T, grpo::device_space> in{CV(lp, rows, cols), CV(old, rows, cols), CV(),
                                                CV(adv, rows, cols), CV(mask, rows, cols), {}};
    grpo::loss_outputs<T, grpo::device_space> out{grpo::matrix_view<T, grpo::device_space>(grad, rows, cols), {}};
    grpo::cuda_workspace ws;
    double* d_stats = ws.doubles(grpo::cuda_workspace::loss_doubles(rows));
    double* stats = nullptr;
    cudaMalloc(&stats, grpo::loss_stats_doubles * sizeof(double));
    (void)d_stats;
    cudaStream_t stream;
    cudaStreamCreate(&stream);
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    const grpo::loss_config cfg{};
    for (auto _ : state) {
        cudaEventRecord(start, stream);
        grpo::loss_and_grad(grpo::exec::cuda{stream}, in, out, cfg, ws, stats);
        cudaEventRecord(stop, stream);
        cudaEventSynchronize(stop);
        float ms = 0;
        cudaEventElapsedTime(&ms, start, stop);
        state.SetIterationTime(ms / 1e3);
    }
    const double bytes = 5.0 * double(n) * sizeof(T);
    state.counters["bytes/s"] = benchmark::Counter(bytes * double(state.iterations()), benchmark::Counter::kIsRate);
    state.counters["tokens/s"] = benchmark::Counter(double(n) * double(state.iterations()), benchmark::Counter::kIsRate);
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    cudaStreamDestroy(stream);
    cudaFree(stats);
    cudaFree(lp);
    cudaFree(old);
    cudaFree(adv);
    cudaFree(mask);
    cudaFree(grad);
}

template <class T>
void bm_advantages(benchmark::State& state) {
    if (!have_gpu()) {
        state.SkipWithError("no CUDA device");
        for (auto _ : state) {
        }
        return;
    }
    const grpo::index_t rows = state.range(0), G = state.range(1);
    const bool by_id = state.range(2) != 0;
    const grpo::index_t k = rows / G;
    const std::size_t n = static_cast<std::size_t>(rows);
    std::vector<T> h(n);
    std::vector<std::int64_t> ids(n);
    for (std::size_t i = 0; i < n; ++i) {
        h[i] = T((i * 2654435761u) % 7 < 3 ? 1.0 : 0.25 * double(i % 5));
        ids[i] = static_cast<std::int64_t>((i * 7919u) % static_cast<std::size_t>(k)); // scattered, G per group
    }
    T *rewards, *adv;
    std::int64_t* d_ids;
    double* stats;
    cudaMalloc(&rewards, n * sizeof(T));
    cudaMalloc(&adv, n * sizeof(T));
    cudaMalloc(&d_ids, n * sizeof(std::int64_t));
    cudaMalloc(&stats, grpo::advantage_stats_doubles * sizeof(double));
    cudaMemcpy(rewards, h.data(), n * sizeof(T), cudaMemcpyHostToDevice);
    cudaMemcpy(d_ids, ids.data(), n * sizeof(std::int64_t), cudaMemcpyHostToDevice);
    const grpo::vector_view<const T, grpo::device_space> r(rewards, rows);
    const grpo::vector_view<T, grpo::device_space> a(adv, rows);
    const grpo::device_groups g =
        by_id ? grpo::device_groups::by_id(grpo::vector_view<const std::int64_t, grpo::device_space>(d_ids, rows), k)
              : grpo::device_groups::contiguous(G);
    grpo::cuda_workspace ws;
    ws.doubles(grpo::cuda_workspace::advantage_doubles(rows, k, by_id)); // no allocation in the timed loop
    cudaStream_t stream;
    cudaStreamCreate(&stream);
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    const grpo::advantage_config cfg = grpo::advantage_config::trl();
    for (auto _ : state) {
        cudaEventRecord(start, stream);
        grpo::compute_advantages(grpo::exec::cuda{stream}, r, g, a, cfg, ws, stats);
        cudaEventRecord(stop, stream);
        cudaEventSynchronize(stop);
        float ms = 0;
        cudaEventElapsedTime(&ms, start, stop);
        state.SetIterationTime(ms / 1e3);
    }
    const double bytes = 2.0 * double(n) * sizeof(T) + (by_id ? double(n) * sizeof(std::int64_t) : 0.0);
    state.counters["bytes/s"] = benchmark::Counter(bytes * double(state.iterations()), benchmark::Counter::kIsRate);
    state.counters["rows/s"] = benchmark::Counter(double(n) * double(state.iterations()), benchmark::Counter::kIsRate);
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    cudaStreamDestroy(stream);
    cudaFree(stats);
    cudaFree(d_ids);
    cudaFree(adv);
    cudaFree(rewards);
}

} // namespace

BENCHMARK_TEMPLATE(bm_loss, float)->Args({64, 4096})->Args({512, 8192})->Args({1024, 16384})->UseManualTime();
BENCHMARK_TEMPLATE(bm_loss, double)->Args({64, 4096})->Args({512, 8192})->UseManualTime();
BENCHMARK_TEMPLATE(bm_loss, __nv_bfloat16)->Args({1024, 16384})->UseManualTime();
BENCHMARK_TEMPLATE(bm_advantages, float)
    ->ArgNames({"rows", "G", "by_id"})
    ->Args({64, 16, 0})
    ->Args({512, 16, 0})
    ->Args({65536, 16, 0})
    ->Args({1048576, 16, 0})
    ->Args({64, 16, 1})
    ->Args({512, 16, 1})
    ->Args({65536, 16, 1})
    ->Args({1048576, 16, 1})
    ->UseManualTime();
BENCHMARK_MAIN();
