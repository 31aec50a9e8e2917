// SPDX-License-Identifier: MIT
// CPU-vs-CUDA parity of logprobs_from_logits and its backward: several blocks of a row, temperatures, masks,
// banned tokens, logits at +-1e4 and far beyond (the backward's recomputed split of lse), int32 and int64 ids,
// in-place backward, float, double and the 16-bit types; determinism; the CPU's errors for bad values, outputs
// untouched. Built twice (device_harness.hpp): for a GPU (exits 77 without one) and for the host emulator
// (test_cuda_logprobs_emulated).
#ifdef GRPO_CATCH3
#include <catch2/catch_session.hpp>
#include <catch2/catch_test_macros.hpp>
#else
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#endif

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "device_harness.hpp"
#include "test_helpers.hpp"

namespace {

using grpo::index_t;
using grpo_test::dbuf;
constexpr double inf = std::numeric_limits<double>::infinity();

/// One batch of logits (row-major [rows, vocab]) with everything a forward and a backward read, in double.
struct logits_problem {
    index_t rows = 0, vocab = 0;
    std::vector<double> logits, mask, g_logp, g_entropy;
    std::vector<std::int64_t> tokens;
};

logits_problem random_problem(index_t rows, index_t vocab, std::uint64_t seed, double scale = 4.0) {
    grpo_test::rng g(seed);
    logits_problem p;
    p.rows = rows;
    p.vocab = vocab;
    p.logits.resize(static_cast<std::size_t>(rows * vocab));
    for (double& x : p.logits) x = g.uniform(-scale, scale);
    for (index_t i = 0; i < rows; ++i) {
        p.tokens.push_back(static_cast<std::int64_t>(g.next() % static_cast<std::uint64_t>(vocab)));
        p.mask.push_back(g.uniform() < 0.2 ? 0.0 : 1.0);
        p.g_logp.push_back(g.uniform(-1, 1));
        p.g_entropy.push_back(g.uniform(-0.1, 0.1));
        // A few banned tokens (-inf), never the sampled one.
        for (int k = 0; k < 3; ++k) {
            const index_t j = static_cast<index_t>(g.next() % static_cast<std::uint64_t>(vocab));
            if (j != p.tokens.back()) p.logits[static_cast<std::size_t>(i * vocab + j)] = -inf;
        }
    }
    return p;
}

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
    return std::vector<T>(v.begin(), v.end());
}

/// The CPU backend's results (forward outputs and the gradient from the given lse), in T.
template <class T>
struct cpu_result {
    std::vector<T> logp, entropy, grad;
    std::vector<double> lse;
    grpo::logprob_stats stats;
};

template <class T>
cpu_result<T> run_cpu(const logits_problem& p, bool with_mask, const grpo::logprob_config& cfg) {
    const std::vector<T> x = cast<T>(p.logits), m = cast<T>(p.mask), gl = cast<T>(p.g_logp), ge = cast<T>(p.g_entropy);
    grpo::logits_inputs<T> in;
    in.logits = {x.data(), p.rows, p.vocab};
    in.tokens = {p.tokens.data(), p.rows};
    if (with_mask) in.mask = {m.data(), p.rows};
    cpu_result<T> r;
    r.logp.assign(static_cast<std::size_t>(p.rows), T(0));
    r.entropy = r.logp;
    r.lse.assign(static_cast<std::size_t>(p.rows), 0.0);
    r.grad.assign(x.size(), T(0));
    grpo::logprob_outputs<T> out;
    out.logp = {r.logp.data(), p.rows};
    out.entropy = {r.entropy.data(), p.rows};
    out.lse = {r.lse.data(), p.rows};
    r.stats = grpo::logprobs_from_logits(grpo::exec::host{}, in, out, cfg);
    grpo::logprob_grad_inputs<T> g;
    g.lse = {r.lse.data(), p.rows};
    g.grad_logp = {gl.data(), p.rows};
    g.entropy = {r.entropy.data(), p.rows};
    g.grad_entropy = {ge.data(), p.rows};
    grpo::logprobs_from_logits_backward(grpo::exec::host{}, in, g, grpo::matrix_view<T>(r.grad.data(), p.rows, p.vocab),
                                        cfg);
    return r;
}

/// The same on the device; the backward reads `lse` (the CPU's, so that both gradients start from one value).
template <class T, class Token = std::int64_t>
struct device_result {
    std::vector<T> logp, entropy, grad;
    std::vector<double> lse;
    grpo::logprob_stats stats;
};

