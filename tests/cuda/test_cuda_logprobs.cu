// SPDX-License-Identifier: MIT
// CPU-vs-CUDA parity of logprobs_from_logits and logprobs_from_hidden and their backward: several blocks of a row,
// chunk sizes, temperatures, masks,
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

namespace {

/// A hidden-state problem: hidden [M, H], weight [V, H], bias [V], and the logits form's problem on the logits
/// they give (computed in long double), which the CPU backend turns into the reference.
struct hidden_problem {
    index_t rows = 0, vocab = 0, width = 0;
    std::vector<double> hidden, weight, bias;
    logits_problem logits; ///< tokens, mask, upstream gradients and the materialized logits
};

hidden_problem random_hidden(index_t rows, index_t vocab, index_t width, std::uint64_t seed) {
    grpo_test::rng g(seed);
    hidden_problem p;
    p.rows = rows;
    p.vocab = vocab;
    p.width = width;
    for (index_t k = 0; k < rows * width; ++k) p.hidden.push_back(g.uniform(-2, 2));
    for (index_t k = 0; k < vocab * width; ++k) p.weight.push_back(g.uniform(-1, 1) / std::sqrt(double(width)));
    for (index_t v = 0; v < vocab; ++v) p.bias.push_back(g.uniform(-0.5, 0.5));
    p.logits = random_problem(rows, vocab, seed + 1);
    for (index_t i = 0; i < rows; ++i)
        for (index_t v = 0; v < vocab; ++v) {
            long double z = p.bias[static_cast<std::size_t>(v)];
            for (index_t k = 0; k < width; ++k)
                z += static_cast<long double>(p.hidden[static_cast<std::size_t>(i * width + k)]) *
                     p.weight[static_cast<std::size_t>(v * width + k)];
            p.logits.logits[static_cast<std::size_t>(i * vocab + v)] = static_cast<double>(z);
        }
    return p;
}

/// The reference gradients from the CPU's dLoss/dlogits G: dhidden = G W, dweight = G^T hidden, dbias = sum G.
struct hidden_reference {
    cpu_result<double> logits;
    std::vector<double> d_hidden, d_weight, d_bias;
};

hidden_reference reference(const hidden_problem& p, const grpo::logprob_config& cfg) {
    hidden_reference r;
    r.logits = run_cpu<double>(p.logits, true, cfg);
    const auto M = static_cast<std::size_t>(p.rows), V = static_cast<std::size_t>(p.vocab),
               H = static_cast<std::size_t>(p.width);
    r.d_hidden.assign(M * H, 0);
    r.d_weight.assign(V * H, 0);
    r.d_bias.assign(V, 0);
    for (std::size_t i = 0; i < M; ++i)
        for (std::size_t v = 0; v < V; ++v) {
            const long double gv = r.logits.grad[i * V + v];
            r.d_bias[v] += static_cast<double>(gv);
            for (std::size_t k = 0; k < H; ++k) {
                r.d_hidden[i * H + k] += static_cast<double>(gv * p.weight[v * H + k]);
                r.d_weight[v * H + k] += static_cast<double>(gv * p.hidden[i * H + k]);
            }
        }
    return r;
}

template <class T>
struct hidden_device_result {
    std::vector<T> logp, entropy, d_hidden, d_weight, d_bias;
    std::vector<double> lse;
    grpo::logprob_stats stats;
};

template <class T>
hidden_device_result<T> run_hidden_device(const hidden_problem& p, const grpo::hidden_logprob_config& cfg,
                                          grpo_test::device_workspace& ws) {
    const logits_problem& q = p.logits;
    dbuf<T> h(cast<T>(p.hidden)), w(cast<T>(p.weight)), b(cast<T>(p.bias)), m(cast<T>(q.mask)), gl(cast<T>(q.g_logp)),
        ge(cast<T>(q.g_entropy));
    dbuf<std::int64_t> t(q.tokens);
    dbuf<T> logp(static_cast<std::size_t>(p.rows), T(-7)), entropy(static_cast<std::size_t>(p.rows), T(-7));
    dbuf<double> lse(static_cast<std::size_t>(p.rows), -7.0);
    dbuf<T> dh(p.hidden.size(), T(-7)), dw(p.weight.size(), T(0)), db(p.bias.size(), T(0));
    grpo::hidden_inputs<T, std::int64_t, grpo::device_space> in;
    in.hidden = h.cmview(p.rows, p.width);
    in.weight = w.cmview(p.vocab, p.width);
    in.bias = b.cview();
    in.tokens = t.cview();
    in.mask = m.cview();
    grpo::logprob_outputs<T, grpo::device_space> out;
    out.logp = logp.view();
    out.entropy = entropy.view();
    out.lse = lse.view();
    hidden_device_result<T> r;
    r.stats = grpo::logprobs_from_hidden(grpo_test::default_exec(), in, out, cfg, ws);
    grpo::logprob_grad_inputs<T, grpo::device_space> g;
    g.lse = lse.cview();
    g.grad_logp = gl.cview();
    g.entropy = entropy.cview();
    g.grad_entropy = ge.cview();
    grpo::hidden_grads<T, grpo::device_space> grads;
    grads.hidden = dh.mview(p.rows, p.width);
    grads.weight = dw.mview(p.vocab, p.width);
    grads.bias = db.view();
    grpo::logprobs_from_hidden_backward(grpo_test::default_exec(), in, g, grads, cfg, ws);
    r.logp = logp.get();
    r.entropy = entropy.get();
    r.lse = lse.get();
    r.d_hidden = dh.get();
    r.d_weight = dw.get();
    r.d_bias = db.get();
    return r;
}

} // namespace

