// SPDX-License-Identifier: MIT
// CPU-vs-CUDA parity of the fused loss pass. Built twice (device_harness.hpp): for a GPU, where without one the
// executable prints a message and exits 77, which tests/cuda/CMakeLists.txt declares as SKIP_RETURN_CODE (ctest
// reports SKIPPED, never passed); and for the host emulator of the same kernels (test_cuda_loss_emulated).
#ifdef GRPO_CATCH3
#include <catch2/catch_session.hpp>
#include <catch2/catch_test_macros.hpp>
#else
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#endif

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "device_harness.hpp"
#include "loss_catalogue.hpp"
#include "test_helpers.hpp"

namespace {

/// Owning device copies of host views, with the same strides.
struct device_arena {
    std::vector<void*> blocks;
    ~device_arena() {
        for (void* p : blocks) grpo_test::device_free(p);
    }
    template <class T>
    T* copy(const T* src, std::size_t n) {
        void* p = grpo_test::device_alloc(n * sizeof(T) + 1);
        REQUIRE(p != nullptr);
        blocks.push_back(p);
        REQUIRE(grpo_test::to_device(p, src, n * sizeof(T)));
        return static_cast<T*>(p);
    }
    template <class T>
    static std::size_t span(const grpo::matrix_view<T>& m) {
        if (!m.present() || m.empty()) return 0;
        return static_cast<std::size_t>((m.rows() - 1) * m.row_stride() + (m.cols() - 1) * m.col_stride() + 1);
    }
    template <class T>
    grpo::matrix_view<T, grpo::device_space> mirror(const grpo::matrix_view<T>& m) {
        if (!m.present()) return {};
        using V = std::remove_const_t<T>;
        V* d = copy<V>(m.data(), span(m));
        return grpo::matrix_view<T, grpo::device_space>(d, m.rows(), m.cols(), m.row_stride(), m.col_stride());
    }
    template <class T>
    grpo::vector_view<T, grpo::device_space> mirror(const grpo::vector_view<T>& v) {
        if (!v.present()) return {};
        using V = std::remove_const_t<T>;
        const std::size_t n = v.empty() ? 0 : static_cast<std::size_t>((v.size() - 1) * v.stride() + 1);
        return grpo::vector_view<T, grpo::device_space>(copy<V>(v.data(), n), v.size(), v.stride());
    }
};

template <class T>
grpo::loss_inputs<T, grpo::device_space> mirror(device_arena& a, const grpo::loss_inputs<T>& in) {
    return {a.mirror(in.logp), a.mirror(in.old_logp), a.mirror(in.ref_logp),      a.mirror(in.advantages),
            a.mirror(in.mask), a.mirror(in.lengths),  a.mirror(in.sampling_logp), a.mirror(in.entropy)};
}

template <class T>
std::vector<T> download(const grpo::matrix_view<T, grpo::device_space>& m) {
    std::vector<T> h;
    const std::size_t n =
        m.empty() ? 0 : static_cast<std::size_t>((m.rows() - 1) * m.row_stride() + (m.cols() - 1) * m.col_stride() + 1);
    h.resize(n);
    REQUIRE(grpo_test::to_host(h.data(), m.data(), n * sizeof(T)));
    return h;
}

bool close(double a, double b, double rel) {
    return std::fabs(a - b) <= rel * std::fmax(1.0, std::fmax(std::fabs(a), std::fabs(b)));
}

/// Runs the same call on both backends and compares stats, gradient and per-token loss.
template <class T>
void check_parity(grpo_test::batch<T>& b, const grpo::loss_inputs<T>& hin, const grpo::loss_config& cfg, double rel) {
    auto hout = b.outputs();
    std::vector<T> host_ratio(static_cast<std::size_t>(b.rows * b.cols), T(-7)), host_gent(host_ratio);
    hout.ratio = grpo::matrix_view<T>(host_ratio.data(), b.rows, b.cols);
    hout.grad_entropy = grpo::matrix_view<T>(host_gent.data(), b.rows, b.cols);
    const grpo::loss_stats ref = grpo::loss_and_grad(grpo::exec::host{}, hin, hout, cfg);
    device_arena a;
    const auto din = mirror(a, hin);
    std::vector<T> fill(b.rows * b.cols, T(-7));
    grpo::loss_outputs<T, grpo::device_space> dout;
    dout.grad_logp = grpo::matrix_view<T, grpo::device_space>(a.copy(fill.data(), fill.size()), b.rows, b.cols);
    dout.per_token_loss = grpo::matrix_view<T, grpo::device_space>(a.copy(fill.data(), fill.size()), b.rows, b.cols);
    dout.ratio = grpo::matrix_view<T, grpo::device_space>(a.copy(fill.data(), fill.size()), b.rows, b.cols);
    dout.grad_entropy = grpo::matrix_view<T, grpo::device_space>(a.copy(fill.data(), fill.size()), b.rows, b.cols);
    grpo_test::device_workspace ws;
    const grpo::loss_stats got = grpo::loss_and_grad(grpo_test::default_exec(), din, dout, cfg, ws);
    CHECK(got.token_count == ref.token_count);
    CHECK(close(got.loss, ref.loss, rel));
    CHECK(close(got.policy_loss, ref.policy_loss, rel));
    CHECK(close(got.kl_loss, ref.kl_loss, rel));
    CHECK(close(got.clip_fraction_low, ref.clip_fraction_low, rel));
    CHECK(close(got.clip_fraction_high, ref.clip_fraction_high, rel));
    CHECK(close(got.dual_clip_fraction, ref.dual_clip_fraction, rel));
    CHECK(close(got.ratio_mean, ref.ratio_mean, rel));
    CHECK(close(got.ratio_min, ref.ratio_min, rel));
    CHECK(close(got.ratio_max, ref.ratio_max, rel));
    CHECK(close(got.kl_mean, ref.kl_mean, rel));
    CHECK(close(got.approx_kl, ref.approx_kl, rel));
    CHECK(close(got.sampling_weight_mean, ref.sampling_weight_mean, rel));
    CHECK(close(got.off_policy_mask_fraction, ref.off_policy_mask_fraction, rel));
    CHECK(close(got.entropy_loss, ref.entropy_loss, rel));
    CHECK(close(got.entropy_mean, ref.entropy_mean, rel));
    CHECK(close(got.entropy_mask_fraction, ref.entropy_mask_fraction, rel));
    CHECK(close(got.cov_selection_fraction, ref.cov_selection_fraction, rel));
    const std::vector<T> dr = download(dout.ratio), dh = download(dout.grad_entropy);
    std::size_t bad_ratio = 0, bad_gent = 0;
    for (std::size_t k = 0; k < dr.size(); ++k) {
        if (!close(double(dr[k]), double(host_ratio[k]), rel)) ++bad_ratio;
        if (!close(double(dh[k]), double(host_gent[k]), rel)) ++bad_gent;
    }
    CHECK(bad_ratio == 0);
    CHECK(bad_gent == 0);
    const std::vector<T> g = download(dout.grad_logp), l = download(dout.per_token_loss);
    std::size_t bad = 0;
    for (std::size_t k = 0; k < g.size(); ++k) {
        if (!close(double(g[k]), double(b.grad[k]), rel)) ++bad;
        if (!close(double(l[k]), double(b.per_token[k]), rel)) ++bad;
    }
    CHECK(bad == 0);
}

template <class T>
void parity_all_variants(double rel) {
    using grpo::aggregation;
    using grpo::ratio_level;
    const aggregation aggs[] = {aggregation::token_mean, aggregation::seq_mean_token_mean,
                                aggregation::seq_mean_token_sum, aggregation::token_sum_over_constant,
                                aggregation::token_sum};
    const ratio_level levels[] = {ratio_level::token, ratio_level::sequence, ratio_level::sequence_token};
    std::uint64_t seed = 11;
    for (aggregation agg : aggs)
        for (ratio_level lvl : levels)
            for (int variant = 0; variant < 7; ++variant) {
                grpo_test::batch<T> b(7, 301, ++seed);
                grpo::loss_config cfg = variant == 1 ? grpo::loss_config::verl() : grpo::loss_config{};
                cfg.agg = agg;
                cfg.ratio = lvl;
                if (variant >= 1) cfg.beta = 0.04;
                if (variant == 2) cfg.kl = grpo::kl_estimator::k2;
                if (variant == 3) { // clip-higher, dual clip, S counting only rows with tokens (lengths on)
                    cfg.epsilon_high = 0.28;
                    cfg.dual_clip_c = 3;
                    cfg.count_empty_sequences = false;
                    b.lengths[2] = 0; // an empty row
                }
                if (variant == 4) { // delta, k1, loss_scale
                    cfg.delta = 1.3;
                    cfg.kl = grpo::kl_estimator::k1;
                    cfg.loss_scale = 2.5;
                }
                if (variant == 5) { // |x| with the k2 gradient, global counts, a constant length
                    cfg.kl = grpo::kl_estimator::abs;
                    cfg.kl_straight_through = true;
                    cfg.global_token_count = 5000; // >= 7 * 301
                    cfg.global_sequence_count = 20;
                    cfg.max_completion_length = 400;
                }
                if (variant == 6) { // k3 with both KL clamps active on part of the batch
                    cfg.kl_log_ratio_clamp = 0.3;
                    cfg.kl_value_clamp = 0.02;
                }
                const bool per_token_adv = variant != 3 && variant != 5;
                check_parity(b, b.inputs(per_token_adv, variant != 2, variant != 1, variant == 3 || variant == 4), cfg,
                             rel);
            }
    // Every objective and option of the catalogue (tests/loss_catalogue.hpp), at every aggregation and ratio level.
    for (aggregation agg : aggs)
        for (ratio_level lvl : levels)
            for (const auto& var : grpo_test::loss_catalogue()) {
                if (!var.allows(lvl)) continue;
                INFO(var.name);
                grpo_test::batch<T> b(5, 97, ++seed);
                grpo::loss_config cfg = var.cfg;
                cfg.agg = agg;
                cfg.ratio = lvl;
                check_parity(b, b.inputs(seed % 2 == 0, true, seed % 3 != 0, seed % 5 == 0), cfg, rel);
            }
}

} // namespace