template <class T, class Token = std::int64_t>
device_result<T, Token> run_device(const logits_problem& p, bool with_mask, const grpo::logprob_config& cfg,
                                   const std::vector<double>& lse_for_backward, bool in_place,
                                   grpo_test::device_workspace& ws) {
    const std::vector<Token> ids(p.tokens.begin(), p.tokens.end());
    dbuf<T> x(cast<T>(p.logits)), m(cast<T>(p.mask)), gl(cast<T>(p.g_logp)), ge(cast<T>(p.g_entropy));
    dbuf<Token> t(ids);
    dbuf<T> logp(static_cast<std::size_t>(p.rows), T(-7)), entropy(static_cast<std::size_t>(p.rows), T(-7));
    dbuf<double> lse(static_cast<std::size_t>(p.rows), -7.0), lse_in(lse_for_backward);
    dbuf<T> grad(p.logits.size(), T(-7));
    grpo::logits_inputs<T, Token, grpo::device_space> in;
    in.logits = x.cmview(p.rows, p.vocab);
    in.tokens = t.cview();
    if (with_mask) in.mask = m.cview();
    grpo::logprob_outputs<T, grpo::device_space> out;
    out.logp = logp.view();
    out.entropy = entropy.view();
    out.lse = lse.view();
    device_result<T, Token> r;
    r.stats = grpo::logprobs_from_logits(grpo_test::default_exec(), in, out, cfg, ws);
    r.logp = logp.get();
    r.entropy = entropy.get();
    r.lse = lse.get();
    grpo::logprob_grad_inputs<T, grpo::device_space> g;
    g.lse = lse_in.cview();
    g.grad_logp = gl.cview();
    g.entropy = entropy.cview();
    g.grad_entropy = ge.cview();
    const auto target = in_place ? x.mview(p.rows, p.vocab) : grad.mview(p.rows, p.vocab);
    grpo::logprobs_from_logits_backward(grpo_test::default_exec(), in, g, target, cfg, ws);
    r.grad = in_place ? x.get() : grad.get();
    return r;
}

template <class A, class B>
void check_close(const std::vector<A>& expected, const std::vector<B>& actual, double rel, double abs) {
    REQUIRE(expected.size() == actual.size());
    for (std::size_t k = 0; k < expected.size(); ++k) {
        const double e = static_cast<double>(expected[k]), a = static_cast<double>(actual[k]);
        if (e == a) continue; // also infinities
        INFO("index " << k << ": expected " << e << ", got " << a);
        CHECK(std::fabs(e - a) <= abs + rel * std::fabs(e));
    }
}

} // namespace

TEST_CASE("cuda logprobs: double parity with the CPU backend over blocks, temperatures, masks", "[cuda][logprobs]") {
    grpo_test::device_workspace ws;
    for (const double temperature : {1.0, 0.7}) {
        for (const bool with_mask : {false, true}) {
            const logits_problem p = random_problem(13, 1100, 3, 6.0);
            grpo::logprob_config cfg;
            cfg.temperature = temperature;
            const cpu_result<double> c = run_cpu<double>(p, with_mask, cfg);
            for (const bool in_place : {false, true}) {
                const device_result<double> d = run_device<double>(p, with_mask, cfg, c.lse, in_place, ws);
                check_close(c.logp, d.logp, 1e-12, 1e-13);
                check_close(c.entropy, d.entropy, 1e-12, 1e-13);
                check_close(c.lse, d.lse, 1e-13, 1e-13);
                check_close(c.grad, d.grad, 1e-12, 1e-15);
                CHECK(d.stats.rows == c.stats.rows);
                CHECK(d.stats.logp_sum == Approx(c.stats.logp_sum).epsilon(1e-12));
                CHECK(d.stats.entropy_sum == Approx(c.stats.entropy_sum).epsilon(1e-12));
            }
        }
    }
}

TEST_CASE("cuda logprobs: float, int32 ids, extreme logits and the recomputed lse split", "[cuda][logprobs]") {
    grpo_test::device_workspace ws;
    logits_problem p = random_problem(7, 600, 5, 1e4); // logits +-1e4: one-hot rows, p underflows to 0
    grpo::logprob_config cfg;
    const cpu_result<float> c = run_cpu<float>(p, true, cfg);
    const device_result<float, std::int32_t> d = run_device<float, std::int32_t>(p, true, cfg, c.lse, false, ws);
    check_close(c.logp, d.logp, 1e-5, 1e-5);
    check_close(c.entropy, d.entropy, 1e-5, 1e-5);
    check_close(c.grad, d.grad, 1e-5, 1e-6);
    // |lse| beyond 2^20: the backward recomputes the row's maximum and log s (both backends).
    for (double& x : p.logits) x = x == -inf ? x : x * 1e3 + 3e7;
    const cpu_result<double> c2 = run_cpu<double>(p, false, cfg);
    const device_result<double> d2 = run_device<double>(p, false, cfg, c2.lse, true, ws);
    check_close(c2.logp, d2.logp, 1e-12, 1e-9);
    check_close(c2.grad, d2.grad, 1e-12, 1e-15);
}

