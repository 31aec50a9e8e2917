// SPDX-License-Identifier: MIT
// Fused loss + gradient on device, timed with CUDA events (UseManualTime), in the CPU benchmark's
// configuration (DeepSeekMath: beta 0.04, k3, seq-mean-token-mean, 10% padding, one advantage per row).
// Reports bytes/s over the bytes the pass must move (logp, old_logp, ref_logp, mask read; grad_logp written),
// the device's theoretical peak (peak_bytes/s) and bm_stream_baseline: a plain kernel moving the same bytes in
// the same run. The 1024x16384 case runs in fp32 and in bf16 (fp32 math, bf16 loads/stores).
// bench/cuda/torch_eager_cuda.py times the same loss in PyTorch eager CUDA ops against this binary.
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

/// Without a GPU every benchmark reports an error (never a time) and returns.
bool skipped_without_gpu(benchmark::State& state) {
    int n = 0;
    if (cudaGetDeviceCount(&n) == cudaSuccess && n > 0) return false;
    state.SkipWithError("no CUDA device");
    for (auto _ : state) {}
    return true;
}

/// Theoretical DRAM bandwidth of device 0 in bytes/s: 2 (DDR) x memory clock x bus width.
double peak_bytes_per_s() {
    int clock_khz = 0, bus_bits = 0;
    cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, 0);
    cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, 0);
    return 2.0 * double(clock_khz) * 1e3 * double(bus_bits) / 8.0;
}

/// The inputs of one loss shape on device, as in bench/bench_loss.cpp: logp, old_logp, ref_logp, a mask with
/// 10% padding at the end of every row, one advantage per row (broadcast with stride 0), a gradient out.
template <class T>
struct device_batch {
    grpo::index_t rows, cols;
    T *logp = nullptr, *old = nullptr, *ref = nullptr, *mask = nullptr, *adv = nullptr, *grad = nullptr;
    device_batch(grpo::index_t r, grpo::index_t c) : rows(r), cols(c) {
        const std::size_t n = static_cast<std::size_t>(r * c);
        std::vector<T> lp(n), o(n), rf(n), m(n), a(static_cast<std::size_t>(r));
        for (std::size_t k = 0; k < n; ++k) {
            const double base = -1.0 - 0.001 * double(k % 997);
            lp[k] = T(static_cast<float>(base));
            o[k] = T(static_cast<float>(base + 0.05 * double(int(k % 7) - 3)));
            rf[k] = T(static_cast<float>(base + 0.03 * double(int(k % 5) - 2)));
            m[k] = T(static_cast<grpo::index_t>(k % static_cast<std::size_t>(c)) < c * 9 / 10 ? 1.0f : 0.0f);
        }
        for (std::size_t i = 0; i < a.size(); ++i) a[i] = T(i % 2 ? 1.0f : -0.5f);
        for (auto* p : {&logp, &old, &ref, &mask, &grad}) cudaMalloc(p, n * sizeof(T));
        cudaMalloc(&adv, a.size() * sizeof(T));
        cudaMemcpy(logp, lp.data(), n * sizeof(T), cudaMemcpyHostToDevice);
        cudaMemcpy(old, o.data(), n * sizeof(T), cudaMemcpyHostToDevice);
        cudaMemcpy(ref, rf.data(), n * sizeof(T), cudaMemcpyHostToDevice);
        cudaMemcpy(mask, m.data(), n * sizeof(T), cudaMemcpyHostToDevice);
        cudaMemcpy(adv, a.data(), a.size() * sizeof(T), cudaMemcpyHostToDevice);
    }
    ~device_batch() {
        for (T* p : {logp, old, ref, mask, adv, grad}) cudaFree(p);
    }
    /// Bytes the pass must move: 4 token arrays read, the gradient written (the per-row advantage is negligible).
    double bytes() const { return 5.0 * double(rows) * double(cols) * sizeof(T); }
};

/// Times `run(stream)` with CUDA events and reports bytes/s, the fraction of the device's peak, and tokens/s.
template <class Run>
void time_on_stream(benchmark::State& state, double bytes, double tokens, Run run) {
    cudaStream_t stream;
    cudaStreamCreate(&stream);
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    run(stream); // warm-up: first launch, workspace growth
    cudaStreamSynchronize(stream);
    for (auto _ : state) {
        cudaEventRecord(start, stream);
        run(stream);
        cudaEventRecord(stop, stream);
        cudaEventSynchronize(stop);
        float ms = 0;
        cudaEventElapsedTime(&ms, start, stop);
        state.SetIterationTime(ms / 1e3);
    }
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) state.SkipWithError(cudaGetErrorString(e));
    state.counters["bytes/s"] = benchmark::Counter(bytes * double(state.iterations()), benchmark::Counter::kIsRate);
    state.counters["tokens/s"] = benchmark::Counter(tokens * double(state.iterations()), benchmark::Counter::kIsRate);
    state.counters["peak_bytes/s"] = peak_bytes_per_s();
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    cudaStreamDestroy(stream);
}