TEST_CASE("cuda logprobs_from_hidden: the CPU logits form on the same logits, any chunk size", "[cuda][hidden]") {
    grpo_test::device_workspace ws;
    for (const index_t chunk : {index_t(0), index_t(1), index_t(4)}) {
        for (const double temperature : {1.0, 0.8}) {
            const hidden_problem p = random_hidden(9, 700, 6, 31);
            grpo::hidden_logprob_config cfg;
            cfg.chunk_rows = chunk;
            cfg.temperature = temperature;
            const hidden_reference ref = reference(p, cfg);
            const hidden_device_result<double> d = run_hidden_device<double>(p, cfg, ws);
            check_close(ref.logits.logp, d.logp, 1e-12, 1e-12);
            check_close(ref.logits.entropy, d.entropy, 1e-12, 1e-12);
            check_close(ref.logits.lse, d.lse, 1e-12, 1e-12);
            check_close(ref.d_hidden, d.d_hidden, 1e-10, 1e-12);
            check_close(ref.d_weight, d.d_weight, 1e-10, 1e-12);
            check_close(ref.d_bias, d.d_bias, 1e-10, 1e-12);
            CHECK(d.stats.rows == ref.logits.stats.rows);
            for (std::size_t i = 0; i < p.logits.mask.size(); ++i)
                if (p.logits.mask[i] == 0)
                    for (index_t k = 0; k < p.width; ++k)
                        CHECK(d.d_hidden[i * static_cast<std::size_t>(p.width) + static_cast<std::size_t>(k)] == 0);
        }
    }
    // Float: cuBLAS's (or the emulator's) products in fp32.
    const hidden_problem p = random_hidden(7, 500, 16, 32);
    grpo::hidden_logprob_config cfg;
    const hidden_reference ref = reference(p, cfg);
    const hidden_device_result<float> f = run_hidden_device<float>(p, cfg, ws);
    check_close(ref.logits.logp, f.logp, 1e-4, 1e-4);
    check_close(ref.d_hidden, f.d_hidden, 1e-3, 1e-5);
    check_close(ref.d_weight, f.d_weight, 1e-3, 1e-5);
}