/// per_token_kl on both backends, every estimator and option: per-token values, gradients and sums.
template <class T>
void kl_parity(double rel) {
    std::uint64_t seed = 71;
    for (int variant = 0; variant < 7; ++variant) {
        grpo_test::batch<T> b(6, 203, ++seed);
        grpo::kl_config cfg;
        if (variant < 5) cfg.kl = static_cast<grpo::kl_estimator>(variant);
        if (variant == 5) {
            cfg.kl_log_ratio_clamp = 0.3;
            cfg.kl_value_clamp = 0.02;
        }
        if (variant == 6) cfg.kl_straight_through = true;
        INFO("variant " << variant);
        grpo::kl_inputs<T> hin{{b.logp.data(), b.rows, b.cols},
                               {b.ref_logp.data(), b.rows, b.cols},
                               {b.mask.data(), b.rows, b.cols},
                               {b.lengths.data(), b.rows}};
        std::vector<T> hkl(b.logp.size(), T(-7)), hg(b.logp.size(), T(-7));
        const grpo::kl_stats ref =
            grpo::per_token_kl(grpo::exec::host{}, hin,
                               grpo::kl_outputs<T>{{hkl.data(), b.rows, b.cols}, {hg.data(), b.rows, b.cols}}, cfg);
        device_arena a;
        const grpo::kl_inputs<T, grpo::device_space> din{a.mirror(hin.logp), a.mirror(hin.ref_logp), a.mirror(hin.mask),
                                                         a.mirror(hin.lengths)};
        std::vector<T> fill(b.logp.size(), T(-7));
        const grpo::kl_outputs<T, grpo::device_space> dout{{a.copy(fill.data(), fill.size()), b.rows, b.cols},
                                                           {a.copy(fill.data(), fill.size()), b.rows, b.cols}};
        grpo_test::device_workspace ws;
        const grpo::kl_stats got = grpo::per_token_kl(grpo_test::default_exec(), din, dout, cfg, ws);
        CHECK(got.token_count == ref.token_count);
        CHECK(close(got.kl_sum, ref.kl_sum, rel));
        CHECK(close(got.kl_mean, ref.kl_mean, rel));
        const std::vector<T> dkl = download(dout.kl), dg = download(dout.grad_logp);
        std::size_t bad = 0;
        for (std::size_t k = 0; k < dkl.size(); ++k) {
            if (!close(double(dkl[k]), double(hkl[k]), rel)) ++bad;
            if (!close(double(dg[k]), double(hg[k]), rel)) ++bad;
        }
        CHECK(bad == 0);
    }
    // A NaN reference log-prob at an unmasked token: the CPU backend's error, the outputs untouched.
    grpo_test::batch<T> b(3, 9, 5);
    std::size_t unmasked = 0;
    while (b.mask[unmasked] == 0) ++unmasked;
    b.ref_logp[unmasked] = T(std::nan(""));
    const grpo::kl_inputs<T> hin{
        {b.logp.data(), b.rows, b.cols}, {b.ref_logp.data(), b.rows, b.cols}, {b.mask.data(), b.rows, b.cols}, {}};
    std::string host_error, device_error;
    try {
        grpo::per_token_kl(grpo::exec::host{}, hin, grpo::kl_outputs<T>{}, grpo::kl_config{});
    } catch (const grpo::error& e) {
        host_error = e.what();
    }
    device_arena a;
    const grpo::kl_inputs<T, grpo::device_space> din{
        a.mirror(hin.logp), a.mirror(hin.ref_logp), a.mirror(hin.mask), {}};
    std::vector<T> fill(b.logp.size(), T(-7));
    const grpo::kl_outputs<T, grpo::device_space> dout{{a.copy(fill.data(), fill.size()), b.rows, b.cols}, {}};
    grpo_test::device_workspace ws;
    try {
        grpo::per_token_kl(grpo_test::default_exec(), din, dout, grpo::kl_config{}, ws);
    } catch (const grpo::error& e) {
        device_error = e.what();
    }
    REQUIRE(!host_error.empty());
    CHECK(device_error.find(host_error.substr(host_error.find("argument"))) != std::string::npos);
    for (T x : download(dout.kl)) CHECK(x == T(-7));
}