TEST_CASE("cuda logprobs: deterministic, and close across block sizes", "[cuda][logprobs]") {
    grpo_test::device_workspace ws;
    const logits_problem p = random_problem(9, 2000, 8);
    grpo::logprob_config cfg;
    const cpu_result<double> c = run_cpu<double>(p, true, cfg);
    const device_result<double> a = run_device<double>(p, true, cfg, c.lse, false, ws);
    const device_result<double> b = run_device<double>(p, true, cfg, c.lse, false, ws);
    CHECK(a.logp == b.logp);
    CHECK(a.entropy == b.entropy);
    CHECK(a.lse == b.lse);
    CHECK(a.grad == b.grad);
#ifdef GRPO_TEST_EMULATED
    const int saved = grpo_test::emulated_threads();
    grpo_test::emulated_threads() = 3;
    const device_result<double> other = run_device<double>(p, true, cfg, c.lse, false, ws);
    grpo_test::emulated_threads() = saved;
    check_close(a.logp, other.logp, 1e-13, 1e-14);
    check_close(a.grad, other.grad, 1e-13, 1e-16);
#endif
}

#if !defined(GRPO_TEST_EMULATED) || defined(GRPO_TEST_EMULATED_HALF) // 16-bit types: CUDA toolkit headers
namespace {
inline double from_h16(__half h) { return static_cast<double>(__half2float(h)); }
inline double from_h16(__nv_bfloat16 h) { return static_cast<double>(__bfloat162float(h)); }

/// 16-bit logits (math in float) against the CPU's double result on the same rounded values.
template <class H>
void h16_parity() {
    grpo_test::device_workspace ws;
    logits_problem p = random_problem(6, 700, 12, 5.0);
    const std::vector<H> rounded(p.logits.begin(), p.logits.end());
    for (std::size_t k = 0; k < rounded.size(); ++k) p.logits[k] = from_h16(rounded[k]);
    grpo::logprob_config cfg;
    cfg.temperature = 0.9;
    const cpu_result<double> c = run_cpu<double>(p, true, cfg);
    const device_result<H> d = run_device<H>(p, true, cfg, c.lse, false, ws);
    const double eps = std::is_same<H, __half>::value ? 0x1.0p-10 : 0x1.0p-7; // the output's rounding
    for (std::size_t i = 0; i < c.logp.size(); ++i) {
        CHECK(std::fabs(from_h16(d.logp[i]) - c.logp[i]) <= 1e-4 + eps * std::fabs(c.logp[i]));
        CHECK(std::fabs(from_h16(d.entropy[i]) - c.entropy[i]) <= 1e-4 + eps * std::fabs(c.entropy[i]));
        CHECK(d.lse[i] == Approx(c.lse[i]).epsilon(1e-6));
    }
    for (std::size_t k = 0; k < c.grad.size(); ++k)
        CHECK(std::fabs(from_h16(d.grad[k]) - c.grad[k]) <= 1e-5 + eps * std::fabs(c.grad[k]));
}
} // namespace

TEST_CASE("cuda logprobs: bf16 and fp16 logits, fp32 math", "[cuda][logprobs][fp16]") {
    h16_parity<__nv_bfloat16>();
    h16_parity<__half>();
}
#endif