/// The fused loss + gradient, DeepSeekMath configuration (as the CPU benchmark): beta 0.04, k3,
/// seq-mean-token-mean, no sync (scalars stay on device). Third argument: 1 = validation::full (the default of
/// loss_config: one more read of every input), 0 = validation::shapes_only.
template <class T>
void bm_loss(benchmark::State& state) {
    if (skipped_without_gpu(state)) return;
    device_batch<T> d(state.range(0), state.range(1));
    using CV = grpo::matrix_view<const T, grpo::device_space>;
    grpo::loss_inputs<T, grpo::device_space> in;
    in.logp = CV(d.logp, d.rows, d.cols);
    in.old_logp = CV(d.old, d.rows, d.cols);
    in.ref_logp = CV(d.ref, d.rows, d.cols);
    in.mask = CV(d.mask, d.rows, d.cols);
    in.advantages = grpo::broadcast_to_tokens(grpo::vector_view<const T, grpo::device_space>(d.adv, d.rows), d.cols);
    grpo::loss_outputs<T, grpo::device_space> out;
    out.grad_logp = grpo::matrix_view<T, grpo::device_space>(d.grad, d.rows, d.cols);
    grpo::cuda_workspace ws;
    ws.doubles(grpo::cuda_workspace::loss_doubles(d.rows)); // no allocation in the timed loop
    grpo::loss_record* stats = nullptr;
    cudaMalloc(&stats, sizeof(grpo::loss_record));
    grpo::loss_config cfg = grpo::loss_config::deepseekmath();
    cfg.checks = state.range(2) ? grpo::validation::full : grpo::validation::shapes_only;
    time_on_stream(state, d.bytes(), double(d.rows) * double(d.cols),
                   [&](cudaStream_t s) { grpo::loss_and_grad(grpo::exec::cuda{s}, in, out, cfg, ws, stats); });
    cudaFree(stats);
}

template <class T>
__global__ void stream_kernel(const T* a, const T* b, const T* c, const T* m, T* out, std::size_t n) {
    for (std::size_t k = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; k < n;
         k += std::size_t(gridDim.x) * blockDim.x)
        out[k] = T(float(a[k]) + float(b[k]) + float(c[k]) + float(m[k]));
}

/// Baseline for the loss: a plain kernel that reads the same 4 arrays and writes 1 (same bytes, same run).
template <class T>
void bm_stream_baseline(benchmark::State& state) {
    if (skipped_without_gpu(state)) return;
    device_batch<T> d(state.range(0), state.range(1));
    const std::size_t n = static_cast<std::size_t>(d.rows * d.cols);
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    const unsigned blocks = static_cast<unsigned>(sms * 8);
    time_on_stream(state, d.bytes(), double(n), [&](cudaStream_t s) {
        stream_kernel<T><<<blocks, 256, 0, s>>>(d.logp, d.old, d.ref, d.mask, d.grad, n);
    });
}

template <class T>
void bm_advantages(benchmark::State& state) {
    if (skipped_without_gpu(state)) return;
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

BENCHMARK_TEMPLATE(bm_loss, float)
    ->Args({64, 4096, 0})
    ->Args({512, 8192, 0})
    ->Args({1024, 16384, 0})
    ->Args({512, 8192, 1})
    ->UseManualTime();
BENCHMARK_TEMPLATE(bm_stream_baseline, float)
    ->Args({64, 4096})
    ->Args({512, 8192})
    ->Args({1024, 16384})
    ->UseManualTime();
BENCHMARK_TEMPLATE(bm_loss, double)->Args({64, 4096, 0})->Args({512, 8192, 0})->UseManualTime();
BENCHMARK_TEMPLATE(bm_loss, __nv_bfloat16)->Args({1024, 16384, 0})->UseManualTime();
BENCHMARK_TEMPLATE(bm_stream_baseline, __nv_bfloat16)->Args({1024, 16384})->UseManualTime();
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