TEST_CASE("cuda per_token_kl: parity with the CPU backend, bad values", "[cuda][kl]") {
    kl_parity<double>(1e-12);
    kl_parity<float>(1e-6);
}

TEST_CASE("cuda loss: parity with the CPU backend, double", "[cuda]") { parity_all_variants<double>(1e-12); }
TEST_CASE("cuda loss: parity with the CPU backend, float", "[cuda]") { parity_all_variants<float>(1e-6); }

#ifdef GRPO_TEST_EMULATED
TEST_CASE("cuda loss (emulated): parity at other block sizes", "[cuda]") {
    for (int threads : {1, 2, 32}) {
        grpo_test::emulated_threads() = threads;
        parity_all_variants<double>(1e-12);
    }
    grpo_test::emulated_threads() = 5;
}

TEST_CASE("cuda loss (emulated): a block of no threads is an error", "[cuda]") {
    grpo_test::batch<double> b(2, 8, 3);
    device_arena a;
    const auto din = mirror(a, b.inputs());
    grpo::loss_outputs<double, grpo::device_space> dout;
    grpo::emulated_workspace ws;
    CHECK_THROWS_AS(grpo::loss_and_grad(grpo::exec::cuda_emulated{0}, din, dout, grpo::loss_config{}, ws), grpo::error);
}
#endif

TEST_CASE("cuda loss: edge cases", "[cuda]") {
    SECTION("T = 1") {
        grpo_test::batch<double> b(5, 1, 3);
        check_parity(b, b.inputs(), grpo::loss_config{}, 1e-12);
    }
    SECTION("empty rows (lengths 0) and a fully masked batch") {
        grpo_test::batch<double> b(4, 64, 5);
        for (auto& l : b.lengths) l = 0;
        check_parity(b, b.inputs(true, true, true, true), grpo::loss_config::deepseekmath(), 1e-12);
        for (auto& m : b.mask) m = 0;
        check_parity(b, b.inputs(), grpo::loss_config{}, 1e-12);
    }
    SECTION("very long rows") {
        grpo_test::batch<float> b(2, 70000, 9);
        check_parity(b, b.inputs(), grpo::loss_config::gspo(), 1e-6);
    }
    SECTION("non-contiguous strides") {
        grpo_test::batch<double> b(6, 40, 13);
        grpo::loss_inputs<double> in = b.inputs();
        // Column-major style views of the first 20 columns: row stride 1? keep it simple: every other column.
        in.logp = grpo::matrix_view<const double>(b.logp.data(), 6, 20, 40, 2);
        in.old_logp = grpo::matrix_view<const double>(b.old_logp.data(), 6, 20, 40, 2);
        in.ref_logp = grpo::matrix_view<const double>(b.ref_logp.data(), 6, 20, 40, 2);
        in.advantages = grpo::matrix_view<const double>(b.adv_tok.data(), 6, 20, 40, 2);
        in.mask = grpo::matrix_view<const double>(b.mask.data(), 6, 20, 40, 2);
        grpo_test::batch<double> small(6, 20, 13);
        grpo::loss_config cfg;
        cfg.beta = 0.1;
        check_parity(small, in, cfg, 1e-12);
    }
}

TEST_CASE("cuda loss: deterministic across runs", "[cuda]") {
    grpo_test::batch<float> b(33, 4097, 21);
    device_arena a;
    const auto din = mirror(a, b.inputs());
    grpo::loss_outputs<float, grpo::device_space> dout;
    dout.grad_logp = grpo::matrix_view<float, grpo::device_space>(a.copy(b.grad.data(), b.grad.size()), 33, 4097);
    grpo_test::device_workspace ws;
    grpo::loss_config cfg = grpo::loss_config::gspo();
    cfg.beta = 0.04;
    const grpo::loss_stats s1 = grpo::loss_and_grad(grpo_test::default_exec(), din, dout, cfg, ws);
    const std::vector<float> g1 = download(dout.grad_logp);
    for (int run = 0; run < 5; ++run) {
        const grpo::loss_stats s2 = grpo::loss_and_grad(grpo_test::default_exec(), din, dout, cfg, ws);
        CHECK(std::memcmp(&s1, &s2, sizeof s1) == 0);
        CHECK(download(dout.grad_logp) == g1);
    }
}