TEST_CASE("cuda logprobs: the CPU's errors for bad values, outputs untouched", "[cuda][logprobs][errors]") {
    grpo_test::device_workspace ws;
    const auto message_of = [](auto&& call) {
        try {
            call();
        } catch (const grpo::error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    // The same call on both backends must fail with the same message (up to the entry point's name).
    const auto same_error = [&](const logits_problem& p, bool with_mask, const grpo::logprob_config& cfg,
                                const char* needle) {
        const std::vector<double> m = p.mask;
        grpo::logits_inputs<double> hin;
        hin.logits = {p.logits.data(), p.rows, p.vocab};
        hin.tokens = {p.tokens.data(), p.rows};
        if (with_mask) hin.mask = {m.data(), p.rows};
        std::vector<double> hl(static_cast<std::size_t>(p.rows));
        grpo::logprob_outputs<double> hout;
        hout.logp = {hl.data(), p.rows};
        const std::string cpu = message_of([&] { grpo::logprobs_from_logits(grpo::exec::host{}, hin, hout, cfg); });
        dbuf<double> x(p.logits), mk(p.mask), lp(static_cast<std::size_t>(p.rows), -7.0);
        dbuf<std::int64_t> t(p.tokens);
        grpo::logits_inputs<double, std::int64_t, grpo::device_space> in;
        in.logits = x.cmview(p.rows, p.vocab);
        in.tokens = t.cview();
        if (with_mask) in.mask = mk.cview();
        grpo::logprob_outputs<double, grpo::device_space> out;
        out.logp = lp.view();
        const std::string dev =
            message_of([&] { grpo::logprobs_from_logits(grpo_test::default_exec(), in, out, cfg, ws); });
        INFO("cpu: " << cpu << "\ndevice: " << dev);
        CHECK(cpu.find(needle) != std::string::npos);
        CHECK(dev.find(needle) != std::string::npos);
        CHECK(cpu.substr(cpu.find(": ")) == dev.substr(dev.find(": ")));
        CHECK(lp.get() == std::vector<double>(static_cast<std::size_t>(p.rows), -7.0));
    };
    grpo::logprob_config cfg;
    logits_problem p = random_problem(4, 300, 21);
    p.logits[2 * 300 + 17] = std::numeric_limits<double>::quiet_NaN();
    p.logits[3 * 300 + 5] = inf;
    same_error(p, false, cfg, "nan at (2, 17)");
    p = random_problem(4, 300, 21);
    p.logits[static_cast<std::size_t>(1 * 300 + p.tokens[1])] = -inf;
    same_error(p, false, cfg, "logit -inf at (1, ");
    p = random_problem(4, 300, 21);
    p.logits[3 * 300 + 9] = std::numeric_limits<double>::quiet_NaN();
    p.tokens[2] = 300; // ids are checked first, whatever the row
    same_error(p, false, cfg, "ids in [0, 300), got 300 at row 2");
    p = random_problem(4, 300, 21);
    p.mask = {1, 0.5, 1, 1};
    same_error(p, true, cfg, "values 0 or 1, got 0.5 at row 1");
    p = random_problem(4, 300, 21);
    p.logits[0] = 1e308;
    grpo::logprob_config cold;
    cold.temperature = 0.5; // 1e308 / 0.5 overflows
    same_error(p, false, cold, "overflows after dividing by the temperature");

    // Backward: a bad per-row value or a NaN logit, nothing written (in place: the logits stay as they were).
    p = random_problem(3, 200, 22);
    const cpu_result<double> c = run_cpu<double>(p, false, cfg);
    for (int which = 0; which < 2; ++which) {
        logits_problem q = p;
        std::vector<double> g_logp = q.g_logp;
        if (which == 0) g_logp[1] = inf;
        if (which == 1) q.logits[2 * 200 + 50] = std::numeric_limits<double>::quiet_NaN();
        dbuf<double> x(q.logits), gl(g_logp), lse(c.lse);
        dbuf<std::int64_t> t(q.tokens);
        grpo::logits_inputs<double, std::int64_t, grpo::device_space> in;
        in.logits = x.cmview(q.rows, q.vocab);
        in.tokens = t.cview();
        grpo::logprob_grad_inputs<double, grpo::device_space> g;
        g.lse = lse.cview();
        g.grad_logp = gl.cview();
        const std::string dev = message_of([&] {
            grpo::logprobs_from_logits_backward(grpo_test::default_exec(), in, g, x.mview(q.rows, q.vocab), cfg, ws);
        });
        INFO(dev);
        CHECK(dev.find(which == 0 ? "argument 'grad_logp'" : "nan at (2, 50)") != std::string::npos);
        const std::vector<double> after = x.get();
        for (std::size_t k = 0; k < after.size(); ++k)
            if (!(after[k] != after[k])) CHECK(after[k] == q.logits[k]); // (NaN != NaN)
    }
    // No rows: nothing to do.
    logits_problem none;
    none.vocab = 5;
    const device_result<double> d0 = run_device<double>(none, true, cfg, {}, false, ws);
    CHECK(d0.stats.rows == 0);
}

int main(int argc, char** argv) { return grpo_test::run_device_tests(argc, argv); }