TEST_CASE("cuda logprobs_from_hidden: the backward is the derivative (finite differences)", "[cuda][hidden]") {
    grpo_test::device_workspace ws;
    hidden_problem p = random_hidden(3, 40, 4, 33);
    grpo::hidden_logprob_config cfg;
    cfg.temperature = 0.9;
    const hidden_device_result<double> d = run_hidden_device<double>(p, cfg, ws);
    const auto loss = [&](const hidden_problem& q) {
        const hidden_device_result<double> r = run_hidden_device<double>(q, cfg, ws);
        double l = 0;
        for (std::size_t i = 0; i < r.logp.size(); ++i)
            l += q.logits.g_logp[i] * r.logp[i] + q.logits.g_entropy[i] * r.entropy[i];
        return l;
    };
    const double eps = 1e-6;
    for (const std::size_t k : {0u, 5u, 11u}) {
        hidden_problem up = p, down = p;
        up.hidden[k] += eps;
        down.hidden[k] -= eps;
        CHECK(d.d_hidden[k] == Approx((loss(up) - loss(down)) / (2 * eps)).margin(1e-7));
    }
    for (const std::size_t k : {0u, 37u, 150u}) {
        hidden_problem up = p, down = p;
        up.weight[k] += eps;
        down.weight[k] -= eps;
        CHECK(d.d_weight[k] == Approx((loss(up) - loss(down)) / (2 * eps)).margin(1e-7));
    }
}

TEST_CASE("cuda logprobs_from_hidden: bad values are the CPU's errors, outputs untouched", "[cuda][hidden][errors]") {
    grpo_test::device_workspace ws;
    const auto fails_with = [&](hidden_problem p, const char* needle) {
        dbuf<double> h(p.hidden), w(p.weight), b(p.bias), lp(static_cast<std::size_t>(p.rows), -7.0);
        dbuf<std::int64_t> t(p.logits.tokens);
        grpo::hidden_inputs<double, std::int64_t, grpo::device_space> in;
        in.hidden = h.cmview(p.rows, p.width);
        in.weight = w.cmview(p.vocab, p.width);
        in.bias = b.cview();
        in.tokens = t.cview();
        grpo::logprob_outputs<double, grpo::device_space> out;
        out.logp = lp.view();
        std::string message = "no error";
        try {
            grpo::logprobs_from_hidden(grpo_test::default_exec(), in, out, grpo::hidden_logprob_config{}, ws);
        } catch (const grpo::error& e) {
            message = e.what();
        }
        INFO(message);
        CHECK(message.find(needle) != std::string::npos);
        CHECK(lp.get() == std::vector<double>(static_cast<std::size_t>(p.rows), -7.0));
    };
    hidden_problem p = random_hidden(4, 30, 3, 34);
    p.hidden[7] = std::numeric_limits<double>::quiet_NaN(); // row 2, column 1
    fails_with(p, "argument 'hidden': expected finite values at unmasked rows, got nan at (2, 1)");
    p = random_hidden(4, 30, 3, 34);
    p.weight[3 * 29 + 2] = inf;
    fails_with(p, "argument 'weight': expected finite values, got inf at (29, 2)");
    p = random_hidden(4, 30, 3, 34);
    p.bias[12] = -inf;
    fails_with(p, "argument 'bias'");
    p = random_hidden(4, 30, 3, 34);
    p.logits.tokens[3] = 30;
    p.hidden[0] = std::numeric_limits<double>::quiet_NaN(); // ids come first, as on the CPU
    fails_with(p, "ids in [0, 30), got 30 at row 3");
    p = random_hidden(4, 30, 3, 34);
    p.hidden[0] = p.weight[0] = 1e200; // finite, but the logits overflow
    fails_with(p, "argument 'hidden'");
    // The backward: a finite but huge upstream gradient whose products could overflow, a NaN one.
    p = random_hidden(4, 30, 3, 34);
    p.logits.mask.assign(4, 1.0);
    const auto backward_message = [&](const hidden_problem& q) {
        try {
            run_hidden_device<double>(q, grpo::hidden_logprob_config{}, ws);
        } catch (const grpo::error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    p.logits.g_logp[1] = 1e308;
    CHECK(backward_message(p).find("argument 'grad_logp': expected upstream gradients whose dLoss/dhidden") !=
          std::string::npos);
    p.logits.g_logp[1] = std::numeric_limits<double>::quiet_NaN();
    CHECK(backward_message(p).find("argument 'grad_logp': expected finite values at unmasked rows, got nan at row 1") !=
          std::string::npos);
}

int main(int argc, char** argv) { return grpo_test::run_device_tests(argc, argv); }