TEST_CASE("cuda loss: the no-sync overload on a stream writes the syncing overload's scalars", "[cuda]") {
    grpo_test::batch<double> b(12, 777, 5);
    device_arena a;
    const auto din = mirror(a, b.inputs(false, true, true, true));
    grpo::loss_outputs<double, grpo::device_space> d1, d2;
    d1.grad_logp = grpo::matrix_view<double, grpo::device_space>(a.copy(b.grad.data(), b.grad.size()), 12, 777);
    d2.grad_logp = grpo::matrix_view<double, grpo::device_space>(a.copy(b.grad.data(), b.grad.size()), 12, 777);
    grpo::loss_config cfg = grpo::loss_config::verl();
    cfg.beta = 0.001;
    grpo_test::device_workspace ws1, ws2;
    const grpo::loss_stats sync = grpo::loss_and_grad(grpo_test::default_exec(), din, d1, cfg, ws1);

    grpo_test::test_stream stream;
    grpo::loss_record garbage{};
    garbage.stats.loss = garbage.stats.ratio_max = -5.0; // overwritten by the call
    garbage.error.code = grpo::loss_error::bad_mask;
    grpo::loss_record* d_record = a.copy(&garbage, 1);
    ws2.doubles(grpo_test::device_workspace::loss_doubles(12)); // pre-sized: the call below allocates nothing
    grpo::loss_and_grad(stream.exec(), din, d2, cfg, ws2, d_record);
    REQUIRE(stream.synchronize());
    grpo::loss_record h;
    REQUIRE(grpo_test::to_host(&h, d_record, sizeof h));
    CHECK(h.error.code == grpo::loss_error::none);
    const grpo::loss_stats got = grpo::checked_stats(h, 777);
    const double expected[] = {sync.loss,
                               sync.policy_loss,
                               sync.kl_loss,
                               sync.token_count,
                               sync.clip_fraction_low,
                               sync.clip_fraction_high,
                               sync.clip_fraction_region,
                               sync.dual_clip_fraction,
                               sync.ratio_mean,
                               sync.ratio_min,
                               sync.ratio_max,
                               sync.kl_mean,
                               sync.approx_kl};
    const double actual[] = {got.loss,
                             got.policy_loss,
                             got.kl_loss,
                             got.token_count,
                             got.clip_fraction_low,
                             got.clip_fraction_high,
                             got.clip_fraction_region,
                             got.dual_clip_fraction,
                             got.ratio_mean,
                             got.ratio_min,
                             got.ratio_max,
                             got.kl_mean,
                             got.approx_kl};
    for (int k = 0; k < 13; ++k) CHECK(actual[k] == expected[k]);
    CHECK(download(d1.grad_logp) == download(d2.grad_logp));
}

TEST_CASE("cuda loss: bad inputs throw before any launch", "[cuda]") {
    grpo_test::batch<double> b(3, 8, 1);
    device_arena a;
    auto din = mirror(a, b.inputs());
    grpo::loss_outputs<double, grpo::device_space> dout;
    grpo_test::device_workspace ws;
    grpo::loss_config cfg;
    cfg.epsilon_low = 1.5;
    CHECK_THROWS_AS(grpo::loss_and_grad(grpo_test::default_exec(), din, dout, cfg, ws), grpo::error);
    cfg = grpo::loss_config{};
    din.advantages = grpo::matrix_view<const double, grpo::device_space>(din.advantages.data(), 3, 7);
    CHECK_THROWS_AS(grpo::loss_and_grad(grpo_test::default_exec(), din, dout, cfg, ws), grpo::error);
#ifndef GRPO_TEST_EMULATED
    // A host pointer in a device_space view: caught by the debug-mode runtime check.
    din = mirror(a, b.inputs());
    din.logp = grpo::matrix_view<const double, grpo::device_space>(b.logp.data(), 3, 8);
    CHECK_THROWS_AS(grpo::loss_and_grad(grpo_test::default_exec(), din, dout, cfg, ws), grpo::error);
#endif
}

namespace {

/// Both backends on the same float batch; returns the device's and the CPU's outputs and scalars.
struct overflow_run {
    grpo::loss_stats cpu, dev;
    std::vector<float> cpu_grad, cpu_loss, dev_grad, dev_loss;
};
overflow_run run_both(grpo_test::batch<float>& b, const grpo::loss_inputs<float>& hin, const grpo::loss_config& cfg) {
    overflow_run r;
    auto hout = b.outputs();
    r.cpu = grpo::loss_and_grad(grpo::exec::host{}, hin, hout, cfg);
    r.cpu_grad = b.grad;
    r.cpu_loss = b.per_token;
    device_arena a;
    const auto din = mirror(a, hin);
    const std::vector<float> fill(static_cast<std::size_t>(b.rows * b.cols), -7.0f);
    grpo::loss_outputs<float, grpo::device_space> dout;
    dout.grad_logp = grpo::matrix_view<float, grpo::device_space>(a.copy(fill.data(), fill.size()), b.rows, b.cols);
    dout.per_token_loss =
        grpo::matrix_view<float, grpo::device_space>(a.copy(fill.data(), fill.size()), b.rows, b.cols);
    grpo_test::device_workspace ws;
    r.dev = grpo::loss_and_grad(grpo_test::default_exec(), din, dout, cfg, ws);
    r.dev_grad = download(dout.grad_logp);
    r.dev_loss = download(dout.per_token_loss);
    return r;
}

/// Equal within `rel`, or both the same infinity.
bool same(double a, double b, double rel) { return a == b || close(a, b, rel); }

void check_overflow_parity(const overflow_run& r) {
    CHECK(r.dev.token_count == r.cpu.token_count);
    CHECK(std::isfinite(r.dev.loss));
    CHECK(std::isfinite(r.dev.policy_loss));
    CHECK(same(r.dev.loss, r.cpu.loss, 1e-6));
    CHECK(same(r.dev.policy_loss, r.cpu.policy_loss, 1e-6));
    CHECK(same(r.dev.kl_loss, r.cpu.kl_loss, 1e-6));
    CHECK(same(r.dev.clip_fraction_low, r.cpu.clip_fraction_low, 1e-6));
    CHECK(same(r.dev.clip_fraction_high, r.cpu.clip_fraction_high, 1e-6));
    CHECK(same(r.dev.ratio_mean, r.cpu.ratio_mean, 1e-6));
    CHECK(same(r.dev.ratio_max, r.cpu.ratio_max, 1e-6));
    CHECK(same(r.dev.ratio_min, r.cpu.ratio_min, 1e-6));
    std::size_t non_finite = 0, bad = 0;
    for (std::size_t k = 0; k < r.dev_grad.size(); ++k) {
        non_finite += !std::isfinite(r.dev_grad[k]) + !std::isfinite(r.dev_loss[k]);
        non_finite += !std::isfinite(r.cpu_grad[k]) + !std::isfinite(r.cpu_loss[k]);
        bad += !close(r.dev_grad[k], r.cpu_grad[k], 1e-6) + !close(r.dev_loss[k], r.cpu_loss[k], 1e-6);
    }
    CHECK(non_finite == 0);
    CHECK(bad == 0);
}

} // namespace

TEST_CASE("cuda loss: an fp32 ratio that overflows gives a zero gradient, never NaN (as on the CPU)", "[cuda]") {
    const std::size_t at = 1 * 16 + 5;
    SECTION("A > 0, no log-ratio clamp: the clipped branch, gradient exactly 0") {
        grpo_test::batch<float> b(3, 16, 71);
        for (float& m : b.mask) m = 1;
        b.logp[at] = -1;
        b.old_logp[at] = -91; // log-ratio 90 > 88.7: exp overflows to inf in fp32
        b.adv_tok[at] = 0.5f;
        grpo::loss_config cfg;
        REQUIRE(cfg.log_ratio_clamp == 0);
        const overflow_run r = run_both(b, b.inputs(), cfg);
        CHECK(r.dev_grad[at] == 0.0f);
        CHECK(r.cpu_grad[at] == 0.0f);
        CHECK(r.dev.ratio_max == std::numeric_limits<double>::infinity());
        check_overflow_parity(r);
        cfg.beta = 0.04; // a KL term at the token: its gradient is finite, the policy part still exactly 0
        check_overflow_parity(run_both(b, b.inputs(), cfg));
    }
    SECTION("A = 0: loss and gradient finite (0 * inf is no NaN)") {
        grpo_test::batch<float> b(3, 16, 72);
        for (float& m : b.mask) m = 1;
        b.logp[at] = -1;
        b.old_logp[at] = -91;
        b.adv_tok[at] = 0;
        const overflow_run r = run_both(b, b.inputs(), grpo::loss_config{});
        CHECK(r.dev_loss[at] == 0.0f);
        CHECK(r.dev_grad[at] == 0.0f);
        check_overflow_parity(r);
    }
}

TEST_CASE("cuda loss: a bad length of INT64_MAX is reported exactly", "[cuda]") {
    grpo_test::batch<double> b(5, 16, 37);
    b.lengths[3] = std::numeric_limits<std::int64_t>::max();
    const auto hin = b.inputs(true, true, true, true);
    device_arena a;
    const auto din = mirror(a, hin);
    grpo::loss_outputs<double, grpo::device_space> dout;
    grpo_test::device_workspace ws;
    std::string cpu, got;
    try {
        auto hout = b.outputs();
        grpo::loss_and_grad(grpo::exec::host{}, hin, hout, grpo::loss_config{});
    } catch (const grpo::error& e) {
        cpu = e.what();
    }
    try {
        grpo::loss_and_grad(grpo_test::default_exec(), din, dout, grpo::loss_config{}, ws);
    } catch (const grpo::error& e) {
        got = e.what();
        CHECK(e.code() == grpo::errc::invalid_value);
    }
    CAPTURE(cpu, got);
    CHECK(got.find("9223372036854775807 at index 3") != std::string::npos);
    CHECK(cpu.find("9223372036854775807 at index 3") != std::string::npos);
    // The no-sync record: exact int64 row and length, read by checked_stats.
    const grpo::loss_record zero{};
    grpo::loss_record* d_record = a.copy(&zero, 1);
    grpo::loss_and_grad(grpo_test::default_exec(), din, dout, grpo::loss_config{}, ws, d_record);
    grpo::loss_record h;
    REQUIRE(grpo_test::to_host(&h, d_record, sizeof h));
    CHECK(h.error.code == grpo::loss_error::bad_length);
    CHECK(h.error.row == 3);
    CHECK(h.error.length == std::numeric_limits<std::int64_t>::max());
    std::string unpacked;
    try {
        (void)grpo::checked_stats(h, b.cols, grpo::device_backend_traits<grpo_test::device_exec>::loss_where);
    } catch (const grpo::error& e) {
        unpacked = e.what();
    }
    CHECK(unpacked == got);
    // The smallest int64 too (a double would also hold it, but its negation would not).
    b.lengths[3] = std::numeric_limits<std::int64_t>::min();
    const auto din2 = mirror(a, b.inputs(true, true, true, true));
    got.clear();
    try {
        grpo::loss_and_grad(grpo_test::default_exec(), din2, dout, grpo::loss_config{}, ws);
    } catch (const grpo::error& e) {
        got = e.what();
    }
    CHECK(got.find("-9223372036854775808 at index 3") != std::string::npos);
}

TEST_CASE("cuda loss: a workspace held by another call is refused (errc::in_use)", "[cuda]") {
    grpo_test::batch<double> b(3, 8, 38);
    device_arena a;
    const auto din = mirror(a, b.inputs());
    const std::vector<double> fill(24, -7.0);
    grpo::loss_outputs<double, grpo::device_space> dout;
    dout.grad_logp = grpo::matrix_view<double, grpo::device_space>(a.copy(fill.data(), fill.size()), 3, 8);
    const grpo::loss_record zero{};
    grpo::loss_record* d_record = a.copy(&zero, 1);
    grpo_test::device_workspace ws;
    auto code_of = [](auto&& call) { return grpo_test::error_code_of(call); };
    {
        grpo::basic_workspace_lease<grpo_test::device_workspace> held(ws, "another call");
        CHECK(ws.in_use());
        CHECK(code_of([&] { grpo::loss_and_grad(grpo_test::default_exec(), din, dout, grpo::loss_config{}, ws); }) ==
              grpo::errc::in_use);
        CHECK(code_of([&] {
                  grpo::loss_and_grad(grpo_test::default_exec(), din, dout, grpo::loss_config{}, ws, d_record);
              }) == grpo::errc::in_use);
        CHECK(download(dout.grad_logp) == fill); // nothing written
        CHECK(ws.in_use());                      // the refused calls did not release the holder's lease
    }
    CHECK(!ws.in_use());
    // A call that throws releases its lease too.
    grpo::loss_config bad;
    bad.epsilon_low = 1.5;
    CHECK(code_of([&] { grpo::loss_and_grad(grpo_test::default_exec(), din, dout, bad, ws); }) ==
          grpo::errc::invalid_value);
    CHECK(!ws.in_use());
    CHECK(code_of([&] { grpo::loss_and_grad(grpo_test::default_exec(), din, dout, grpo::loss_config{}, ws); }) ==
          grpo::errc::ok);
    CHECK(!ws.in_use());
}

#if !defined(GRPO_TEST_EMULATED) || defined(GRPO_TEST_EMULATED_HALF) // 16-bit types: CUDA toolkit headers
namespace {

/// The CPU's message for these inputs (which must throw), as the device backend words it ("(cuda)" on a GPU,
/// "(emulated)" on the host emulator).
std::string cpu_message(grpo_test::batch<double>& b, const grpo::loss_inputs<double>& in,
                        const grpo::loss_config& cfg) {
    auto out = b.outputs();
    try {
        grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);
    } catch (const grpo::error& e) {
        std::string m = e.what();
        const std::string from = "grpo::loss_and_grad:";
        const std::string to =
            std::string("grpo::") + grpo::device_backend_traits<grpo_test::device_exec>::loss_where + ":";
        if (m.compare(0, from.size(), from) == 0) m = to + m.substr(from.size());
        return m;
    }
    return "";
}

/// Under validation::full the device finds the same first bad value as the CPU and writes nothing; the
/// no-sync record carries the error; validation::shapes_only does not look.
void check_bad_value(grpo_test::batch<double>& b, const grpo::loss_inputs<double>& hin, grpo::loss_config cfg) {
    const std::string expected = cpu_message(b, hin, cfg);
    REQUIRE(!expected.empty());
    device_arena a;
    const auto din = mirror(a, hin);
    const std::vector<double> fill(static_cast<std::size_t>(b.rows * b.cols), -7.0);
    grpo::loss_outputs<double, grpo::device_space> dout;
    dout.grad_logp = grpo::matrix_view<double, grpo::device_space>(a.copy(fill.data(), fill.size()), b.rows, b.cols);
    grpo_test::device_workspace ws;
    std::string got;
    try {
        grpo::loss_and_grad(grpo_test::default_exec(), din, dout, cfg, ws);
    } catch (const grpo::error& e) {
        got = e.what();
    }
    CHECK(got == expected);
    CHECK(download(dout.grad_logp) == fill);

    const grpo::loss_record zero{};
    grpo::loss_record* d_record = a.copy(&zero, 1);
    grpo::loss_and_grad(grpo_test::default_exec(), din, dout, cfg, ws, d_record);
    grpo::loss_record h;
    REQUIRE(grpo_test::to_host(&h, d_record, sizeof h));
    CHECK(h.error.code != grpo::loss_error::none);
    CHECK_THROWS_AS(grpo::checked_stats(h, b.cols), grpo::error);
    CHECK(download(dout.grad_logp) == fill);

    if (h.error.code == grpo::loss_error::bad_length || h.error.code == grpo::loss_error::bad_global_count)
        return; // lengths (shapes_only clamps them) and the global count (no check)
    cfg.checks = grpo::validation::shapes_only;
    CHECK_NOTHROW(grpo::loss_and_grad(grpo_test::default_exec(), din, dout, cfg, ws));
}

} // namespace

TEST_CASE("cuda loss: bad values under validation::full give the CPU backend's error, outputs untouched", "[cuda]") {
    const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
    grpo::loss_config kl;
    kl.beta = 0.04;
    SECTION("NaN logp; the first bad row wins over a later one") {
        grpo_test::batch<double> b(6, 50, 31);
        for (double& m : b.mask) m = 1;
        b.logp[3 * 50 + 17] = nan;
        b.logp[4 * 50 + 2] = nan;
        check_bad_value(b, b.inputs(), kl);
    }
    SECTION("within a row, the first bad column wins; at a column, mask, logp, old, ref, adv in that order") {
        grpo_test::batch<double> b(4, 40, 32);
        for (double& m : b.mask) m = 1;
        b.adv_tok[2 * 40 + 9] = inf;
        b.ref_logp[2 * 40 + 9] = nan;
        b.old_logp[2 * 40 + 30] = -inf;
        check_bad_value(b, b.inputs(true, true, true, false), kl);
        b.ref_logp[2 * 40 + 9] = -1; // now the advantage at the same column
        check_bad_value(b, b.inputs(true, true, true, false), kl);
    }
    SECTION("sampling_logp is checked after the advantages, only when a sampling correction reads it") {
        grpo_test::batch<double> b(4, 40, 35);
        for (double& m : b.mask) m = 1;
        b.sampling_logp[1 * 40 + 7] = nan;
        b.adv_tok[1 * 40 + 7] = inf;
        grpo::loss_config cfg = kl;
        cfg.sampling = grpo::sampling_correction::sequence_mask;
        check_bad_value(b, b.inputs(), cfg); // the advantage at the same column first
        b.adv_tok[1 * 40 + 7] = 0.5;
        check_bad_value(b, b.inputs(), cfg);
        b.entropy[1 * 40 + 3] = inf; // an earlier column: the entropy check comes first there
        cfg.entropy_coef = 0.01;
        check_bad_value(b, b.inputs(), cfg);
    }
    SECTION("a mask value other than 0 or 1") {
        grpo_test::batch<double> b(3, 33, 33);
        b.mask[1 * 33 + 4] = 0.5;
        check_bad_value(b, b.inputs(), grpo::loss_config{});
    }
    SECTION("NaN at masked tokens is fine; at unmasked ones it is not") {
        grpo_test::batch<double> b(3, 20, 34);
        for (double& m : b.mask) m = 1;
        b.mask[1 * 20 + 3] = 0;
        b.logp[1 * 20 + 3] = nan;
        grpo::loss_config cfg = kl;
        {
            device_arena a;
            const auto din = mirror(a, b.inputs());
            grpo::loss_outputs<double, grpo::device_space> dout;
            grpo_test::device_workspace ws;
            CHECK_NOTHROW(grpo::loss_and_grad(grpo_test::default_exec(), din, dout, cfg, ws));
        }
        b.logp[2 * 20 + 19] = nan;
        check_bad_value(b, b.inputs(), cfg);
    }
    SECTION("global_token_count below the call's tokens") {
        grpo_test::batch<double> b(4, 30, 36);
        grpo::loss_config cfg;
        cfg.global_token_count = 3;
        check_bad_value(b, b.inputs(), cfg);
    }
    SECTION("lengths outside [0, cols] come before any value") {
        grpo_test::batch<double> b(5, 16, 35);
        b.logp[0] = nan;
        b.lengths[3] = 17;
        check_bad_value(b, b.inputs(true, true, true, true), grpo::loss_config{});
        b.lengths[3] = -1;
        check_bad_value(b, b.inputs(true, true, true, true), grpo::loss_config{});
    }
}

namespace {

// 16-bit element types: inputs rounded to the type, fp32 math on device, outputs rounded to the type.
inline __half to_h16(double x, __half*) { return __float2half(static_cast<float>(x)); }
inline __nv_bfloat16 to_h16(double x, __nv_bfloat16*) { return __float2bfloat16(static_cast<float>(x)); }
inline double from_h16(__half h) { return static_cast<double>(__half2float(h)); }
inline double from_h16(__nv_bfloat16 h) { return static_cast<double>(__bfloat162float(h)); }

template <class H>
H to_h(double x) {
    return to_h16(x, static_cast<H*>(nullptr));
}
/// Half of the spacing between adjacent values near 1: the relative error of one rounding to H.
template <class H>
constexpr double half_ulp() {
    return std::is_same<H, __half>::value ? 0x1.0p-11 : 0x1.0p-8;
}

/// Spacing of the subnormals (fp16 gradients of a few 1e-5 are subnormal; bf16 has float's exponent range).
template <class H>
constexpr double subnormal_spacing() {
    return std::is_same<H, __half>::value ? 0x1.0p-24 : 0x1.0p-133;
}

template <class H>
std::vector<H> to_h_vector(const std::vector<double>& v) {
    std::vector<H> h(v.size());
    for (std::size_t k = 0; k < v.size(); ++k) h[k] = to_h<H>(v[k]);
    return h;
}

/// Rounds every input of `b` to H in place (so the fp64 CPU reference sees exactly the device's inputs).
template <class H>
void round_inputs(grpo_test::batch<double>& b) {
    for (auto* v : {&b.logp, &b.old_logp, &b.ref_logp, &b.adv_tok, &b.adv_seq, &b.mask})
        for (double& x : *v) x = from_h16(to_h<H>(x));
}

struct h16_result {
    grpo::loss_stats st;
    std::vector<double> grad, per_token;
    std::vector<unsigned char> raw_grad; // bit pattern, for the determinism check
};

/// The CUDA loss in H over the (already rounded) batch `b`; same optional inputs as b.inputs(...).
template <class H>
h16_result run_h16(const grpo_test::batch<double>& b, bool per_token_adv, bool with_mask, bool with_old,
                   bool with_lengths, const grpo::loss_config& cfg, grpo_test::device_workspace& ws) {
    device_arena a;
    const grpo::index_t r = b.rows, c = b.cols;
    auto up = [&](const std::vector<double>& v) {
        const std::vector<H> h = to_h_vector<H>(v);
        return a.copy(h.data(), h.size());
    };
    using CV = grpo::matrix_view<const H, grpo::device_space>;
    grpo::loss_inputs<H, grpo::device_space> in;
    in.logp = CV(up(b.logp), r, c);
    if (with_old) in.old_logp = CV(up(b.old_logp), r, c);
    in.ref_logp = CV(up(b.ref_logp), r, c);
    in.advantages =
        per_token_adv ? CV(up(b.adv_tok), r, c)
                      : grpo::broadcast_to_tokens(grpo::vector_view<const H, grpo::device_space>(up(b.adv_seq), r), c);
    if (with_mask) in.mask = CV(up(b.mask), r, c);
    if (with_lengths)
        in.lengths =
            grpo::vector_view<const std::int64_t, grpo::device_space>(a.copy(b.lengths.data(), b.lengths.size()), r);
    const std::vector<H> fill(static_cast<std::size_t>(r * c), to_h<H>(-7));
    grpo::loss_outputs<H, grpo::device_space> out;
    out.grad_logp = grpo::matrix_view<H, grpo::device_space>(a.copy(fill.data(), fill.size()), r, c);
    out.per_token_loss = grpo::matrix_view<H, grpo::device_space>(a.copy(fill.data(), fill.size()), r, c);
    h16_result res;
    res.st = grpo::loss_and_grad(grpo_test::default_exec(), in, out, cfg, ws);
    std::vector<H> g(fill.size()), l(fill.size());
    REQUIRE(grpo_test::to_host(g.data(), out.grad_logp.data(), g.size() * sizeof(H)));
    REQUIRE(grpo_test::to_host(l.data(), out.per_token_loss.data(), l.size() * sizeof(H)));
    for (std::size_t k = 0; k < g.size(); ++k) {
        res.grad.push_back(from_h16(g[k]));
        res.per_token.push_back(from_h16(l[k]));
    }
    res.raw_grad.resize(g.size() * sizeof(H));
    std::memcpy(res.raw_grad.data(), g.data(), res.raw_grad.size());
    return res;
}

/// bf16/fp16 device loss against the fp64 CPU loss on the same rounded inputs: per-token values within one
/// rounding to H (plus one subnormal spacing, plus fp32 math: 1e-6 of the array's scale), scalars (double sums
/// of fp32 terms) 1e-5.
template <class H>
void h16_parity(grpo::index_t rows, grpo::index_t cols, std::uint64_t seed, const grpo::loss_config& cfg,
                bool per_token_adv, bool with_mask, bool with_old, bool with_lengths) {
    grpo_test::batch<double> b(rows, cols, seed);
    round_inputs<H>(b);
    auto hout = b.outputs();
    const grpo::loss_stats ref =
        grpo::loss_and_grad(grpo::exec::host{}, b.inputs(per_token_adv, with_mask, with_old, with_lengths), hout, cfg);
    grpo_test::device_workspace ws;
    const h16_result got = run_h16<H>(b, per_token_adv, with_mask, with_old, with_lengths, cfg, ws);
    const double rel = 1e-5;
    CHECK(got.st.token_count == ref.token_count);
    CHECK(close(got.st.loss, ref.loss, rel));
    CHECK(close(got.st.policy_loss, ref.policy_loss, rel));
    CHECK(close(got.st.kl_loss, ref.kl_loss, rel));
    CHECK(close(got.st.clip_fraction_low, ref.clip_fraction_low, rel));
    CHECK(close(got.st.clip_fraction_high, ref.clip_fraction_high, rel));
    CHECK(close(got.st.dual_clip_fraction, ref.dual_clip_fraction, rel));
    CHECK(close(got.st.ratio_mean, ref.ratio_mean, rel));
    CHECK(close(got.st.ratio_min, ref.ratio_min, rel));
    CHECK(close(got.st.ratio_max, ref.ratio_max, rel));
    CHECK(close(got.st.kl_mean, ref.kl_mean, rel));
    CHECK(close(got.st.approx_kl, ref.approx_kl, rel));
    auto check_array = [&](const std::vector<double>& dev, const std::vector<double>& cpu) {
        double scale = 0;
        for (double x : cpu) scale = std::fmax(scale, std::fabs(x));
        std::size_t bad = 0;
        for (std::size_t k = 0; k < cpu.size(); ++k)
            if (!(std::fabs(dev[k] - cpu[k]) <=
                  1.01 * half_ulp<H>() * std::fabs(cpu[k]) + subnormal_spacing<H>() + 1e-6 * scale))
                ++bad;
        CHECK(bad == 0);
    };
    check_array(got.grad, b.grad);
    check_array(got.per_token, b.per_token);
}

template <class H>
void h16_all() {
    h16_parity<H>(7, 301, 101, grpo::loss_config{}, true, true, true, false);
    grpo::loss_config gspo = grpo::loss_config::gspo();
    gspo.beta = 0.04;
    h16_parity<H>(7, 301, 102, gspo, false, true, true, false); // stride-0 per-sequence advantages
    grpo::loss_config dapo = grpo::loss_config::verl();
    dapo.epsilon_high = 0.28;
    dapo.dual_clip_c = 3;
    dapo.beta = 0.04;
    dapo.kl = grpo::kl_estimator::k2;
    h16_parity<H>(5, 257, 103, dapo, true, false, true, true); // lengths instead of a mask
    grpo::loss_config st = grpo::loss_config{};
    st.ratio = grpo::ratio_level::sequence_token;
    st.agg = grpo::aggregation::seq_mean_token_sum;
    h16_parity<H>(3, 5000, 104, st, true, true, false, false); // long rows, on-policy
}

} // namespace

TEST_CASE("cuda loss: bf16 inputs, fp32 math, parity with the fp64 CPU result", "[cuda][bf16]") {
    h16_all<__nv_bfloat16>();
}
TEST_CASE("cuda loss: fp16 inputs, fp32 math, parity with the fp64 CPU result", "[cuda][fp16]") { h16_all<__half>(); }

TEST_CASE("cuda loss: bf16 deterministic across runs", "[cuda][bf16]") {
    grpo_test::batch<double> b(33, 4097, 121);
    round_inputs<__nv_bfloat16>(b);
    grpo::loss_config cfg = grpo::loss_config::gspo();
    cfg.beta = 0.04;
    grpo_test::device_workspace ws;
    const h16_result a = run_h16<__nv_bfloat16>(b, true, true, true, false, cfg, ws);
    for (int run = 0; run < 3; ++run) {
        const h16_result c = run_h16<__nv_bfloat16>(b, true, true, true, false, cfg, ws);
        CHECK(std::memcmp(&a.st, &c.st, sizeof a.st) == 0);
        CHECK(a.raw_grad == c.raw_grad);
    }
}

TEST_CASE("cuda loss: bf16 bad shapes throw before any launch", "[cuda][bf16]") {
    device_arena a;
    std::vector<__nv_bfloat16> h(24, to_h<__nv_bfloat16>(-1));
    using CV = grpo::matrix_view<const __nv_bfloat16, grpo::device_space>;
    grpo::loss_inputs<__nv_bfloat16, grpo::device_space> in;
    in.logp = CV(a.copy(h.data(), h.size()), 3, 8);
    in.advantages = CV(a.copy(h.data(), h.size()), 3, 7);
    grpo::loss_outputs<__nv_bfloat16, grpo::device_space> out;
    grpo_test::device_workspace ws;
    CHECK_THROWS_AS(grpo::loss_and_grad(grpo_test::default_exec(), in, out, grpo::loss_config{}, ws), grpo::error);
}

#endif // 16-bit types

int main(int argc, char** argv) { return grpo_test::run_device_tests(argc, argv); }
